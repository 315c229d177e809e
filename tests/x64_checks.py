"""Float64 checks, run in a subprocess with JAX_ENABLE_X64=1 (x64 is process-wide in JAX).

Prints one JSON object: gradient vs finite differences, and batch-vs-solo L-BFGS trajectories.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from conftest import EXAMPLES  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.media.images import load_image  # noqa: E402
from jaxstyle.model.losses import LossWeights, Objective  # noqa: E402
from jaxstyle.engine.program import Program  # noqa: E402
from jaxstyle.engine.solvers import Solver  # noqa: E402
from jaxstyle.model.vgg import prepare_kernels, winograd_layers  # noqa: E402

assert jax.config.jax_enable_x64, "run with JAX_ENABLE_X64=1"
f64 = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)

# The kernels as a run prepares them: conv3_2 .. conv3_4 of a 40 x 40 image (10 x 10 positions) take
# the Winograd path, so the gradient and the solver below go through it.
params = prepare_kernels(f64(jaxstyle.load_vgg19()), ["conv5_1"])
assert winograd_layers(40, 40, ["conv5_1"]) == ["conv3_2", "conv3_3", "conv3_4"]
content = jnp.asarray(load_image(EXAMPLES / "home.jpg", shape=(40, 40)), jnp.float64)
style = jnp.asarray(load_image(EXAMPLES / "starry_night.jpg", shape=(40, 40)), jnp.float64)
obj = Objective(("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"), "avg", ("tv",))
targets = obj.targets(params, content, style)
w1 = f64(LossWeights(1.0, 10.0, {"conv4_2": 1.0}, {l: 0.2 for l in obj.style_layers}, {"tv": 1e-3}))
out = {}

# Gradient of the total loss vs central finite differences along random directions. The network
# is an argument, not a constant: the tests' compilation cache would compress every executable
# that embeds its 160 MB of float64 weights (30 s for two).
total = jax.jit(lambda x, p: obj(x, p, targets, w1)[0])
f = lambda x: total(x, params)  # noqa: E731
x = jax.random.uniform(jax.random.key(1), content.shape, jnp.float64)
g = jax.grad(f)(x)
rel = []
for k in range(3):
    v = jax.random.normal(jax.random.key(10 + k), x.shape, jnp.float64)
    h = 1e-7  # ReLU and max-pool kinks make the error grow linearly with h above this
    fd = (f(x + h * v) - f(x - h * v)) / (2 * h)
    rel.append(float(abs(fd - jnp.vdot(g, v)) / abs(fd)))
out["grad_fd_rel"] = rel

# A batch of 2 seeds vs each seed alone, 20 L-BFGS iterations (two are enough to show that no
# variant reads another's values; each more costs 40 float64 evaluations).
solver = Solver(obj, iterations=20)
seeds = [0, 1]
x0 = jnp.stack([jax.random.uniform(jax.random.key(s), content.shape, jnp.float64) for s in seeds])
wb = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (len(seeds),)), w1)


def program(x0, w):
    prog = Program(solver, "unroll", 1)
    prog.compile(x0, (params, targets), (w,))
    return prog


def optimise(prog, x0, w):
    s = prog.init(x0, (params, targets), (w,))
    return prog.advance(s, (params, targets), (w,), 20)


batch = optimise(program(x0, wb), x0, wb)
diffs = []
one = lambda a, i: a[i:i + 1]  # noqa: E731
solo_program = program(one(x0, 0), jax.tree_util.tree_map(lambda a: one(a, 0), wb))  # one compile for both
for i in range(len(seeds)):
    solo = optimise(solo_program, one(x0, i), jax.tree_util.tree_map(lambda a: one(a, i), wb))
    diffs.append(float(jnp.max(jnp.abs(solo.x[0] - batch.x[i]))))
out["batch_vs_solo_maxabs"] = diffs
out["batch_losses"] = [float(v) for v in batch.opt.value]
out["initial_losses"] = [float(f(x0[i])) for i in range(len(seeds))]
print(json.dumps(out))
