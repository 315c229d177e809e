"""Where an interrupted run stands, saved so that a resumed run ends where the uninterrupted run ends.

One layout for every schedule (a direct run is a plan of one stage and one tile): the cursor
(which schedule wrote it, the program of a sweep over style losses, a clip's frame and pass, then
the stage, pass, tile and iterations done in that tile), the batch as that tile found it, the
solver state of the tile in progress, the last stage's starting losses once known, the counters of
finished tiles and the report's stages so far, the finished programs' arrays and reports, a slot
for the state a schedule owns (a clip's finished frames), and the config it was written for.
Files of other versions are refused with one line.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.errors import OutputError
from ..core.fileio import atomic_write
from .config import added_keys, with_added_video_keys

#: Settings that may differ between an interrupted run and its resumption.
#: (``output``: the folder may have moved; the checkpoint read is the one in it.)
RESUMABLE_CHANGES = ("overwrite", "print_every", "save_every", "compile_cache", "output")
FORMAT = 4
FILENAME = "checkpoint.npz"


@dataclass(frozen=True)
class Cursor:
    """A position in a run: which schedule (``image`` or ``clip``), the program of a sweep over
    style losses, a clip's place, then the stage, pass and tile indices in the plan of the run in
    progress and the iterations the tile has run. Ordered, so a loop can skip everything before it."""

    stage: int = 0
    pass_index: int = 0
    tile: int = 0
    done: int = 0
    #: A clip's place (:mod:`jaxstyle.driver.clip`): the frame (sequential) or the chunk's first frame
    #: (multipass), and the pass over the chunk; the fields above are then inside that run.
    frame: int = 0
    video_pass: int = 0
    schedule: str = "image"
    #: A sweep over style losses runs one program per choice (:func:`jaxstyle.driver.job.run_groups`).
    program: int = 0

    @property
    def clip(self) -> bool:
        return self.schedule == "clip"

    @property
    def where(self) -> str:
        head = f"program {self.program + 1}, " if self.program else ""
        head += f"frame {self.frame + 1}, video pass {self.video_pass + 1}, " if self.clip else ""
        return head + f"stage {self.stage + 1}, pass {self.pass_index + 1}, tile {self.tile + 1}" + (
            f", iteration {self.done}" if self.done else "")

    def before(self, stage: int, pass_index: int = 0, tile: int = 0) -> bool:
        """Whether (stage, pass, tile) comes before this cursor (and so was finished)."""
        return (stage, pass_index, tile) < (self.stage, self.pass_index, self.tile)

    def at(self, stage: int, pass_index: int, tile: int) -> bool:
        return (stage, pass_index, tile) == (self.stage, self.pass_index, self.tile)


@dataclass
class Checkpoint:
    """An interrupted run: see the module docstring. ``images`` is ``(V, H, W, 3)`` at the cursor's
    stage; ``state`` the leaves of the tile's solver state (None before its first iteration)."""

    cursor: Cursor
    images: np.ndarray
    run_s: float
    stages: list
    iterations: np.ndarray
    evaluations: np.ndarray
    state: list[np.ndarray] | None = None
    initial: dict[str, np.ndarray] | None = None
    history: list = field(default_factory=list)
    #: The finished programs of a sweep over style losses: their arrays (images ``(V_done, H, W, 3)``
    #: or a clip's frames ``(V_done, F, H, W, 3)``) and reports.
    finished: np.ndarray | None = None
    finished_reports: list = field(default_factory=list)
    #: The state a schedule owns around the run in progress (a clip's finished frames:
    #: :class:`jaxstyle.driver.clip.ClipState`): arrays, and what JSON keeps.
    owned_arrays: dict[str, np.ndarray] = field(default_factory=dict)
    owned_meta: dict = field(default_factory=dict)
    #: ``weighting: auto``'s factors measured so far: ``{"HxW": {group key: factor}}``
    #: (:mod:`jaxstyle.engine.balance`), so the resumed run optimises the same objective.
    factors: dict = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.cursor.where

    def save(self, path: Path, config: dict) -> Path:
        meta = json.dumps({"format": FORMAT, "cursor": dataclasses.asdict(self.cursor),
                           "run_s": self.run_s, "stages": self.stages, "history": self.history,
                           "state_leaves": None if self.state is None else len(self.state), "config": config,
                           "finished_reports": self.finished_reports, "owned_meta": self.owned_meta,
                           "factors": self.factors})
        arrays = {f"state{i}": a for i, a in enumerate(self.state or [])}
        arrays.update({f"owned_{k}": v for k, v in self.owned_arrays.items()})
        if self.finished is not None:
            arrays["finished"] = self.finished
        arrays.update({f"initial_{k}": v for k, v in (self.initial or {}).items()})

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, meta=np.frombuffer(meta.encode(), np.uint8), images=self.images,
                         iterations=self.iterations, evaluations=self.evaluations, **arrays)
        return atomic_write(path, write)

    @classmethod
    def load(cls, path: Path, config: dict) -> "Checkpoint":
        meta, z = read(path, config)
        n = meta["state_leaves"]
        return cls(Cursor(**meta["cursor"]), z["images"], float(meta["run_s"]), list(meta["stages"]),
                   z["iterations"], z["evaluations"], None if n is None else [z[f"state{i}"] for i in range(n)],
                   {k[len("initial_"):]: v for k, v in z.items() if k.startswith("initial_")} or None,
                   list(meta["history"]), z.get("finished"), list(meta["finished_reports"]),
                   {k[len("owned_"):]: v for k, v in z.items() if k.startswith("owned_")}, meta["owned_meta"],
                   meta.get("factors", {}))


def read_meta(path: Path, arrays: bool = True) -> tuple[dict, dict[str, np.ndarray]]:
    """A checkpoint's metadata (its format checked) and, with ``arrays``, its arrays."""
    if not path.is_file():
        raise OutputError(f"nothing to resume: {path} not found")
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(bytes(z["meta"]).decode())
            found = {k: z[k] for k in z.files if k != "meta"} if arrays else {}
    except (OSError, ValueError, KeyError) as exc:
        raise OutputError(f"cannot read checkpoint {path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("config"), dict):
        raise OutputError(f"{path} was written by another version of jaxstyle and cannot be resumed; "
                          "start the run afresh")
    return meta, found


def saved_config(path: Path) -> dict:
    """The config a checkpoint was written for (``jaxstyle --resume DIR``), as a config file would
    give it."""
    saved = with_added_video_keys(read_meta(path, arrays=False)[0]["config"])
    return {k: v for k, v in saved.items() if k != "term_files"}


def changes(saved: dict, now: dict) -> list[str]:
    """``key: then -> now`` for each key (dotted inside a mapping) whose value differs."""
    out = []
    for k in sorted(set(saved) | set(now)):
        a, b = saved.get(k), now.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{k}.{line}" for line in changes(a, b)]
        elif a != b:
            out.append(f"{k}: {json.dumps(a)} then, {json.dumps(b)} now")
    return out


def read(path: Path, config: dict) -> tuple[dict, dict[str, np.ndarray]]:
    """The metadata and arrays of a checkpoint, after checking its format and that it was written
    for ``config`` (up to :data:`RESUMABLE_CHANGES`)."""
    meta, arrays = read_meta(path)
    saved = {k: v for k, v in with_added_video_keys(meta["config"]).items() if k not in RESUMABLE_CHANGES}
    # Round-trip through JSON so tuples and lists compare as they were saved. A key added since the
    # checkpoint was written, at its default, is the behaviour the checkpoint's run had.
    added = json.loads(json.dumps(added_keys()))
    now = json.loads(json.dumps({k: v for k, v in config.items() if k not in RESUMABLE_CHANGES}))
    now = {k: v for k, v in now.items() if k in saved or k not in added or added[k] != v}
    if now != saved:
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed == ["term_files"]:
            raise OutputError("cannot resume: a term file changed since the checkpoint "
                              f"({', '.join(k for k in now['term_files'] if now['term_files'][k] != saved.get('term_files', {}).get(k))})")
        raise OutputError(f"cannot resume: the config changed since the checkpoint ({'; '.join(changes(saved, now))}); "
                          "resume with the config it started with, or start afresh")
    return meta, arrays
