#!/usr/bin/env python
"""Render a photo in the style of an artwork: the ``jaxstyle`` command, runnable from a checkout.

Gatys, Ecker and Bethge 2016, with every option of the ``jaxstyle`` command.

    python scripts/transfer.py --config examples/config.yaml
    python scripts/transfer.py --config cfg.yaml --set size=256 --set seeds=[0,1,2,3]
    python scripts/transfer.py examples/leuvenA.jpg examples/starry_night.jpg --size 256

See ``python scripts/transfer.py --help`` (or ``jaxstyle --help``) for every option.
"""

from jaxstyle.cli import console

if __name__ == "__main__":
    console()
