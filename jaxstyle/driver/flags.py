"""The command line's words (:mod:`jaxstyle.cli`): the flags people know from neural-style, as names
for config keys (their values are ours), ``--iterations`` as the run's total over the pyramid's
stages, and the options in any order."""

from __future__ import annotations

import argparse
import difflib
from dataclasses import dataclass
from typing import Sequence

from ..core.errors import ConfigError
from ..engine.config import Config, key_row
from ..engine.plan import COARSEST_FACTOR


@dataclass(frozen=True)
class Flag:
    """A flag for a config key: ``--content-weight 5`` is ``--set alpha=5``; a switch (``metavar``
    None) sets ``value``. ``peer``: neural-style's name for it."""

    name: str
    key: str
    metavar: str | None
    peer: str
    value: str | None = None
    about: str = ""


FLAGS = (
    Flag("--size", "size", "N", "-image_size"),
    Flag("--content-weight", "alpha", "ALPHA", "-content_weight"),
    Flag("--style-weight", "beta", "BETA", "-style_weight"),
    Flag("--tv-weight", "terms.tv", "W", "-tv_weight", about="weight of the squared total variation term "
         "(terms: {tv: W}); default none"),
    Flag("--init", "init", "noise|content|style|PATH", "-init, -init_image"),
    Flag("--style-scale", "style_scale", "S", "-style_scale"),
    Flag("--style-blend-weights", "style_blend", "W,W,...", "-style_blend_weights"),
    Flag("--original-colors", "preserve_colors", None, "-original_colors 1", value="luminance",
         about="keep the photograph's colours: preserve_colors: luminance (histogram and chroma: --set)"),
    Flag("--pooling", "pooling", "avg|max", "-pooling"),
    Flag("--padding", "padding", "zero|reflect|replicate", ""),
    Flag("--optimizer", "optimizer.name", "NAME", "-optimizer"),
    Flag("--learning-rate", "optimizer.learning_rate", "LR", "-learning_rate"),
    Flag("--print-every", "print_every", "N", "-print_iter"),
    Flag("--save-every", "save_every", "N", "-save_iter"),
    Flag("--output-format", "image_format", "png|jpg|webp|tiff", ""),
    Flag("--preserve-colors", "preserve_colors", "none|luminance|histogram|chroma|palette", ""),
    Flag("--overwrite", "overwrite", None, "", value="true",
         about="replace an earlier run's files in the output (overwrite: true); default: never"),
)


SETTINGS_ABOUT = """\
Each is a name for a config key and overrides a config file as --set does; every other key is
set with --set KEY=VALUE ('jaxstyle keys' lists them). The values are jaxstyle's own:
neural-style's content and style weights of 5 and 100 do not carry over (here alpha/beta 0.1,
with losses normalised per position)."""


def dest(flag: Flag) -> str:
    return "flag_" + flag.name.lstrip("-").replace("-", "_")


def flag_help(flag: Flag) -> str:
    """The help line: the key's meaning and default, from the config's own declarations."""
    if flag.about:
        return flag.about
    default, meaning = key_row(flag.key)
    return f"{meaning} ({flag.key}; default {default})".replace("%", "%%")


def add_flags(ap: argparse.ArgumentParser) -> None:
    """The flags of :data:`FLAGS`, ``--iterations`` and ``--seeds``, in a group of their own."""
    group = ap.add_argument_group("settings", SETTINGS_ABOUT)
    group.add_argument("--iterations", type=int, metavar="N",
                       help="the run's total L-BFGS iterations over every stage, shared as the default "
                            "schedule shares them (the coarsest stage twice each other's); default: "
                            "the schedule's own (optimizer.iterations is the last stage's alone)")
    group.add_argument("--seeds", type=seed_list, metavar="SEED[,SEED...]",
                       help="noise seeds, one image each (seeds; default 0); '--seeds 0 1 2' works too")
    for flag in FLAGS:
        if flag.metavar is None:
            group.add_argument(flag.name, dest=dest(flag), action="store_true", help=flag_help(flag))
        else:
            group.add_argument(flag.name, dest=dest(flag), metavar=flag.metavar, help=flag_help(flag))


def seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``."""
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers, not {text!r}") from None


def joined_seeds(argv: Sequence[str]) -> list[str]:
    """``--seeds 0 1 2`` written as ``--seeds=0,1,2``, so that a photograph after the seeds is not
    taken for one."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--seeds":
            j = i + 1
            while j < len(argv) and argv[j].lstrip("-").replace(",", "").isdigit() and not argv[j].startswith("--"):
                j += 1
            out.append("--seeds=" + ",".join(argv[i + 1:j]) if j > i + 1 else argv[i])
            i = j
        else:
            out.append(argv[i])
            i += 1
    return out


def flag_overrides(args: argparse.Namespace) -> list[str]:
    """The ``--set`` equivalents of the flags given, in :data:`FLAGS`'s order."""
    sets = []
    if args.seeds:
        sets.append(f"seeds=[{', '.join(str(s) for s in args.seeds)}]")
    for flag in FLAGS:
        given = getattr(args, dest(flag))
        if flag.metavar is None:
            if given:
                sets.append(f"{flag.key}={flag.value}")
        elif given is not None:
            value = f"[{given}]" if flag.key == "style_blend" and not given.startswith("[") else given
            sets.append(f"{flag.key}={value}")
    return sets


def shared_iterations(total: int, stages: int) -> list[int]:
    """``total`` iterations over ``stages`` stages, coarsest first, as the default schedule shares
    them: the coarsest :data:`~jaxstyle.engine.plan.COARSEST_FACTOR` times each other's (the
    remainder goes to the coarsest, which starts from noise). One stage: all of them."""
    if stages == 1:
        return [total]
    each = total // (COARSEST_FACTOR + stages - 1)
    if each < 1:
        raise ConfigError(f"--iterations {total} is too few for {stages} stages: give at least "
                          f"{COARSEST_FACTOR + stages - 1}")
    return [total - each * (stages - 1)] + [each] * (stages - 1)


def iteration_overrides(total: int | None, cfg: Config, sets: Sequence[str]) -> list[str]:
    """``--iterations``'s ``--set`` equivalents for ``cfg``'s stages; refused beside a ``--set`` of
    either key it sets."""
    if total is None:
        return []
    if total < 1:
        raise ConfigError(f"--iterations must be at least 1, not {total}")
    for text in sets:
        key = text.split("=", 1)[0].strip()
        if key in ("optimizer.iterations", "scale_iterations"):
            raise ConfigError(f"--iterations sets optimizer.iterations and scale_iterations: give it or --set {key}, "
                              "not both")
    shares = shared_iterations(total, len(cfg.scales) + 1)
    return [f"optimizer.iterations={shares[-1]}"] + ([f"scale_iterations={shares[:-1]}"] if cfg.scales else [])


#: neural-style's option names that are no :data:`FLAGS` entry's ``peer``, and what to write instead.
PEER_EXTRAS = {"num-iterations": "--iterations, the run's total", "niter": "--iterations, the run's total",
               "output-image": "-o / --output", "output": "-o / --output"}


def peer_flags() -> dict[str, str]:
    """neural-style's option names (``-`` and ``_`` alike, no leading dashes) -> what to write here,
    from each flag's ``peer`` and :data:`PEER_EXTRAS`."""
    out = {spelling.split()[0].lstrip("-").replace("_", "-"): flag.name
           for flag in FLAGS for spelling in flag.peer.split(", ") if spelling}
    return {**out, **PEER_EXTRAS}


def unknown_option_hint(token: str, known: Sequence[str]) -> str:
    """What to write instead of an option the parser does not know: a peer's spelling
    (``-content_weight``, ``--num_iterations``) or a near miss."""
    word = token.split("=", 1)[0].lstrip("-").replace("_", "-")
    if word in ("gpu", "backend"):
        return " (jax uses a GPU when it finds one: 'jaxstyle doctor' says which)"
    meant = peer_flags().get(word)
    if meant is not None:
        return f" (did you mean {meant}?)"
    close = difflib.get_close_matches("--" + word, list(known), n=1)
    return f" (did you mean {close[0]}?)" if close else ""
