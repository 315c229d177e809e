"""The jaxstyle command: the quick form without a config file, and its entry point."""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import EXAMPLES, ROOT

RUN = [sys.executable, "-c", "from jaxstyle.cli import console; console()"]


def test_console_script_is_declared_and_importable():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'jaxstyle = "jaxstyle.cli:console"' in text
    eps = [e for e in md.entry_points(group="console_scripts") if e.name == "jaxstyle"]
    assert eps and eps[0].load().__name__ == "console"


def test_quick_form_names_its_folder_and_never_overwrites(tmp_path):
    args = [str(EXAMPLES / "home.jpg"), str(EXAMPLES / "starry_night.jpg"), "--size", "32", "--seeds", "0", "1",
            "--set", "optimizer.iterations=2", "--set", "print_every=0"]
    r = subprocess.run(RUN + args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "outputs" / "home-in-starry_night"
    report = json.loads((out / "report.json").read_text())
    assert [v["seed"] for v in report["variants"]] == [0, 1] and report["image_size"] == [24, 32]
    # The artwork's frame is cut before its statistics are taken, and the log and report say so.
    assert report["style_trim"] == [{"top": 22, "bottom": 17, "left": 20, "right": 17}]
    assert "style_trim: cut" in r.stdout and "top 22, bottom 17, left 20, right 17 px" in r.stdout
    before = (out / "000_seed0.png").read_bytes()
    r = subprocess.run(RUN + args, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "already exists; choose another output, or replace it with --overwrite (overwrite: true)")
    assert (out / "000_seed0.png").read_bytes() == before
    r = subprocess.run(RUN + args[:2] + ["-o", "mine", "--size", "32", "--set", "optimizer.iterations=1"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0 and (tmp_path / "mine" / "000_seed0.png").is_file()


def test_quick_form_mistakes_are_one_line(tmp_path):
    cases = [([str(EXAMPLES / "home.jpg")], "the quick form takes a photo and at least one artwork, not 1 path(s)"),
             (["--size", "32"], "nothing to run: give PHOTO ARTWORK, --config FILE or --resume DIR"),
             (["a.jpg", "b.jpg", "--config", "c.yaml"], "give PHOTO ARTWORK or --config, not both"),
             (["-content_weight", "5", "a.jpg", "b.jpg"], "unknown option -content_weight (did you mean --content-weight?)"),
             (["a.jpg", "b.jpg", "--num_iterations", "5"], "unknown option --num_iterations (did you mean --iterations"),
             (["a.jpg", "b.jpg", "--seeds", "x"], "seeds are whole numbers, not 'x'")]
    for args, message in cases:
        r = subprocess.run(RUN + args, capture_output=True, text=True, cwd=tmp_path, timeout=120)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and message in r.stderr, r.stderr
        assert not (tmp_path / "outputs").exists()


def test_the_compile_cache_is_private_used_by_a_second_run_and_off_when_asked(tmp_path, monkeypatch, capsys):
    """Two runs of the same sizes: the first writes JAX's compiled programs to a folder only the user
    may open, the second reads them back (and logs it); ``--no-compile-cache`` neither makes nor
    touches the folder."""
    env = {k: v for k, v in os.environ.items() if k != "JAX_COMPILATION_CACHE_DIR"}  # the suite's own cache
    env.update(XDG_CACHE_HOME=str(tmp_path / "cache"), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
    args = [str(EXAMPLES / "home.jpg"), str(EXAMPLES / "starry_night.jpg"), "--size", "32",
            "--set", "optimizer.iterations=2", "--set", "print_every=0", "--set", "overwrite=true", "-o", "out"]
    folder = tmp_path / "cache" / "jaxstyle" / "compiled"
    logs = []
    for _ in range(2):
        r = subprocess.run(RUN + args, capture_output=True, text=True, cwd=tmp_path, timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        logs.append(next(line for line in r.stdout.splitlines() if line.startswith("compile cache:")))
    assert (folder.stat().st_mode & 0o777) == 0o700 and any(folder.iterdir())
    read = [int(line.split()[2]) for line in logs]
    assert read[0] == 0 and read[1] > 0, logs
    # Off: run in this process (which has the suite's own cache), the folder is neither made nor read.
    from jaxstyle.cli import main
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "other"))
    monkeypatch.chdir(tmp_path)
    assert main(args + ["--no-compile-cache"]) == 0
    assert "compile cache" not in capsys.readouterr().out and not (tmp_path / "other" / "jaxstyle").exists()


def test_a_cache_folder_others_could_write_is_not_used(tmp_path):
    from jaxstyle.driver.compile_cache import cache_dir, private_dir
    assert cache_dir({"XDG_CACHE_HOME": "/x/c", "HOME": "/h"}) == Path("/x/c/jaxstyle/compiled")
    assert cache_dir({"XDG_CACHE_HOME": "relative", "HOME": "/h"}) == Path("/h/.cache/jaxstyle/compiled")
    assert private_dir(tmp_path / "new" / "cache") is None
    assert (tmp_path / "new" / "cache").stat().st_mode & 0o777 == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    assert "may be written by others" in private_dir(shared)
    (tmp_path / "file").write_text("")
    assert "is not a folder" in private_dir(tmp_path / "file") or "cannot create" in private_dir(tmp_path / "file")


def test_continue_adds_iterations_to_a_finished_run(tmp_path, monkeypatch):
    """30 iterations, then ``--continue 30``, ends within a few percent of 60 in one go (the second
    part starts with an empty L-BFGS memory), from the raw float result the first run kept."""
    from jaxstyle.cli import main
    monkeypatch.chdir(tmp_path)
    args = [str(EXAMPLES / "home.jpg"), str(EXAMPLES / "starry_night.jpg"), "--size", "40", "--print-every", "0"]
    assert main(args + ["--iterations", "30", "-o", "part"]) == 0
    first = json.loads((tmp_path / "part" / "report.json").read_text())
    assert first["raw"] == "result.npz" and "result.npz" in first["files"]
    assert main(["--continue", "30", "part"]) == 0
    assert main(args + ["--iterations", "60", "-o", "whole"]) == 0
    more, whole = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("part", "whole"))
    assert more["iterations"] == 30 and whole["iterations"] == 60
    a, b, c = (r["variants"][0]["final_loss"]["total"] for r in (first, more, whole))
    assert b < a and abs(b - c) / c < 0.03, (a, b, c)
    # A folder without a finished run's result is refused in one line.
    (tmp_path / "part" / "result.npz").unlink()
    r = subprocess.run(RUN + ["--continue", "5", "part"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: nothing to continue: ") and r.stderr.count("\n") == 1
