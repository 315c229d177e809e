"""Minimise a loss over a batch of images: jaxopt L-BFGS (the paper's choice) or optax Adam.

Each variant of a batch is optimised independently: the solver's ``init``/``update`` are written
for one image and ``jax.vmap``-ed, so line-search decisions, step sizes and convergence are per
variant and no variant reads another's values.

Iterations run in compiled chunks. How a chunk is compiled is a performance choice, settled by
measurement per backend and kept in :class:`Program` alone:

* ``"loop"``: one ``lax.fori_loop`` over the chunk (no host round trip per step);
* ``"unroll"``: ``unroll`` steps traced one after another in a single compiled call, the call
  repeated from the host (``unroll=1`` is one compiled step per call).

On XLA:CPU the loop is no slower per iteration (64 to 384 px; a third faster for one 64 px
image, a tie for batches) since the network's input-gradient convolution has its own rule
(:mod:`jaxstyle.vgg`; before, XLA:CPU ran it several times slower inside loops). CPUs use
``"unroll"``, whose peak memory was up to 13% lower; other backends ``"loop"``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import jaxopt
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .errors import ConfigError, OutputError

#: Name of the mesh axis that variants are split over.
VARIANT_AXIS = "variants"


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
    from jax.experimental import multihost_utils
    return jax.tree_util.tree_map(lambda a: np.asarray(multihost_utils.process_allgather(a, tiled=True)), tree)


def _put(tree, sharding):
    """``tree``'s arrays laid out as ``sharding`` says. Across several processes every process
    holds the same host values and contributes the pieces its own devices need."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)
    return jax.tree_util.tree_map(
        lambda a: jax.make_array_from_callback(np.shape(a), sharding, lambda idx, a=np.asarray(a): a[idx]), tree)


def state_leaves(state) -> list[np.ndarray]:
    """A (batch) solver state as a list of host arrays, e.g. for a checkpoint."""
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(to_host(state))]


def restore_state(leaves: list[np.ndarray], like):
    """``leaves`` (from :func:`state_leaves`) in the structure of ``like``, a freshly initialised
    state of the same run; a mismatch in number, shape or type is refused with one line."""
    ref, treedef = jax.tree_util.tree_flatten(like)
    if len(ref) != len(leaves) or any(
            np.shape(a) != np.shape(b) or np.asarray(a).dtype != b.dtype for a, b in zip(ref, leaves)):
        raise OutputError("the checkpoint does not match this run's shapes; start it afresh")
    return jax.tree_util.tree_unflatten(treedef, [jnp.asarray(b) for b in leaves])


#: fun(x, *args) -> (loss, aux): the loss of one image and its auxiliary parts.
LossFn = Callable[..., tuple[jax.Array, Any]]


@dataclass(frozen=True)
class SolverConfig:
    """Optimiser settings (the ``optimizer`` section of a config).

    name: ``"lbfgs"`` (jaxopt.LBFGS) or ``"adam"`` (optax.adam).
    iterations: iterations per variant.
    history_size: L-BFGS memory (pairs of steps kept); 20 ends lower than 10 after 500 iterations.
    tol: stop a variant once its gradient's L2 norm is at most this (0: run every iteration).
    linesearch: ``"none"`` (the L-BFGS step taken as it is, after a first step scaled to unit
      L1 size, like ``torch.optim.LBFGS`` without a line search: one evaluation per iteration; a
      step failing Armijo's test is not taken), ``"retry"`` (the same, but a failed step is
      followed in the same iteration by one evaluation at a shorter, interpolated step) or a
      jaxopt line search, ``"backtracking"`` (shrinks the step until strong Wolfe holds),
      ``"zoom"`` or ``"hager-zhang"`` (1.2 to 2 evaluations per iteration, and under ``vmap``
      a batch waits each iteration for its slowest variant's search).
    linesearch_init: first step tried by the line search: ``"max"`` (1, the L-BFGS step),
      ``"increase"`` (jaxopt's default) or ``"current"``.
    maxls: most line-search evaluations per iteration.
    learning_rate: Adam's step size (pixels are in [0, 1]).
    strategy: ``"auto"``, ``"loop"`` or ``"unroll"`` (see the module docstring).
    unroll: steps per compiled call with ``"unroll"``.
    """

    name: str = "lbfgs"
    iterations: int = 500
    history_size: int = 20
    tol: float = 0.0
    linesearch: str = "none"
    linesearch_init: str = "max"
    maxls: int = 20
    learning_rate: float = 0.02
    strategy: str = "auto"
    unroll: int = 1

    def validate(self) -> "SolverConfig":
        if self.name not in ("lbfgs", "adam"):
            raise ConfigError(f"optimizer.name must be 'lbfgs' or 'adam', not '{self.name}'")
        if self.linesearch not in ("none", "retry", "backtracking", "zoom", "hager-zhang"):
            raise ConfigError("optimizer.linesearch must be 'none', 'retry', 'backtracking', 'zoom' or "
                              f"'hager-zhang', not '{self.linesearch}'")
        if self.linesearch_init not in ("max", "increase", "current"):
            raise ConfigError("optimizer.linesearch_init must be 'max', 'increase' or 'current'")
        if self.strategy not in ("auto", "loop", "unroll"):
            raise ConfigError(f"optimizer.strategy must be 'auto', 'loop' or 'unroll', not '{self.strategy}'")
        # Upper bounds keep a typo from allocating a huge history or compiling for hours.
        for key, low, high in (("iterations", 0, 10**7), ("history_size", 1, 1000), ("maxls", 1, 1000),
                               ("unroll", 1, 100)):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ConfigError(f"optimizer.{key} must be a whole number from {low} to {high}, not {value!r}")
        for key in ("tol", "learning_rate"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or value < 0:
                raise ConfigError(f"optimizer.{key} must be a non-negative number, not {value!r}")
        return self

    def resolved_strategy(self, backend: str | None = None) -> str:
        if self.strategy != "auto":
            return self.strategy
        return "unroll" if (backend or jax.default_backend()) == "cpu" else "loop"


class AdamState(NamedTuple):
    inner: Any
    value: jax.Array
    aux: Any
    error: jax.Array
    num_fun_eval: jax.Array


class BatchState(NamedTuple):
    """The state of a batch of V variants (every leaf has a leading axis V).

    x: the images ``(V, H, W, 3)``; opt: the solver's own state; iterations: iterations taken;
    done: converged or stopped; nonfinite_at: iteration at which the loss or image became
    non-finite (-1 if never), after which the variant keeps its last finite image.
    """

    x: jax.Array
    opt: Any
    iterations: jax.Array
    done: jax.Array
    nonfinite_at: jax.Array


@dataclass(frozen=True)
class Solver:
    """Per-image ``init``/``step`` of the chosen optimiser, vmapped over a batch by :meth:`batch_*`."""

    fun: LossFn
    config: SolverConfig

    def _lbfgs(self) -> jaxopt.LBFGS:
        c = self.config
        return jaxopt.LBFGS(fun=self.fun, has_aux=True, maxiter=max(c.iterations, 1), tol=c.tol,
                            history_size=c.history_size,
                            linesearch="backtracking" if self._unit_step() else c.linesearch,
                            stepsize=1.0 if self._unit_step() else 0.0,
                            linesearch_init=c.linesearch_init, maxls=c.maxls, max_stepsize=1.0,
                            implicit_diff=False)

    def init(self, x: jax.Array, *args) -> Any:
        """Solver state of one image (one loss-and-gradient evaluation)."""
        if self.config.name == "adam":
            (value, aux), grad = jax.value_and_grad(self.fun, has_aux=True)(x, *args)
            inner = optax.adam(self.config.learning_rate).init(x)
            return AdamState(inner, value, aux, optax.tree_utils.tree_norm(grad), jnp.asarray(1, jnp.int32))
        state = self._lbfgs().init_state(x, *args)
        # The first L-BFGS direction is the raw gradient, whose size depends on alpha, beta and the
        # image size; scaling it to a unit-sum step (as torch.optim.LBFGS does) lets the line search
        # accept its first trial instead of backtracking dozens of times.
        gamma = 1.0 / jnp.maximum(jnp.sum(jnp.abs(state.grad)), 1e-30)
        return state._replace(gamma=gamma.astype(state.gamma.dtype))

    def step(self, x: jax.Array, state: Any, *args) -> tuple[jax.Array, Any]:
        """One iteration for one image."""
        if self.config.name == "adam":
            (value, aux), grad = jax.value_and_grad(self.fun, has_aux=True)(x, *args)
            updates, inner = optax.adam(self.config.learning_rate).update(grad, state.inner, x)
            return optax.apply_updates(x, updates), AdamState(
                inner, value, aux, optax.tree_utils.tree_norm(grad), state.num_fun_eval + 1)
        if not self._unit_step():
            return self._lbfgs().update(x, state, *args)
        new_x, new_state, ok = self._trial(x, state, *args)
        retried = (new_x, new_state, jnp.asarray(False))
        if self.config.linesearch == "retry":
            retried = jax.lax.cond(ok, lambda: retried, lambda: self._retry(x, state, new_x, new_state, *args))
        return self._settle(x, state, new_x, new_state, ok, *retried)

    def _unit_step(self) -> bool:
        return self.config.linesearch in ("none", "retry")

    def _trial(self, x: jax.Array, state: Any, *args) -> tuple[jax.Array, Any, jax.Array]:
        """The unit L-BFGS step (one evaluation) and whether it passes Armijo's test.

        Without a line search a unit step can overshoot. Armijo's sufficient decrease is checked on
        the value the update already computed: no extra evaluation, no ``while_loop``.
        """
        new_x, new_state = self._lbfgs().update(x, state, *args)
        ok = _armijo(state, new_state.value, new_x - x)
        return new_x, new_state, ok

    def _retry(self, x: jax.Array, state: Any, new_x: jax.Array, new_state: Any, *args):
        """One evaluation at a shorter step along a refused unit step d: the minimiser of the
        quadratic through f(x), its slope along d and f(x + d), kept within [0.1, 0.5] of d.

        Returns the point, its solver state (its (s, y) pair replaces the refused one in the
        history, so the next direction uses the step actually taken) and whether it passes
        Armijo's test.
        """
        d = new_x - x
        slope = jnp.vdot(state.grad, d)
        curvature = new_state.value - state.value - slope
        t = jnp.where(jnp.isfinite(curvature) & (curvature > 0), -slope / (2 * curvature), 0.1)
        t = jnp.clip(t, 0.1, 0.5).astype(x.dtype)
        x2 = x + t * d
        (value, aux), grad = jax.value_and_grad(self.fun, has_aux=True)(x2, *args)
        s, y = x2 - x, grad - state.grad
        sy, yy = jnp.vdot(s, y), jnp.vdot(y, y)
        learn = jnp.isfinite(sy) & (sy > 0) & (yy > 0)
        slot = state.iter_num % self.config.history_size  # where update() put the refused pair
        rho = new_state.rho_history.dtype
        retried = new_state._replace(
            value=value, grad=grad, aux=aux, error=jnp.linalg.norm(grad).astype(new_state.error.dtype),
            s_history=new_state.s_history.at[slot].set(s), y_history=new_state.y_history.at[slot].set(y),
            # A pair without positive curvature would break the two-loop recursion: rho 0 drops it.
            rho_history=new_state.rho_history.at[slot].set(jnp.where(learn, 1.0 / sy, 0.0).astype(rho)),
            gamma=jnp.where(learn, sy / yy, state.gamma).astype(state.gamma.dtype),
            num_fun_eval=new_state.num_fun_eval + 1, num_grad_eval=new_state.num_grad_eval + 1)
        return x2, retried, _armijo(state, value, s)

    def _settle(self, x, state, new_x, new_state, ok, x2, retried, ok2):
        """The unit step if it passed; else the retry if there was one and it passed; else stay.

        Staying keeps what the trial taught: its (s, y) pair is already in the history, so the
        next direction knows the curvature along s and steps shorter. If that pair has no positive
        curvature, drop the history (zeroed rho_history removes every pair from the two-loop
        recursion) and restart from a steepest-descent step a quarter as long.
        """
        s = new_x - x
        curvature = jnp.vdot(s, new_state.grad - state.grad)
        learn = jnp.isfinite(curvature) & (curvature > 0)
        gamma = 0.25 * jnp.linalg.norm(s) / jnp.maximum(jnp.linalg.norm(state.grad), 1e-30)
        stay = new_state._replace(
            value=state.value, grad=state.grad, aux=state.aux, error=state.error,
            rho_history=jnp.where(learn, new_state.rho_history, 0.0).astype(state.rho_history.dtype),
            gamma=jnp.where(learn, new_state.gamma, gamma).astype(state.gamma.dtype),
            s_history=jnp.where(learn, new_state.s_history, state.s_history),
            y_history=jnp.where(learn, new_state.y_history, state.y_history),
            num_fun_eval=retried.num_fun_eval, num_grad_eval=retried.num_grad_eval)
        pick = lambda use, a, b: jax.tree_util.tree_map(lambda u, v: jnp.where(use, u, v), a, b)
        fallback_x, fallback = pick(ok2, x2, x), pick(ok2, retried, stay)
        return pick(ok, new_x, fallback_x), pick(ok, new_state, fallback)

    # ---- batches -----------------------------------------------------------------------------
    def batch_init(self, x: jax.Array, shared: tuple, per_variant: tuple) -> BatchState:
        """Initial :class:`BatchState`; ``shared`` args are the same for all variants, ``per_variant``
        args have a leading axis V like ``x``."""
        opt = jax.vmap(lambda xi, *pv: self.init(xi, *shared, *pv))(x, *per_variant)
        v = x.shape[0]
        return BatchState(x, opt, jnp.zeros(v, jnp.int32), jnp.zeros(v, bool), jnp.full(v, -1, jnp.int32))

    def batch_step(self, s: BatchState, shared: tuple, per_variant: tuple) -> BatchState:
        """One iteration of every variant still running; finished variants are left unchanged."""
        if self.config.name == "lbfgs" and self.config.linesearch == "retry":
            new_x, new_opt = self._batch_retry_step(s, shared, per_variant)
        else:
            new_x, new_opt = jax.vmap(lambda xi, oi, *pv: self.step(xi, oi, *shared, *pv))(s.x, s.opt, *per_variant)
        value = loss_of(new_opt)
        finite = jnp.isfinite(value) & jnp.all(jnp.isfinite(new_x), axis=tuple(range(1, new_x.ndim)))
        accept = ~s.done & finite
        pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)
        x = pick(new_x, s.x)
        opt = jax.tree_util.tree_map(pick, new_opt, s.opt)
        iterations = s.iterations + accept.astype(jnp.int32)
        nonfinite_at = jnp.where(~s.done & ~finite, s.iterations + 1, s.nonfinite_at)
        converged = error_of(opt) <= self.config.tol
        done = s.done | ~finite | converged
        return BatchState(x, opt, iterations, done, nonfinite_at)

    def _batch_retry_step(self, s: BatchState, shared: tuple, per_variant: tuple):
        """``step`` with ``"retry"`` for a batch. Under ``vmap`` a per-variant ``lax.cond`` would
        evaluate every variant's retry every iteration; here the batch pays for the retry
        evaluation only in iterations where some running variant's unit step failed."""
        trial = jax.vmap(lambda xi, oi, *pv: self._trial(xi, oi, *shared, *pv))
        new_x, new_opt, ok = trial(s.x, s.opt, *per_variant)
        retry = jax.vmap(lambda xi, oi, nx, no, *pv: self._retry(xi, oi, nx, no, *shared, *pv))
        x2, retried, ok2 = jax.lax.cond(
            jnp.any(~ok & ~s.done), lambda: retry(s.x, s.opt, new_x, new_opt, *per_variant),
            lambda: (new_x, new_opt, jnp.zeros_like(ok)))
        return jax.vmap(self._settle)(s.x, s.opt, new_x, new_opt, ok, x2, retried, ok2)


def _armijo(state: Any, value: jax.Array, s: jax.Array) -> jax.Array:
    """Armijo's sufficient decrease for step s from the state's point (and a finite value)."""
    return (value <= state.value + 1e-4 * jnp.vdot(state.grad, s)) & jnp.isfinite(value)


def loss_of(opt: Any) -> jax.Array:
    """Current loss of a (batched) solver state."""
    return opt.value


def aux_of(opt: Any) -> Any:
    """Current auxiliary output (the loss parts) of a solver state."""
    return opt.aux


def error_of(opt: Any) -> jax.Array:
    """Gradient norm of a solver state (L-BFGS: at the current image)."""
    return opt.error


def evals_of(opt: Any) -> jax.Array:
    """Loss-and-gradient evaluations so far, initialisation included."""
    return getattr(opt, "num_fun_eval")


class Program:
    """The compiled programs of a run: batch initialisation and ``advance`` by ``n`` iterations.

    With ``"loop"`` one compiled call runs all ``n`` steps in a ``lax.fori_loop``; with
    ``"unroll"`` each compiled call runs up to ``unroll`` steps (steps past ``n`` are skipped with
    ``lax.cond``) and the host repeats it. Either way each program is compiled once, ahead of time
    by :meth:`compile`, whatever ``n`` and however many variants the batch holds.
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

    def _jit(self, fun, n_args: int):
        if self.mesh is None:
            return jax.jit(fun)
        # Variants are split over the mesh's "variants" axis, everything shared is replicated: the
        # vmapped program then runs without communication, each device on its own variants.
        split = NamedSharding(self.mesh, PartitionSpec(VARIANT_AXIS))
        same = NamedSharding(self.mesh, PartitionSpec())
        ins = (split, same, split, same)[:n_args]
        return jax.jit(fun, in_shardings=ins, out_shardings=split)

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
        self._advance = self._jit(self._block, 4).lower(state, shared, per_variant, jnp.int32(0)).compile()
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
