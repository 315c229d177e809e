#!/usr/bin/env python
"""Render a photo in the style of an artwork (Gatys, Ecker and Bethge 2016).

    python scripts/transfer.py --config examples/config.yaml
    python scripts/transfer.py --config cfg.yaml --set size=256 --set seeds=[0,1,2,3]

Writes one PNG per variant, a labelled contact sheet (several variants) and report.json into the
config's output directory. Errors in the input end with one line and exit status 2.
"""

from __future__ import annotations

import argparse

from jaxstyle.cli import run_main
from jaxstyle.config import load_config
from jaxstyle.transfer import run_and_save


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (keys: see README); omitted: defaults plus --set")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted for nested, value parsed as YAML); repeatable")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    run_and_save(cfg, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    run_main(main)
