"""A loss term of your own: keep the photograph's average colour.

Style transfer takes the artwork's palette along with its texture; this term pulls the result's
mean RGB back to the photograph's. Name it in a config as ``examples/terms/colour_mean.py:colour_mean``
(relative to the folder you run from) with a weight:

    terms: {examples/terms/colour_mean.py:colour_mean: 10.0}

A term receives the image ``(H, W, 3)`` in [0, 1], the VGG-19 responses ``{layer: (h, w, C)}`` of
the layers the run computes (list more in a ``layers`` attribute), and the run's targets
(``targets.content_image`` is the photograph at the image's size), and returns one number.
"""

import jax.numpy as jnp


def colour_mean(image, features, targets):
    """Squared distance between the mean RGB of the image and of the photograph."""
    return jnp.sum(jnp.square(image.mean(axis=(0, 1)) - targets.content_image.mean(axis=(0, 1))))
