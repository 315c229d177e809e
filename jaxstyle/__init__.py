"""jaxstyle: Gatys, Ecker and Bethge's neural style transfer in JAX.

Six layers, one folder each, bottom to top; a module imports only from its own layer and those
below (README's "Where things are" names every module):

* :mod:`jaxstyle.core`: errors with their one-line messages and exit statuses, atomic writes;
* :mod:`jaxstyle.media`: images in and out (colour-managed), clips and their optical flow, measures;
* :mod:`jaxstyle.model`: VGG-19 as a pure function of its weights (:func:`load_vgg19`,
  :func:`vgg19_features`), the paper's equations, other style losses, loss terms from files;
* :mod:`jaxstyle.engine`: the config, presets, the batch of variants, the plan of stages and tiles,
  compiled chunks and the one chunk loop (:func:`~jaxstyle.engine.pipeline.run_plan`), checkpoints;
* :mod:`jaxstyle.driver`: the one driver (:func:`~jaxstyle.driver.job.run`,
  :func:`~jaxstyle.driver.job.run_and_save`), its schedules (an image, a comparison, a clip), the
  report and the files a run leaves;
* :mod:`jaxstyle.serve`: the live page and the studio;
* :mod:`jaxstyle.cli`: the ``jaxstyle`` command.
"""

from .core.errors import ConfigError, ImageError, JaxstyleError, OutputError, WeightsError
from .model.vgg import CONV_NAMES, LAYER_NAMES, preprocess, vgg19_features
from .model.weights import load_vgg19

__all__ = [
    "CONV_NAMES", "LAYER_NAMES", "ConfigError", "ImageError", "JaxstyleError", "OutputError",
    "WeightsError", "load_vgg19", "preprocess", "vgg19_features",
]
__version__ = "0.1.0"
