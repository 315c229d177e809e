"""The command line: ``jaxstyle`` (and ``scripts/transfer.py``, the same program).

The forms (:data:`USAGE`): the quick form (a photo and one or more artworks, no YAML file), a
config file, ``--resume DIR``, ``--dry-run``, ``studio``, ``keys`` and ``doctor``. Options come in
any order; the settings flags (:mod:`jaxstyle.driver.flags`) are names for config keys and
override a config file as ``--set`` does. Errors in the input end with one line and exit status
2; Ctrl-C or SIGTERM stops after the current chunk, saves what it has and a checkpoint, and exits
with status 3.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import jax

from . import __version__
from .engine.checkpoint import FILENAME as CHECKPOINT, Checkpoint, saved_config
from .engine.config import Config, apply_overrides, key_rows, read_config, validate
from .engine.presets import PRESETS, apply_preset
from .driver.flags import add_flags, flag_overrides, iteration_overrides, joined_seeds, unknown_option_hint
from .driver.plan_view import plan_lines
from .core.errors import (ERROR_PREFIX, EXIT_INTERRUPTED, EXIT_STOPPED, EXIT_USAGE, ConfigError, JaxstyleError,
                          OutputError)
from .core.fileio import atomic_write
from .serve.live import LiveServer, LiveState
from .driver.compile_cache import CacheUse, cache_dir, enable
from .driver.job import continued, run_and_save
from .engine.progress import Meter, RunHooks, Watchers, pause_watchers
from .model.terms import TERMS, resolve_terms, used_terms
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


USAGE = """\
  jaxstyle PHOTO ARTWORK [ARTWORK ...] [options]   the quick form (several artworks: a blend)
  jaxstyle --config cfg.yaml [options]             a YAML config; the options override it
  jaxstyle --resume DIR [options]                  continue an interrupted run from its folder
  jaxstyle ... --dry-run                           print the plan of any of these; write nothing
  jaxstyle studio [--port N]                       a page that starts, queues and revisits runs
  jaxstyle keys                                    every config key, its default and meaning
  jaxstyle doctor                                  what this machine has: jax, devices, weights, clips"""

DESCRIPTION = """\
Re-renders a photograph in the style of an artwork (Gatys, Ecker and Bethge). The quick form
writes to outputs/<photo>-in-<artwork>; no run replaces earlier files unless --overwrite. Each
variant (one per seed or swept setting) gives one image, with a contact sheet, loss curves and
report.json. Bad input ends with one line and exit status 2. Ctrl-C stops after the current chunk
and saves a checkpoint (exit status 3): 'jaxstyle --resume DIR' continues it.

examples:
  jaxstyle photo.jpg starry_night.jpg
  jaxstyle photo.jpg painting.jpg --size 256 --seeds 0 1 2 --content-weight 2
  jaxstyle --config examples/config.yaml --overwrite
  jaxstyle --preset paper photo.jpg painting.jpg --iterations 500"""


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``error: ...``, exit status 2) instead of the usage block."""

    def error(self, message: str):
        raise ConfigError(f"{message} (jaxstyle --help)")


def parser() -> argparse.ArgumentParser:
    ap = Parser(prog="jaxstyle", usage="\n" + USAGE, description=DESCRIPTION,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", metavar="PHOTO ARTWORK", help="the quick form: a photo and one or more artworks")
    ap.add_argument("--version", action="version", version=f"jaxstyle {__version__}")
    ap.add_argument("--config", help="YAML config (keys: 'jaxstyle keys'); omitted: the defaults")
    ap.add_argument("--preset", metavar="NAME", help=f"a preset's settings over the config: {', '.join(PRESETS)} "
                    "(quick: the main job's iterations; paper: the paper's procedure as printed)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="set any config key (dotted for nested, the value YAML); repeatable; wins over the flags")
    ap.add_argument("-o", "--output", help="output folder (quick form default: outputs/<photo>-in-<artwork>), or "
                    "NAME.png for a run of one image")
    add_flags(ap)
    ap.add_argument("--dry-run", action="store_true",
                    help="print the plan (stages, sizes, iterations, tiles, memory, programs) and exit; write nothing")
    ap.add_argument("--no-compile-cache", action="store_true",
                    help="compile every program afresh, neither reading nor writing the cache of compiled "
                         "programs (the key compile_cache: false)")
    ap.add_argument("--resume", nargs="?", const="", metavar="DIR",
                    help="continue an interrupted run: from folder DIR's checkpoint and config, or (no DIR) "
                         "the config given's output folder")
    ap.add_argument("--continue", dest="more", nargs=2, metavar=("N", "DIR"),
                    help="N more iterations at the final size for the finished run in folder DIR, from its raw "
                         "result (result.npz) with a fresh L-BFGS memory; its files are replaced by the longer run's")
    ap.add_argument("--serve", nargs="?", const=0, type=int, metavar="PORT",
                    help="show the run on a live page at http://127.0.0.1:PORT/ (no PORT or 0: a free one); "
                         "after the run it serves the results until Ctrl-C")
    ap.add_argument("--serve-host", default="127.0.0.1", metavar="HOST",
                    help="address of the live page (default 127.0.0.1, this machine only: any other lets "
                         "whoever reaches it see the images and the config)")
    # The studio's worker: end when the run ends instead of serving its results (the studio does).
    ap.add_argument("--serve-exit", action="store_true", help=argparse.SUPPRESS)
    multi = ap.add_argument_group("several hosts (docs/multihost.md)")
    multi.add_argument("--coordinator", metavar="HOST:PORT",
                       help="jax.distributed coordinator (process 0's address) for a multi-host run")
    multi.add_argument("--num-processes", type=int, help="processes of a multi-host run")
    multi.add_argument("--process-id", type=int, help="this process's index in a multi-host run")
    multi.add_argument("--distributed", action="store_true",
                       help="call jax.distributed.initialize() with the cluster's own settings (e.g. SLURM)")
    return ap


def normalised_argv(argv: list[str]) -> list[str]:
    """The arguments with the optional values made explicit, so options come in any order:
    ``--seeds 0 1`` as ``--seeds=0,1``; ``--serve`` and ``--resume`` without their value as
    ``--serve=0`` and ``--resume=`` (a photograph after them is not their value)."""
    argv, out = joined_seeds(argv), []
    for i, token in enumerate(argv):
        after = argv[i + 1] if i + 1 < len(argv) else None
        if token.startswith("-") and not token.startswith("--") and len(token) > 2 and token[1].isalpha():
            # neural-style's -content_weight: argparse would read -original_colors as -o riginal_colors
            raise ConfigError(f"unknown option {token}{unknown_option_hint(token, option_names(parser()))}")
        if token == "--serve" and (after is None or not after.isdigit()):
            token = "--serve=0"
        elif token == "--resume" and (after is None or not Path(after).is_dir()):
            token = "--resume="
        out.append(token)
    return out


def option_names(ap: argparse.ArgumentParser) -> list[str]:
    """Every option string the parser knows (``-o``, ``--output``, ...)."""
    return [o for a in ap._actions for o in a.option_strings]


def parse(argv: list[str]) -> argparse.Namespace:
    """The options in any order; an unknown option is one line, with the flag meant where a
    neural-style spelling or a near miss says."""
    ap = parser()
    args, unknown = ap.parse_known_intermixed_args(normalised_argv(argv))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]}{unknown_option_hint(unknown[0], option_names(ap))}")
    return args


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
    """The file ``-o NAME.png`` names, else None."""
    if args.output and Path(args.output).suffix.lower() in IMAGE_OUTPUT:
        return Path(args.output)
    return None


def text(value) -> str:
    """A path as a YAML string, whatever characters it has."""
    return json.dumps(str(value))


def form_overrides(args: argparse.Namespace) -> list[str]:
    """The quick form's and ``-o``'s ``--set`` equivalents (before the flags and the user's own).
    ``-o NAME.png`` writes the run's other files to the folder ``NAME`` (its stem) beside it."""
    sets = []
    if args.images:
        if len(args.images) < 2:
            raise ConfigError(f"the quick form takes a photo and at least one artwork, not {len(args.images)} path(s)")
        if args.config or args.resume:  # (the same quick form with a bare --resume resumes it)
            raise ConfigError(f"give PHOTO ARTWORK or {'--config' if args.config else '--resume DIR'}, not both")
        photo, *arts = (Path(p) for p in args.images)
        sets += [f"content={text(photo)}", f"style=[{', '.join(text(a) for a in arts)}]" if len(arts) > 1
                 else f"style={text(arts[0])}"]
        if not args.output:
            sets.append(f"output={text(Path('outputs') / (photo.stem + '-in-' + '+'.join(a.stem for a in arts)))}")
    target = image_output(args)
    if args.output:
        sets.append(f"output={text(target.with_suffix('') if target else args.output)}")
    if target:
        sets.append(f"image_format={IMAGE_OUTPUT[target.suffix.lower()]}")
    return sets


def config_from(args: argparse.Namespace) -> Config:
    """The run's config: the file (or, with ``--resume DIR``, the folder's checkpoint), the preset's
    settings over it, then the quick form, the flags and ``--set``, in that order."""
    sets = form_overrides(args) + flag_overrides(args) + args.overrides \
        + (["compile_cache=false"] if args.no_compile_cache else [])
    if args.resume:
        if args.config:
            raise ConfigError("--resume DIR reads the config the run started with: give it or --config, not both")
        raw = {**saved_config(Path(args.resume) / CHECKPOINT), "output": args.resume}
    else:
        raw = read_config(args.config)
    if args.preset is not None:
        raw = apply_preset(raw, args.preset, apply_overrides(copy.deepcopy(raw), sets))
    raw = apply_overrides(raw, sets)
    if "content" not in raw:
        raise ConfigError("nothing to run: give PHOTO ARTWORK, --config FILE or --resume DIR (jaxstyle --help)")
    cfg = validate(raw)
    if args.resume:
        refuse_folder_code(cfg, f"--resume {args.resume}", "resume it from your own config: --config FILE --resume")
    spread = iteration_overrides(args.iterations, cfg, args.overrides)
    return validate(apply_overrides(raw, spread)) if spread else cfg


def refuse_folder_code(cfg: Config, how: str, instead: str) -> None:
    """A run folder's config is data from wherever the folder came from: a term file it names is
    code, and is run only from a config the user gives."""
    files = [t for t in used_terms(cfg.terms, cfg.sweep) if t not in TERMS]
    if files:
        raise ConfigError(f"{how} runs no code a folder names, and its config uses the term file {files[0]}: "
                          f"{instead}")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, run, write; the exit status (0, or 3 when interrupted).
    ``jaxstyle studio ...`` starts the studio (:mod:`jaxstyle.serve.studio`), ``keys`` and
    ``doctor`` print and exit."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["studio"]:
        return studio_main(argv[1:])
    if argv[:1] in (["keys"], ["doctor"]):
        return keys_main(argv[1:]) if argv[0] == "keys" else doctor_main(argv[1:])
    args = parse(argv)
    check_port("--serve", args.serve)
    check_distributed(args)
    cfg, start = continued_from(args) if args.more else (config_from(args), None)
    # Term files are imported here, where the run happens (validation only checks that they exist):
    # a mistake in one is still one line before anything is written.
    resolve_terms(used_terms(cfg.terms, cfg.sweep))
    target = image_output(args)
    if target is not None:
        check_image_output(cfg, target)
    if args.dry_run:
        for line in plan_lines(cfg):
            print(line)
        return 0
    if args.distributed or args.coordinator or args.num_processes or args.process_id is not None:
        start_distributed(args)
    return run_command(cfg, args, start)


def continued_from(args: argparse.Namespace) -> tuple[Config, Checkpoint]:
    """``--continue N DIR``: the finished run's config (its report's) with the flags and ``--set``
    over it, and its start (:func:`jaxstyle.driver.job.continued`)."""
    count, folder = args.more
    if not count.isdigit() or int(count) < 1:
        raise ConfigError(f"--continue takes N DIR: N more iterations (at least 1), not {count!r}")
    if args.images or args.config or args.resume is not None or args.preset or args.iterations:
        raise ConfigError("--continue N DIR takes the run's own config: give no photo, --config, --resume, "
                          "--preset or --iterations with it")
    report = Path(folder) / "report.json"
    try:
        raw = json.loads(report.read_text())["config"]
        if not isinstance(raw, dict):
            raise ValueError("no config")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise OutputError(f"nothing to continue in {folder}: its report.json cannot be read ({exc})") from None
    raw = apply_overrides({k: v for k, v in raw.items() if k != "term_files"},
                          flag_overrides(args) + args.overrides + (["compile_cache=false"] if args.no_compile_cache else []))
    refuse_folder_code(validate({**raw, "output": folder}), f"--continue {count} {folder}",
                       "run your own config again with more iterations")
    return continued(Path(folder), int(count), raw)


def run_command(cfg: Config, args: argparse.Namespace, start: Checkpoint | None = None) -> int:
    """Run ``cfg`` as the command line does: Ctrl-C stops between chunks, the cache of compiled
    programs is used (unless switched off), ``--serve`` shows it on a live page."""
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
    resume = args.resume is not None
    try:
        with CacheUse() as use:
            if args.serve is not None and jax.process_index() == 0:  # several hosts: process 0 serves
                return serve_run(cfg, args, meter, received, start)
            result = run_and_save(cfg, RunHooks(meter.log, lambda: bool(received),
                                                Watchers((meter.tick, *pause_watchers())), resume=start),
                                  resume=resume)
        if cache is not None:
            meter.log(use.line(cache))
    finally:  # the caller's handlers again (main may be called from Python, not only as a command)
        meter.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    return finish(cfg, args, result, meter.log)


def keys_main(argv: list[str]) -> int:
    """``jaxstyle keys [WORD]``: every config key (or those whose name or meaning has WORD), its
    default and meaning."""
    if len(argv) > 1:
        raise ConfigError("jaxstyle keys takes at most one word to look for")
    word = argv[0].lower() if argv else ""
    for name, default, meaning in key_rows():
        if word in name.lower() or word in meaning.lower():
            print(f"{name}\n    default: {default.replace('`', '')}\n    {meaning.replace('`', '')}")
    return 0


def doctor_main(argv: list[str]) -> int:
    """``jaxstyle doctor`` (:mod:`jaxstyle.driver.doctor`)."""
    if argv:
        raise ConfigError("jaxstyle doctor takes no arguments")
    from .driver.doctor import report
    for line in report():
        print(line, flush=True)
    return 0


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
        raise OutputError(f"{target} already exists; choose another output, or replace it with --overwrite (overwrite: true)")


def copy_image_output(cfg: Config, result, target: Path, log: Callable[[str], None]) -> None:
    """The finished run's image, copied to the file ``-o`` named (atomically)."""
    name = result.report["variants"][0]["image"]
    data = (Path(cfg.output) / name).read_bytes()
    atomic_write(target, lambda tmp: Path(tmp).write_bytes(data))
    log(f"wrote {target} (the run's report and curves are in {cfg.output})")


def serve_run(cfg: Config, args: argparse.Namespace, meter: Meter, received: list[int],
              begin: Checkpoint | None = None) -> int:
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
                         Watchers((meter.tick, state.tick, *pause_watchers()), (state.record,)), resume=begin)
        result = run_and_save(cfg, hooks, resume=args.resume is not None, on_start=start)
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
                           "checkpoint are written; 'jaxstyle --resume DIR' (this run's folder) continues it.")


def studio_main(argv: list[str]) -> int:
    """``jaxstyle studio`` (imported here: a run without it never loads the studio)."""
    from .serve import studio
    return studio.main(argv)


def console() -> None:
    """The ``jaxstyle`` console command."""
    run_main(main)


if __name__ == "__main__":
    console()
