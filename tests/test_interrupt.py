"""Interrupting a real run (SIGINT after its first chunk), then resuming it.

Each run is held after its first chunk by the test pause file (``JAXSTYLE_TEST_PAUSE_FILE``) until
the test has signalled it, so on a loaded machine the run cannot finish, or finish its chunk,
before the signal arrives."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import numpy as np
import yaml
from PIL import Image

from conftest import EXAMPLES, ROOT
from jaxstyle.engine.progress import PAUSE_ENV

SCRIPT = str(ROOT / "scripts" / "transfer.py")


def first_progress_line(proc) -> str:
    """The run's first progress line: after the lines before it ("style_trim: cut ..." for the
    artwork's frame, then "N variant(s) ...")."""
    line = proc.stdout.readline()
    while line and "variant(s)" not in line:
        line = proc.stdout.readline()
    return proc.stdout.readline()


def _config(tmp_path, name):
    cfg = {"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
           "size": 40, "seeds": [0, 1], "print_every": 2, "output": str(tmp_path / name),
           "optimizer": {"iterations": 40}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_sigint_saves_progress_and_resume_matches_uninterrupted(tmp_path):
    full = subprocess.run([sys.executable, SCRIPT, "--config", str(_config(tmp_path, "full"))],
                          capture_output=True, text=True, timeout=300)
    assert full.returncode == 0, full.stderr

    cfg = _config(tmp_path, "cut")
    pause = tmp_path / "pause"
    pause.touch()
    proc = subprocess.Popen([sys.executable, SCRIPT, "--config", str(cfg)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, PAUSE_ENV: str(pause)})
    progress = first_progress_line(proc)
    assert "2/40" in progress, progress
    proc.send_signal(signal.SIGINT)
    assert "stopping after the current chunk" in proc.stderr.readline()  # handled while held
    pause.unlink()
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    assert "Traceback" not in err
    cut = tmp_path / "cut"
    report = json.loads((cut / "report.json").read_text())
    assert report["interrupted"] is True
    assert report["iterations"] == 2  # signalled while held after the first chunk: stopped there
    assert (cut / "checkpoint.npz").is_file()
    assert (cut / "losses.png").is_file() and report["curves"] == "losses.png"
    saved = np.asarray(Image.open(cut / "000_seed0.png"))
    assert saved.shape == (30, 40, 3)
    assert report["variants"][0]["final_loss"]["total"] < report["variants"][0]["initial_loss"]["total"]

    # From the folder alone (its checkpoint holds the config), anywhere: the folder could have moved.
    moved = tmp_path / "moved"
    cut.rename(moved)
    cut = moved
    resumed = subprocess.run([sys.executable, SCRIPT, "--resume", "moved"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads((cut / "report.json").read_text())
    assert report["interrupted"] is False and report["resumed_from"].startswith("stage 1, pass 1, tile 1, iteration ")
    assert report["iterations"] == 40
    assert not (cut / "checkpoint.npz").exists()
    full_report = json.loads((tmp_path / "full" / "report.json").read_text())
    # The history goes on where it stopped: every chunk of the uninterrupted run, once.
    assert [h["iteration"] for h in report["history"]] == [h["iteration"] for h in full_report["history"]] \
        == list(range(2, 41, 2))
    for a, b in zip(report["variants"], full_report["variants"]):
        np.testing.assert_allclose(a["final_loss"]["total"], b["final_loss"]["total"], rtol=1e-5)
        assert a["initial_loss"] == b["initial_loss"]
    for name in ("000_seed0.png", "001_seed1.png"):
        x = np.asarray(Image.open(cut / name), np.int16)
        y = np.asarray(Image.open(tmp_path / "full" / name), np.int16)
        assert np.abs(x - y).max() <= 1


def test_a_second_sigint_stops_at_once_in_one_line(tmp_path):
    # Both signals land while the run is held after its first chunk.
    cfg = {"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"), "size": 64,
           "scales": [], "seeds": [0], "print_every": 40, "output": str(tmp_path / "out"),
           "optimizer": {"iterations": 400}}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    pause = tmp_path / "pause"
    pause.touch()
    proc = subprocess.Popen([sys.executable, SCRIPT, "--config", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, PAUSE_ENV: str(pause)})
    assert "40/400" in first_progress_line(proc)  # the first chunk is done: the run is in its loop
    proc.send_signal(signal.SIGINT)
    assert "stopping after the current chunk" in proc.stderr.readline()  # the first was handled
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert err.strip().splitlines() == ["stopped at once: nothing more was saved"], err
    # Nothing half-done is left: no lock, no checkpoint, no temporary file (".name.XXXX.tmp").
    out = tmp_path / "out"
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in left if n.startswith(".") or n == "checkpoint.npz"], left


def test_resume_refuses_a_changed_config_or_missing_checkpoint(tmp_path):
    cfg = _config(tmp_path, "x")
    r = subprocess.run([sys.executable, SCRIPT, "--config", str(cfg), "--resume"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "nothing to resume" in r.stderr
