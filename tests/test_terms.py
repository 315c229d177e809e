"""Loss terms from a file, style-loss sweeps and their comparison table."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from jaxstyle.cli import main as cli_main
from jaxstyle.engine.progress import RunHooks
from jaxstyle.cli import run_main
from jaxstyle.engine.config import load_config, validate
from jaxstyle.core.errors import ConfigError, OutputError
from jaxstyle.driver.job import run_and_save
from jaxstyle.driver.job import run

from conftest import EXAMPLES

TERMS_FILE = '''
import jax.numpy as jnp

def pull(image, features, targets):
    """Pulls the image's mean towards 0.2."""
    return jnp.square(image.mean() - 0.2)

def deep(image, features, targets):
    return jnp.mean(features["conv5_1"])
deep.layers = ["conv5_1"]

def vector(image, features, targets):
    return image.mean(axis=(0, 1))

def broken(image, features, targets):
    x = image.mean()
    return undefined_name * x

def not_a_number(image, features, targets):
    return jnp.log(-image.mean())
'''

BASE = {"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"), "size": 32,
        "print_every": 0, "scales": [], "optimizer": {"iterations": 5}}


@pytest.fixture
def term_file(tmp_path, monkeypatch):
    """``terms.py`` in a fresh current directory (config paths are relative to it)."""
    (tmp_path / "terms.py").write_text(TERMS_FILE)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "terms.py"


@pytest.mark.parametrize("kind", [
    {"losses": "paper"},                                                   # direct, Eq. 1 and 4
    {"size": 48, "scales": [24], "scale_iterations": [3]},                 # coarse-to-fine
    {"size": 48, "tile_size": 32, "tile_overlap": 8, "tile_passes": 1},    # tiled
])
def test_a_term_from_a_file_pushes_where_it_pulls_in_every_kind_of_run(term_file, vgg_params, kind):
    """Swept weight 0 vs a large one: the term pulling the mean towards 0.2 lowers the output's mean."""
    weight = 1e4 if kind.get("losses") != "paper" else 1e10
    cfg = validate({**BASE, **kind, "sweep": {"terms": [{"terms.py:pull": 0.0}, {"terms.py:pull": weight}]}})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lambda s: None))
    free, pulled = (float(im.mean()) for im in r.images)
    assert pulled < free - 0.05 and abs(pulled - 0.2) < abs(free - 0.2), (free, pulled)
    assert r.report["term_files"]["terms.py:pull"] == hashlib.sha256(term_file.read_bytes()).hexdigest()
    labels = [row["label"] for row in r.report["comparison"]]
    assert labels == ["seed 0, terms.py:pull 0", f"seed 0, terms.py:pull {weight:g}"]


def test_a_term_declares_the_layers_it_reads(term_file, vgg_params):
    cfg = validate({**BASE, "content_layers": {"conv1_2": 1.0}, "style_layers": {"conv1_1": 1.0},
                    "terms": {"terms.py:deep": 1.0}})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lambda s: None))
    assert r.report["variants"][0]["final_loss"]["terms.py:deep"] is not None


def test_set_gives_a_file_term_as_a_whole_mapping(term_file):
    """``--set terms.terms.py:pull=1`` would split at the dots; the mapping form does not."""
    cfg = load_config(None, [f"content={BASE['content']}", f"style={BASE['style']}",
                             'terms={"terms.py:pull": 2.5, tv: 1e-3}'])
    assert cfg.terms == {"terms.py:pull": 2.5, "tv": 1e-3}


@pytest.mark.parametrize("spec, message", [
    ("missing.py:pull", "term missing.py:pull: file missing.py not found"),
    ("terms.py:nothing", "term terms.py:nothing: terms.py has no function 'nothing'"),
    ("terms.py:vector", "term terms.py:vector must return a scalar, not an array of shape (3,)"),
    ("terms.py:broken", "term terms.py:broken failed (line 17): NameError: name 'undefined_name' is not defined"),
])
def test_term_mistakes_are_one_line_exit_2_and_write_nothing(term_file, spec, message, capsys):
    (term_file.parent / "cfg.yaml").write_text(json.dumps({**BASE, "output": "out", "terms": {spec: 1.0}}))
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: cli_main(["--config", "cfg.yaml"]))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: {message}"]
    assert not (term_file.parent / "out").exists()


def test_a_non_finite_term_is_handled_like_a_built_in_one(term_file, vgg_params):
    cfg = validate({**BASE, "terms": {"terms.py:not_a_number": 1.0}})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lambda s: None))
    assert np.isfinite(r.images).all() and r.report["variants"][0]["nonfinite_at"] >= 0


def test_resume_with_a_changed_term_file_is_refused(term_file, vgg_params):
    cfg = validate({**BASE, "output": "out", "terms": {"terms.py:pull": 1.0}, "print_every": 1})
    asked = []
    r = run_and_save(cfg, hooks=RunHooks(log=lambda s: None, should_stop=lambda: asked.append(1) or len(asked) > 2))
    assert r.checkpoint is not None
    term_file.write_text(TERMS_FILE.replace("0.2", "0.3"))
    with pytest.raises(OutputError, match="a term file changed since the checkpoint .terms.py:pull."):
        run_and_save(cfg, resume=True, hooks=RunHooks(log=lambda s: None))


def test_style_loss_combinations_that_cannot_work_are_one_line():
    with pytest.raises(ConfigError, match="style_loss wasserstein needs losses: mean"):
        validate({**BASE, "losses": "paper", "style_loss": "wasserstein"})
    with pytest.raises(ConfigError, match="style_loss histogram cannot be combined with masks"):
        validate({**BASE, "style": [BASE["style"]], "masks": [BASE["content"]],
                  "sweep": {"style_loss": ["gram", "histogram"]}})
    with pytest.raises(ConfigError, match="must be one of gram, mean_cov"):
        validate({**BASE, "style_loss": "gramm"})


def test_a_style_loss_sweep_equals_the_runs_done_alone(vgg_params):
    """One program per choice: the sweep's images are the separate runs', bit for bit."""
    lines = []
    swept = run(validate({**BASE, "seeds": [0, 1], "sweep": {"style_loss": ["gram", "mean_cov"]}}), vgg_params, hooks=RunHooks(log=lines.append))
    alone = [run(validate({**BASE, "seeds": [0, 1], "style_loss": k}), vgg_params, hooks=RunHooks(log=lambda s: None)).images
             for k in ("gram", "mean_cov")]
    np.testing.assert_array_equal(swept.images, np.concatenate(alone))
    assert [v.style_loss for v in swept.variants] == ["gram", "gram", "mean_cov", "mean_cov"]
    assert any("one program per choice" in line for line in lines)
    table = swept.report["comparison"]
    assert [row["style_loss"] for row in table] == ["gram", "gram", "mean_cov", "mean_cov"]
    for row in table:
        assert row["program_s"] > 0 and row["gram_style_loss"] > 0 and row["content_loss"] > 0 and row["speckle"] > 0
    assert [p["style_loss"] for p in swept.report["programs"]] == ["gram", "mean_cov"]


def test_an_alternative_style_loss_runs_tiled(vgg_params):
    """Tile targets come from the whole artwork's statistics, as the Gram loss's do."""
    cfg = validate({**BASE, "size": 40, "tile_size": 32, "tile_overlap": 8, "tile_passes": 1,
                    "style_loss": "histogram"})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lambda s: None))
    v = r.report["variants"][0]
    assert np.isfinite(r.images).all() and v["final_loss"]["style"] < v["initial_loss"]["style"]
