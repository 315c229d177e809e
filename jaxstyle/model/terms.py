"""Extra loss terms by name: the built-in ones (:data:`jaxstyle.model.losses.TERMS`) and the user's own,
named in a config as ``path/to/file.py:function``.

A term has the built-in terms' signature, ``term(image (H, W, 3), features {layer: (h, w, C)},
targets) -> scalar``, and may list the VGG-19 layers it reads in a ``layers`` attribute, which are
then added to the forward pass::

    def colour_mean(image, features, targets):
        return jnp.sum(jnp.square(image.mean(axis=(0, 1)) - targets.content_image.mean(axis=(0, 1))))

A term file is trusted code: loading it runs it, with the user's rights, like any script. The path
is relative to the current directory, like every path in a config. Runs record a hash of each term
file's contents (:func:`term_file_hashes`), and a resume with a changed file is refused.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
from pathlib import Path
from typing import Iterable, Mapping

from ..core.errors import ConfigError, quote
from .losses import TERMS, LossTerm
from .vgg import check_layers

#: ``path/to/file.py:function``.
FILE_TERM = re.compile(r"^(?P<path>.+\.py):(?P<function>[A-Za-z_]\w*)$")


def is_file_term(name: str) -> bool:
    """Whether a term name is a ``file.py:function`` reference rather than a built-in term."""
    return FILE_TERM.match(name) is not None


def check_term_file(name: str) -> None:
    """Refuse (:class:`ConfigError`) a ``file.py:function`` name whose file does not exist, without
    importing it: validating a config never runs its code."""
    m = FILE_TERM.match(name)
    if m is None or "\0" in name:
        raise ConfigError(f"term {quote(name)} is not 'path/to/file.py:function'")
    if not Path(m["path"]).is_file():
        raise ConfigError(f"term {name}: file {m['path']} not found")


def load_term(name: str) -> LossTerm:
    """The function ``name`` (``path/to/file.py:function``) refers to, its declared layers checked.

    Every failure is one :class:`ConfigError` naming the file and the function.
    """
    m = FILE_TERM.match(name)
    if m is None:
        raise ConfigError(f"term '{name}' is neither a built-in term ({', '.join(sorted(TERMS))}) nor "
                          "'path/to/file.py:function'")
    path, function = Path(m["path"]), m["function"]
    if not path.is_file():
        raise ConfigError(f"term {name}: file {path} not found")
    spec = importlib.util.spec_from_file_location(f"jaxstyle_term_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:  # whatever the file does wrong (exit() too), the user gets one line
        raise ConfigError(f"term {name}: cannot load {path}: {type(exc).__name__}: {exc}") from None
    fn = getattr(module, function, None)
    if not callable(fn):
        raise ConfigError(f"term {name}: {path} has no function '{function}'")
    layers = getattr(fn, "layers", ())
    if isinstance(layers, str) or not all(isinstance(l, str) for l in layers):
        raise ConfigError(f"term {name}: its 'layers' must be a list of layer names, e.g. ['conv1_1']")
    try:
        check_layers(list(layers))
    except ConfigError as exc:
        raise ConfigError(f"term {name}: {exc}") from None
    return fn


def resolve_terms(names: Iterable[str]) -> dict[str, LossTerm]:
    """``{name: function}`` for built-in and file terms."""
    return {n: TERMS[n] if n in TERMS else load_term(n) for n in names}


def used_terms(terms: Mapping[str, float], sweep: Mapping[str, list]) -> list[str]:
    """Every term name a config uses, in its ``terms`` or in a sweep over them."""
    return list(dict.fromkeys([*terms, *(t for setting in sweep.get("terms", []) for t in setting)]))


def term_file_hashes(names: Iterable[str]) -> dict[str, str]:
    """``{name: sha256 of its file's contents}`` for the file terms among ``names``."""
    out = {}
    for n in names:
        m = FILE_TERM.match(n)
        if m is not None and n not in TERMS:
            try:
                out[n] = hashlib.sha256(Path(m["path"]).read_bytes()).hexdigest()
            except OSError as exc:
                raise ConfigError(f"term {n}: cannot read {m['path']}: {exc.strerror or exc}") from None
    return out
