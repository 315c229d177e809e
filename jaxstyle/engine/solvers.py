"""Optimisers as (init, step) pairs in a registry, in the manner of optax's transformations.

An entry optimises one image. ``make(fun, iterations, **options)`` returns a :class:`Pair`:
``init(x, *args) -> state`` (one loss-and-gradient evaluation) and ``step(x, state, *args) ->
(x, state)`` (one iteration). Every state exposes ``value``, ``aux`` (the loss parts), ``error``
(the gradient's norm) and ``num_fun_eval``. :class:`Solver` ``vmap``-s a pair over a batch, so
step sizes, line searches and convergence are per variant and no variant reads another's values.

Adding an optimiser is one factory, one :data:`REGISTRY` line and its options declared beside it;
the config (``optimizer: {name: ..., <options>}``), the loop and the outputs take it from there.

Entries: ``lbfgs`` (jaxopt's L-BFGS update taken as a unit step, guarded by Armijo's test, or for
``mrf`` every finite step: :data:`ACCEPT`; the default), ``lbfgs-retry`` (the same, with one
shorter trial when the unit step is refused), ``jaxopt-lbfgs`` (jaxopt's L-BFGS with its own line
searches), ``optax-lbfgs`` (optax's L-BFGS with its zoom line search) and ``adam`` (optax).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import jaxopt
import optax

from ..core.errors import ConfigError

#: fun(x, *args) -> (loss, aux): the loss of one image and its auxiliary parts.
LossFn = Callable[..., tuple[jax.Array, Any]]


class Pair(NamedTuple):
    """An optimiser for one image: ``init(x, *args) -> state``, ``step(x, state, *args) -> (x, state)``.

    ``batch_step``, when given, replaces the vmapped ``step`` for a whole batch (``(xs, states,
    running, *args) -> (xs, states)``, ``args`` split into shared and per-variant by the caller).
    """

    init: Callable[..., Any]
    step: Callable[..., tuple[jax.Array, Any]]
    batch_step: Callable[..., tuple[jax.Array, Any]] | None = None


# ---- options -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Option:
    """One config key of an optimiser: its default, how a value is checked and what it means."""

    default: Any
    check: Callable[[str, Any], Any]
    meaning: str


def whole(low: int, high: int) -> Callable[[str, Any], int]:
    """A check for whole numbers from ``low`` to ``high`` (bounds keep a typo from allocating a huge
    history or compiling for hours)."""
    def check(name: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
        return value
    return check


def non_negative(name: str, value: Any) -> float:
    """A check for finite numbers of at least 0."""
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"{name} must be a non-negative number, not {value!r}")
    return float(value)


def one_of(*choices: str) -> Callable[[str, Any], str]:
    """A check for one of ``choices``."""
    def check(name: str, value: Any) -> str:
        if value not in choices:
            raise ConfigError(f"{name} must be one of {', '.join(choices)}, not {value!r}")
        return value
    return check


HISTORY = Option(20, whole(1, 1000), "L-BFGS memory: pairs of steps kept (20 ended lower than 10 after 500 "
                                     "iterations, docs/optimizer.md)")


# ---- lbfgs: the unit step with a safeguard ---------------------------------------------------------
def _jaxopt_lbfgs(fun: LossFn, iterations: int, history_size: int, linesearch: str = "backtracking",
                  unit_step: bool = True, linesearch_init: str = "max", maxls: int = 20) -> jaxopt.LBFGS:
    return jaxopt.LBFGS(fun=fun, has_aux=True, maxiter=max(iterations, 1), tol=0.0, history_size=history_size,
                        linesearch=linesearch, stepsize=1.0 if unit_step else 0.0,
                        linesearch_init=linesearch_init, maxls=maxls, max_stepsize=1.0, implicit_diff=False)


def _unit_l1_init(solver: jaxopt.LBFGS) -> Callable:
    def init(x: jax.Array, *args):
        state = solver.init_state(x, *args)
        # The first L-BFGS direction is the raw gradient, whose size depends on alpha, beta and the
        # image size; scaling it to a unit-sum step (as torch.optim.LBFGS does) makes the first
        # trial a sensible one.
        gamma = 1.0 / jnp.maximum(jnp.sum(jnp.abs(state.grad)), 1e-30)
        return state._replace(gamma=gamma.astype(state.gamma.dtype))
    return init


def _armijo(state: Any, value: jax.Array, s: jax.Array) -> jax.Array:
    """Armijo's sufficient decrease for step s from the state's point (and a finite value)."""
    return (value <= state.value + 1e-4 * jnp.vdot(state.grad, s)) & jnp.isfinite(value)


def _trial(solver: jaxopt.LBFGS, x: jax.Array, state: Any, *args):
    """The unit L-BFGS step (one evaluation) and whether it passes Armijo's test, checked on the
    value the update already computed: no extra evaluation, no ``while_loop``."""
    new_x, new_state = solver.update(x, state, *args)
    return new_x, new_state, _armijo(state, new_state.value, new_x - x)


def _stay(x: jax.Array, state: Any, new_x: jax.Array, new_state: Any, counted: Any) -> Any:
    """The state after a refused step: the old point, and what the trial taught.

    The trial's (s, y) pair is already in the history, so the next direction knows the curvature
    along s and steps shorter. If that pair has no positive curvature, drop the history (zeroed
    rho_history removes every pair from the two-loop recursion) and restart from a steepest-descent
    step a quarter as long. ``counted``: the state whose evaluation counts it keeps.
    """
    s = new_x - x
    curvature = jnp.vdot(s, new_state.grad - state.grad)
    learn = jnp.isfinite(curvature) & (curvature > 0)
    gamma = 0.25 * jnp.linalg.norm(s) / jnp.maximum(jnp.linalg.norm(state.grad), 1e-30)
    return new_state._replace(
        value=state.value, grad=state.grad, aux=state.aux, error=state.error,
        rho_history=jnp.where(learn, new_state.rho_history, 0.0).astype(state.rho_history.dtype),
        gamma=jnp.where(learn, new_state.gamma, gamma).astype(state.gamma.dtype),
        s_history=jnp.where(learn, new_state.s_history, state.s_history),
        y_history=jnp.where(learn, new_state.y_history, state.y_history),
        num_fun_eval=counted.num_fun_eval, num_grad_eval=counted.num_grad_eval)


def _pick(use: jax.Array, a, b):
    return jax.tree_util.tree_map(lambda u, v: jnp.where(use, u, v), a, b)


def lbfgs(fun: LossFn, iterations: int, history_size: int = 20, accept: str = "armijo") -> Pair:
    """L-BFGS taken as a unit step, as ``torch.optim.LBFGS`` does without a line search: one
    evaluation per iteration. ``accept``: ``"armijo"``, a step that fails Armijo's test (or is
    non-finite) is not taken (:func:`_stay`); ``"always"``, every finite step is taken, as Li and
    Wand's own L-BFGS does (:data:`ACCEPT`)."""
    if accept not in ("armijo", "always"):
        raise ValueError(f"accept must be armijo or always, not {accept!r}")
    solver = _jaxopt_lbfgs(fun, iterations, history_size)

    def step(x: jax.Array, state: Any, *args):
        new_x, new_state, ok = _trial(solver, x, state, *args)
        if accept == "always":
            ok = jnp.isfinite(new_state.value)
        stay = _stay(x, state, new_x, new_state, new_state)
        return _pick(ok, new_x, x), _pick(ok, new_state, stay)
    return Pair(_unit_l1_init(solver), step)


# ---- lbfgs-retry ----------------------------------------------------------------------------------
def _retry(fun: LossFn, history_size: int, x, state, new_x, new_state, *args):
    """One evaluation at a shorter step along a refused unit step d: the minimiser of the quadratic
    through f(x), its slope along d and f(x + d), kept within [0.1, 0.5] of d.

    Returns the point, its state (its (s, y) pair replaces the refused one in the history, so the
    next direction uses the step actually taken) and whether it passes Armijo's test.
    """
    d = new_x - x
    slope = jnp.vdot(state.grad, d)
    curvature = new_state.value - state.value - slope
    t = jnp.where(jnp.isfinite(curvature) & (curvature > 0), -slope / (2 * curvature), 0.1)
    x2 = x + jnp.clip(t, 0.1, 0.5).astype(x.dtype) * d
    (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x2, *args)
    s, y = x2 - x, grad - state.grad
    sy, yy = jnp.vdot(s, y), jnp.vdot(y, y)
    learn = jnp.isfinite(sy) & (sy > 0) & (yy > 0)
    slot = state.iter_num % history_size  # where update() put the refused pair
    retried = new_state._replace(
        value=value, grad=grad, aux=aux, error=jnp.linalg.norm(grad).astype(new_state.error.dtype),
        s_history=new_state.s_history.at[slot].set(s), y_history=new_state.y_history.at[slot].set(y),
        # A pair without positive curvature would break the two-loop recursion: rho 0 drops it.
        rho_history=new_state.rho_history.at[slot].set(
            jnp.where(learn, 1.0 / sy, 0.0).astype(new_state.rho_history.dtype)),
        gamma=jnp.where(learn, sy / yy, state.gamma).astype(state.gamma.dtype),
        num_fun_eval=new_state.num_fun_eval + 1, num_grad_eval=new_state.num_grad_eval + 1)
    return x2, retried, _armijo(state, value, s)


def lbfgs_retry(fun: LossFn, iterations: int, history_size: int = 20) -> Pair:
    """:func:`lbfgs`, but a refused unit step is followed in the same iteration by one evaluation at
    a shorter, interpolated step (:func:`_retry`). A batch pays for that evaluation only in
    iterations where some running variant needs it: under ``vmap`` a per-variant ``lax.cond``
    would evaluate every variant's retry every iteration, so the batch step decides once."""
    solver = _jaxopt_lbfgs(fun, iterations, history_size)

    def settle(x, state, new_x, new_state, ok, x2, retried, ok2):
        stay = _stay(x, state, new_x, new_state, retried)
        return _pick(ok, new_x, _pick(ok2, x2, x)), _pick(ok, new_state, _pick(ok2, retried, stay))

    def step(x: jax.Array, state: Any, *args):
        new_x, new_state, ok = _trial(solver, x, state, *args)
        x2, retried, ok2 = jax.lax.cond(
            ok, lambda: (new_x, new_state, jnp.asarray(False)),
            lambda: _retry(fun, history_size, x, state, new_x, new_state, *args))
        return settle(x, state, new_x, new_state, ok, x2, retried, ok2)

    def batch_step(xs, states, running, shared: tuple, per_variant: tuple):
        trial = jax.vmap(lambda xi, si, *pv: _trial(solver, xi, si, *shared, *pv))
        new_x, new_state, ok = trial(xs, states, *per_variant)
        retry = jax.vmap(lambda xi, si, nx, ns, *pv: _retry(fun, history_size, xi, si, nx, ns, *shared, *pv))
        x2, retried, ok2 = jax.lax.cond(
            jnp.any(~ok & running), lambda: retry(xs, states, new_x, new_state, *per_variant),
            lambda: (new_x, new_state, jnp.zeros_like(ok)))
        return jax.vmap(settle)(xs, states, new_x, new_state, ok, x2, retried, ok2)
    return Pair(_unit_l1_init(solver), step, batch_step)


# ---- jaxopt-lbfgs: jaxopt's own line searches -------------------------------------------------------
def jaxopt_lbfgs(fun: LossFn, iterations: int, history_size: int = 20, linesearch: str = "zoom",
                 linesearch_init: str = "max", maxls: int = 20) -> Pair:
    """jaxopt's L-BFGS with one of its line searches: 1.2 to 2 evaluations per iteration, and under
    ``vmap`` a batch waits each iteration for its slowest variant's search."""
    solver = _jaxopt_lbfgs(fun, iterations, history_size, linesearch, False, linesearch_init, maxls)
    return Pair(_unit_l1_init(solver), solver.update)


# ---- optax-lbfgs ----------------------------------------------------------------------------------
class OptaxState(NamedTuple):
    """optax's state plus what every entry exposes (the value and gradient at x, the loss parts)."""

    inner: Any
    value: jax.Array
    grad: jax.Array
    aux: Any
    error: jax.Array
    num_fun_eval: jax.Array


def optax_lbfgs(fun: LossFn, iterations: int, history_size: int = 20, maxls: int = 20) -> Pair:
    """optax's L-BFGS (maintained) with its zoom line search. optax's line search evaluates the
    scalar loss only, so the loss parts at the accepted point take one more forward pass."""
    del iterations
    scalar = lambda x, *args: fun(x, *args)[0]  # noqa: E731
    opt = optax.lbfgs(memory_size=history_size,
                      linesearch=optax.scale_by_zoom_linesearch(max_linesearch_steps=maxls))

    def init(x: jax.Array, *args):
        (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x, *args)
        return OptaxState(opt.init(x), value, grad, aux, jnp.linalg.norm(grad), jnp.asarray(1, jnp.int32))

    def step(x: jax.Array, state: OptaxState, *args):
        updates, inner = opt.update(state.grad, state.inner, x, value=state.value, grad=state.grad,
                                    value_fn=lambda z: scalar(z, *args))
        new_x = optax.apply_updates(x, updates)
        value, grad = optax.tree_utils.tree_get(inner, "value"), optax.tree_utils.tree_get(inner, "grad")
        _, aux = fun(new_x, *args)
        steps = optax.tree_utils.tree_get(inner, "num_linesearch_steps")
        return new_x, OptaxState(inner, value, grad, aux, jnp.linalg.norm(grad),
                                 state.num_fun_eval + steps.astype(jnp.int32))
    return Pair(init, step)


# ---- adam -----------------------------------------------------------------------------------------
class AdamState(NamedTuple):
    inner: Any
    value: jax.Array
    aux: Any
    error: jax.Array
    num_fun_eval: jax.Array


def adam(fun: LossFn, iterations: int, learning_rate: float = 0.02) -> Pair:
    """optax's Adam: one evaluation per iteration, a fixed learning rate (pixels are in [0, 1])."""
    del iterations
    opt = optax.adam(learning_rate)

    def init(x: jax.Array, *args):
        (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x, *args)
        return AdamState(opt.init(x), value, aux, optax.tree_utils.tree_norm(grad), jnp.asarray(1, jnp.int32))

    def step(x: jax.Array, state: AdamState, *args):
        (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x, *args)
        updates, inner = opt.update(grad, state.inner, x)
        return optax.apply_updates(x, updates), AdamState(inner, value, aux, optax.tree_utils.tree_norm(grad),
                                                          state.num_fun_eval + 1)
    return Pair(init, step)


# ---- the registry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """A registered optimiser: its factory and its own config keys."""

    make: Callable[..., Pair]
    options: Mapping[str, Option] = field(default_factory=dict)


#: ``lbfgs``'s ``accept: auto`` per style loss: ``always`` for a loss whose value jumps wherever a
#: nearest-neighbour match changes (``mrf``: the matched patch is chosen by cross-correlation but
#: compared by distance). From a flat start every output patch is near a tie, so almost any step
#: changes matches and raises the value: Armijo's test refused 177 of the 180 steps of the default
#: command on leuvenA x opencv-logo at 256 px, which ended at its grey start (docs/loss-lab.md). Li
#: and Wand's own L-BFGS takes every step too (its objective reports no value). Every other loss:
#: ``armijo``.
ACCEPT = {"mrf": "always"}


def resolved_options(options: Mapping[str, Any], style_loss: str | None) -> dict[str, Any]:
    """``options`` with ``accept: auto`` made explicit for ``style_loss`` (:data:`ACCEPT`)."""
    out = dict(options)
    if out.get("accept") == "auto":
        out["accept"] = ACCEPT.get(style_loss, "armijo")
    return out


LINESEARCHES = ("zoom", "backtracking", "hager-zhang")
REGISTRY: dict[str, Entry] = {
    "lbfgs": Entry(lbfgs, {"history_size": HISTORY, "accept": Option(
        "auto", one_of("auto", "armijo", "always"),
        "which unit steps are taken: `armijo` (those that lower the loss enough), `always` (every finite one), "
        "`auto`: `always` for `style_loss: mrf`, whose value jumps where a patch match changes, else `armijo`")}),
    "lbfgs-retry": Entry(lbfgs_retry, {"history_size": HISTORY}),
    "jaxopt-lbfgs": Entry(jaxopt_lbfgs, {
        "history_size": HISTORY,
        "linesearch": Option("zoom", one_of(*LINESEARCHES), "jaxopt's line search"),
        "linesearch_init": Option("max", one_of("max", "increase", "current"),
                                  "first step tried: 1 (max), jaxopt's increase, or the current one"),
        "maxls": Option(20, whole(1, 1000), "most line-search evaluations per iteration")}),
    "optax-lbfgs": Entry(optax_lbfgs, {"history_size": HISTORY,
                                       "maxls": Option(20, whole(1, 1000), "most zoom steps per iteration")}),
    "adam": Entry(adam, {"learning_rate": Option(0.02, non_negative, "Adam's step size (pixels are in [0, 1])")}),
}


# ---- a batch --------------------------------------------------------------------------------------
class BatchState(NamedTuple):
    """The state of a batch of V variants (every leaf has a leading axis V).

    x: the images ``(V, H, W, 3)``; opt: the optimiser's own state; iterations: iterations taken;
    done: converged, settled or stopped; nonfinite_at: iteration at which the loss or image became
    non-finite (-1 if never), after which the variant keeps its last finite image.

    The settling test (:func:`settled`, a clip's later frames): settle: the share of the fall since
    the start below which the last window's fall counts as settled (0: never); window: iterations
    between two tests; start_value: the objective at the start; mark_value: at the last test.
    """

    x: jax.Array
    opt: Any
    iterations: jax.Array
    done: jax.Array
    nonfinite_at: jax.Array
    settle: jax.Array
    window: jax.Array
    start_value: jax.Array
    mark_value: jax.Array


def settled(s: BatchState, value: jax.Array, iterations: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Whether each variant's objective has settled after ``iterations``, and the new marks.

    Tested every ``window`` iterations: settled where the objective fell by at most ``settle`` times
    its fall since the start over the last window. Differences cancel what does not move (pixels a
    clip holds add the same to every value), and a window spans refused steps. The first test has
    nothing to compare, so a variant runs at least two windows.
    """
    test = (s.window > 0) & (iterations % jnp.maximum(s.window, 1) == 0) & (iterations > s.iterations)
    fell = s.mark_value - value
    done = test & (iterations >= 2 * s.window) & (fell <= s.settle * (s.start_value - value))
    return done, jnp.where(test, value, s.mark_value)


#: The parts of an L-BFGS state that :func:`kept_memory` keeps and :func:`warm_memory` restores.
MEMORY = ("s_history", "y_history", "rho_history", "gamma", "iter_num")


def kept_memory(opt: Any) -> dict[str, jax.Array] | None:
    """An L-BFGS state's curvature memory (its (s, y) pairs, their rho, gamma and position), with
    the batch's leading axis; None for an optimiser without one."""
    return {k: getattr(opt, k) for k in MEMORY} if all(hasattr(opt, k) for k in MEMORY) else None


def warm_memory(opt: Any, memory: dict[str, jax.Array]) -> Any:
    """``opt`` (a freshly initialised batch state) with ``memory`` from :func:`kept_memory` (moved
    since, e.g. warped into the next frame, and zeroed where nothing may move). Each pair's rho is
    recomputed from its s.y, and a pair whose s.y is no longer positive, or that the kept state had
    dropped (rho 0), is left out of the two-loop recursion (rho 0)."""
    s, y = jnp.asarray(memory["s_history"]), jnp.asarray(memory["y_history"])
    sy = jnp.sum(s * y, axis=tuple(range(2, s.ndim)))
    keep = (jnp.asarray(memory["rho_history"]) != 0) & (sy > 0)
    rho = jnp.where(keep, 1.0 / jnp.where(keep, sy, 1.0), 0.0).astype(opt.rho_history.dtype)
    return opt._replace(s_history=s.astype(opt.s_history.dtype), y_history=y.astype(opt.y_history.dtype),
                        rho_history=rho, gamma=jnp.asarray(memory["gamma"], opt.gamma.dtype),
                        iter_num=jnp.asarray(memory["iter_num"], opt.iter_num.dtype))


@dataclass(frozen=True)
class Solver:
    """A registry entry applied to a loss, ``vmap``-ed over a batch.

    name: the :data:`REGISTRY` entry; options: its config keys as ``(key, value)`` pairs (a tuple,
    so the solver stays hashable for ``jax.jit``); tol: stop a variant once its gradient's norm is
    at most this (0: run every iteration).
    """

    fun: LossFn
    name: str = "lbfgs"
    iterations: int = 500
    tol: float = 0.0
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def pair(self) -> Pair:
        options = resolved_options(dict(self.options), getattr(self.fun, "style_loss", None))
        return REGISTRY[self.name].make(self.fun, self.iterations, **options)

    def batch_init(self, x: jax.Array, shared: tuple, per_variant: tuple) -> BatchState:
        """Initial :class:`BatchState`; ``shared`` args are the same for all variants, ``per_variant``
        args have a leading axis V like ``x``."""
        init = self.pair.init
        opt = jax.vmap(lambda xi, *pv: init(xi, *shared, *pv))(x, *per_variant)
        v = x.shape[0]
        return BatchState(x, opt, jnp.zeros(v, jnp.int32), jnp.zeros(v, bool), jnp.full(v, -1, jnp.int32),
                          jnp.zeros(v, jnp.float32), jnp.zeros(v, jnp.int32), opt.value, opt.value)

    def batch_step(self, s: BatchState, shared: tuple, per_variant: tuple) -> BatchState:
        """One iteration of every variant still running; finished variants are left unchanged."""
        pair = self.pair
        if pair.batch_step is not None:
            new_x, new_opt = pair.batch_step(s.x, s.opt, ~s.done, shared, per_variant)
        else:
            new_x, new_opt = jax.vmap(lambda xi, oi, *pv: pair.step(xi, oi, *shared, *pv))(s.x, s.opt, *per_variant)
        finite = jnp.isfinite(new_opt.value) & jnp.all(jnp.isfinite(new_x), axis=tuple(range(1, new_x.ndim)))
        accept = ~s.done & finite
        pick = lambda new, old: jnp.where(accept.reshape((-1,) + (1,) * (new.ndim - 1)), new, old)  # noqa: E731
        x = pick(new_x, s.x)
        opt = jax.tree_util.tree_map(pick, new_opt, s.opt)
        iterations = s.iterations + accept.astype(jnp.int32)
        nonfinite_at = jnp.where(~s.done & ~finite, s.iterations + 1, s.nonfinite_at)
        calm, mark = settled(s, opt.value, iterations)
        done = s.done | ~finite | (opt.error <= self.tol) | calm
        return s._replace(x=x, opt=opt, iterations=iterations, done=done, nonfinite_at=nonfinite_at, mark_value=mark)
