"""jaxstyle: Gatys, Ecker and Bethge's neural style transfer in JAX.

The public API, top to bottom in the order data flows:

* :func:`load_vgg19` and :func:`vgg19_features`: the mean-normalised VGG-19 as a pure function;
* :mod:`jaxstyle.losses`: the paper's content and style losses, one small function per equation;
* :mod:`jaxstyle.optim`: L-BFGS (jaxopt) or Adam (optax) over a vmapped batch of variants;
* :mod:`jaxstyle.transfer`: targets, batches and outputs for a whole run from a config.
"""

from .errors import ConfigError, ImageError, JaxstyleError, OutputError, WeightsError
from .vgg import CONV_NAMES, LAYER_NAMES, preprocess, vgg19_features
from .weights import load_vgg19

__all__ = [
    "CONV_NAMES", "LAYER_NAMES", "ConfigError", "ImageError", "JaxstyleError", "OutputError",
    "WeightsError", "load_vgg19", "preprocess", "vgg19_features",
]
__version__ = "0.1.0"
