"""Outputs by extension: every format and bit depth, read back by an independent reader."""

from __future__ import annotations

import numpy as np
import png
import pytest
import tifffile
from PIL import Image

from conftest import EXAMPLES
from jaxstyle.engine.config import validate
from jaxstyle.core.errors import OutputError
from jaxstyle.driver.outputs import image_name, planned_outputs, prepare_output, write_image
from jaxstyle.engine.variants import expand_variants

rng = np.random.default_rng(0)
IMAGE = rng.random((12, 20, 3)).astype(np.float32)
yy, xx = np.mgrid[0:48, 0:64] / 64.0
SMOOTH = np.stack([yy, xx, 0.5 + 0.4 * np.sin(6 * xx + 3 * yy)], -1).astype(np.float32)


@pytest.mark.parametrize("fmt, suffix", [("png", "png"), ("jpg", "jpg"), ("webp", "webp"), ("tiff", "tif")])
def test_eight_bit_formats(tmp_path, fmt, suffix):
    image = IMAGE if fmt in ("png", "tiff") else SMOOTH
    path = write_image(image, tmp_path / f"a.{suffix}", fmt, quality=95)
    back = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255
    expected = np.round(image.astype(np.float64) * 255) / 255
    if fmt in ("png", "tiff"):  # lossless: the 8-bit values exactly
        np.testing.assert_array_equal(back, expected)
    else:  # lossy: close, on a smooth image, at quality 95
        assert np.abs(back - expected).mean() < 0.01
    assert not list(tmp_path.glob("*.tmp"))


@pytest.mark.parametrize("fmt", ["png", "tiff"])
def test_sixteen_bit_keeps_16_bits(tmp_path, fmt):
    path = write_image(IMAGE, tmp_path / f"a.{'tif' if fmt == 'tiff' else fmt}", fmt, bits=16)
    if fmt == "tiff":
        back = tifffile.imread(path)
    else:
        w, h, rows, info = png.Reader(filename=str(path)).read()
        assert info["bitdepth"] == 16 and (w, h) == (20, 12)
        back = np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(12, 20, 3)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, np.round(IMAGE.astype(np.float64) * 65535).astype(np.uint16))
    # Distinct values that 8 bits would merge are kept apart.
    assert len(np.unique(back)) > len(np.unique(np.round(IMAGE * 255)))


def test_planned_outputs_and_the_overwrite_check_use_the_format(tmp_path):
    cfg = validate({"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                    "output": str(tmp_path / "out"), "seeds": [0, 1], "image_format": "jpg"})
    variants = expand_variants(cfg)
    assert [p.name for p in planned_outputs(cfg, variants)] == ["000_seed0.jpg", "001_seed1.jpg", "report.json",
                                                                "losses.png", "result.npz", "sheet.jpg"]
    assert image_name(3, variants[1], "stage1", "tiff") == "003_seed1_stage1.tif"
    prepare_output(cfg)
    (tmp_path / "out" / "000_seed0.png").write_text("a png of another run does not stand in the way")
    prepare_output(cfg)
    (tmp_path / "out" / "001_seed1.jpg").write_text("earlier result")
    with pytest.raises(OutputError, match="001_seed1.jpg already exists"):
        prepare_output(cfg)
