"""Colour management: inputs through their ICC profiles to sRGB, outputs tagged sRGB.

The profiles are made here, byte by byte, from the ICC specification (a matrix/TRC Adobe RGB (1998)
profile and a CMYK printer profile whose lookup table is a simple ink model), and the expected
colours are computed in float64 NumPy from the same primaries and curves, not by Little CMS.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile
from PIL import Image

from conftest import EXAMPLES
from jaxstyle.media.icc import profile_lines, srgb_icc
from jaxstyle.engine.progress import RunHooks
from jaxstyle.engine.config import validate
from jaxstyle.media.images import load_image
from jaxstyle.driver.outputs import write_image
from jaxstyle.driver.job import run

D50 = (0.9642, 1.0, 0.8249)
# Colorants adapted to the D50 connection space (Bradford), as the ICC profiles of both spaces give them.
SRGB_D50 = np.array([[0.4360747, 0.3850649, 0.1430804],
                     [0.2225045, 0.7168786, 0.0606169],
                     [0.0139322, 0.0971045, 0.7141733]])
ADOBE_D50 = np.array([[0.6097559, 0.2052401, 0.1492240],
                      [0.3111145, 0.6256714, 0.0632141],
                      [0.0194702, 0.0608902, 0.7445396]])
ADOBE_GAMMA = 563 / 256  # 2.19921875, as u8Fixed8Number


def _s15(*values: float) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in values)


def _pad(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _desc(text: str) -> bytes:
    ascii_ = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_)) + ascii_ + struct.pack(">IIHB", 0, 0, 0, 0) + b"\0" * 67


def _icc(device_class: bytes, space: bytes, tags: list[tuple[bytes, bytes]]) -> bytes:
    """An ICC v2.1 profile: header, tag table, tags (PCS XYZ, D50 illuminant)."""
    table_end = 128 + 4 + 12 * len(tags)
    entries, body, offset = [], b"", table_end
    for sig, data in tags:
        entries.append(struct.pack(">4sII", sig, offset, len(data)))
        body += _pad(data)
        offset = table_end + len(body)
    size = table_end + len(body)
    header = struct.pack(">II4s4s4s4s", size, 0, bytes([2, 0x10, 0, 0]), device_class, space, b"XYZ ")
    header += b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + _s15(*D50) + b"\0" * 48
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + b"".join(entries) + body


def adobe_rgb_icc() -> bytes:
    xyz = lambda col: b"XYZ \0\0\0\0" + _s15(*col)  # noqa: E731
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, round(ADOBE_GAMMA * 256))
    return _icc(b"mntr", b"RGB ", [(b"desc", _desc("Made Adobe RGB (1998)")), (b"wtpt", xyz(D50)),
                                   (b"rXYZ", xyz(ADOBE_D50[:, 0])), (b"gXYZ", xyz(ADOBE_D50[:, 1])),
                                   (b"bXYZ", xyz(ADOBE_D50[:, 2])),
                                   (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve)])


def ink_model(cmyk: np.ndarray) -> np.ndarray:
    """The made printer's colours: linear-light sRGB (1 - C)(1 - K), 1 - (M + K) / 2, 1 - (Y + K) / 2.
    Little CMS interpolates a 4-input table linearly in the first input and by tetrahedra in the
    other three, which reproduces exactly a function linear in M, Y and K whatever it does in C."""
    c, m, y, k = np.moveaxis(cmyk, -1, 0)
    return np.stack([(1 - c) * (1 - k), 1 - (m + k) / 2, 1 - (y + k) / 2], axis=-1)


def cmyk_icc() -> bytes:
    """A printer profile whose A2B0 (a lut16 on a 2-point grid) is :func:`ink_model` in XYZ."""
    grid = [SRGB_D50 @ ink_model(np.array([c, m, y, k], float)) for c in (0, 1) for m in (0, 1)
            for y in (0, 1) for k in (0, 1)]
    clut = np.round(np.array(grid) * 32768).astype(">u2").tobytes()  # XYZ as u1Fixed15
    ramp = struct.pack(">HH", 0, 65535)
    lut = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + _s15(1, 0, 0, 0, 1, 0, 0, 0, 1) + struct.pack(">HH", 2, 2)
           + ramp * 4 + clut + ramp * 3)
    return _icc(b"prtr", b"CMYK", [(b"desc", _desc("Made CMYK")), (b"wtpt", b"XYZ \0\0\0\0" + _s15(*D50)),
                                   (b"A2B0", lut)])


def srgb_encode(lin: np.ndarray) -> np.ndarray:
    lin = np.clip(lin, 0, 1)
    return np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * lin ** (1 / 2.4) - 0.055)


def srgb_decode(v: np.ndarray) -> np.ndarray:
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def _smooth_srgb(h=24, w=32) -> np.ndarray:
    """Float sRGB colours, all inside both gamuts, spread over the cube's interior."""
    rng = np.random.default_rng(3)
    return 0.04 + 0.92 * rng.random((h, w, 3))


def test_an_adobe_rgb_image_reads_as_its_srgb_colours(tmp_path, vgg_params):
    srgb = _smooth_srgb()
    # The same colours in Adobe RGB: sRGB -> linear -> XYZ (D50) -> linear Adobe -> gamma.
    lin_adobe = np.einsum("ij,hwj->hwi", np.linalg.inv(ADOBE_D50) @ SRGB_D50, srgb_decode(srgb))
    adobe8 = np.round(np.clip(lin_adobe, 0, 1) ** (1 / ADOBE_GAMMA) * 255).astype(np.uint8)
    tagged = tmp_path / "adobe.png"
    Image.fromarray(adobe8).save(tagged, icc_profile=adobe_rgb_icc())
    # The expected sRGB values of the 8-bit Adobe file itself, in float64.
    lin = np.einsum("ij,hwj->hwi", np.linalg.inv(SRGB_D50) @ ADOBE_D50, (adobe8 / 255.0) ** ADOBE_GAMMA)
    want = srgb_encode(lin)
    got = load_image(tagged).astype(np.float64)
    assert np.abs(got - want).max() * 255 <= 2.0
    # Read as if it were sRGB (the old behaviour), the colours would be off by far more.
    assert np.abs(adobe8 / 255.0 - want).max() * 255 > 10
    assert profile_lines([tagged]) == [f"colour: {tagged} converted from its profile 'Made Adobe RGB (1998)' to sRGB"]
    # A run on the tagged photograph and one on its sRGB conversion (8 bits, untagged) give the same
    # colours: each channel's mean within 2 levels. (Pixel by pixel L-BFGS carries the conversions'
    # rounding, a level here and there, to several levels after 10 iterations, as it would for any
    # two photographs a rounding apart.) Read unmanaged, the picture's colours move further.
    converted, unmanaged = tmp_path / "converted.png", tmp_path / "unmanaged.png"
    Image.fromarray(np.round(want * 255).astype(np.uint8)).save(converted)
    Image.fromarray(adobe8).save(unmanaged)
    cfg = {"style": str(EXAMPLES / "starry_night.jpg"), "size": 32, "seeds": [0], "print_every": 0,
           "init": "content", "optimizer": {"iterations": 10}}
    lines = []
    a, b, c = (run(validate({**cfg, "content": str(p)}), vgg_params, hooks=RunHooks(log=lines.append)).images.mean((0, 1, 2)) * 255
               for p in (tagged, converted, unmanaged))
    assert sum("converted from its profile" in line for line in lines) == 1  # the tagged run says so
    assert np.abs(a - b).max() <= 2.0
    assert np.abs(c - b).max() > 2.0


def test_a_cmyk_image_reads_through_its_printer_profile(tmp_path):
    rng = np.random.default_rng(4)
    cmyk8 = np.round(rng.random((16, 20, 4)) * np.array([255, 255, 255, 120])).astype(np.uint8)
    path = tmp_path / "print.tif"
    Image.fromarray(cmyk8, mode="CMYK").save(path, icc_profile=cmyk_icc())
    want = srgb_encode(ink_model(cmyk8 / 255.0))
    got = load_image(path).astype(np.float64)
    assert np.abs(got - want).max() * 255 <= 2.0
    untagged = tmp_path / "plain.tif"
    Image.fromarray(cmyk8, mode="CMYK").save(untagged)
    assert np.abs(load_image(untagged) - want).max() * 255 > 10  # Pillow's naive conversion differs


def test_srgb_tagged_and_unreadable_profiles_read_as_srgb(tmp_path):
    pixels = (np.random.default_rng(5).random((8, 10, 3)) * 255).astype(np.uint8)
    plain, tagged = tmp_path / "plain.png", tmp_path / "srgb.png"
    plain_jpeg, broken = tmp_path / "plain.jpg", tmp_path / "broken.jpg"
    Image.fromarray(pixels).save(plain)
    Image.fromarray(pixels).save(tagged, icc_profile=srgb_icc())
    Image.fromarray(pixels).save(plain_jpeg, quality=95)
    Image.fromarray(pixels).save(broken, quality=95, icc_profile=b"not a profile at all")
    assert np.array_equal(load_image(tagged), load_image(plain))  # identity: no conversion
    assert np.array_equal(load_image(broken), load_image(plain_jpeg))  # used as sRGB
    lines = profile_lines([plain, tagged, broken])
    assert len(lines) == 1 and lines[0].startswith(f"warning: {broken}: its colour profile cannot be read")
    assert lines[0].endswith("it is used as sRGB")


@pytest.mark.parametrize("fmt,bits", [("png", 8), ("png", 16), ("jpg", 8), ("webp", 8), ("tiff", 8), ("tiff", 16)])
def test_every_output_format_carries_the_srgb_profile(tmp_path, fmt, bits):
    yy, xx = np.mgrid[0:16, 0:24] / 24.0  # smooth, so JPEG and WebP keep it within a few levels
    image = np.stack([0.2 + 0.6 * xx, 0.3 + 0.5 * yy, 0.5 + 0.3 * (xx - yy)], axis=-1)
    path = write_image(image, tmp_path / f"out.{fmt}", fmt, bits=bits)
    if fmt == "tiff":
        with tifffile.TiffFile(path) as t:
            assert bytes(t.pages[0].tags[34675].value) == srgb_icc()  # InterColorProfile
            assert t.pages[0].dtype == (np.uint16 if bits == 16 else np.uint8)
    with Image.open(path) as img:
        assert img.info["icc_profile"] == srgb_icc()
    assert srgb_icc()[36:40] == b"acsp" and len(srgb_icc()) == struct.unpack(">I", srgb_icc()[:4])[0]
    # Read back, the tag is recognised as sRGB: the values are what was written (Pillow reads 16-bit
    # RGB as 8 bits by truncation; JPEG and WebP are lossy).
    tol = {"jpg": 8, "webp": 8}.get(fmt, 1.0 if bits == 16 else 0.51)
    assert np.abs(load_image(path).astype(np.float64) - image).max() * 255 <= tol
