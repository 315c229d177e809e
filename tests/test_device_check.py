"""scripts/device_check.py, the one-call GPU check, run here on the CPU at a tiny size: its compact
weights (float16, the layers up to conv5_1) against the converted file, a bad weights file, and
the table it prints."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from conftest import ROOT

SCRIPT = str(ROOT / "scripts" / "device_check.py")


def test_compact_weights_are_the_converted_ones_rounded_to_float16(tmp_path, vgg_params):
    import importlib.util
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
    device_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(device_check)

    path = tmp_path / "w16.npz"
    device_check.pack(path)
    params = device_check.unpack(path)
    from jaxstyle.model.vgg import CONV_NAMES
    assert list(params) == list(CONV_NAMES[:13])  # conv1_1 .. conv5_1
    for name, layer in params.items():
        for k in ("kernel", "bias"):
            ref = np.asarray(vgg_params[name][k], np.float64)
            got = np.asarray(layer[k], np.float64)
            # float16 keeps 11 significant bits: relative error at most 2^-11 (subnormals aside).
            assert np.all(np.abs(got - ref) <= 2.0**-11 * np.abs(ref) + 6e-8), name
    assert path.stat().st_size < 30 * 2**20  # travels to a lent machine (64 MiB at most)


def test_device_check_prints_its_table_and_refuses_a_bad_weights_file(tmp_path):
    (tmp_path / "bad.npz").write_bytes(b"not a numpy file")
    r = subprocess.run([sys.executable, SCRIPT, "--weights", str(tmp_path / "bad.npz")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "is not a file written by --pack" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, SCRIPT, "--size", "48", "--batches", "1", "--iterations", "2",
                        "--picture-size", "48", "--picture-iterations", "2", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    seconds = re.search(r"\| s / iteration at 48 x 36 \| 1 \| ([0-9.]+)", r.stdout)
    assert seconds and float(seconds.group(1)) > 0, r.stdout
    assert re.search(r"\| evaluations / iteration \| 1 \| 1\.00 \|", r.stdout), r.stdout
    assert (tmp_path / "default_48.png").is_file()
