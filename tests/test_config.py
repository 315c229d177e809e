"""The config: one declaration per key, checked in order, and the docs' table made from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import EXAMPLES, ROOT
from jaxstyle.engine.config import KEYS, config_table, validate
from jaxstyle.core.errors import ConfigError

BASE = {"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg")}


def test_docs_table_is_the_generated_one():
    doc = (ROOT / "docs" / "config.md").read_text()
    start = doc.index("<!-- config table: generated, do not edit -->\n") + len("<!-- config table: generated, do not edit -->\n")
    end = doc.index("<!-- end of config table -->")
    assert doc[start:end] == config_table()
    # Every key has a row, and no row names a key that does not exist.
    rows = [line.split("|")[1].strip() for line in config_table().splitlines()[2:]]
    top = {r.strip("`") for r in rows if not r.startswith(("`optimizer.", "`video."))}
    assert top == set(KEYS) - {"optimizer", "video"}


def test_computed_defaults_follow_the_keys_they_depend_on():
    assert validate(BASE).beta == 10.0 and validate({**BASE, "losses": "paper"}).beta == 1000.0
    assert validate({**BASE, "losses": "paper", "beta": 3}).beta == 3.0
    assert validate(BASE).noise_amplitude == 0.02 and validate({**BASE, "noise": "uniform"}).noise_amplitude == 0.5
    c = validate({**BASE, "size": 512})
    assert (c.scales, c.scale_iterations, c.optimizer.iterations) == ([128, 256], [120, 60], 60)
    c = validate({**BASE, "size": 512, "scales": []})
    assert (c.scales, c.scale_iterations, c.optimizer.iterations) == ([], [], 500)


def test_optimizer_options_belong_to_their_optimiser():
    c = validate({**BASE, "optimizer": {"name": "jaxopt-lbfgs", "linesearch": "backtracking"}})
    assert c.optimizer.options == {"history_size": 20, "linesearch": "backtracking", "linesearch_init": "max",
                                   "maxls": 20}
    with pytest.raises(ConfigError, match="unknown config key 'optimizer.linesearch' for lbfgs; it is an option "
                                          "of jaxopt-lbfgs"):
        validate({**BASE, "optimizer": {"linesearch": "zoom"}})
    with pytest.raises(ConfigError, match="unknown config key 'optimizer.learning_rate' for lbfgs; it is an "
                                          "option of adam"):
        validate({**BASE, "optimizer": {"learning_rate": 0.1}})
    with pytest.raises(ConfigError, match=r"optimizer.history_size must be a whole number from 1 to 1000"):
        validate({**BASE, "optimizer": {"history_size": 0}})
    assert validate({**BASE, "optimizer": {"name": "adam"}}).optimizer.options == {"learning_rate": 0.02}


def test_output_keys_are_checked_together():
    with pytest.raises(ConfigError, match="image_bits 16 needs image_format png or tiff, not jpg"):
        validate({**BASE, "image_format": "jpg", "image_bits": 16})
    with pytest.raises(ConfigError, match="image_format must be one of png, jpg, webp, tiff"):
        validate({**BASE, "image_format": "gif"})
    assert validate({**BASE, "image_format": "tiff", "image_bits": 16}).image_bits == 16


def test_the_resolved_config_round_trips(tmp_path):
    # What report.json and checkpoints record validates to the same config.
    c = validate({**BASE, "size": 300, "optimizer": {"name": "adam"}})
    again = validate(c.to_dict())
    assert again.to_dict() == c.to_dict()
    assert Path(again.content) == Path(BASE["content"])


# ---- presets ---------------------------------------------------------------------------------------
def test_the_paper_preset_pins_the_papers_procedure():
    from jaxstyle.engine.presets import apply_preset
    cfg = validate(apply_preset({**BASE, "size": 64, "lattice": 1000, "padding": "reflect"}, "paper"))
    assert (cfg.losses, cfg.noise, cfg.init, cfg.style_trim, cfg.padding, cfg.pooling) == \
        ("paper", "uniform", "noise", "none", "zero", "avg")
    assert cfg.scales == [] and cfg.optimizer.iterations == 500 and cfg.optimizer.name == "lbfgs"
    # What the preset does not name follows its choices: the paper's ratio and white noise on [0, 1].
    assert cfg.lattice == 0.0 and cfg.beta == 1000.0 and cfg.noise_amplitude == 0.5
    assert cfg.content_layers == {"conv4_2": 1.0} and list(cfg.style_layers) == \
        ["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"]


def test_quick_and_fine_set_iterations_and_keep_the_rest():
    from jaxstyle.engine.presets import QUICK_ITERATIONS, apply_preset
    raw = {**BASE, "size": 512, "optimizer": {"history_size": 5, "iterations": 7}, "alpha": 3}
    quick = apply_preset(raw, "quick")
    assert quick["optimizer"] == {"history_size": 5, "iterations": QUICK_ITERATIONS} and quick["alpha"] == 3
    # fine: twice what the default gives the size (60 at the last of three stages; 500 in one stage)
    assert apply_preset(raw, "fine")["optimizer"]["iterations"] == 120
    assert apply_preset({**BASE, "size": 64}, "fine")["optimizer"]["iterations"] == 1000
    assert apply_preset(raw, "default") == raw and apply_preset(raw, None) == raw
    assert raw["optimizer"] == {"history_size": 5, "iterations": 7}  # the caller's config is left as it was


def test_an_unknown_preset_is_one_line():
    from jaxstyle.engine.presets import apply_preset
    with pytest.raises(ConfigError, match=r"^preset must be one of quick, default, fine, paper, reference, not 'slow'$"):
        apply_preset(BASE, "slow")
    for hostile in (["quick"], {"quick": 1}, 3):  # what a page's JSON may send
        with pytest.raises(ConfigError, match=r"^preset must be one of quick, default, fine, paper, reference, not "):
            apply_preset(BASE, hostile)
