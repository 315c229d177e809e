"""What each of the paper's figures claims, checked by a number at a tiny size."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from conftest import EXAMPLES, ROOT
from jaxstyle.engine.config import validate
from jaxstyle.engine.progress import RunHooks
from jaxstyle.media.images import load_image
from jaxstyle.engine.inputs import noise_image
from jaxstyle.driver.job import run

PHOTO = str(EXAMPLES / "home.jpg")
ART = str(EXAMPLES / "starry_night.jpg")


def _run(params, **kw):
    # The figures' settings (scripts/figures/figures.py): the defaults (at these sizes, one stage).
    raw = {"content": PHOTO, "style": ART, "size": 40, "print_every": 0, "seeds": [0], **kw}
    raw.setdefault("optimizer", {"iterations": 40})
    return run(validate(raw), params, hooks=RunHooks(log=lambda s: None))


def _pixel_mse(images, photo):
    return [float(np.mean((im - photo) ** 2)) for im in images]


def test_fig1_deeper_content_layers_sit_further_from_the_photo(vgg_params):
    layers = ["conv1_2", "conv3_2", "conv5_2"]
    r = _run(vgg_params, alpha=1.0, beta=0.0, sweep={"content_layers": [{l: 1.0} for l in layers]},
             size=48, optimizer={"iterations": 60})
    photo = load_image(PHOTO, size=48)
    mse = _pixel_mse(r.images, photo)
    assert mse[0] < mse[1] < mse[2], dict(zip(layers, mse))
    start = noise_image(0, photo.shape)  # the default start of seed 0
    assert mse[0] < 0.3 * _pixel_mse([start], photo)[0]  # conv1_2 heads straight for the pixels


def test_fig1_style_reconstruction_matches_gram_targets(vgg_params):
    sets = [{"conv1_1": 1.0}, {"conv1_1": 0.5, "conv2_1": 0.5}, {f"conv{i}_1": 1 / 3 for i in (1, 2, 3)}]
    r = _run(vgg_params, alpha=0.0, beta=1.0, content_layers={}, sweep={"style_layers": sets})
    for v in r.report["variants"]:
        assert v["final_loss"]["style"] < 0.05 * v["initial_loss"]["style"], v


def test_fig6_fixed_init_deterministic_noise_seeds_differ(vgg_params):
    a = _run(vgg_params, init="content", optimizer={"iterations": 10}).images
    b = _run(vgg_params, init="content", optimizer={"iterations": 10}).images
    assert a.tobytes() == b.tobytes()
    n = _run(vgg_params, seeds=[0, 1], optimizer={"iterations": 10}).images
    assert np.abs(n[0] - n[1]).mean() > 0.01


def test_fig5_conv2_2_keeps_closer_to_the_photo_than_conv4_2(vgg_params):
    r = _run(vgg_params, size=48, optimizer={"iterations": 60},
             sweep={"content_layers": [{"conv2_2": 1.0}, {"conv4_2": 1.0}]})
    mse = _pixel_mse(r.images, load_image(PHOTO, size=48))
    assert mse[0] < mse[1], mse


def test_figures_script_writes_a_labelled_sheet(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "figures" / "figures.py"), "--figure", "5", "--size", "32",
                        "--iterations", "2", "--output", str(tmp_path)], capture_output=True, text=True,
                       cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "figure5.png").is_file() and (tmp_path / "fig5" / "layers" / "report.json").is_file()
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "figures" / "figures.py"), "--figure", "2"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2 and r.stderr.strip() == "error: no figure 2; figures: 1, 3, 4, 5, 6, 7"


def test_docs_jpegs_stay_under_the_size_limit(tmp_path):
    """A sheet of pure noise (the worst case for JPEG) is reduced until it fits, every time alike."""
    from jaxstyle.media.images import DOCS_BYTES, write_docs_jpeg
    from PIL import Image
    noise = np.random.default_rng(0).integers(0, 256, (1400, 1400, 3), dtype=np.uint8)
    a = write_docs_jpeg(Image.fromarray(noise), tmp_path / "a.jpg")
    b = write_docs_jpeg(Image.fromarray(noise), tmp_path / "b.jpg")
    assert a.stat().st_size < DOCS_BYTES and a.read_bytes() == b.read_bytes()
    assert Image.open(a).size[0] < 1400


def test_every_file_in_docs_is_under_500_kb():
    big = [f"{p.relative_to(ROOT)} ({p.stat().st_size} bytes)" for p in (ROOT / "docs").rglob("*")
           if p.is_file() and p.stat().st_size >= 500_000]
    assert not big, big
