"""Read PyTorch weight files without torch, and without running any code from them.

PyTorch stores tensors with :mod:`pickle`, which can call any importable function while loading.
:class:`RestrictedUnpickler` allows only the handful of globals a state dict needs and refuses
every other one *before* anything is called, so a hostile file fails with a clear error.

Two layouts are read:

* the legacy (non-zip) serialisation: pickled magic number, protocol version and system info, the
  pickled state dict whose storages are persistent ids, the pickled list of storage keys, then for
  each storage an int64 element count followed by its raw little-endian data;
* the zip serialisation (PyTorch >= 1.6): ``<archive>/data.pkl`` plus one raw file per storage
  under ``<archive>/data/<key>``.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import WeightsError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
}


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage, offset, shape, stride, *_unused) -> _TensorRef:
    # Stands in for torch._utils._rebuild_tensor(_v2): it only records where the data lives.
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(int(s) for s in shape),
                      tuple(int(s) for s in stride))


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals a tensor state dict needs.

    Allowed: ``collections.OrderedDict``, ``torch._utils._rebuild_tensor(_v2)`` and the float
    storage types, each mapped to a harmless stand-in. Any other global raises
    :class:`WeightsError` naming it, before it could be called.
    """

    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        raise WeightsError(
            f"refusing to load: the pickle names '{module}.{name}', which a weights file never needs"
        )

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel) in zip files; legacy files append a
        # view_metadata entry (None for whole storages).
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType)):
            raise WeightsError(f"refusing to load: unexpected persistent id {pid!r:.80}")
        return _StorageRef(str(pid[2]), pid[1].dtype, int(pid[4]))


def _unpickle(data: io.BufferedIOBase) -> object:
    try:
        return RestrictedUnpickler(data).load()
    except WeightsError:
        raise
    except Exception as exc:  # truncated stream, bad opcode, ... : all mean a corrupt file
        raise WeightsError(f"corrupt weights file: {type(exc).__name__}: {exc}") from None


def _materialise(tensor: _TensorRef, raw: dict[str, np.ndarray]) -> np.ndarray:
    flat = raw[tensor.storage.key]
    need = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride)) + 1
    if any(n == 0 for n in tensor.shape):
        need = 0
    if need > flat.size:
        raise WeightsError(f"corrupt weights file: a tensor reads past its storage '{tensor.storage.key}'")
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset:], shape=tensor.shape, strides=tuple(s * item for s in tensor.stride),
        writeable=False,
    )
    return np.array(view, dtype=np.float32)


def _state_dict(obj: object, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise WeightsError("corrupt weights file: the pickle does not hold a state dict")
    out = {}
    for name, value in obj.items():
        if isinstance(value, _TensorRef):
            out[str(name)] = _materialise(value, raw)
    return out


def read_legacy(path: str | Path) -> dict[str, np.ndarray]:
    """Read a legacy (non-zip) PyTorch state dict as ``{name: float32 array}``."""
    with open(path, "rb") as f:
        header = [_unpickle(f) for _ in range(3)]
        if header[0] != LEGACY_MAGIC or header[1] != LEGACY_PROTOCOL:
            raise WeightsError(f"{path}: not a legacy PyTorch file (bad magic number or protocol)")
        if not isinstance(header[2], dict) or not header[2].get("little_endian", False):
            raise WeightsError(f"{path}: only little-endian PyTorch files are supported")
        obj = _unpickle(f)
        keys = _unpickle(f)
        refs = {v.storage.key: v.storage for v in (obj.values() if isinstance(obj, dict) else [])
                if isinstance(v, _TensorRef)}
        if not isinstance(keys, list):
            raise WeightsError(f"corrupt weights file {path}: no storage key list")
        raw = {}
        for key in keys:
            head = f.read(8)
            if len(head) != 8:
                raise WeightsError(f"truncated weights file {path}: storage '{key}' is missing")
            (numel,) = struct.unpack("<q", head)
            dtype = refs[key].dtype if key in refs else np.dtype("<f4")
            nbytes = numel * dtype.itemsize
            buf = f.read(nbytes)
            if numel < 0 or len(buf) != nbytes:
                raise WeightsError(f"truncated weights file {path}: storage '{key}' is cut short")
            raw[str(key)] = np.frombuffer(buf, dtype=dtype)
        missing = set(refs) - set(raw)
        if missing:
            raise WeightsError(f"corrupt weights file {path}: storages {sorted(missing)[:3]} are missing")
    return _state_dict(obj, raw)


def read_zip(path: str | Path) -> dict[str, np.ndarray]:
    """Read a zip-format PyTorch state dict (``torch.save`` since 1.6) as ``{name: array}``."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
            if not pkl:
                raise WeightsError(f"{path}: zip file without data.pkl, not a PyTorch file")
            prefix = pkl[0][: -len("data.pkl")]
            obj = _unpickle(io.BytesIO(zf.read(pkl[0])))
            raw = {}
            for value in obj.values() if isinstance(obj, dict) else []:
                if isinstance(value, _TensorRef) and value.storage.key not in raw:
                    ref = value.storage
                    member = f"{prefix}data/{ref.key}"
                    if member not in names:
                        raise WeightsError(f"corrupt weights file {path}: storage '{ref.key}' missing")
                    buf = zf.read(member)
                    if len(buf) < ref.numel * ref.dtype.itemsize:
                        raise WeightsError(f"truncated weights file {path}: storage '{ref.key}'")
                    raw[ref.key] = np.frombuffer(buf, dtype=ref.dtype, count=ref.numel)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise WeightsError(f"corrupt weights file {path}: {exc}") from None
    return _state_dict(obj, raw)


def read_torch(path: str | Path) -> dict[str, np.ndarray]:
    """Read either PyTorch layout, chosen by the file's content."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    if zipfile.is_zipfile(path):
        return read_zip(path)
    return read_legacy(path)
