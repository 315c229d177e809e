"""The command line: ``jaxstyle`` (and ``scripts/transfer.py``, the same program).

    jaxstyle --config cfg.yaml [--set key=value ...] [--resume]
    jaxstyle PHOTO ARTWORK [-o DIR] [--size N] [--seeds 0 1 2 3] [--set key=value ...]

The quick form needs no YAML file; its output folder is named after both images
(``outputs/<photo>-in-<artwork>``) and, like a config's, is never overwritten. Writes one image
per variant, a labelled contact sheet (several variants) and report.json. Errors in the input end
with one line and exit status 2. Ctrl-C or SIGTERM stops after the current chunk, saves the images
so far, the report and a checkpoint, and exits with status 3; the same command with --resume
continues.

``jaxstyle studio`` serves a page that starts, queues, watches and revisits runs (docs/studio.md).

With ``--serve [PORT]`` a live page on 127.0.0.1 shows the variants as they form, their loss curves
and the ETA; when the run ends it keeps serving the results until Ctrl-C.

Several hosts (one process each, JAX's multi-controller runtime) split the variants over all
their devices; start the same command on every host with its own --process-id:

    jaxstyle --config cfg.yaml --coordinator 10.0.0.1:1234 --num-processes 2 --process-id 0
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import jax

from .engine.config import Config, load_config
from .core.errors import (ERROR_PREFIX, EXIT_INTERRUPTED, EXIT_STOPPED, EXIT_USAGE, ConfigError, JaxstyleError,
                          OutputError)
from .core.fileio import atomic_write
from .serve.live import LiveServer, LiveState
from .driver.compile_cache import CacheUse, cache_dir, enable
from .driver.job import run_and_save
from .engine.progress import Meter, RunHooks, Watchers, pause_watchers
from .model.terms import resolve_terms, used_terms
from .engine.variants import expand_variants, variant_labels



def run_main(main: Callable[[], int | None]) -> None:
    """Run a script's ``main``; a :class:`JaxstyleError` prints ``error: <message>`` and exits 2, an
    interrupt that stops at once (a second Ctrl-C) one line and exits 130."""
    try:
        code = main()
    except JaxstyleError as exc:
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr)
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        # Files are written under temporary names and renamed and the lock is released on the way
        # out, so stopping here leaves no half-written file behind.
        print("stopped at once: nothing more was saved", file=sys.stderr)
        sys.exit(EXIT_STOPPED)
    sys.exit(code or 0)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="jaxstyle", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", metavar="PHOTO ARTWORK", help="the quick form: a photo and an artwork")
    ap.add_argument("--config", help="YAML config (keys: docs/config.md); omitted: defaults plus --set")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config key (dotted for nested, value parsed as YAML); repeatable")
    ap.add_argument("-o", "--output", help="quick form: output folder (default: named after both images)")
    ap.add_argument("--size", type=int, help="quick form: long side in pixels")
    ap.add_argument("--seeds", type=int, nargs="+", help="quick form: noise seeds, one image each")
    ap.add_argument("--no-compile-cache", action="store_true",
                    help="compile every program afresh, neither reading nor writing the cache of compiled "
                         "programs (the key compile_cache: false)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted run from the checkpoint in its output directory")
    ap.add_argument("--serve", nargs="?", const=0, type=int, metavar="PORT",
                    help="show the run on a live page at http://127.0.0.1:PORT/ (no PORT or 0: a free one); "
                         "after the run it serves the results until Ctrl-C")
    ap.add_argument("--serve-host", default="127.0.0.1", metavar="HOST",
                    help="address of the live page (default 127.0.0.1, this machine only: any other lets "
                         "whoever reaches it see the images and the config)")
    # The studio's worker: end when the run ends instead of serving its results (the studio does).
    ap.add_argument("--serve-exit", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--coordinator", metavar="HOST:PORT",
                    help="jax.distributed coordinator (process 0's address) for a multi-host run")
    ap.add_argument("--num-processes", type=int, help="processes of a multi-host run")
    ap.add_argument("--process-id", type=int, help="this process's index in a multi-host run")
    ap.add_argument("--distributed", action="store_true",
                    help="call jax.distributed.initialize() with the cluster's own settings (e.g. SLURM)")
    return ap


#: ``-o NAME.png`` (quick form): the image is written to that file; these endings name an image.
IMAGE_OUTPUT = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".webp": "webp", ".tif": "tiff", ".tiff": "tiff"}


def check_port(flag: str, port: int | None) -> None:
    """A TCP port (0: a free one), checked before any folder is made."""
    if port is not None and not 0 <= port <= 65535:
        raise ConfigError(f"{flag} must be a port from 0 to 65535 (0: a free one), not {port}")


def check_distributed(args: argparse.Namespace) -> None:
    """``--coordinator``, ``--num-processes`` and ``--process-id`` agree, checked without contacting
    anything (``--distributed`` leaves them to the cluster's own settings)."""
    given = [args.coordinator is not None, args.num_processes is not None, args.process_id is not None]
    if not any(given) or (args.distributed and not all(given)):
        return
    if not all(given):
        raise ConfigError("a multi-host run needs --coordinator HOST:PORT, --num-processes N and --process-id I "
                          "together (or --distributed for the cluster's own settings)")
    host, _, port = args.coordinator.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(f"--coordinator must be HOST:PORT (process 0's address), not {args.coordinator!r}")
    if args.num_processes < 1:
        raise ConfigError(f"--num-processes must be at least 1, not {args.num_processes}")
    if not 0 <= args.process_id < args.num_processes:
        raise ConfigError(f"--process-id must be from 0 to {args.num_processes - 1} "
                          f"(--num-processes {args.num_processes}), not {args.process_id}")


def start_distributed(args: argparse.Namespace) -> None:
    """``jax.distributed.initialize``; its failure (an unreachable coordinator, a refused id) is one line."""
    try:
        jax.distributed.initialize(coordinator_address=args.coordinator, num_processes=args.num_processes,
                                   process_id=args.process_id)
    except (RuntimeError, ValueError) as exc:  # what jax raises for a setting or a connection it cannot use
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"cannot start the multi-host run: {first}") from None


def image_output(args: argparse.Namespace) -> Path | None:
    """The file ``-o NAME.png`` names (the quick form), else None."""
    if args.images and args.output and Path(args.output).suffix.lower() in IMAGE_OUTPUT:
        return Path(args.output)
    return None


def quick_overrides(args: argparse.Namespace) -> list[str]:
    """The quick form's ``--set`` equivalents (before the user's own). ``-o NAME.png`` writes the
    run's other files to the folder ``NAME`` (its stem) beside it."""
    if not args.images:
        if args.output or args.size or args.seeds:
            raise ConfigError("-o, --size and --seeds belong to the quick form: jaxstyle PHOTO ARTWORK ...")
        return []
    if len(args.images) != 2:
        raise ConfigError(f"the quick form takes a photo and an artwork, not {len(args.images)} path(s)")
    if args.config:
        raise ConfigError("give either --config or PHOTO ARTWORK, not both")
    photo, art = (Path(p) for p in args.images)
    target = image_output(args)
    output = target.with_suffix("") if target else args.output or Path("outputs") / f"{photo.stem}-in-{art.stem}"
    sets = [f"content={photo}", f"style={art}", f"output={output}"]
    if target:
        sets.append(f"image_format={IMAGE_OUTPUT[target.suffix.lower()]}")
    if args.size:
        sets.append(f"size={args.size}")
    if args.seeds:
        sets.append(f"seeds=[{', '.join(str(s) for s in args.seeds)}]")
    return sets


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, write; the exit status (0, or 3 when interrupted).
    ``jaxstyle studio ...`` starts the studio (:mod:`jaxstyle.serve.studio`)."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["studio"]:
        return studio_main(argv[1:])
    args = parser().parse_args(argv)
    check_port("--serve", args.serve)
    check_distributed(args)
    cfg = load_config(args.config, quick_overrides(args) + args.overrides
                      + (["compile_cache=false"] if args.no_compile_cache else []))
    # Term files are imported here, where the run happens (validation only checks that they exist):
    # a mistake in one is still one line before anything is written.
    resolve_terms(used_terms(cfg.terms, cfg.sweep))
    target = image_output(args)
    if target is not None:
        check_image_output(cfg, target)
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        start_distributed(args)
    received: list[int] = []

    def on_signal(signum, frame):
        if received:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        received.append(signum)
        print(f"{signal.Signals(signum).name}: stopping after the current chunk "
              "(again to stop at once)", file=sys.stderr, flush=True)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    meter = Meter()
    cache = enable(cache_dir(os.environ), meter.log) if cfg.compile_cache else None
    try:
        with CacheUse() as use:
            if args.serve is not None and jax.process_index() == 0:  # several hosts: process 0 serves
                return serve_run(cfg, args, meter, received)
            result = run_and_save(cfg, RunHooks(meter.log, lambda: bool(received),
                                                Watchers((meter.tick, *pause_watchers()))), resume=args.resume)
        if cache is not None:
            meter.log(use.line(cache))
    finally:  # the caller's handlers again (main may be called from Python, not only as a command)
        meter.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return finish(cfg, args, result, meter.log)


def finish(cfg: Config, args: argparse.Namespace, result, log: Callable[[str], None]) -> int:
    """After a run: ``-o NAME.png``'s copy of a finished image; the exit status (0, or 3 interrupted)."""
    target = image_output(args)
    if target is not None and result.checkpoint is None:
        copy_image_output(cfg, result, target, log)
    return EXIT_INTERRUPTED if result.checkpoint is not None else 0


def check_image_output(cfg: Config, target: Path) -> None:
    """``-o NAME.png`` takes a run of one image, and does not replace a file unless told to."""
    n = len(expand_variants(cfg))
    if n != 1 or cfg.is_clip:
        raise ConfigError(f"-o {target} names one image, and this run makes {n} variant(s)"
                          f"{' of a clip' if cfg.is_clip else ''}: give -o a folder instead")
    if target.is_dir() or (target.exists() and not cfg.overwrite):
        raise OutputError(f"{target} already exists; choose another output or set overwrite: true")


def copy_image_output(cfg: Config, result, target: Path, log: Callable[[str], None]) -> None:
    """The finished run's image, copied to the file ``-o`` named (atomically)."""
    name = result.report["variants"][0]["image"]
    data = (Path(cfg.output) / name).read_bytes()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
    log(f"wrote {target} (the run's report and curves are in {cfg.output})")


def serve_run(cfg: Config, args: argparse.Namespace, meter: Meter, received: list[int]) -> int:
    """Run with the live page; once the run is over, serve its results until a signal arrives.

    Errors found before the run starts (the config, the output folder) end at once, as without
    ``--serve``; a failure during the run is shown on the page. Returns the run's exit status.
    """
    state = LiveState(variant_labels(expand_variants(cfg), cfg.sweep), cfg.to_dict(), cfg.output)
    servers: list[LiveServer] = []

    def start() -> None:
        servers.append(LiveServer(state, args.serve_host, args.serve))
        meter.log(f"live page: {servers[0].url}")
    try:
        hooks = RunHooks(meter.log, lambda: bool(received),
                         Watchers((meter.tick, state.tick, *pause_watchers()), (state.record,)))
        result = run_and_save(cfg, hooks, resume=args.resume, on_start=start)
    except JaxstyleError as exc:
        if not servers:
            raise
        print(f"{ERROR_PREFIX}{exc}", file=sys.stderr, flush=True)
        state.end("failed", f"The run failed: {exc}")
        code = EXIT_USAGE
    else:
        code = finish(cfg, args, result, meter.log)
        state.end(*ending(result.checkpoint), result.images, result.report)
    meter.close()
    if args.serve_exit:
        servers[0].stop()
        return code
    print(f"serving the results at {servers[0].url} until Ctrl-C", flush=True)
    seen = len(received)
    for s in (signal.SIGINT, signal.SIGTERM):  # from now on a signal only ends the serving
        signal.signal(s, lambda signum, frame: received.append(signum))
    while len(received) == seen:
        time.sleep(0.2)
    servers[0].stop()
    return code


def ending(checkpoint) -> tuple[str, str]:
    """The page's status and message at the end of a run."""
    if checkpoint is None:
        return "finished", "The run finished; its files are linked above."
    return "interrupted", (f"The run was interrupted at {checkpoint.where}. The images so far, the report and a "
                           "checkpoint are written; run the same command with --resume to continue.")


def studio_main(argv: list[str]) -> int:
    """``jaxstyle studio`` (imported here: a run without it never loads the studio)."""
    from .serve import studio
    return studio.main(argv)


def console() -> None:
    """The ``jaxstyle`` console command."""
    run_main(main)


if __name__ == "__main__":
    console()
