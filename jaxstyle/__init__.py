"""jaxstyle: Gatys, Ecker and Bethge's neural style transfer in JAX.

The modules, in the order data flows through a run:

* :mod:`~jaxstyle.engine.config`: the run's settings, each key declared once (default, check, meaning);
* :mod:`~jaxstyle.model.weights` and :mod:`~jaxstyle.model.vgg`: the mean-normalised VGG-19 as a pure function
  of its weights (:func:`load_vgg19`, :func:`vgg19_features`);
* :mod:`~jaxstyle.model.losses`: the paper's equations, one small function each, and the objective;
* :mod:`~jaxstyle.engine.variants`: seeds x sweep -> the batch and its loss weights as arrays;
* :mod:`~jaxstyle.engine.plan`: stages (coarse to fine) and tiles; a direct run is one stage, one tile;
* :mod:`~jaxstyle.engine.inputs`: the images at each stage's size and the start images;
* :mod:`~jaxstyle.engine.solvers`: optimisers as (init, step) pairs in a registry, vmapped over the batch;
* :mod:`~jaxstyle.engine.program` and :mod:`~jaxstyle.engine.loop`: compiled chunks of iterations, the one chunk loop;
* :mod:`~jaxstyle.engine.pipeline`: the whole run, top to bottom (:func:`~jaxstyle.engine.pipeline.run`);
* :mod:`~jaxstyle.media.video`, :mod:`~jaxstyle.media.flow` and :mod:`~jaxstyle.driver.clip`: a clip in and out, its
  optical flow and consistency weights, and its frames as batch slots tied by the temporal term;
* :mod:`~jaxstyle.engine.checkpoint`, :mod:`~jaxstyle.driver.report`, :mod:`~jaxstyle.driver.outputs`: what a run leaves;
* :mod:`~jaxstyle.cli`: the ``jaxstyle`` command.
"""

from .core.errors import ConfigError, ImageError, JaxstyleError, OutputError, WeightsError
from .model.vgg import CONV_NAMES, LAYER_NAMES, preprocess, vgg19_features
from .model.weights import load_vgg19

__all__ = [
    "CONV_NAMES", "LAYER_NAMES", "ConfigError", "ImageError", "JaxstyleError", "OutputError",
    "WeightsError", "load_vgg19", "preprocess", "vgg19_features",
]
__version__ = "0.1.0"
