"""Property-based: every generated config or image file ends in a result or in one clear error.

Each case runs the same path as ``scripts/transfer.py`` (config validation, image loading, the
run, the outputs) in-process; a :class:`JaxstyleError` is what the script turns into one line and
exit status 2, and any other exception (a traceback) fails the test. An error must leave no
output file behind.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import EXAMPLES
from helpers import peak_and_estimate_mb
from jaxstyle.engine.config import KEYS, OPTIMIZER_KEYS, validate
from jaxstyle.engine.progress import RunHooks
from jaxstyle.core.errors import JaxstyleError
from jaxstyle.engine.memory import BASELINE_BYTES, activation_floats, check_fits, estimate_peak_bytes
from jaxstyle.driver.job import run_and_save
from jaxstyle.engine.solvers import REGISTRY

GOOD = {"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
        "size": 32, "print_every": 0, "optimizer": {"iterations": 1}}


def outcome(raw: dict, out: Path) -> str:
    """'ok' or 'error'; asserts the error is one line and nothing was written."""
    raw = {**raw, "output": str(out)}
    try:
        run_and_save(validate(raw), hooks=RunHooks(log=lambda s: None))
    except JaxstyleError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, repr(msg)
        leftovers = [p.name for p in out.iterdir()] if out.is_dir() else []
        assert leftovers == [], leftovers
        return "error"
    assert (out / "report.json").is_file()
    return "ok"


values = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-3, 3), max_size=3),
    st.dictionaries(st.sampled_from(["conv1_1", "conv4_2", "conv9_9", "tv", "x"]),
                    st.one_of(st.floats(-2, 2), st.text(max_size=3)), max_size=3),
)
keys = st.sampled_from(sorted(KEYS) + ["stlye", "iterations", "optimiser", "Size"])


@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=keys, value=values)
def test_any_config_value_gives_a_result_or_one_line_error(tmp_path_factory, key, value):
    raw = {**GOOD, key: value}
    if key in ("output", "weights") and value is not None:
        raw[key] = str(value)  # keep generated paths inside the test's folder or absent
        if key == "output":
            return
    out = tmp_path_factory.mktemp("o") / "out"
    outcome(raw, out)


@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
@given(key=st.sampled_from(sorted({*OPTIMIZER_KEYS, *(k for e in REGISTRY.values() for k in e.options)})
                             + ["iteration", "lr"]), value=values)
def test_any_optimizer_value_gives_a_result_or_one_line_error(tmp_path_factory, key, value):
    raw = {**GOOD, "optimizer": {"iterations": 1, key: value}}
    if key == "iterations" and isinstance(value, int) and value > 3:
        return  # valid but slow; covered elsewhere
    outcome(raw, tmp_path_factory.mktemp("o") / "out")


@pytest.mark.parametrize("value", ["zoom\n", "a\r\nb", "x\u2028y"])
def test_a_value_with_line_breaks_is_echoed_on_one_line(tmp_path, value):
    # The message quotes the value; its line breaks must come out escaped, not as new lines.
    raw = {**GOOD, "optimizer": {"iterations": 1, "name": "jaxopt-lbfgs", "linesearch": value}}
    with pytest.raises(JaxstyleError) as info:
        validate({**raw, "output": str(tmp_path / "out")})
    msg = str(info.value)
    assert len(msg.splitlines()) == 1 and repr(value)[1:-1] in msg, repr(msg)


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but holds almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + \
        chunk(b"IEND", b"")


def _image_bytes(kind: str) -> tuple[bytes, str]:
    rgb = (np.random.default_rng(0).random((20, 24, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    if kind == "zero":
        return b"", ".png"
    if kind == "truncated":
        return (EXAMPLES / "home.jpg").read_bytes()[:500], ".jpg"
    if kind == "wrong_extension":
        Image.fromarray(rgb).save(buf, format="PNG")
        return buf.getvalue(), ".jpg"
    if kind == "one_pixel":
        Image.fromarray(rgb[:1, :1]).save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if kind == "sixteen_bit":
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257)).save(buf, format="PNG")
        return buf.getvalue(), ".png"
    if kind == "cmyk":
        Image.fromarray(rgb).convert("CMYK").save(buf, format="JPEG")
        return buf.getvalue(), ".jpg"
    if kind == "animated":
        frames = [Image.fromarray(np.roll(rgb, k, axis=1)) for k in range(3)]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
        return buf.getvalue(), ".gif"
    if kind == "huge_header":
        return _png_header_only(100_000, 100_000), ".png"
    if kind == "big_header":
        return _png_header_only(9000, 9000), ".png"
    if kind == "text":
        return b"hello, not an image\n", ".png"
    raise AssertionError(kind)


KINDS = ["zero", "truncated", "wrong_extension", "one_pixel", "sixteen_bit", "cmyk", "animated",
         "huge_header", "big_header", "text"]


@pytest.mark.parametrize("role", ["content", "style", "init"])
@pytest.mark.parametrize("kind", KINDS)
def test_any_image_file_gives_a_result_or_one_line_error(tmp_path, kind, role):
    data, suffix = _image_bytes(kind)
    path = tmp_path / f"img{suffix}"
    path.write_bytes(data)
    raw = {**GOOD, role: str(path), "max_pixels": 4_000_000}
    result = outcome(raw, tmp_path / "out")
    expected_ok = kind in ("wrong_extension", "one_pixel", "sixteen_bit", "cmyk", "animated")
    assert result == ("ok" if expected_ok else "error"), (kind, role, result)


def test_memory_estimate_refuses_what_cannot_fit():
    layers = ["conv4_2", "conv5_1"]
    small = estimate_peak_bytes(128, 128, 1, layers)
    big = estimate_peak_bytes(256, 256, 1, layers)
    # Activations scale with pixels; the baseline does not.
    assert 3.0 < (big - BASELINE_BYTES) / (small - BASELINE_BYTES) < 4.5
    assert estimate_peak_bytes(64, 64, 8, layers) > estimate_peak_bytes(64, 64, 1, layers)
    # conv1_1 alone at 4 x 4 px: 16 positions x 64 channels.
    assert activation_floats(4, 4, "conv1_1") == 16 * 64
    with pytest.raises(JaxstyleError, match=r"need about .* GiB, but only 1\.0 GiB is available"):
        check_fits(4096, 4096, 8, layers, available=2**30)
    assert check_fits(64, 64, 1, layers, available=2**40) == estimate_peak_bytes(64, 64, 1, layers)


def test_second_run_into_a_locked_folder_is_refused(tmp_path):
    import os
    out = tmp_path / "out"
    out.mkdir()
    (out / ".jaxstyle.lock").write_text(str(os.getpid()))  # a live process holds it
    with pytest.raises(JaxstyleError, match="another run"):
        run_and_save(validate({**GOOD, "output": str(out)}), hooks=RunHooks(log=lambda s: None))
    assert sorted(p.name for p in out.iterdir()) == [".jaxstyle.lock"]
    (out / ".jaxstyle.lock").write_text("999999999")  # a dead process: stale, taken over
    run_and_save(validate({**GOOD, "output": str(out)}), hooks=RunHooks(log=lambda s: None))
    assert (out / "report.json").is_file() and not (out / ".jaxstyle.lock").exists()


def test_memory_estimate_within_1_5x_of_measured_peak():
    # 2 iterations at 192 x 256 px.
    peak, estimate = peak_and_estimate_mb({"content": GOOD["content"], "style": GOOD["style"], "size": 256, "scales": [],
                                           "print_every": 0, "optimizer": {"iterations": 2}})
    assert peak / 1.5 <= estimate <= peak * 1.5, (peak, estimate)


def test_non_finite_loss_stops_the_variant_and_keeps_a_finite_image(vgg_params):
    from jaxstyle.driver.job import run
    lines = []
    # Eq. 1's plain sum is large enough that alpha 1e38 overflows float32 at the first step.
    cfg = validate({**GOOD, "losses": "paper", "alpha": 1e38, "seeds": [0, 1], "optimizer": {"iterations": 3}})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lines.append))
    assert np.isfinite(r.images).all()
    for v in r.report["variants"]:
        assert v["nonfinite_at"] == 1 and v["final_loss"]["total"] is None
    assert any("non-finite at iteration 1" in line for line in lines)
    import json
    json.loads(json.dumps(r.report, allow_nan=False))  # strict JSON: no Infinity or NaN
