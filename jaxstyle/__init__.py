"""jaxstyle: Gatys, Ecker and Bethge's neural style transfer in JAX.

The modules, in the order data flows through a run:

* :mod:`~jaxstyle.config`: the run's settings, each key declared once (default, check, meaning);
* :mod:`~jaxstyle.weights` and :mod:`~jaxstyle.vgg`: the mean-normalised VGG-19 as a pure function
  of its weights (:func:`load_vgg19`, :func:`vgg19_features`);
* :mod:`~jaxstyle.losses`: the paper's equations, one small function each, and the objective;
* :mod:`~jaxstyle.variants`: seeds x sweep -> the batch and its loss weights as arrays;
* :mod:`~jaxstyle.plan`: stages (coarse to fine) and tiles; a direct run is one stage, one tile;
* :mod:`~jaxstyle.inputs`: the images at each stage's size and the start images;
* :mod:`~jaxstyle.solvers`: optimisers as (init, step) pairs in a registry, vmapped over the batch;
* :mod:`~jaxstyle.program` and :mod:`~jaxstyle.loop`: compiled chunks of iterations, the one chunk loop;
* :mod:`~jaxstyle.pipeline`: the whole run, top to bottom (:func:`~jaxstyle.pipeline.run`);
* :mod:`~jaxstyle.video`, :mod:`~jaxstyle.flow` and :mod:`~jaxstyle.clip`: a clip in and out, its
  optical flow and consistency weights, and its frames as batch slots tied by the temporal term;
* :mod:`~jaxstyle.checkpoint`, :mod:`~jaxstyle.report`, :mod:`~jaxstyle.outputs`: what a run leaves;
* :mod:`~jaxstyle.cli`: the ``jaxstyle`` command.
"""

from .errors import ConfigError, ImageError, JaxstyleError, OutputError, WeightsError
from .vgg import CONV_NAMES, LAYER_NAMES, preprocess, vgg19_features
from .weights import load_vgg19

__all__ = [
    "CONV_NAMES", "LAYER_NAMES", "ConfigError", "ImageError", "JaxstyleError", "OutputError",
    "WeightsError", "load_vgg19", "preprocess", "vgg19_features",
]
__version__ = "0.1.0"
