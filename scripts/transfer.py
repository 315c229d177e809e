#!/usr/bin/env python
"""Render a photo in the style of an artwork (Gatys, Ecker and Bethge 2016).

    python scripts/transfer.py --config examples/config.yaml
    python scripts/transfer.py --config cfg.yaml --set size=256 --set seeds=[0,1,2,3]

Writes one PNG per variant, a labelled contact sheet (several variants) and report.json into the
config's output directory. Errors in the input end with one line and exit status 2. Ctrl-C or
SIGTERM stops after the current chunk, saves the images so far, the report and a checkpoint, and
exits with status 3; run the same command with --resume to continue.

Several hosts (one process each, JAX's multi-controller runtime) split the variants over all
their devices; start the same command on every host with its own --process-id:

    python scripts/transfer.py --config cfg.yaml --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import signal
import sys

from jaxstyle.cli import EXIT_INTERRUPTED, run_main
from jaxstyle.config import load_config
from jaxstyle.transfer import run_and_save


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", help="YAML config (keys: see README); omitted: defaults plus --set")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted for nested, value parsed as YAML); repeatable")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from the checkpoint in its output directory")
    ap.add_argument("--coordinator", metavar="HOST:PORT",
                    help="jax.distributed coordinator (process 0's address) for a multi-host run")
    ap.add_argument("--num-processes", type=int, help="processes of a multi-host run")
    ap.add_argument("--process-id", type=int, help="this process's index in a multi-host run")
    ap.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() with the cluster's own settings (e.g. SLURM)")
    args = ap.parse_args()
    cfg = load_config(args.config, args.overrides)
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        import jax

        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)

    received: list[int] = []

    def on_signal(signum, frame):
        if received:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        received.append(signum)
        print(f"{signal.Signals(signum).name}: stopping after the current chunk "
              "(again to stop at once)", file=sys.stderr, flush=True)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    result = run_and_save(cfg, log=lambda line: print(line, flush=True),
                          should_stop=lambda: bool(received), resume=args.resume)
    return EXIT_INTERRUPTED if result.checkpoint is not None else 0


if __name__ == "__main__":
    run_main(main)
