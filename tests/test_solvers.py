"""The optimisers' registry entries on hand-made functions whose steps are known: the unit-step
L-BFGS safeguard and its retry, optax's L-BFGS, and adding an entry."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.engine.solvers import REGISTRY, Pair, Solver
from jaxstyle.engine.progress import RunHooks


def bowl(x):
    """f(x) = 1/2 |x|^2: minimum 0 at the origin."""
    return 0.5 * jnp.sum(x**2), ()


def bowl_with_wall(x):
    """The bowl plus a wall around the origin: 100 * sum(relu(1/2 - |x_i|))."""
    return 0.5 * jnp.sum(x**2) + 100.0 * jnp.sum(jax.nn.relu(0.5 - jnp.abs(x))), ()


def overshooting_state(solver: Pair, x0: jax.Array, gamma: float):
    # With an empty history the L-BFGS direction is -gamma * gradient; for the bowl (gradient x0)
    # gamma = 4 sends x0 to -3 x0, where the loss is 9 times higher: Armijo's test fails.
    return solver.init(x0)._replace(gamma=jnp.float32(gamma))


def overshoot(fun, name: str):
    """(entry, x0 = ones(5), the overshooting start state, and the first step's (x, state))."""
    solver = REGISTRY[name].make(fun, 500, history_size=20)
    x0 = jnp.ones(5, jnp.float32)
    state = overshooting_state(solver, x0, 4.0)
    return solver, x0, state, solver.step(x0, state)


def test_failed_unit_step_is_not_taken_without_retry():
    solver, x0, state, (x, new) = overshoot(bowl, "lbfgs")
    np.testing.assert_array_equal(x, x0)
    assert float(new.value) == 2.5 and int(new.num_fun_eval) == int(state.num_fun_eval) + 1
    # The refused pair (s = -4 x0, y = -4 x0) has positive curvature and stays in the history,
    # so the next direction is the secant step: gamma = s.y / y.y = 1, straight to the minimum.
    assert float(new.gamma) == pytest.approx(1.0)
    x, new = solver.step(x, new)
    np.testing.assert_allclose(x, 0.0, atol=1e-6)


def cliff(x):
    """1/2 x^2 per coordinate, but 20 + x beyond x < -2: a step that lands there is refused, and its
    pair has no positive curvature (the gradient is 1 on both sides)."""
    return jnp.sum(jnp.where(x < -2.0, 20.0 + x, 0.5 * x**2)), ()


def test_a_refused_step_without_curvature_leaves_the_history_as_it_was():
    """A refused step whose pair has no positive curvature must not leave that pair behind."""
    solver = REGISTRY["lbfgs"].make(cliff, 500, history_size=3)
    x0 = jnp.ones(5, jnp.float32)
    x, state = x0, solver.init(x0)
    x, state = solver.step(x, state)  # from gamma = 1/5 (unit-sum first step): taken
    # Without memory and with gamma 4 the next step goes from 0.8 to -2.4, over the cliff.
    before = state._replace(gamma=jnp.float32(4.0), rho_history=jnp.zeros_like(state.rho_history))
    x1, after = solver.step(x, before)
    np.testing.assert_array_equal(x1, x)
    for field in ("s_history", "y_history"):  # every slot, the one the refused step wrote too
        np.testing.assert_array_equal(getattr(after, field), getattr(before, field))
    assert float(jnp.max(jnp.abs(after.rho_history))) == 0.0  # the memory is dropped


def step_on(x):
    """1/2 |x|^2 plus a step of 10 where the first coordinate is below 1/2: a value that jumps, as
    ``mrf``'s does where a patch match changes, with the bowl's gradient everywhere."""
    return 0.5 * jnp.sum(x**2) + 10.0 * (x[0] < 0.5), ()


def test_accept_always_takes_the_step_that_armijo_refuses():
    # From x0 = ones(5) the first direction is -x0 / 5 (unit-sum): x lands at 0.8 everywhere, past
    # no step. With gamma 1 the next trial goes to the origin, where the value jumps to 10 > 2.5.
    x0 = jnp.ones(5, jnp.float32)
    ends = {}
    for accept in ("armijo", "always"):
        solver = REGISTRY["lbfgs"].make(step_on, 500, history_size=20, accept=accept)
        state = solver.init(x0)._replace(gamma=jnp.float32(1.0))
        ends[accept] = solver.step(x0, state)
    np.testing.assert_array_equal(ends["armijo"][0], x0)
    np.testing.assert_allclose(ends["always"][0], 0.0, atol=1e-7)
    assert float(ends["always"][1].value) == 10.0
    # A non-finite value is never taken.
    solver = REGISTRY["lbfgs"].make(lambda x: (jnp.sum(x**2) + jnp.where(x[0] < 0.5, jnp.inf, 0.0), ()),
                                    500, history_size=20, accept="always")
    x, _ = solver.step(x0, solver.init(x0)._replace(gamma=jnp.float32(1.0)))
    np.testing.assert_array_equal(x, x0)
    with pytest.raises(ValueError, match="accept"):
        REGISTRY["lbfgs"].make(bowl, 500, accept="auto")


class Matched(NamedTuple):
    """A loss that names its style loss, as :class:`jaxstyle.model.losses.Objective` does."""

    style_loss: str

    def __call__(self, x):
        return step_on(x)


@pytest.mark.parametrize("style_loss, moves", [("mrf", True), ("gram", False), ("remd", False)])
def test_accept_auto_is_always_for_mrf_alone(style_loss, moves):
    solver = Solver(Matched(style_loss), "lbfgs", 500, options=(("accept", "auto"), ("history_size", 20))).pair
    x0 = jnp.ones(5, jnp.float32)
    x, _ = solver.step(x0, solver.init(x0)._replace(gamma=jnp.float32(1.0)))
    assert bool(jnp.all(x == 0.0)) is moves and bool(jnp.all(x == x0)) is not moves


def test_retry_takes_the_interpolated_step_in_the_same_iteration():
    _, x0, state, (x, new) = overshoot(bowl, "lbfgs-retry")
    # Along d = -4 x0: f(0) = 2.5, slope -20, f(d) = 22.5. The quadratic through them has its
    # minimum at t = 20 / (2 * (22.5 - 2.5 + 20)) = 0.25, i.e. at the origin.
    np.testing.assert_allclose(x, 0.0, atol=1e-6)
    assert float(new.value) == pytest.approx(0.0, abs=1e-10)
    assert int(new.num_fun_eval) == int(state.num_fun_eval) + 2
    # The history holds the step actually taken (s = -x0, y = -x0), not the refused one.
    np.testing.assert_allclose(new.s_history[0], -x0)
    np.testing.assert_allclose(new.y_history[0], -x0)
    assert float(new.rho_history[0]) == pytest.approx(1 / 5)


def test_failed_retry_stays_and_counts_both_evaluations():
    _, x0, state, (x, new) = overshoot(bowl_with_wall, "lbfgs-retry")
    # The retry lands on the origin, inside the wall (loss 250 > 2.5): nothing is taken.
    np.testing.assert_array_equal(x, x0)
    assert float(new.value) == 2.5
    assert int(new.num_fun_eval) == int(state.num_fun_eval) + 2


@pytest.mark.parametrize("name", ["lbfgs", "lbfgs-retry"])
@pytest.mark.parametrize("gammas", [(4.0, 0.5), (4.0, 3.0)])
def test_batch_step_matches_each_image_alone(name, gammas):
    # One variant overshoots (gamma 4) and the other takes its step (gamma 0.5), or both
    # overshoot: the batch's shared retry branch must leave each variant exactly where its own
    # step would.
    solver = Solver(bowl, name, options=(("history_size", 20),))
    pair = solver.pair
    x0 = jnp.stack([jnp.ones(4, jnp.float32), jnp.linspace(-1.0, 2.0, 4, dtype=jnp.float32)])
    batch = solver.batch_init(x0, (), ())
    gammas = jnp.asarray(gammas, jnp.float32)
    batch = batch._replace(opt=batch.opt._replace(gamma=gammas))
    out = jax.jit(lambda b: solver.batch_step(b, (), ()))(batch)
    for i in range(2):
        x, new = pair.step(x0[i], overshooting_state(pair, x0[i], float(gammas[i])))
        np.testing.assert_allclose(out.x[i], x, rtol=0, atol=1e-7)
        assert float(out.opt.value[i]) == pytest.approx(float(new.value), abs=1e-7)
        assert int(out.opt.num_fun_eval[i]) == int(new.num_fun_eval)


def test_optax_lbfgs_entry_minimises_a_quadratic_and_counts_its_evaluations():
    scales = jnp.asarray([1.0, 4.0, 9.0, 16.0], jnp.float32)

    def quad(x):
        return 0.5 * jnp.sum(scales * x**2), {"total": 0.5 * jnp.sum(scales * x**2)}
    pair = REGISTRY["optax-lbfgs"].make(quad, 50, history_size=10)
    x, state = jnp.ones(4, jnp.float32), pair.init(jnp.ones(4, jnp.float32))
    assert float(state.value) == pytest.approx(15.0) and int(state.num_fun_eval) == 1
    step = jax.jit(pair.step)
    for _ in range(12):
        x, state = step(x, state)
    # L-BFGS with an inexact line search on a 4-dimensional quadratic: at the minimum within 12.
    np.testing.assert_allclose(x, 0.0, atol=1e-5)
    assert float(state.value) == pytest.approx(float(quad(x)[0]), abs=1e-12)
    assert float(state.aux["total"]) == pytest.approx(float(state.value), abs=1e-12)  # the parts at x
    assert 13 <= int(state.num_fun_eval) <= 1 + 12 * 20  # every line-search evaluation counted


def test_a_new_optimiser_is_one_pair_and_one_registry_line(monkeypatch, vgg_params):
    # Gradient descent with a fixed step, registered with its own option: the config accepts it,
    # the pipeline runs it, the report records it; nothing else is touched.
    from conftest import EXAMPLES
    from jaxstyle.engine.config import validate
    from jaxstyle.driver.job import run
    from jaxstyle.engine.solvers import Entry, Option, non_negative

    class State(NamedTuple):
        value: jax.Array
        grad: jax.Array
        aux: dict
        error: jax.Array
        num_fun_eval: jax.Array

    def gd(fun, iterations, step=0.1):
        def evaluate(x, *args, count):
            (value, aux), grad = jax.value_and_grad(fun, has_aux=True)(x, *args)
            return State(value, grad, aux, jnp.linalg.norm(grad), count)

        def init(x, *args):
            return evaluate(x, *args, count=jnp.asarray(1, jnp.int32))

        def take(x, state, *args):
            new_x = x - step * state.grad
            return new_x, evaluate(new_x, *args, count=state.num_fun_eval + 1)
        return Pair(init, take)

    monkeypatch.setitem(REGISTRY, "gd", Entry(gd, {"step": Option(0.1, non_negative, "the step")}))
    cfg = validate({"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                    "size": 32, "print_every": 0, "optimizer": {"name": "gd", "step": 1e-4, "iterations": 3}})
    r = run(cfg, vgg_params, hooks=RunHooks(log=lambda s: None))
    v = r.report["variants"][0]
    assert r.report["config"]["optimizer"]["name"] == "gd" and r.report["config"]["optimizer"]["step"] == 1e-4
    assert v["iterations"] == 3 and v["evaluations"] == 4
    assert v["final_loss"]["total"] < v["initial_loss"]["total"]


def slow_valley(x):
    """A long, narrow valley (curvatures from 1 to 1e6, a quartic wall): L-BFGS needs tens of steps
    and its values fall at very different rates, so when its fall settles is a real question."""
    scales = jnp.logspace(0.0, 6.0, x.shape[0], dtype=jnp.float32)
    return 0.5 * jnp.sum(scales * (x - 1.0) ** 2) + 0.1 * jnp.sum((x - 1.0) ** 4), ()


def first_settled(values: np.ndarray, settle: float, window: int) -> int | None:
    """The rule in float64 NumPy from one run's values (values[k]: after k iterations): the first
    multiple k of ``window``, from 2 windows on, where values[k - window] - values[k] is at most
    ``settle`` times values[0] - values[k]."""
    v = np.asarray(values, np.float64)
    for k in range(2 * window, len(v), window):
        if v[k - window] - v[k] <= settle * (v[0] - v[k]):
            return k
    return None


@functools.lru_cache(maxsize=None)
def valley_step(shift: float):
    """One compiled batch step of :func:`slow_valley` plus ``shift`` (the settling test's
    threshold and window are state, so every case shares it)."""
    solver = Solver(lambda x: (slow_valley(x)[0] + shift, ()), iterations=60)
    return solver, jax.jit(lambda s: solver.batch_step(s, (), ()))


def run_batch(x0, iterations: int, settle: float, window: int, shift: float = 0.0):
    """A batch run one iteration at a time with the settling test; its state and its values."""
    solver, step = valley_step(shift)
    state = solver.batch_init(x0, (), ())
    v = x0.shape[0]
    state = state._replace(settle=jnp.full(v, settle, jnp.float32), window=jnp.full(v, window, jnp.int32))
    values = [np.asarray(state.opt.value)]
    for _ in range(iterations):
        state = step(state)
        values.append(np.asarray(state.opt.value))
    return state, np.stack(values)


def test_a_settled_variant_stops_where_the_rule_says_and_never_before_two_windows():
    x0 = jnp.stack([jnp.zeros(300, jnp.float32), jnp.full(300, 1.0 - 1e-4, jnp.float32)])
    free, values = run_batch(x0, 60, 0.0, 0)  # settle 0: runs every iteration
    assert free.iterations.tolist() == [60, 60] and not bool(free.done.any())
    stops = {}
    for settle, window in ((0.05, 5), (0.2, 4), (0.01, 10), (0.002, 5), (1e-7, 5)):
        state, _ = run_batch(x0, 60, settle, window)
        stops[settle] = state.iterations.tolist()
        for i in range(2):
            expected = first_settled(values[:, i], settle, window)
            assert stops[settle][i] == (60 if expected is None else expected), (settle, window, i)
            assert stops[settle][i] >= 2 * window
    # The cases differ: the minimum (two windows), later, the two variants apart, never settled.
    assert stops[0.05] == [10, 10] and stops[0.002][0] != stops[0.002][1] and stops[1e-7] == [60, 60]


def test_what_does_not_move_does_not_make_a_variant_look_settled():
    """A large constant in the objective (what a clip's held pixels add) changes nothing: the test
    compares falls, not the objective's size."""
    x0 = jnp.zeros((1, 300), jnp.float32)
    plain, _ = run_batch(x0, 60, 0.002, 5)
    held, _ = run_batch(x0, 60, 0.002, 5, shift=1e7)
    assert int(held.iterations[0]) == int(plain.iterations[0]) > 10
