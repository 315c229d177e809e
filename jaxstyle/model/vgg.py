"""VGG-19 (convolutional part) as a pure function of its parameters.

The network follows Gatys et al. (2016), section 2: the 16 convolutional layers of VGG-19, no
fully connected layers, ReLU after every convolution and, by default, average pooling in place
of max pooling. Layer names follow Caffe, where ReLU runs in place, so ``conv4_2`` is the
*rectified* output of that convolution.

Parameters are a plain dict ``{"conv1_1": {"kernel": (3, 3, Cin, Cout), "bias": (Cout,)}, ...}``
with kernels in HWIO layout and ``conv1_1`` expecting Caffe's input convention (BGR, 0..255,
ImageNet mean subtracted); :func:`preprocess` makes that conversion explicit. A layer may also
hold ``"flipped"``, its input gradient's kernel made once (:func:`with_flipped_kernels`).
"""

from __future__ import annotations

from functools import partial
from typing import Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..core.errors import ConfigError

#: The five blocks of VGG-19: number of convolutions and output channels of each.
BLOCKS: tuple[tuple[int, int], ...] = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))

#: Caffe's ImageNet mean in BGR order (the convention of the pretrained weights).
CAFFE_MEAN_BGR = np.array([103.939, 116.779, 123.68], dtype=np.float32)


def _layer_table() -> tuple[tuple[str, int, int], ...]:
    """(name, in_channels, out_channels) of every conv, plus ``poolN`` entries with 0, 0."""
    table = []
    cin = 3
    for b, (n, cout) in enumerate(BLOCKS, start=1):
        for i in range(1, n + 1):
            table.append((f"conv{b}_{i}", cin, cout))
            cin = cout
        table.append((f"pool{b}", 0, 0))
    return tuple(table)


LAYERS: tuple[tuple[str, int, int], ...] = _layer_table()
#: Every layer name in forward order: ``conv1_1, conv1_2, pool1, conv2_1, ...``.
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in LAYERS)
#: The 16 convolution names in forward order.
CONV_NAMES: tuple[str, ...] = tuple(name for name, cin, _ in LAYERS if cin)
#: Expected ``(kernel_shape, bias_shape)`` of each convolution.
PARAM_SHAPES: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    name: ((3, 3, cin, cout), (cout,)) for name, cin, cout in LAYERS if cin
}
_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}


def layer_stride(name: str) -> int:
    """Total down-sampling factor of a layer's responses relative to the input image."""
    idx = layer_index(name)
    return 2 ** sum(1 for n in LAYER_NAMES[:idx] if n.startswith("pool"))


def layer_index(name: str) -> int:
    """Position of a layer in forward order; unknown names raise :class:`ConfigError`."""
    try:
        return _INDEX[name]
    except KeyError:
        import difflib

        close = difflib.get_close_matches(str(name), LAYER_NAMES, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown VGG-19 layer '{name}'{hint}; valid layers: conv1_1 .. conv5_4, pool1 .. pool5"
        ) from None


def min_image_side(layers: Iterable[str]) -> int:
    """Smallest image side whose responses at every given layer are at least 1 x 1."""
    return max((2 ** sum(1 for n in LAYER_NAMES[: layer_index(l) + 1] if n.startswith("pool"))
                for l in layers), default=1)


def preprocess(images: jax.Array) -> jax.Array:
    """RGB in [0, 1] -> Caffe's input: BGR, 0..255, ImageNet mean subtracted.

    This is exactly the 1x1 convolution that opens the mean-normalised VGG-19 file (checked when
    the weights are converted), written out so that the network's input convention is explicit.
    Shape ``(..., H, W, 3)`` is kept.
    """
    mean = jnp.asarray(CAFFE_MEAN_BGR, dtype=images.dtype)
    return images[..., ::-1] * 255.0 - mean


#: The ``padding`` modes: VGG's zeros, or the edge mirrored (``reflect``) or repeated (``replicate``).
PADDINGS = ("zero", "reflect", "replicate")
#: Where a ``reflect`` or ``replicate`` padding applies: every convolution, or conv1_1 only (the image
#: itself; deeper layers keep zeros).
PADDING_LAYERS = ("all", "first")


def layer_padding(name: str, padding: str, padding_layers: str) -> str:
    """The padding convolution ``name`` gets: ``padding`` at every layer or at conv1_1 only
    (``padding_layers``), zeros elsewhere."""
    return padding if padding_layers == "all" or name == "conv1_1" else "zero"


def pad_edges(x: jax.Array, padding: str, width: int = 1) -> jax.Array:
    """``(..., H, W, C)`` padded by ``width`` on each side of H and W in the given mode; ``reflect``
    mirrors about the edge pixel (as numpy's ``reflect``), and on a side of one pixel repeats it."""
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, not {padding!r}")
    widths = [(0, 0)] * (x.ndim - 3) + [(width, width), (width, width), (0, 0)]
    if padding == "zero":
        return jnp.pad(x, widths)
    if padding == "reflect" and min(x.shape[-3:-1]) > width:
        return jnp.pad(x, widths, mode="reflect")
    return jnp.pad(x, widths, mode="edge")


def conv3x3(x: jax.Array, kernel: jax.Array, bias: jax.Array, flipped: jax.Array | None = None,
            winograd: jax.Array | None = None, padding: str = "zero") -> jax.Array:
    """3x3 convolution, stride 1, padding 1 (VGG's and Caffe's zeros by default), plus bias.

    ``x`` is ``(N, H, W, Cin)``, ``kernel`` ``(3, 3, Cin, Cout)``, ``bias`` ``(Cout,)``; returns
    ``(N, H, W, Cout)``. NHWC activations throughout, so no layout transposes appear between layers.
    ``flipped``: the kernel of the input gradient, ``(3, 3, Cout, Cin)``, when made beforehand
    (:func:`with_flipped_kernels`); otherwise it is made from ``kernel`` here. ``winograd``: the
    layer's Winograd kernel ``(16, Cin, Cout)`` (:func:`prepare_kernels`); when given, maps that
    :func:`winograd_pays` for are computed by :func:`winograd_conv` instead (the same sum in fewer
    products). ``padding``: one of :data:`PADDINGS`; ``reflect`` and ``replicate`` pad explicitly
    (:func:`pad_edges`) before a convolution without padding, so the gradient flows through the pad
    back to the edge pixels.
    """
    kernel = kernel.astype(x.dtype)
    h, w = x.shape[-3:-1]
    same = padding == "zero"  # the convolution pads with zeros itself (today's network, exactly)
    if h * w < 9:
        return _conv_tiny(x, kernel, padding) + bias.astype(x.dtype)
    xp = x if same else pad_edges(x, padding)
    pad = 1 if same else 0
    if winograd is not None and winograd_pays(h, w, x.shape[-1]):
        return _conv_winograd(xp, kernel, winograd.astype(x.dtype), pad) + bias.astype(x.dtype)
    flipped = flip_kernel(kernel) if flipped is None else flipped.astype(x.dtype)
    return _conv(xp, kernel, flipped, pad) + bias.astype(x.dtype)


def _conv_tiny(x: jax.Array, kernel: jax.Array, padding: str = "zero") -> jax.Array:
    """:func:`conv3x3` without its bias for responses of fewer than 9 positions, as one matrix
    product of the nine shifted copies of ``x`` (padded) side by side.

    XLA swaps a convolution's operands when the input has fewer positions than the 3 x 3 window
    (conv5_1 of an image under 48 px), and its CPU backend then takes a generic path that cost as
    much as the rest of the network (docs/performance.md); the product is the same sum.
    """
    h, w, c = x.shape[-3:]
    padded = pad_edges(x, padding)
    shifted = [padded[..., dy:dy + h, dx:dx + w, :] for dy in range(3) for dx in range(3)]
    return jnp.concatenate(shifted, axis=-1) @ kernel.reshape(9 * c, -1)


def flip_kernel(kernel: jax.Array) -> jax.Array:
    """``(3, 3, Cin, Cout) -> (3, 3, Cout, Cin)``: flipped in space, input and output channels
    swapped. Convolving a cotangent with it is the convolution's transpose in its input."""
    return jnp.flip(kernel, (0, 1)).swapaxes(2, 3)


def with_flipped_kernels(params: Mapping[str, Mapping[str, jax.Array]],
                         layers: Sequence[str] = LAYER_NAMES) -> dict[str, dict[str, jax.Array]]:
    """``params`` with the :func:`flip_kernel` of every convolution up to the deepest of ``layers``
    stored beside its kernel (``"flipped"``); deeper ones are left as they are.

    The weights are fixed while an image is optimised, so the input gradient's kernels can be made
    once per run instead of in every evaluation, where the copy is otherwise part of the compiled
    step. The convolutions' results do not change.
    """
    return prepare_kernels(params, layers, winograd=False)


def prepare_kernels(params: Mapping[str, Mapping[str, jax.Array]], layers: Sequence[str] = LAYER_NAMES,
                    winograd: bool | Iterable[str] = True) -> dict[str, dict[str, jax.Array]]:
    """``params`` with what every convolution up to the deepest of ``layers`` computes from its fixed
    kernel, made once per run instead of in every evaluation: ``"flipped"`` (:func:`flip_kernel`)
    and ``"winograd"`` (:func:`winograd_kernels`, which serves the input gradient too) for the layers
    named in ``winograd`` (a run passes those its stages' sizes send through the path:
    :func:`winograd_layers`), or with ``True`` for every layer of at least
    :data:`WINOGRAD_MIN_CHANNELS` input channels. Deeper layers and the caller's dict are left as
    they are.
    """
    upto = max((layer_index(l) for l in layers), default=-1)
    chosen = {n for n, cin, _ in LAYERS if cin >= WINOGRAD_MIN_CHANNELS} if winograd is True else \
        set(winograd or ())
    out = {}
    for name, layer in params.items():
        layer = dict(layer)
        if name in _INDEX and _INDEX[name] <= upto:
            kernel = jnp.asarray(layer["kernel"])
            layer["flipped"] = flip_kernel(kernel)
            if name in chosen and kernel.shape[2] >= WINOGRAD_MIN_CHANNELS:
                layer["winograd"] = winograd_kernels(kernel)
        out[name] = layer
    return out


# ---- Winograd's minimal filtering, F(2 x 2, 3 x 3) (Lavin and Gray, 2016) ---------------------------
# A 2 x 2 block of outputs is computed from a 4 x 4 block of inputs as A^T [(G k G^T) * (B^T d B)] A:
# 16 products per input and output channel instead of 36, so a layer becomes 16 matrix products of
# (blocks x Cin) by (Cin x Cout) plus transforms that only add and subtract. The entries of B, G and
# A are 0, +-1 and +-1/2, so float32 rounding stays at a few ulps of the direct sum.
_WG_G = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])

#: Layers with fewer input channels never take the Winograd path (their kernels are not made).
WINOGRAD_MIN_CHANNELS = 256


def winograd_pays(height: int, width: int, channels: int) -> bool:
    """Whether :func:`winograd_conv` beats XLA:CPU's convolution for a map of this size: a fixed table
    measured on the project's CPU (docs/performance.md). The 16 products' efficiency falls behind the
    direct convolution's as maps grow (the transforms move data, the direct convolution is compute
    bound); below 100 positions a layer saves too little per iteration to repay the half second the
    path adds to compiling (at 8 x 8 positions about 1 ms per layer and iteration)."""
    return channels >= WINOGRAD_MIN_CHANNELS and 100 <= height * width <= 64 * 48


def winograd_layers(height: int, width: int, layers: Sequence[str]) -> list[str]:
    """The convolutions, up to the deepest of ``layers``, that take the Winograd path for an image of
    ``height`` x ``width`` px (when its kernels were made: :func:`prepare_kernels`)."""
    upto = max((layer_index(l) for l in layers), default=-1)
    return [name for name, cin, _ in LAYERS[: upto + 1]
            if cin and winograd_pays(height // layer_stride(name), width // layer_stride(name), cin)]


def winograd_kernels(kernel: jax.Array) -> jax.Array:
    """``(3, 3, Cin, Cout) -> (16, Cin, Cout)``: G k G^T for every channel pair, the 4 x 4 positions
    flattened row by row."""
    g = jnp.asarray(_WG_G, kernel.dtype)
    return jnp.einsum("ai,ijcd,bj->abcd", g, kernel, g).reshape(16, *kernel.shape[2:])


# B^T and A^T of F(2 x 2, 3 x 3); on a 4 x 4 block flattened row by row the input transform
# B^T d B is the 16 x 16 matrix kron(B^T, B^T) and the output transform A^T m A the 4 x 16 matrix
# kron(A^T, A^T). As two constant matrix products (and one gather of the blocks) XLA compiles a layer
# in about 0.4 s instead of 0.7 s for the same transforms written as 16 add/subtract expressions,
# each its own fused kernel; both run equally fast (docs/performance.md).
_WG_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]])
_WG_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]])
_WG_B16 = np.kron(_WG_BT, _WG_BT)
_WG_A16 = np.kron(_WG_AT, _WG_AT)
# The flipped kernel's transform is the kernel's with block positions 0 and 3 swapped along both axes.
_WG_FLIP = np.array([4 * a + b for a in (3, 1, 2, 0) for b in (3, 1, 2, 0)])


def _wg_blocks(x: jax.Array, axis: int, blocks: int) -> jax.Array:
    """Overlapping runs of 4 with stride 2 along ``axis``: size 2 * blocks + 2 there becomes
    ``(blocks, 4)`` (a reshape, two slices and one concatenation: one gather XLA fuses)."""
    pairs = x.reshape(x.shape[:axis] + (blocks + 1, 2) + x.shape[axis + 1:])
    return jnp.concatenate([jax.lax.slice_in_dim(pairs, 0, blocks, axis=axis),
                            jax.lax.slice_in_dim(pairs, 1, blocks + 1, axis=axis)], axis=axis + 1)


def winograd_valid(x: jax.Array, u: jax.Array, transposed: bool = False) -> jax.Array:
    """The 3x3 convolution without padding (``(N, H, W, Cin) -> (N, H - 2, W - 2, Cout)``) of ``x``
    with the kernel whose :func:`winograd_kernels` is ``u`` ``(16, Cin, Cout)``; ``transposed``: with
    that kernel's :func:`flip_kernel` instead (``x`` then has Cout channels and the result Cin), the
    input gradient's convolution. H and W at least 3; an odd output side is computed on one more
    zero row or column and cut.

    The flipped kernel's transform is ``u``'s with positions 0 and 3 swapped along both axes and
    its channels transposed (G times a reversal is G with its first and last rows swapped), so the
    input gradient needs no second set of kernels: its blocks are transformed in that order.
    """
    n, h, w, c = x.shape
    th, tw = (h - 1) // 2, (w - 1) // 2  # blocks of 2 x 2 outputs covering (h - 2) x (w - 2)
    x = jnp.pad(x, ((0, 0), (0, 2 * th + 2 - h), (0, 2 * tw + 2 - w), (0, 0)))
    d = _wg_blocks(_wg_blocks(x, 1, th), 3, tw).transpose(2, 4, 0, 1, 3, 5)  # (4, 4, N, th, tw, Cin)
    b16, a16 = (_WG_B16[_WG_FLIP], _WG_A16[:, _WG_FLIP]) if transposed else (_WG_B16, _WG_A16)
    v = jnp.dot(jnp.asarray(b16, x.dtype), d.reshape(16, -1)).reshape(16, n * th * tw, c)
    m = jnp.einsum("ktd,kcd->ktc" if transposed else "ktc,kcd->ktd", v, u)
    y = jnp.dot(jnp.asarray(a16, x.dtype), m.reshape(16, -1)).reshape(2, 2, n, th, tw, -1)
    return y.transpose(2, 3, 0, 4, 1, 5).reshape(n, 2 * th, 2 * tw, -1)[:, : h - 2, : w - 2]


def winograd_conv(x: jax.Array, u: jax.Array, transposed: bool = False) -> jax.Array:
    """:func:`conv3x3`'s convolution (zero padding 1, no bias) by :func:`winograd_valid`."""
    return _winograd_padded(x, u, 1, transposed)


def conv_hwio(x: jax.Array, kernel: jax.Array, pad: int = 1) -> jax.Array:
    """The 3x3 convolution with ``pad`` zeros on each side: 1 keeps the size, 0 pads nothing (the
    input was padded already), 2 is the full convolution (a valid one's input gradient)."""
    return jax.lax.conv_general_dilated(x, kernel, window_strides=(1, 1), padding=((pad, pad), (pad, pad)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))


# The input gradient has its own rule. JAX's transpose of a convolution is a convolution of the
# reversed kernel with input and output channels swapped in its dimension labels ("01oi"). At top
# level XLA:CPU rewrites that into its fast convolution; inside a while loop or a conditional
# (lax.fori_loop, jaxopt's line searches, the "retry" step) it kept it as written, which ran about
# 10 times slower (jax 0.10.2; a whole loss-and-gradient at 64 to 384 px took 1.4 to 4.4 times as
# long in a fori_loop). Written out as an ordinary HWIO convolution of the flipped, channel-swapped
# kernel it is fast everywhere. Other backends keep JAX's own transpose (lax.platform_dependent
# picks one when the program is lowered). ``pad`` (1 or 0, static) is the convolution's own zero
# padding; its transpose pads the cotangent by 2 - pad.
@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv(x: jax.Array, kernel: jax.Array, flipped: jax.Array, pad: int = 1) -> jax.Array:
    return conv_hwio(x, kernel, pad)


def _conv_fwd(x, kernel, flipped, pad):
    return conv_hwio(x, kernel, pad), (x, kernel, flipped)


def _input_grad_flipped(g: jax.Array, kernel: jax.Array, flipped: jax.Array, pad: int = 1) -> jax.Array:
    """Transpose of :func:`conv_hwio` in its input: the convolution of the cotangent with the
    flipped kernel, padded by 2 - pad (1 again for a convolution that keeps the size)."""
    return conv_hwio(g, flipped, 2 - pad)


def _input_grad_jax(g: jax.Array, kernel: jax.Array, flipped: jax.Array, pad: int = 1) -> jax.Array:
    """The same transpose as JAX derives it (used off CPU)."""
    grow = 2 - 2 * pad  # an unpadded convolution's input is 2 px larger than its output
    x_shape = jax.ShapeDtypeStruct((*g.shape[:-3], g.shape[-3] + grow, g.shape[-2] + grow, kernel.shape[2]),
                                   g.dtype)
    return jax.linear_transpose(lambda z: conv_hwio(z, kernel, pad), x_shape)(g)[0]


def _kernel_grad(x: jax.Array, kernel: jax.Array, g: jax.Array, pad: int) -> jax.Array:
    # The kernel's gradient (for experiments on the weights); XLA removes it when unused. A linear
    # transpose, unlike jax.vjp, traces no forward convolution to throw away.
    return jax.linear_transpose(lambda k: conv_hwio(x, k, pad), kernel)(g)[0]


def _conv_bwd(pad, residuals, g):
    x, kernel, flipped = residuals
    dx = jax.lax.platform_dependent(g, kernel, flipped, cpu=partial(_input_grad_flipped, pad=pad),
                                    default=partial(_input_grad_jax, pad=pad))
    # The output does not depend on ``flipped`` (a copy of the kernel's values): its cotangent is zero.
    return dx, _kernel_grad(x, kernel, g, pad), jnp.zeros_like(flipped)


_conv.defvjp(_conv_fwd, _conv_bwd)


# The Winograd path's gradients: the input gradient is the same convolution of the cotangent with
# the flipped kernel (read from the same transformed kernel), the kernel gradient that of ``_conv``.
def _winograd_padded(x: jax.Array, u: jax.Array, pad: int, transposed: bool = False) -> jax.Array:
    """:func:`winograd_valid` of ``x`` with ``pad`` zeros on each side (as :func:`conv_hwio`)."""
    return winograd_valid(jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0))), u, transposed)


@partial(jax.custom_vjp, nondiff_argnums=(3,))
def _conv_winograd(x: jax.Array, kernel: jax.Array, u: jax.Array, pad: int = 1) -> jax.Array:
    return _winograd_padded(x, u, pad)


def _conv_winograd_fwd(x, kernel, u, pad):
    return _winograd_padded(x, u, pad), (x, kernel, u)


def _conv_winograd_bwd(pad, residuals, g):
    x, kernel, u = residuals
    return _winograd_padded(g, u, 2 - pad, transposed=True), _kernel_grad(x, kernel, g, pad), jnp.zeros_like(u)


_conv_winograd.defvjp(_conv_winograd_fwd, _conv_winograd_bwd)


def pool2x2(x: jax.Array, pooling: str) -> jax.Array:
    """2x2, stride 2 pooling of ``(N, H, W, C)``; an odd last row or column is dropped (floor)."""
    n, h, w, c = x.shape
    blocks = x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
    return blocks.max(axis=(2, 4)) if pooling == "max" else blocks.mean(axis=(2, 4))


def check_layers(layers: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for any unknown layer name."""
    for name in layers:
        layer_index(name)


def vgg19_features(
    params: Mapping[str, Mapping[str, jax.Array]],
    images: jax.Array,
    layers: Sequence[str],
    pooling: str = "avg",
    remat: bool = False,
    padding: str = "zero",
    padding_layers: str = "all",
) -> dict[str, jax.Array]:
    """VGG-19 responses of ``images`` at the requested layers (Gatys et al. 2016, section 2).

    Args:
      params: converted weights, see :func:`jaxstyle.load_vgg19`.
      images: ``(H, W, 3)`` or ``(N, H, W, 3)`` RGB in [0, 1] (float32, or float64 for tests).
      layers: names from :data:`LAYER_NAMES`; ``convX_Y`` are rectified responses (Caffe's
        in-place ReLU), ``poolX`` the pooled ones.
      pooling: ``"avg"`` (the paper's choice) or ``"max"`` (the original network's).
      remat: wrap each block in ``jax.checkpoint``, so that a gradient keeps only the blocks'
        inputs and the requested responses and recomputes the rest (less memory, more compute).
      padding: the convolutions' padding, one of :data:`PADDINGS` (``"zero"``: VGG's own).
      padding_layers: where ``padding`` applies, one of :data:`PADDING_LAYERS`: ``"all"``
        convolutions or the ``"first"`` only, the others padding with zeros.

    Returns:
      ``{name: responses}``, each ``(h, w, C)`` or ``(N, h, w, C)`` to match ``images``. No layer
      deeper than the deepest requested one is computed.

    Differentiable in reverse mode to any order (``jax.grad``, Hessian-vector products as the
    gradient of a gradient); forward mode (``jax.jvp``) is not available, because the
    convolutions' gradient has its own rule (see ``_conv``).
    """
    if pooling not in ("avg", "max"):
        raise ConfigError(f"pooling must be 'avg' or 'max', not '{pooling}'")
    if padding not in PADDINGS:
        raise ConfigError(f"padding must be one of {', '.join(PADDINGS)}, not {padding!r}")
    if padding_layers not in PADDING_LAYERS:
        raise ConfigError(f"padding_layers must be one of {', '.join(PADDING_LAYERS)}, not {padding_layers!r}")
    wanted = set(layers)
    check_layers(wanted)
    if not wanted:
        return {}
    if images.ndim not in (3, 4) or images.shape[-1] != 3:
        raise ConfigError(f"images must be (H, W, 3) or (N, H, W, 3), got shape {images.shape}")
    single = images.ndim == 3
    x = preprocess(images[None] if single else images)
    names = LAYER_NAMES[: max(layer_index(n) for n in wanted) + 1]
    blocks, current = [], []
    for name in names:  # a block: its convolutions and the pooling that ends it
        current.append(name)
        if name.startswith("pool"):
            blocks.append(tuple(current))
            current = []
    if current:
        blocks.append(tuple(current))

    out = {}
    for block in blocks:
        def run_block(x, p, block=block):
            kept = {}
            for name in block:
                x = pool2x2(x, pooling) if name.startswith("pool") else \
                    jax.nn.relu(conv3x3(x, p[name]["kernel"], p[name]["bias"], p[name].get("flipped"),
                                        p[name].get("winograd"), layer_padding(name, padding, padding_layers)))
                if name in wanted:
                    kept[name] = x
            return x, kept
        block_params = {n: params[n] for n in block if not n.startswith("pool")}
        x, kept = (jax.checkpoint(run_block) if remat else run_block)(x, block_params)
        out.update(kept)
    return {name: (v[0] if single else v) for name, v in out.items()}
