"""The one chunk loop: advance a batch in compiled chunks, report after each, stop on request.

Every kind of run (one stage or many, whole images or tiles) drives its optimisation through
:func:`solve`. Chunks end at the progress and save intervals and at the end; between chunks the
host reports, saves and asks whether to stop, never inside the compiled loop.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .program import Program, to_host
from .solvers import BatchState


def chunk_ends(iterations: int, *every: int) -> list[int]:
    """Iteration counts at which the host reports or saves (and the run ends)."""
    marks = {iterations}
    for e in every:
        if e:
            marks.update(range(e, iterations, e))
    return sorted(m for m in marks if m > 0)


def solve(program: Program, state: BatchState, shared: tuple, per_variant: tuple, iterations: int, done: int,
          every: tuple[int, ...], should_stop: Callable[[], bool],
          on_chunk: Callable[[BatchState, int], None]) -> tuple[BatchState, int, bool]:
    """Advance ``state`` from ``done`` to ``iterations`` in chunks ending at :func:`chunk_ends`.

    Before every chunk but the first, ``should_stop`` is asked; after each, ``on_chunk(state, end)``
    is called. Ends early once every variant is done. Returns the state, the iterations done and
    whether it stopped on request.
    """
    start = done
    for end in chunk_ends(iterations, *every):
        if end <= done:
            continue
        if done > start and should_stop():
            return state, done, True
        state = program.advance(state, shared, per_variant, end - done)
        done = end
        on_chunk(state, end)
        if bool(np.all(to_host(state.done))):
            break
    return state, done, False
