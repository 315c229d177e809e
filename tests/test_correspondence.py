"""The correspondence losses (``mrf``, ``remd``, ``self_similarity``) against float64 NumPy written
from their papers' definitions, hand-checked cases, and finite differences; then through the
objective and the command line."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxstyle.cli import main
from jaxstyle.media.images import load_image
from jaxstyle.model import correspondence as corr
from jaxstyle.model.losses import LossWeights, Objective

from conftest import EXAMPLES


def features(seed: int, h: int = 6, w: int = 7, n: int = 4) -> np.ndarray:
    """Non-negative, correlated responses, like a ReLU layer's."""
    rng = np.random.default_rng(seed)
    return np.maximum(rng.normal(size=(h, w, n)) @ rng.normal(size=(n, n)) + 0.3, 0.0)


def np_patches(f: np.ndarray, size: int, stride: int) -> np.ndarray:
    """Row-major corners, each patch flattened (dy, dx, channel)."""
    h, w, _ = f.shape
    return np.array([f[y:y + size, x:x + size].reshape(-1) for y in range(0, h - size + 1, stride)
                     for x in range(0, w - size + 1, stride)], np.float64)


def np_interior_cover(size: int, stride: int) -> np.ndarray:
    """``(size, size)``: how many patches cover each entry's position, counted on a map large enough
    that the patch in its middle is far from the borders."""
    n = size + 4 * size * stride
    count = np.zeros((n, n))
    for y in range(0, n - size + 1, stride):
        for x in range(0, n - size + 1, stride):
            count[y:y + size, x:x + size] += 1
    c = (n // 2) // stride * stride  # a patch corner near the middle
    return count[c:c + size, c:c + size]


def np_mrf(f: np.ndarray, s: np.ndarray, size: int, stride: int) -> float:
    out, art = np_patches(f, size, stride), np_patches(s, size, stride)
    ncc = (out / np.linalg.norm(out, axis=1, keepdims=True)) @ (art / np.linalg.norm(art, axis=1, keepdims=True)).T
    w = 1.0 / np_interior_cover(size, stride)
    w = np.repeat((w / w.mean()).reshape(-1), f.shape[2])  # entries flattened (dy, dx, channel)
    return float(np.mean(w * (out - art[np.argmax(ncc, axis=1)]) ** 2))


@pytest.mark.parametrize("size,stride", [(3, 1), (3, 2), (5, 2), (4, 2), (2, 3)])
def test_mrf_coverage_weights_count_every_inner_position_once(size, stride):
    w = corr.coverage_weights(size, stride)
    np.testing.assert_allclose(w, (1 / np_interior_cover(size, stride)) / (1 / np_interior_cover(size, stride)).mean())
    # Summed over the patches that cover it, every covered position away from the borders gets the
    # same weight (a stride wider than the patch leaves some uncovered).
    n = size + 4 * size * stride
    total = np.zeros((n, n))
    for y in range(0, n - size + 1, stride):
        for x in range(0, n - size + 1, stride):
            total[y:y + size, x:x + size] += w
    inner = total[size * stride:n - size * stride, size * stride:n - size * stride]
    np.testing.assert_allclose(inner[inner > 0], inner[0, 0])
    if size > stride and size % stride:  # uneven cover (3 x 3 at 2: four patches or one)
        assert w.max() / w.min() > 1.5
    else:
        assert np.all(w == 1.0)  # even cover: exactly Eq. 2's unweighted mean


def np_cos_cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 1.0 - a @ b.T


def np_self_similarity_loss(x: np.ndarray, p: np.ndarray) -> float:
    dx, dp = np_cos_cost(x, x), np_cos_cost(p, p)
    return float(np.sum(np.abs(dx / dx.sum(0) - dp / dp.sum(0))) / len(x))


def fd_check(fun, x: np.ndarray, seed: int = 0, eps: float = 1e-6) -> None:
    """The float64 gradient of ``fun`` at ``x`` along three random directions, against central
    differences."""
    with jax.enable_x64(True):
        xj = jnp.asarray(x, jnp.float64)
        g = np.asarray(jax.grad(fun)(xj))
        for d in np.random.default_rng(seed).normal(size=(3, *x.shape)):
            num = (float(fun(xj + eps * d)) - float(fun(xj - eps * d))) / (2 * eps)
            assert abs(num - float(np.sum(g * d))) <= 1e-5 * max(1.0, abs(num)), (num, float(np.sum(g * d)))


@pytest.mark.parametrize("size,stride", [(3, 1), (3, 2), (2, 3)])
def test_patches_match_numpy(size, stride):
    f = features(0).astype(np.float32)  # a rearrangement: equal to the bit
    np.testing.assert_array_equal(np.asarray(corr.patches(jnp.asarray(f), size, stride)),
                                  np_patches(f, size, stride).astype(np.float32))
    assert corr.patch_count((6 * 4, 7 * 4), "conv3_1", size, stride) == len(np_patches(f, size, stride))


def test_mrf_matches_numpy_is_zero_on_the_artwork_and_has_the_finite_difference_gradient():
    f, s = features(0), features(1, 8, 9)
    tgt = corr.mrf_target([jnp.asarray(s, jnp.float32)], 3, 1)
    got = float(corr.mrf_layer_loss(jnp.asarray(f, jnp.float32), tgt, 3, 1))
    assert got == pytest.approx(np_mrf(f, s, 3, 1), rel=1e-5)
    # At stride 2 the entries are weighed by their cover (the default).
    tgt2 = corr.mrf_target([jnp.asarray(s, jnp.float32)], 3, 2)
    got2 = float(corr.mrf_layer_loss(jnp.asarray(f, jnp.float32), tgt2, 3, 2))
    assert got2 == pytest.approx(np_mrf(f, s, 3, 2), rel=1e-5)
    # The artwork's own patches are their own nearest neighbours.
    assert float(corr.mrf_layer_loss(jnp.asarray(s, jnp.float32), tgt, 3, 1)) < 1e-10
    # Two artworks pool their patches: the loss against the pool is at most that against either.
    both = corr.mrf_target([jnp.asarray(s, jnp.float32), jnp.asarray(features(2, 7, 7), jnp.float32)], 3, 1)
    assert both["patches"].shape[0] == len(np_patches(s, 3, 1)) + len(np_patches(features(2, 7, 7), 3, 1))
    with jax.enable_x64(True):
        t64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), corr.mrf_target([jnp.asarray(s)], 3, 2))
    fd_check(lambda x: corr.mrf_layer_loss(x, t64, 3, 2), f)


def test_relaxed_emd_of_a_hand_checked_case():
    # x = (1, 0), (0, 1); s = (1, 0), (1, 1), (-1, 0). Cosine costs, by hand:
    #   row (1, 0): 0, 1 - 1/sqrt 2, 2       -> min 0
    #   row (0, 1): 1, 1 - 1/sqrt 2, 1       -> min 1 - 1/sqrt 2
    # row mean (1 - 1/sqrt 2) / 2 = 0.1464; column mins 0, 1 - 1/sqrt 2, 1 -> mean 0.4310: the larger.
    x = jnp.asarray([[1.0, 0.0], [0.0, 1.0]])
    s = jnp.asarray([[1.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])
    r = 1 - 1 / np.sqrt(2)
    np.testing.assert_allclose(np.asarray(corr.cosine_cost(x, s)), [[0, r, 2], [1, r, 1]], atol=1e-6)
    assert float(corr.relaxed_emd(corr.cosine_cost(x, s))) == pytest.approx((0 + r + 1) / 3, abs=1e-6)
    assert float(corr.relaxed_emd(corr.cosine_cost(s, s))) == pytest.approx(0.0, abs=1e-6)


def test_remd_matches_numpy_and_has_the_finite_difference_gradient():
    rng = np.random.default_rng(3)
    x, s = rng.normal(size=(9, 5)), rng.normal(size=(11, 5))
    cx, cs = rng.random((9, 3)), rng.random((11, 3))
    c = np_cos_cost(x, s)
    remd = max(c.min(1).mean(), c.min(0).mean())
    mx, ms = x.mean(0), s.mean(0)
    moment = np.abs(mx - ms).mean() + np.abs((x - mx).T @ (x - mx) / 9 - (s - ms).T @ (s - ms) / 11).mean()
    e = np.linalg.norm(cx[:, None] - cs[None], axis=-1)
    palette = max(e.min(1).mean(), e.min(0).mean())
    got = float(corr.remd_loss(*(jnp.asarray(a, jnp.float32) for a in (x, cx, s, cs))))
    assert got == pytest.approx(remd + moment + palette, rel=1e-5)
    with jax.enable_x64(True):
        fd_check(lambda h: corr.remd_loss(h, jnp.asarray(cx), jnp.asarray(s), jnp.asarray(cs)), x)


def test_self_similarity_matches_numpy_ignores_appearance_and_has_the_finite_difference_gradient():
    rng = np.random.default_rng(4)
    x, p = rng.random((8, 6)) + 0.1, rng.random((8, 6)) + 0.1
    got = float(corr.self_similarity_loss(jnp.asarray(x, jnp.float32), jnp.asarray(p, jnp.float32)))
    assert got == pytest.approx(np_self_similarity_loss(x, p), rel=1e-5)
    d = np.asarray(corr.self_similarity(jnp.asarray(x, jnp.float32)))
    np.testing.assert_allclose(d.sum(0), 1.0, rtol=1e-5)
    # Zero where the layout is the photo's, whatever each position's brightness.
    scaled = p * rng.uniform(0.5, 3.0, size=(8, 1))
    assert float(corr.self_similarity_loss(jnp.asarray(scaled, jnp.float32), jnp.asarray(p, jnp.float32))) < 1e-6
    fd_check(lambda h: corr.self_similarity_loss(h, jnp.asarray(p)), x)


def test_hypercolumns_read_the_covering_cell_of_each_layer():
    fine, coarse = features(5, 8, 6, 2), features(6, 4, 3, 3)
    pos = jnp.asarray([0, 7, 47])  # (0, 0), (1, 1), (7, 5) on the 8 x 6 grid
    cells = corr.layer_cells({"conv1_1": jnp.asarray(fine), "conv2_1": jnp.asarray(coarse)},
                             ["conv1_1", "conv2_1"], pos)
    h = np.asarray(corr.hypercolumns(cells, {"conv1_1": 1.0, "conv2_1": 2.0}))
    want = [np.concatenate([fine[y, x], 2.0 * coarse[y // 2, x // 2]]) for y, x in ((0, 0), (1, 1), (7, 5))]
    np.testing.assert_allclose(h, np.array(want), rtol=1e-6)
    # The palette reads the 3 x 3 mean around a position's top-left pixel, clipped at the edge.
    image = np.arange(16 * 12 * 3, dtype=np.float32).reshape(16, 12, 3)
    rgb = np.asarray(corr.pixels_at(jnp.asarray(image), {"conv1_1": jnp.zeros((16, 12, 1))}, ["conv1_1"],
                                    jnp.asarray([0, 13])))
    np.testing.assert_allclose(rgb, [image[:2, :2].reshape(-1, 3).mean(0), image[:3, :3].reshape(-1, 3).mean(0)])
    drawn = np.asarray(corr.sample_positions(jax.random.PRNGKey(1), (8, 6), 10))
    assert len(set(drawn.tolist())) == 10 and drawn.max() < 48
    np.testing.assert_array_equal(drawn, np.asarray(corr.sample_positions(jax.random.PRNGKey(1), (8, 6), 10)))


@pytest.mark.parametrize("style_loss,content_loss", [("remd", "features"), ("gram", "self_similarity")])
def test_objective_is_fixed_per_seed_zero_at_its_ends_and_differentiable(vgg_params, style_loss, content_loss):
    """Through the objective, for the two losses that sample positions: the artwork's own style loss
    (``remd``'s sampled positions differ between the two sides, so it is small, not zero) and the
    photograph's own content loss are far below a noise image's; the same seed gives the same value,
    another seed another. (``mrf`` and ``neighbours`` sample nothing; their zeros and gradients are
    checked on features above and below, and they run through a whole command in the sweep.)"""
    art = jnp.asarray(load_image(EXAMPLES / "starry_night.jpg", shape=(32, 32)))
    layers = ("conv1_1", "conv2_1")  # shallow: the network stops at conv2_1 and compiles fast
    obj = Objective(("conv2_1",), layers, style_loss=style_loss, content_loss=content_loss, samples=48)
    t = obj.targets(vgg_params, art, [art])
    one = jnp.float32(1.0)
    w = lambda seed: LossWeights(one, one, {"conv2_1": one}, {l: one for l in layers}, {},  # noqa: E731
                                 jnp.uint32(seed))
    noise = jax.random.uniform(jax.random.key(0), art.shape)
    at_art = obj.parts(art, vgg_params, t, w(0))
    (value, parts), grad = jax.value_and_grad(obj, has_aux=True)(noise, vgg_params, t, w(0))
    assert np.all(np.isfinite(np.asarray(grad))) and float(jnp.abs(grad).max()) > 0
    term = "content" if content_loss == "self_similarity" else "style"
    assert float(at_art[term]) < 0.2 * float(parts[term]), (float(at_art[term]), float(parts[term]))
    assert float(obj(noise, vgg_params, t, w(0))[0]) == float(value)
    assert obj.samples_positions and float(obj(noise, vgg_params, t, w(1))[0]) != float(value)


def test_memory_estimate_counts_the_matches():
    obj = Objective(("conv4_2",), ("conv3_1",), style_loss="mrf", mrf_patch=3, mrf_stride=1)
    # conv3_1 of 384 x 512 px: 96 x 128 positions, 94 x 126 whole 3 x 3 patches on each side.
    assert obj.match_bytes((384, 512), [(384, 512)]) == 4 * 3 * (94 * 126) ** 2
    assert Objective(("conv4_2",), ("conv3_1",)).match_bytes((384, 512), [(384, 512)]) == 0


def test_a_clips_batch_of_frames_counts_the_matches(monkeypatch):
    """A multipass chunk holds as many frames as the memory estimate lets one batch hold: with
    ``mrf`` at stride 1 its match matrices take room that the Gram loss leaves free."""
    from jaxstyle.driver import clip
    from jaxstyle.engine.config import validate
    from jaxstyle.engine.plan import plan_stages, stage_peak_bytes

    cfg = validate({"content": "a.jpg", "style": "b.jpg", "scales": [], "style_loss": "mrf", "mrf_stride": 1,
                    "mrf_layers": {"conv3_1": 1}})
    mrf = Objective(("conv4_2",), ("conv3_1",), style_loss="mrf", mrf_stride=1)
    gram = Objective(("conv4_2",), ("conv3_1",))
    shape, stage = (192, 256), plan_stages((192, 256), cfg)[0]
    need = lambda obj, k: stage_peak_bytes(stage, k, obj.layers, cfg.optimizer.options.get("history_size", 0),  # noqa: E731
                                           False, obj)
    monkeypatch.setattr(clip, "available_bytes", lambda: need(gram, 12))
    monkeypatch.setattr(clip, "run_winograd_layers", lambda *a: ())
    assert need(mrf, 12) - need(gram, 12) == 12 * mrf.match_bytes(shape, [shape]) > 0
    assert clip.chunk_frames(cfg, 20, 1, shape, gram) == 12
    k = clip.chunk_frames(cfg, 20, 1, shape, mrf)
    assert need(mrf, k) <= need(gram, 12) < need(mrf, k + 1) and k < 12


def test_a_sweep_of_every_new_loss_in_one_command(tmp_path):
    """mrf, remd and neighbours with the self-similarity content loss, one command: one program each,
    every variant in the comparison table with every loss's own measure; a sweep over both kinds of
    loss makes one program per pair."""
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(f"content: {EXAMPLES / 'leuvenA.jpg'}\nstyle: {EXAMPLES / 'starry_night.jpg'}\n"
                   f"output: {tmp_path / 'out'}\nsize: 32\nscales: []\noptimizer: {{iterations: 2}}\nsamples: 32\n"
                   # Shallow layers only: the network stops at conv2_1, so the three programs compile fast.
                   "content_layers: {conv2_1: 1}\nstyle_layers: {conv1_1: 1, conv2_1: 1}\nmrf_layers: {conv2_1: 1}\n"
                   "similarity_layers: {conv1_1: 1, conv2_1: 1}\n"
                   "content_loss: self_similarity\nsweep: {style_loss: [mrf, remd, neighbours]}\n")
    assert main(["--config", str(cfg)]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    rows = report["comparison"]
    assert [(r["style_loss"], r["content_term"]) for r in rows] == [
        (s, "self_similarity") for s in ("mrf", "remd", "neighbours")]
    assert [(p["style_loss"], p["content_loss"]) for p in report["programs"]] == [
        (r["style_loss"], r["content_term"]) for r in rows]
    for r in rows:
        assert all(np.isfinite(r[k]) and r[k] > 0 for k in ("gram_style_loss", "content_loss", "mrf_loss",
                                                            "remd_loss", "neighbours_loss", "self_similarity_loss"))
    assert len({r["mrf_loss"] for r in rows}) == 3  # three different images, each measured
    # A sweep over both losses: one program per pair of them, the style losses slowest.
    from jaxstyle.driver.job import program_groups
    from jaxstyle.engine.config import validate
    both = validate({"content": "a.jpg", "style": "b.jpg",
                     "sweep": {"style_loss": ["gram", "mrf"], "content_loss": ["features", "self_similarity"]}})
    assert [(g.style_loss, g.content_loss, g.sweep) for g in program_groups(both)] == [
        ("gram", "features", {}), ("gram", "self_similarity", {}), ("mrf", "features", {}),
        ("mrf", "self_similarity", {})]


def test_a_checkpoint_from_before_the_new_keys_resumes_and_a_changed_one_is_refused(tmp_path):
    """A checkpoint written before ``content_loss`` and the correspondence keys existed ran as their
    defaults do; the same checkpoint with another content loss asked for now is a change."""
    from jaxstyle.core.errors import OutputError
    from jaxstyle.engine import checkpoint
    from jaxstyle.engine.config import ADDED_KEYS, validate

    cfg = validate({"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg")})
    old = {k: v for k, v in json.loads(json.dumps(cfg.to_dict())).items() if k not in ADDED_KEYS}
    path = tmp_path / "checkpoint.npz"
    np.savez(path, meta=np.frombuffer(json.dumps({"format": checkpoint.FORMAT, "config": old}).encode(), np.uint8))
    meta, _ = checkpoint.read(path, cfg.to_dict())
    assert "content_loss" not in meta["config"]
    other = validate({**cfg.source, "content_loss": "self_similarity"})
    with pytest.raises(OutputError, match='content_loss: null then, "self_similarity" now'):
        checkpoint.read(path, other.to_dict())


def test_what_the_correspondence_losses_cannot_do_is_refused_in_one_line():
    from jaxstyle.core.errors import ConfigError
    from jaxstyle.engine.config import validate

    base = {"content": str(EXAMPLES / "leuvenA.jpg"), "style": [str(EXAMPLES / "starry_night.jpg")] * 2}
    with pytest.raises(ConfigError, match="style_loss mrf pools the artworks' patches or samples"):
        validate({**base, "style_loss": "mrf", "style_blend": [1, 2]})
    with pytest.raises(ConfigError, match="style_loss remd cannot be combined with masks"):
        validate({**base, "style_loss": "remd", "masks": [base["content"]] * 2})
    with pytest.raises(ConfigError, match="content_loss self_similarity needs losses: mean"):
        validate({**base, "content_loss": "self_similarity", "losses": "paper"})
    with pytest.raises(ConfigError, match="matches patches at mrf_layers"):
        validate({**base, "sweep": {"style_loss": ["gram", "mrf"], "style_layers": [{"conv1_1": 1}]}})
    with pytest.raises(ConfigError, match="compares similarity_layers"):
        validate({**base, "sweep": {"content_loss": ["self_similarity"], "content_layers": [{"conv4_2": 1}]}})
    # An equal blend pools both artworks; the variants use the losses' own layers.
    from jaxstyle.engine.variants import expand_variants
    cfg = validate({**base, "style_loss": "mrf", "content_loss": "self_similarity", "style_blend": [1, 1]})
    (v,) = expand_variants(cfg)
    assert v.style_layers == cfg.mrf_layers and v.content_layers == cfg.similarity_layers


def test_neighbours_replace_each_query_by_the_nearest_centred_artwork_cell_and_pull_by_cosine():
    rng = np.random.default_rng(7)
    art = {"a": rng.normal(size=(13, 3)), "b": rng.normal(size=(13, 2))}
    query = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 2))}
    got = corr.nearest_neighbours({k: jnp.asarray(v, jnp.float32) for k, v in query.items()},
                                  {k: jnp.asarray(v, jnp.float32) for k, v in art.items()}, block=2)
    a, q = np.concatenate([art["a"], art["b"]], 1), np.concatenate([query["a"], query["b"]], 1)
    mean = a.mean(0)
    cos = (1 - np_cos_cost(q - mean, a - mean))
    index = np.argmax(cos, axis=1)
    for k in art:
        np.testing.assert_allclose(np.asarray(got[k]), art[k][index], rtol=1e-6)
    # The loss: 1 - cos of the weighted hypercolumns, zero where the output is a positive multiple.
    w = {"a": 2.0, "b": 0.5}
    x = {"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 2))}
    want = np.mean(np.diag(np_cos_cost(np.concatenate([2 * x["a"], 0.5 * x["b"]], 1),
                                       np.concatenate([2 * art["a"][index], 0.5 * art["b"][index]], 1))))
    loss = lambda cells: corr.neighbours_loss(cells, got, w)  # noqa: E731
    assert float(loss({k: jnp.asarray(v, jnp.float32) for k, v in x.items()})) == pytest.approx(want, rel=1e-5)
    assert float(loss({k: 3.0 * v for k, v in got.items()})) == pytest.approx(0.0, abs=1e-6)
    with jax.enable_x64(True):
        t64 = {k: jnp.asarray(np.asarray(v), jnp.float64) for k, v in got.items()}
        fd_check(lambda h: corr.neighbours_loss({"a": h[:, :3], "b": h[:, 3:]}, t64, w),
                 np.concatenate([x["a"], x["b"]], 1))
    # The grid: cells of 4 px; conv1_1 (stride 1) averaged over each 4 x 4 block, conv2_1 over 2 x 2,
    # conv3_1 (stride 4) read as is, conv4_1 (stride 8) the cell covering each; a 9 x 13 px image's
    # last row and column of cells hold what is left, the map repeated past its edge.
    fine, mid = rng.normal(size=(9, 13, 2)), rng.normal(size=(4, 6, 2))
    c3, c4 = rng.normal(size=(2, 3, 2)), rng.normal(size=(1, 1, 2))
    got = corr.grid_cells({k: jnp.asarray(v, jnp.float32) for k, v in
                           {"conv1_1": fine, "conv2_1": mid, "conv3_1": c3, "conv4_1": c4}.items()},
                          ["conv1_1", "conv2_1", "conv3_1", "conv4_1"])
    edge = lambda f, h, w: f[np.minimum(np.arange(h), f.shape[0] - 1)][:, np.minimum(np.arange(w), f.shape[1] - 1)]  # noqa: E731
    want_fine = [edge(fine, 12, 16)[4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((0, 1)) for i in range(3) for j in range(4)]
    want_mid = [edge(mid, 6, 8)[2 * i:2 * i + 2, 2 * j:2 * j + 2].mean((0, 1)) for i in range(3) for j in range(4)]
    np.testing.assert_allclose(np.asarray(got["conv1_1"]), want_fine, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["conv2_1"]), want_mid, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(got["conv3_1"]), edge(c3, 3, 4).reshape(12, 2), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got["conv4_1"]), np.repeat(c4.reshape(1, 2), 12, 0), rtol=1e-6)
    # The memory estimate's count is the grid's (by hand: 3 x 4 cells; conv2_1 of 13 x 19 px is 6 x 9,
    # cells of 2 x 2 positions, 3 x 5 of them).
    assert corr.cell_count((9, 13), ["conv1_1", "conv2_1", "conv3_1", "conv4_1"]) == 12
    assert corr.cell_count((13, 19), ["conv2_1"]) == 15 == len(corr.grid_cells({"conv2_1": jnp.zeros((6, 9, 1))},
                                                                                ["conv2_1"])["conv2_1"])
    # Every pixel of conv1_1 moves the loss (the old corner reading left 15 in 16 without a gradient).
    g = jax.grad(lambda f: corr.neighbours_loss(corr.grid_cells({"conv1_1": f}, ["conv1_1"]),
                                                {"conv1_1": jnp.ones((4, 2))}, {"conv1_1": 1.0}))(
        jnp.asarray(rng.normal(size=(8, 8, 2)), jnp.float32))
    assert np.all(np.abs(np.asarray(g)).sum(-1) > 0)


def test_palette_gives_the_photograph_the_artworks_colour_mean_and_covariance():
    from jaxstyle.engine.config import validate
    from jaxstyle.engine.inputs import prepare_images

    cfg = validate({"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                    "size": 48, "preserve_colors": "palette", "style_trim": "none"})
    inputs = prepare_images(cfg, ("conv1_1",))
    photo, art = (np.asarray(a, np.float64).reshape(-1, 3) for a in (inputs.content, inputs.styles[0]))
    clipped = np.mean((photo <= 0) | (photo >= 1))
    assert clipped < 0.02  # the affine map is exact where nothing was clipped to [0, 1]
    np.testing.assert_allclose(photo.mean(0), art.mean(0), atol=0.01)
    np.testing.assert_allclose(np.cov(photo, rowvar=False), np.cov(art, rowvar=False), atol=0.004)
    np.testing.assert_array_equal(inputs.photo, prepare_images(validate({**cfg.source, "preserve_colors": "none"}),
                                                               ("conv1_1",)).photo)
