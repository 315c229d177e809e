"""The command line's words without running a job: each flag names its config key, options in any
order, ``--iterations`` shared as the schedule shares it, the did-you-mean for other tools' names,
the help, ``keys``, ``--version``, ``--dry-run`` (nothing written), the resume message naming what
changed, and YAML booleans named as such."""

from __future__ import annotations

import os

import pytest

from conftest import EXAMPLES
from jaxstyle import __version__
from jaxstyle.cli import config_from, main, parse
from jaxstyle.core.errors import ConfigError
from jaxstyle.driver.flags import shared_iterations
from jaxstyle.engine.checkpoint import changes
from jaxstyle.engine.config import load_config

PHOTO, ART, ART2 = str(EXAMPLES / "home.jpg"), str(EXAMPLES / "starry_night.jpg"), str(EXAMPLES / "graf1.png")


def cfg_of(*argv: str):
    return config_from(parse(list(argv)))


#: Each flag, a value, and the config field and value it must give (written out by hand).
FLAG_CASES = [
    (["--content-weight", "2.5"], "alpha", 2.5),
    (["--style-weight", "40"], "beta", 40.0),
    (["--tv-weight", "0.5"], "terms", {"tv": 0.5}),
    (["--init", "content"], "init", "content"),
    (["--style-scale", "0.5"], "style_scale", 0.5),
    (["--original-colors"], "preserve_colors", "luminance"),
    (["--preserve-colors", "histogram"], "preserve_colors", "histogram"),
    (["--pooling", "max"], "pooling", "max"),
    (["--padding", "zero"], "padding", "zero"),
    (["--print-every", "7"], "print_every", 7),
    (["--save-every", "9"], "save_every", 9),
    (["--output-format", "jpg"], "image_format", "jpg"),
    (["--overwrite"], "overwrite", True),
    (["--size", "48"], "size", 48),
    (["--seeds", "3", "4"], "seeds", [3, 4]),
    (["--seeds", "5,6"], "seeds", [5, 6]),
]


@pytest.mark.parametrize("flag, field, value", FLAG_CASES, ids=[c[0][0] for c in FLAG_CASES])
def test_each_flag_names_its_config_key(flag, field, value):
    assert getattr(cfg_of(PHOTO, ART, *flag), field) == value
    # ... in any position, and with --config as with the quick form (over the file's value).
    assert getattr(cfg_of(*flag, PHOTO, ART), field) == value
    assert getattr(cfg_of("--config", str(EXAMPLES / "config.yaml"), *flag), field) == value


def test_the_optimizer_flags_and_style_blend():
    cfg = cfg_of(PHOTO, ART, ART2, "--style-blend-weights", "3,1", "--optimizer", "adam", "--learning-rate", "0.05")
    assert cfg.styles == [ART, ART2] and cfg.blend == pytest.approx([0.75, 0.25])
    assert cfg.optimizer.name == "adam" and cfg.optimizer.options["learning_rate"] == 0.05


def test_options_in_any_order_give_one_config():
    a = cfg_of(PHOTO, ART, "--size", "48", "--seeds", "0", "1", "--set", "alpha=2")
    for argv in ([ "--size", "48", PHOTO, "--set", "alpha=2", ART, "--seeds", "0", "1"],
                 ["--seeds", "0", "1", PHOTO, ART, "--size", "48", "--set", "alpha=2"],
                 ["--set", "alpha=2", "--seeds=0,1", PHOTO, "--size=48", ART]):
        assert cfg_of(*argv).to_dict() == a.to_dict()
    assert a.output == os.path.join("outputs", "home-in-starry_night") and a.seeds == [0, 1] and a.alpha == 2


def test_several_artworks_are_a_blend_named_after_all():
    cfg = cfg_of(PHOTO, ART, ART2)
    assert cfg.styles == [ART, ART2] and cfg.output.endswith("home-in-starry_night+graf1")


def test_set_wins_over_a_flag_and_a_flag_over_the_file():
    assert cfg_of(PHOTO, ART, "--content-weight", "2", "--set", "alpha=3").alpha == 3
    assert cfg_of("--config", str(EXAMPLES / "config.yaml"), "--size", "64", "-o", "elsewhere").size == 64
    assert cfg_of("--config", str(EXAMPLES / "config.yaml"), "-o", "elsewhere").output == "elsewhere"


@pytest.mark.parametrize("total, stages, shares", [(240, 3, [120, 60, 60]), (90, 2, [60, 30]), (7, 1, [7]),
                                                   (100, 2, [67, 33]), (4, 3, [2, 1, 1])])
def test_iterations_is_the_total_shared_as_the_default_schedule_shares_it(total, stages, shares):
    assert shared_iterations(total, stages) == shares and sum(shares) == total


def test_iterations_sets_every_stage():
    # 256 px: a 128 px stage, then 256 px (the default schedule gives them 120 and 60).
    cfg = cfg_of(PHOTO, ART, "--size", "256", "--iterations", "90")
    assert cfg.scale_iterations == [60] and cfg.optimizer.iterations == 30
    default = cfg_of(PHOTO, ART, "--size", "256")
    assert [*default.scale_iterations, default.optimizer.iterations] == shared_iterations(180, 2)
    assert cfg_of(PHOTO, ART, "--size", "48", "--iterations", "9").optimizer.iterations == 9
    with pytest.raises(ConfigError, match="give it or --set optimizer.iterations, not both"):
        cfg_of(PHOTO, ART, "--iterations", "90", "--set", "optimizer.iterations=5")
    with pytest.raises(ConfigError, match="too few for 3 stages: give at least 4"):
        cfg_of(PHOTO, ART, "--iterations", "3")


def test_a_preset_goes_over_the_file_and_the_flags_over_the_preset():
    cfg = cfg_of(PHOTO, ART, "--preset", "paper", "--size", "48")
    assert cfg.losses == "paper" and cfg.scales == [] and cfg.optimizer.iterations == 500
    assert cfg_of(PHOTO, ART, "--preset", "paper", "--iterations", "20").optimizer.iterations == 20
    with pytest.raises(ConfigError, match="preset must be one of"):
        cfg_of(PHOTO, ART, "--preset", "nope")


@pytest.mark.parametrize("key, says", [
    ("content_weight", "'alpha' (--content-weight"), ("num_iterations", "--iterations (the run's total"),
    ("style_weight", "'beta'"), ("save_iter", "'save_every'"), ("original_colors", "'preserve_colors'"),
    ("image_size", "'size'"), ("gpu", "jax runs on the GPU when it finds one")])
def test_the_did_you_mean_knows_other_tools_names(key, says):
    with pytest.raises(ConfigError, match="unknown config key") as e:
        load_config(None, [f"content={PHOTO}", f"style={ART}", f"{key}=1"])
    assert says in str(e.value)


def test_a_yaml_boolean_is_named_as_such():
    with pytest.raises(ConfigError) as e:
        load_config(None, [f"content={PHOTO}", f"style={ART}", "preserve_colors=yes"])
    assert "not the YAML boolean true" in str(e.value) and "none, luminance, histogram, chroma" in str(e.value)


def test_the_resume_message_names_each_change_with_its_values():
    saved = {"size": 64, "optimizer": {"iterations": 30, "name": "lbfgs"}, "seeds": [0]}
    now = {"size": 64, "optimizer": {"iterations": 100, "name": "lbfgs"}, "seeds": [0, 1]}
    assert changes(saved, now) == ["optimizer.iterations: 30 then, 100 now", "seeds: [0] then, [0, 1] now"]


def test_help_teaches_the_forms_and_the_common_keys(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for form in ("jaxstyle PHOTO ARTWORK [ARTWORK ...]", "jaxstyle --config cfg.yaml", "jaxstyle --resume DIR",
                 "--dry-run", "jaxstyle studio", "jaxstyle keys", "jaxstyle doctor"):
        assert form in text
    for flag, default in (("--size", "default 512"), ("--content-weight", "default 1.0"),
                          ("--style-weight", "default 10 with mean"), ("--init", "default noise"),
                          ("--preserve-colors", "default none"), ("--style-scale", "default 1.0"),
                          ("--output-format", "default png"), ("--iterations", "the run's total"),
                          ("--seeds", "default 0")):
        assert flag in text and default in " ".join(text.split()), flag
    assert "``" not in text and "5 and 100 do not carry over" in " ".join(text.split())


def test_version_and_keys(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"jaxstyle {__version__}"
    assert main(["keys"]) == 0
    text = capsys.readouterr().out
    for key in ("content", "video.frame_iterations", "optimizer.iterations", "optimizer.learning_rate (adam)"):
        assert f"\n{key}\n" in f"\n{text}"
    assert main(["keys", "frame_iterations"]) == 0
    assert capsys.readouterr().out.startswith("video.frame_iterations\n    default: 40\n")


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([PHOTO, ART, "--size", "256", "--seeds", "0", "1", "--iterations", "90", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 variant(s): seed 0; seed 1"
    assert lines[1].startswith("stage 1/2: 128x96 px, 60 lbfgs iterations, about ")
    assert lines[2].startswith("stage 2/2: 256x192 px, 30 lbfgs iterations, about ")
    assert lines[3] == "programs: 2 to compile (one per tile shape): 128x96, 256x192"
    assert lines[-1] == f"output: {os.path.join('outputs', 'home-in-starry_night')} (new)"
    assert list(tmp_path.iterdir()) == []


def test_doctor_says_what_this_machine_has_in_one_line_each(tmp_path, monkeypatch, vgg_params):
    """Each line names one thing; nothing is written (the weights, converted by the fixture, are
    read; the cache folder is looked at, not made)."""
    from jaxstyle.driver import doctor
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    lines = list(doctor.report())
    starts = [line.split(":")[0].split(" ")[0] for line in lines]
    assert starts == ["jaxstyle", "cpu", "jax", "weights", "clips", "browser", "compile", "estimate"], lines
    assert lines[0] == f"jaxstyle {__version__}, Python {'.'.join(map(str, __import__('sys').version_info[:3]))}"
    assert "AVX-512" in lines[1] and lines[3].endswith(": ok")
    seconds = float(lines[-1].split("takes about ")[1].split(" s")[0])
    assert 10 < seconds < 3600
    assert not (tmp_path / "cache").exists()


def test_a_bare_resume_goes_with_the_quick_form_and_a_folder_does_not():
    """``jaxstyle PHOTO ARTWORK --resume`` resumes that command's folder (a bare --resume before the
    photograph is not taken for its folder); ``--resume DIR`` reads the folder's own config."""
    for argv in ([PHOTO, ART, "--resume"], ["--resume", PHOTO, ART]):
        args = parse(argv)
        assert args.resume == "" and config_from(args).content == PHOTO
    with pytest.raises(ConfigError, match="give PHOTO ARTWORK or --resume DIR, not both"):
        cfg_of(PHOTO, ART, "--resume", str(EXAMPLES))


def test_a_run_folder_cannot_make_the_command_run_its_term_file(tmp_path):
    """A run folder is data from wherever it came from: ``--continue`` and ``--resume DIR`` refuse a
    config naming a term file before anything is imported (the file would leave a mark)."""
    import json
    import numpy as np
    from jaxstyle.engine.checkpoint import Checkpoint, Cursor
    from jaxstyle.engine.config import validate
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\ndef f(x, t):\n    return 0.0\n")
    config = validate({"content": PHOTO, "style": ART, "size": 32, "terms": {f"{evil}:f": 1.0},
                       "output": str(tmp_path / "run")}).to_dict()
    run = tmp_path / "run"
    run.mkdir()
    (run / "report.json").write_text(json.dumps({"config": config}))
    with pytest.raises(ConfigError, match=r"--continue 5 .* runs no code a folder names, and its config uses the term file"):
        main(["--continue", "5", str(run)])
    images = np.zeros((1, 24, 32, 3), np.float32)
    Checkpoint(Cursor(), images, 0.0, [], np.zeros(1), np.zeros(1)).save(run / "checkpoint.npz", config)
    with pytest.raises(ConfigError, match=r"--resume .* runs no code a folder names"):
        main(["--resume", str(run)])
    assert not (tmp_path / "ran").exists()
