"""Variants split over 4 simulated CPU devices vs one device; run as a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4 and JAX_ENABLE_X64=1. Prints one JSON object."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp

sys.path.insert(0, str(Path(__file__).parent))
from conftest import EXAMPLES  # noqa: E402

import jaxstyle  # noqa: E402
from jaxstyle.engine.progress import RunHooks  # noqa: E402
from jaxstyle.engine.config import validate  # noqa: E402
from jaxstyle.media.images import load_image  # noqa: E402
from jaxstyle.model.losses import LossWeights, Objective  # noqa: E402
from jaxstyle.driver.job import run  # noqa: E402
from jaxstyle.engine.program import Program, variant_mesh  # noqa: E402
from jaxstyle.engine.solvers import Solver  # noqa: E402

assert len(jax.local_devices()) == 4 and jax.config.jax_enable_x64
out = {}
f64 = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), t)
params = f64(jaxstyle.load_vgg19())
content = jnp.asarray(load_image(EXAMPLES / "home.jpg", shape=(32, 40)), jnp.float64)
style = jnp.asarray(load_image(EXAMPLES / "starry_night.jpg", shape=(32, 40)), jnp.float64)
obj = Objective(("conv4_2",), ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"))
targets = obj.targets(params, content, style)
solver = Solver(obj, iterations=8)
x0 = jnp.stack([jax.random.uniform(jax.random.key(s), content.shape, jnp.float64) for s in range(4)])
w = f64(LossWeights(jnp.ones(4), jnp.full(4, 1e5), {"conv4_2": jnp.ones(4)},
                    {l: jnp.full(4, 0.2) for l in obj.style_layers}, {}))

results = {}
for name, mesh in (("one", None), ("four", variant_mesh())):
    prog = Program(solver, "unroll", 1, mesh)
    args = prog.place(x0, (params, targets), (w,))
    prog.compile(*args)
    s = prog.advance(prog.init(*args), args[1], args[2], 8)
    results[name] = s
    out[f"{name}_devices_of_x"] = len(s.x.sharding.device_set)
out["maxabs_sharded_vs_single"] = float(jnp.max(jnp.abs(results["one"].x - results["four"].x)))
out["loss_drop"] = float(jnp.max(results["four"].opt.value / obj(x0[0], params, targets,
                                 jax.tree_util.tree_map(lambda a: a[0], w))[0]))

# The whole run() path with 3 variants (padded to 4) in float32.
cfg = validate({"content": str(EXAMPLES / "home.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                "size": 32, "seeds": [0, 1, 2], "print_every": 0, "optimizer": {"iterations": 3}})
r = run(cfg, hooks=RunHooks(log=lambda s: None))
out["run_devices"] = r.report["devices"]
out["run_images"] = list(r.images.shape)
out["run_variants"] = [v["seed"] for v in r.report["variants"]]
print(json.dumps(out))
