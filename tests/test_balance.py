"""``weighting: auto``: the style term's factor against an independent float64 NumPy computation on
made images (a flat artwork, a dense one and one between), the flat share on hand-made images, a
dense artwork run bit for bit as with ``fixed``, a sweep over alpha/beta equal to each alone, the
fixed weighting's objective unchanged, and a resumed run using the factors it stored."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import EXAMPLES
from helpers import np_vgg19
from jaxstyle.driver.job import run
from jaxstyle.engine.balance import (ANCHOR, ANCHORS, RANGE_WEIGHT, SPARSE_GAIN, anchor_of, endpoints, factor,
                                     flat_share, sparsity, unit_weights)
from jaxstyle.engine.config import validate
from jaxstyle.engine.inputs import flat_shares, noise_image
from jaxstyle.engine.pipeline import prepare
from jaxstyle.engine.progress import RunHooks
from jaxstyle.model.style_losses import CONTENT_LOSSES, STYLE_LOSSES

LAYERS = {"content_layers": {"conv2_1": 1.0}, "style_layers": {"conv1_1": 0.5, "conv2_1": 0.5}}
QUIET = RunHooks(log=lambda line: None)


def made(tmp_path, name: str, image: np.ndarray) -> str:
    path = tmp_path / name
    Image.fromarray(image).save(path)
    return str(path)


@pytest.fixture
def images(tmp_path):
    """A photograph (shapes on a gradient), a flat artwork (a red disc on white), a dense one
    (coloured noise) and one between (the disc on white, its top rows noise), all 32 x 32 px."""
    yy, xx = np.mgrid[:32, :32]
    photo = np.stack([xx * 8, yy * 8, 255 - xx * 4], -1).astype(np.uint8)
    photo[8:20, 10:24] = (20, 200, 60)
    flat = np.full((32, 32, 3), 255, np.uint8)
    flat[((yy - 16) ** 2 + (xx - 12) ** 2) < 49] = (220, 30, 30)
    dense = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    between = flat.copy()
    between[:19] = dense[:19]
    return {name: made(tmp_path, f"{name}.png", a) for name, a in
            (("photo", photo), ("flat", flat), ("dense", dense), ("between", between))}


def numpy_flat_share(image: np.ndarray) -> float:
    """The share of pixels none of whose 4-neighbours differs by 0.02 or more in any channel, pixel
    by pixel in float64."""
    h, w, _ = image.shape
    flat = 0
    for i in range(h):
        for j in range(w):
            steps = [np.max(np.abs(image[i, j] - image[a, b])) for a, b in
                     ((i - 1, j), (i + 1, j), (i, j - 1), (i, j + 1)) if 0 <= a < h and 0 <= b < w]
            flat += max(steps) < 0.02
    return flat / (h * w)


def numpy_factor(params, photo: np.ndarray, art: np.ndarray) -> float:
    """The rule in float64 NumPy: SPARSE_GAIN times ANCHOR times the artwork's content loss (Eq. 1, mean over positions
    and filters, conv2_1) over the photograph's style loss (Eq. 5 of Eq. 4's mean form, conv1_1 and
    conv2_1 at 0.5 each), to the power of the artwork's sparsity (its flat share from 0.3 to 0.5,
    smoothstepped)."""
    fp, fa = np_vgg19(params, photo), np_vgg19(params, art)
    c_art = np.mean((fa["conv2_1"] - fp["conv2_1"]) ** 2)
    s_photo = 0.0
    for layer, w in LAYERS["style_layers"].items():
        p, a = fp[layer].reshape(-1, fp[layer].shape[-1]), fa[layer].reshape(-1, fa[layer].shape[-1])
        g_p, g_a = p.T @ p / len(p), a.T @ a / len(a)
        s_photo += w * np.sum((g_p - g_a) ** 2) / p.shape[1] ** 2
    t = np.clip((numpy_flat_share(art) - 0.3) / 0.2, 0.0, 1.0)
    return (SPARSE_GAIN * ANCHOR * c_art / s_photo) ** (t * t * (3 - 2 * t))


def config(images, style: str, **extra) -> dict:
    return {"content": images["photo"], "style": images[style], "size": 32, "padding": "zero", "style_trim": "none",
            "scales": [], "print_every": 0, "optimizer": {"iterations": 4}, "weighting": "auto", **LAYERS, **extra}


def test_the_flat_share_and_the_sparsity_on_hand_made_images():
    step = np.zeros((32, 32, 3), np.float32)
    step[:, 16:] = 1.0  # one edge: the two columns beside it are not flat
    assert flat_share(step) == 30 / 32
    step[:, 16:] = 4 / 255  # a step of 4 levels is under FLAT_STEP: all flat
    assert flat_share(step) == 1.0
    dots = np.zeros((32, 32, 3), np.float32)
    dots[::4, ::4, 1] = 1.0  # 64 green dots: each and its 4 neighbours moved, 64 x 5 - 16 at the edges
    assert flat_share(dots) == (32 * 32 - (64 * 5 - 16)) / (32 * 32)
    assert sparsity([0.3], [1.0]) == 0.0 and sparsity([0.5], [1.0]) == 1.0 and sparsity([0.9], [1.0]) == 1.0
    assert sparsity([0.4], [1.0]) == pytest.approx(0.5) and sparsity([0.35], [1.0]) == pytest.approx(0.15625)
    assert sparsity([0.2, 0.6], [0.5, 0.5]) == pytest.approx(0.5)  # blended as the style targets are


def test_the_factor_is_the_rule_computed_in_float64(images, vgg_params):
    got = {}
    for style in ("flat", "between", "dense"):
        r = run(validate(config(images, style)), vgg_params, QUIET)
        got[style] = r.report["stages"][-1]["style_factor"][0]
        photo = np.asarray(Image.open(images["photo"]), np.float64) / 255
        art = np.asarray(Image.open(images[style]), np.float64) / 255
        assert got[style] == pytest.approx(numpy_factor(vgg_params, photo, art), rel=2e-4), style
    assert got["dense"] == 1.0 and abs(got["between"] - 1.0) > 0.01 and abs(got["flat"] - got["between"]) > 0.01
    # A dense artwork is run exactly as with the fixed weighting.
    dense = [run(validate(config(images, "dense", weighting=w)), vgg_params, QUIET) for w in ("auto", "fixed")]
    np.testing.assert_array_equal(dense[0].images, dense[1].images)
    # The photograph as its own artwork: no trade at all (its style loss is 0), so the factor is 1.
    same = run(validate({**config(images, "flat"), "style": images["photo"]}), vgg_params, QUIET)
    assert same.report["stages"][-1]["style_factor"] == [1.0]


def main_pair_ends(params, **keys):
    """The main job's pair at 256 px with ``keys``: its config and its ends ``(C_art, S_photo)``."""
    cfg = validate({"content": str(EXAMPLES / "leuvenA.jpg"), "style": str(EXAMPLES / "starry_night.jpg"),
                    "size": 256, "scales": [], "optimizer": {"iterations": 0}, "print_every": 0, **keys})
    setup = prepare(cfg, params)
    photo, arts = setup.final_inputs.content, setup.final_inputs.styles
    targets = setup.targets_fn(setup.params, photo, setup.grams_fn(setup.params, arts), cfg.blend, None)
    return cfg, endpoints(setup.loss_fn, setup.params, targets, unit_weights(setup.weights, 0), photo, arts,
                          cfg.blend)


def test_the_anchor_pair_has_ends_in_the_fixed_balance_and_degenerate_ends_give_one(vgg_params):
    """The main job's pair at 256 px: its ends' ratio times ANCHOR is 1 (the ratio a sparse artwork's
    factor is measured against: a sparse artwork with these ends gets SPARSE_GAIN), and The Starry
    Night is dense, so it runs with a factor of 1."""
    cfg, ends = main_pair_ends(vgg_params)
    assert factor(*ends) == pytest.approx(SPARSE_GAIN, abs=1e-5)
    assert cfg.weighting == "auto" and sparsity(flat_shares(cfg), cfg.blend) == 0.0  # dense: a factor of 1
    assert factor(0.0, 1.0) == factor(1.0, 0.0) == factor(float("nan"), 1.0) == factor(2.0, 4.0, 0.0) == 1.0
    half = SPARSE_GAIN * ANCHOR / 2
    assert factor(2.0, 4.0) == pytest.approx(half) and factor(2.0, 4.0, 0.5) == pytest.approx(half ** 0.5)


@pytest.mark.parametrize("style_loss,content_loss", [("mrf", "features"), ("mean_cov", "features"),
                                                     ("gram", "self_similarity")])
def test_each_loss_has_its_own_anchor_on_the_main_pair(vgg_params, style_loss, content_loss):
    """Every style loss and content loss is anchored to its own ends on the main job's pair at 256 px
    (their scales differ by up to 38 times: one anchor for all weighed a sparse artwork's `mrf`
    term 36 times too strongly); three of them measured again here."""
    assert set(ANCHORS) == {(s, c) for s in STYLE_LOSSES for c in CONTENT_LOSSES}
    _, ends = main_pair_ends(vgg_params, style_loss=style_loss, content_loss=content_loss)
    assert factor(*ends, anchor=anchor_of(style_loss, content_loss)) == pytest.approx(SPARSE_GAIN, abs=1e-5)
    assert abs(factor(*ends) / SPARSE_GAIN - 1.0) > 0.25  # the Gram loss's anchor would not do


def test_the_factor_does_not_depend_on_the_seed_where_the_loss_samples_positions(images, vgg_params):
    factors = [run(validate(config(images, "flat", style_loss="remd", samples=64, seeds=[seed])), vgg_params,
                   QUIET).report["stages"][-1]["style_factor"][0] for seed in (0, 3)]
    assert factors[0] == factors[1] and factors[0] != 1.0


def test_an_alpha_beta_sweep_with_auto_equals_each_ratio_alone(images, vgg_params):
    swept = run(validate(config(images, "flat", sweep={"alpha": [1.0, 30.0]})), vgg_params, QUIET)
    for i, alpha in enumerate([1.0, 30.0]):
        alone = run(validate(config(images, "flat", alpha=alpha)), vgg_params, QUIET)
        assert swept.report["stages"][-1]["style_factor"][i] == alone.report["stages"][-1]["style_factor"][0]
        np.testing.assert_allclose(swept.images[i], alone.images[0], atol=2e-3)
    # Sweeping the weighting itself: one batch, the fixed variant's factor 1.
    both = run(validate(config(images, "flat", sweep={"weighting": ["auto", "fixed"]})), vgg_params, QUIET)
    factors = both.report["stages"][-1]["style_factor"]
    assert factors[1] == 1.0 and factors[0] == swept.report["stages"][-1]["style_factor"][0]
    assert [v["weighting"] for v in both.report["variants"]] == ["auto", "fixed"]


def test_the_fixed_weighting_is_eq_7_with_alpha_and_beta(images, vgg_params):
    """With ``fixed`` the objective is alpha L_content + beta L_style (+ terms): the initial total the
    run reports is that sum of its own reported parts, to the last bit of float32; with ``auto``
    it is beta times the factor."""
    for weighting in ("fixed", "auto"):
        r = run(validate(config(images, "flat", weighting=weighting, lattice=0, alpha=3.0, beta=7.0)), vgg_params, QUIET)
        f = r.report["stages"][-1]["style_factor"][0]
        start = r.report["variants"][0]["initial_loss"]
        expected = np.float32(3.0) * np.float32(start["content"]) + np.float32(7.0 * f) * np.float32(start["style"])
        assert start["total"] == pytest.approx(float(expected), rel=1e-6)
        assert (f == 1.0) == (weighting == "fixed")
    with pytest.raises(Exception, match="weighting: auto needs losses: mean"):
        validate({**config(images, "flat"), "losses": "paper", "weighting": "auto"})
    default = {k: v for k, v in config(images, "flat").items() if k != "weighting"}
    assert validate(default).weighting == "auto" and validate({**default, "losses": "paper"}).weighting == "fixed"


def test_a_resumed_run_uses_the_factors_it_stored(images, vgg_params):
    cfg = validate(config(images, "flat", print_every=1, optimizer={"iterations": 6}))
    whole = run(cfg, vgg_params, QUIET)
    asked = []
    cut = run(cfg, vgg_params, RunHooks(log=lambda line: None, should_stop=lambda: asked.append(1) or len(asked) > 2))
    assert cut.checkpoint is not None and list(cut.checkpoint.factors) == ["32x32"]
    assert len(cut.checkpoint.factors["32x32"]) == 1  # one group of layer weights
    rest = run(cfg, vgg_params, RunHooks(log=lambda line: None, resume=cut.checkpoint))
    np.testing.assert_array_equal(rest.images, whole.images)
    # The stored factor is the one used: a resume from a checkpoint that says otherwise follows it.
    (key, value), = cut.checkpoint.factors["32x32"].items()
    cut.checkpoint.factors["32x32"][key] = 2 * value
    other = run(cfg, vgg_params, RunHooks(log=lambda line: None, resume=cut.checkpoint))
    assert other.report["stages"][-1]["style_factor"][0] == pytest.approx(2 * value, abs=1e-6)


def test_a_clip_has_one_factor_per_size_its_first_frames(tmp_path, images, vgg_params):
    """Every frame of a clip runs with the factor its first frame gives (per-frame factors would
    flicker): the same as the first frame alone, as an image, has."""
    from helpers import made_clip, write_frames
    folder = write_frames(made_clip(3, 32, 40, pan=2, obj=10, speed=3), tmp_path / "clip")
    raw = {"content": str(folder), "style": images["flat"], "size": 40, "print_every": 0,
           "scales": [], "optimizer": {"iterations": 3}, "weighting": "auto", **LAYERS,
           "video": {"frame_iterations": 2}}
    clip = run(validate(raw), vgg_params, QUIET)
    image = {k: v for k, v in raw.items() if k != "video"}
    first = run(validate({**image, "content": str(folder / "frame_00000.png")}), vgg_params, QUIET)
    # The 32 px artwork is smaller than the 32 x 40 frames: the ends are measured at 26 x 32.
    assert clip.report["clip"]["style_factors"] == {"26x32": first.report["stages"][-1]["style_factor"]}
    assert clip.report["clip"]["style_factors"]["26x32"][0] != 1.0


def test_a_stage_larger_than_the_artwork_is_weighed_at_the_artworks_size(images, vgg_params):
    """An artwork enlarged past its own pixels adds blur, not marks: a 48 px stage with a 32 px
    artwork gets the factor a 32 px run measures, and a 24 px stage its own."""
    base = {"content": images["photo"], "style": images["flat"], "print_every": 0, "scales": [],
            "optimizer": {"iterations": 1}, "weighting": "auto", **LAYERS}
    factors = {size: run(validate({**base, "size": size}), vgg_params, QUIET).report["stages"][-1]["style_factor"][0]
               for size in (24, 32, 48)}
    assert factors[48] == factors[32]
    assert factors[24] != factors[32]
    assert all(f != 1.0 for f in factors.values())


def test_auto_adds_the_range_term_for_a_sparse_artwork_only(images, vgg_params):
    """``weighting: auto`` weighs ``range`` by RANGE_WEIGHT times the sparsity (1 for the flat
    artwork, a smoothstep of its flat share for the one between), not for a dense artwork or a
    ``fixed`` variant of the same batch, and a weight the config gives is kept (0 turns it off).
    Its part enters the total at that weight: Eq. 7 plus RANGE_WEIGHT times the mean squared
    distance of the start image's values from [0, 1], that distance computed here in float64."""
    terms = lambda r: [v["terms"] for v in r.report["variants"]]  # noqa: E731
    both = run(validate(config(images, "flat", lattice=0, noise_amplitude=0.6, sweep={"weighting": ["auto", "fixed"]},
                               optimizer={"iterations": 1})), vgg_params, QUIET)
    assert terms(both) == [{"range": RANGE_WEIGHT}, {}]
    f = both.report["stages"][-1]["style_factor"][0]
    start = both.report["variants"][0]["initial_loss"]
    x0 = noise_image(0, (32, 32, 3), "normal", 0.6).astype(np.float64)  # seed 0's start, wide enough to leave [0, 1]
    outside = np.mean((x0 - np.clip(x0, 0.0, 1.0)) ** 2)
    assert outside > 0.01 and start["range"] == pytest.approx(outside, rel=1e-5)
    expected = float(start["content"]) + 10.0 * f * float(start["style"]) + RANGE_WEIGHT * outside
    assert start["total"] == pytest.approx(expected, rel=1e-5)
    between = np.asarray(Image.open(images["between"]), np.float64) / 255.0
    t = np.clip((numpy_flat_share(between) - 0.3) / 0.2, 0.0, 1.0)
    assert 0.0 < t < 1.0
    logs: dict[str, list[str]] = {}
    one = lambda style, **extra: run(validate(config(images, style, lattice=0, **extra)), vgg_params,  # noqa: E731
                                     RunHooks(log=logs.setdefault(style + str(extra), []).append))
    assert terms(one("between"))[0]["range"] == pytest.approx(RANGE_WEIGHT * t * t * (3 - 2 * t), rel=1e-5)
    assert terms(one("dense")) == [{}]
    assert terms(one("flat", terms={"range": 0.0})) == [{"range": 0.0}]
    # The log says so where it happens, and only then.
    said = {k: [line for line in v if line.startswith("weighting: auto")] for k, v in logs.items()}
    assert len(said["between{}"]) == 1 and "range term keeps the pixels in [0, 1]" in said["between{}"][0]
    assert said["dense{}"] == [] and "range" not in said["flat{'terms': {'range': 0.0}}"][0]

