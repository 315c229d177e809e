"""The compiled programs of a run: a batch's initialisation and ``advance`` by n iterations.

How a chunk of iterations is compiled is a performance choice, settled by measurement per backend
(docs/performance.md) and kept here alone:

* ``"loop"``: one ``lax.fori_loop`` over the chunk (no host round trip per step);
* ``"unroll"``: ``unroll`` steps traced one after another in one compiled call, the call repeated
  from the host (``unroll=1`` is one compiled step per call).

CPUs use ``"unroll"``, whose peak memory was lower; other backends ``"loop"``. With several devices
the variants are split over a 1-D mesh and everything shared is replicated, so the devices never
communicate.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ..core.errors import ConfigError, OutputError
from .solvers import BatchState, Solver

#: Name of the mesh axis that variants are split over.
VARIANT_AXIS = "variants"
STRATEGIES = ("auto", "loop", "unroll")


def resolved_strategy(strategy: str, backend: str | None = None) -> str:
    """``"auto"`` -> ``"unroll"`` on CPU, ``"loop"`` elsewhere."""
    if strategy != "auto":
        return strategy
    return "unroll" if (backend or jax.default_backend()) == "cpu" else "loop"


def variant_mesh(devices=None) -> Mesh | None:
    """A 1-D mesh over every device (or ``devices``), or None when there is only one.

    ``jax.devices()`` lists the devices of every process: under ``jax.distributed.initialize``
    (several hosts, one process each) the variants are split over all hosts' devices.
    """
    devices = list(devices if devices is not None else jax.devices())
    return Mesh(np.array(devices), (VARIANT_AXIS,)) if len(devices) > 1 else None


def to_host(tree):
    """NumPy copies of the arrays in ``tree``, whole on every process (gathered across hosts when
    a multi-host mesh split them)."""
    if jax.process_count() == 1:
        return jax.device_get(tree)
    from jax.experimental import multihost_utils  # only multi-host runs need it
    return jax.tree_util.tree_map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)


def _put(tree, sharding):
    """``tree``'s arrays laid out as ``sharding`` says. Across several processes every process
    holds the same host values and contributes the pieces its own devices need."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx, a=np.asarray(a): a[idx]), tree)


def state_leaves(state) -> list[np.ndarray]:
    """A batch state as a list of host arrays, e.g. for a checkpoint."""
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(to_host(state))]


def restore_state(leaves: list[np.ndarray], like):
    """``leaves`` (from :func:`state_leaves`) in the structure of ``like``, a freshly initialised
    state of the same run; a mismatch in number, shape or type is refused with one line."""
    ref, treedef = jax.tree_util.tree_flatten(like)
    if len(ref) != len(leaves) or any(
            np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype for a, b in zip(ref, leaves)):
        raise OutputError("the checkpoint does not match this run's shapes; start it afresh")
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(b) for b in leaves])


class Program:
    """Batch initialisation and ``advance`` by ``n`` iterations, each compiled once, ahead of time
    by :meth:`compile`, whatever ``n`` and however many variants the batch holds.

    With ``"loop"`` one compiled call runs all ``n`` steps in a ``lax.fori_loop``; with ``"unroll"``
    each compiled call runs up to ``unroll`` steps (steps past ``n`` are skipped with ``lax.cond``)
    and the host repeats it.
    """

    def __init__(self, solver: Solver, strategy: str, unroll: int = 1, mesh: Mesh | None = None):
        if strategy not in ("loop", "unroll"):
            raise ConfigError(f"unknown strategy '{strategy}'")
        self.solver, self.strategy, self.unroll, self.mesh = solver, strategy, unroll, mesh
        self._init = None
        self._advance = None

    def _block(self, s, shared, per_variant, n):
        step = self.solver.batch_step
        if self.strategy == "loop":
            return jax.lax.fori_loop(0, n, lambda i, c: step(c, shared, per_variant), s)
        for i in range(self.unroll):
            s = step(s, shared, per_variant) if self.unroll == 1 else jax.lax.cond(
                i < n, lambda c: step(c, shared, per_variant), lambda c: c, s)
        return s

    def _jit(self, fun, n_args: int, donate: tuple[int, ...] = ()):
        if self.mesh is None:
            return jax.jit(fun, donate_argnums=donate)
        split = NamedSharding(self.mesh, PartitionSpec(VARIANT_AXIS))
        same = NamedSharding(self.mesh, PartitionSpec())
        ins = (split, same, split, same)[:n_args]
        return jax.jit(fun, in_shardings=ins, out_shardings=split, donate_argnums=donate)

    def place(self, x0: jax.Array, shared: tuple, per_variant: tuple) -> tuple:
        """Put the inputs where the compiled programs expect them (a no-op without a mesh)."""
        if self.mesh is None:
            return x0, shared, per_variant
        split = NamedSharding(self.mesh, PartitionSpec(VARIANT_AXIS))
        same = NamedSharding(self.mesh, PartitionSpec())
        return _put(x0, split), _put(shared, same), _put(per_variant, split)

    def place_state(self, state: BatchState) -> BatchState:
        """A state read back from the host (a checkpoint), split over the mesh like the programs' own."""
        if self.mesh is None:
            return state
        return _put(state, NamedSharding(self.mesh, PartitionSpec(VARIANT_AXIS)))

    def compile(self, x0: jax.Array, shared: tuple, per_variant: tuple) -> float:
        """Compile both programs for these shapes; returns the seconds spent."""
        t0 = time.perf_counter()
        self._init = self._jit(self.solver.batch_init, 3).lower(x0, shared, per_variant).compile()
        state = jax.eval_shape(self.solver.batch_init, x0, shared, per_variant)
        # The state is donated: the step writes the new image and L-BFGS history into the old
        # buffers instead of allocating and copying some 2m + 2 images' worth every call.
        self._advance = self._jit(self._block, 4, donate=(0,)).lower(
            state, shared, per_variant, jnp.int32(0)).compile()
        return time.perf_counter() - t0

    def init(self, x0: jax.Array, shared: tuple, per_variant: tuple) -> BatchState:
        return self._init(x0, shared, per_variant)

    def advance(self, s: BatchState, shared: tuple, per_variant: tuple, n: int) -> BatchState:
        """Run ``n`` more iterations of every variant that has not finished."""
        if self.strategy == "loop":
            return self._advance(s, shared, per_variant, jnp.int32(n))
        for start in range(0, int(n), self.unroll):
            s = self._advance(s, shared, per_variant, jnp.int32(min(self.unroll, int(n) - start)))
        return s
