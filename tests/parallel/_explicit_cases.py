"""jaxconv's ops on a batch sharded over ``Explicit`` mesh axes, against the unsharded run.

Run as ``python -m tests.parallel._explicit_cases OUT.json [--all]`` with ``XLA_FLAGS`` giving 4
host devices. Each case is ``fn(params, *batch)``: the parameters replicated, every batch array
sharded over its leading axis on a 4-device mesh with ``Explicit`` axes, under ``jax.set_mesh``.
The forward and ``jax.grad`` of ``sum(sin(out))`` (an asymmetric cotangent) with respect to every
float parameter and batch array are jitted and compared with the same function jitted on the
unsharded arrays. Modules run through ``nnx.merge`` inside the jitted function, so on CPU they
run under their channels-last plan, as in a hand-written ``nnx.jit`` step. Without ``--all``
only the cases marked ``default`` run, with a hand-written training step (:func:`train`) on
``Explicit`` axes against the same step on ``Auto`` axes.
"""
from __future__ import annotations

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, PartitionSpec as P

import jaxconv.functional as F
from jaxconv import nn

G = np.random.default_rng(0)
N = 8  # batch: 2 per device


def r(*shape, dtype=np.float32):
    return G.standard_normal(shape).astype(dtype)


def labels(*shape, high=5):
    return G.integers(0, high, shape).astype(np.int32)


CASES = {}


def case(name, default=False):
    def register(build):
        CASES[name] = (build, default)
        return build
    return register


def functional(name, f, batch, params=None, default=False):
    """A case ``f(params, *batch)``; ``params``: dict of replicated arrays."""
    CASES[name] = (lambda: (f, params or {}, batch), default)


def module(name, build, batch, default=False, train=True):
    """A case calling the module ``build()`` on ``batch``; returns its output and its state."""
    def make():
        m = build()
        m.train() if train else m.eval()
        graphdef, state = nnx.split(m)

        def f(state, *xs):
            copy = nnx.merge(graphdef, state)
            out = copy(*xs)
            return out, nnx.state(copy, nnx.BatchStat)
        return f, state, batch
    CASES[name] = (make, default)


# ---------------------------------------------------------------- convolutions
x4, x16 = r(N, 4, 9, 9), r(N, 16, 9, 9)
functional("conv2d 3x3 (nhwc)", lambda p, x: F.conv2d(x, p["w"], p["b"], padding=1),
           (x4,), {"w": r(5, 4, 3, 3), "b": r(5)})
functional("conv2d 2x2 16ch (taps weight grad)", lambda p, x: F.conv2d(x, p["w"], stride=2),
           (x16,), {"w": r(6, 16, 2, 2)})
functional("conv2d strided dilated", lambda p, x: F.conv2d(x, p["w"], stride=2, dilation=2, padding=2),
           (x4,), {"w": r(5, 4, 3, 3)})
functional("conv2d groups=2", lambda p, x: F.conv2d(x, p["w"], groups=2, padding=1),
           (x4,), {"w": r(6, 2, 3, 3)})
functional("conv2d depthwise s1", lambda p, x: F.conv2d(x, p["w"], p["b"], groups=4, padding=1),
           (x4,), {"w": r(4, 1, 3, 3), "b": r(4)})
functional("conv2d depthwise s2", lambda p, x: F.conv2d(x, p["w"], groups=4, stride=2, padding=1),
           (x4,), {"w": r(4, 1, 3, 3)})
functional("conv2d depthwise x2 dilated", lambda p, x: F.conv2d(x, p["w"], groups=4, dilation=2),
           (x4,), {"w": r(8, 1, 3, 3)})
functional("conv1d depthwise s2", lambda p, x: F.conv1d(x, p["w"], groups=4, stride=2),
           (r(N, 4, 11),), {"w": r(4, 1, 3)})
functional("conv3d depthwise s2", lambda p, x: F.conv3d(x, p["w"], groups=4, stride=2),
           (r(N, 4, 5, 5, 5),), {"w": r(4, 1, 3, 3, 3)})
functional("conv2d 1x1 small (matmul)", lambda p, x: F.conv2d(x, p["w"], p["b"]),
           (x4,), {"w": r(6, 4, 1, 1), "b": r(6)})
functional("conv2d 1x1 large (batched product)", lambda p, x: F.conv2d(x, p["w"], stride=1),
           (r(N, 4, 24, 24),), {"w": r(6, 4, 1, 1)})
functional("conv2d 1x1 strided", lambda p, x: F.conv2d(x, p["w"], stride=2),
           (x4,), {"w": r(6, 4, 1, 1)})
functional("conv1d", lambda p, x: F.conv1d(x, p["w"], padding=1), (r(N, 4, 11),), {"w": r(5, 4, 3)})
functional("conv3d", lambda p, x: F.conv3d(x, p["w"], stride=2), (r(N, 4, 5, 5, 5),),
           {"w": r(5, 4, 3, 3, 3)})
functional("conv2d bfloat16 taps", lambda p, x: F.conv2d(x, p["w"], padding=1).astype(jnp.float32),
           (r(N, 128, 4, 4).astype(jnp.bfloat16),), {"w": r(4, 128, 3, 3).astype(jnp.bfloat16)})
functional("conv_transpose2d s2 (phase)",
           lambda p, x: F.conv_transpose2d(x, p["w"], p["b"], stride=2, padding=1, output_padding=1),
           (x4,), {"w": r(4, 5, 3, 3), "b": r(5)})
functional("conv_transpose2d s2 k4 (phase)", lambda p, x: F.conv_transpose2d(x, p["w"], stride=2, padding=1),
           (x4,), {"w": r(4, 3, 4, 4)})
functional("conv_transpose1d s3 (phase)", lambda p, x: F.conv_transpose1d(x, p["w"], stride=3),
           (r(N, 4, 7),), {"w": r(4, 3, 5)})
functional("conv_transpose3d s2 (phase)", lambda p, x: F.conv_transpose3d(x, p["w"], stride=2),
           (r(N, 4, 3, 3, 3),), {"w": r(4, 3, 2, 2, 2)})
functional("conv_transpose2d s1", lambda p, x: F.conv_transpose2d(x, p["w"], padding=1),
           (x4,), {"w": r(4, 5, 3, 3)})
functional("conv_transpose2d groups dilated", lambda p, x: F.conv_transpose2d(x, p["w"], stride=2, groups=2, dilation=2),
           (x4,), {"w": r(4, 3, 3, 3)})

# ---------------------------------------------------------------- pooling
functional("max_pool2d", lambda p, x: F.max_pool2d(x, 3, 2), (x4,))
functional("max_pool2d pad ceil dilation", lambda p, x: F.max_pool2d(x, 3, 2, 1, 2, ceil_mode=True),
           (x4,), default=True)
functional("max_pool2d indices", lambda p, x: F.max_pool2d(x, 2, return_indices=True)[0],
           (x4,))
functional("max_pool1d", lambda p, x: F.max_pool1d(x, 3, 2, 1), (r(N, 4, 11),))
functional("max_pool3d ceil", lambda p, x: F.max_pool3d(x, 2, ceil_mode=True), (r(N, 2, 5, 5, 5),))
functional("avg_pool2d ceil count_include_pad", lambda p, x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True),
           (x4,))
functional("avg_pool2d ceil no pad count", lambda p, x: F.avg_pool2d(
    x, 3, 2, 1, ceil_mode=True, count_include_pad=False, divisor_override=None), (x4,))
functional("lp_pool2d ceil", lambda p, x: F.lp_pool2d(x, 2.0, 3, 2, ceil_mode=True), (x4,))
functional("lp_pool1d", lambda p, x: F.lp_pool1d(x, 3.0, 2), (jnp.abs(r(N, 4, 11)),))
functional("adaptive_avg_pool2d 4x3", lambda p, x: F.adaptive_avg_pool2d(x, (4, 3)), (x4,))
functional("adaptive_max_pool2d 4x3", lambda p, x: F.adaptive_max_pool2d(x, (4, 3)), (x4,))
functional("adaptive_avg_pool2d 1", lambda p, x: F.adaptive_avg_pool2d(x, 1), (x4,))
functional("adaptive_max_pool1d", lambda p, x: F.adaptive_max_pool1d(x, 4), (r(N, 4, 11),))
functional("adaptive_avg_pool3d", lambda p, x: F.adaptive_avg_pool3d(x, 2), (r(N, 2, 5, 5, 5),))

# ---------------------------------------------------------------- normalization
c4 = {"w": r(4), "b": r(4)}
functional("batch_norm train", lambda p, x: F.batch_norm(x, p["m"], p["v"], p["w"], p["b"], True),
           (x4,), {**c4, "m": r(4), "v": np.abs(r(4)) + 0.5})
functional("batch_norm eval", lambda p, x: F.batch_norm(x, p["m"], p["v"], p["w"], p["b"], False),
           (x4,), {**c4, "m": r(4), "v": np.abs(r(4)) + 0.5})
functional("group_norm", lambda p, x: F.group_norm(x, 2, p["w"], p["b"]), (x4,), c4)
functional("instance_norm", lambda p, x: F.instance_norm(x, weight=p["w"], bias=p["b"]), (x4,), c4)
functional("layer_norm", lambda p, x: F.layer_norm(x, (9,), p["w"], p["b"]), (x4,),
           {"w": r(9), "b": r(9)})
functional("rms_norm", lambda p, x: F.rms_norm(x, (9, 9), p["w"]), (x4,), {"w": r(9, 9)})
functional("local_response_norm", lambda p, x: F.local_response_norm(x, 3), (x4,))

# ---------------------------------------------------------------- resize, rearrange, pad
functional("interpolate nearest x2", lambda p, x: F.interpolate(x, scale_factor=2), (x4,))
functional("interpolate nearest 13x7", lambda p, x: F.interpolate(x, (13, 7)), (x4,))
functional("interpolate bilinear", lambda p, x: F.interpolate(x, (13, 7), mode="bilinear"), (x4,))
functional("interpolate bilinear align", lambda p, x: F.interpolate(x, scale_factor=2, mode="bilinear",
                                                                     align_corners=True), (x4,))
functional("interpolate bicubic", lambda p, x: F.interpolate(x, (5, 12), mode="bicubic"), (x4,))
functional("interpolate area", lambda p, x: F.interpolate(x, (4, 5), mode="area"), (x4,))
functional("interpolate trilinear", lambda p, x: F.interpolate(x, scale_factor=1.5, mode="trilinear"),
           (r(N, 2, 4, 4, 4),))
functional("pixel_shuffle", lambda p, x: F.pixel_shuffle(x, 2), (r(N, 8, 5, 5),))
functional("pixel_unshuffle", lambda p, x: F.pixel_unshuffle(x, 2), (r(N, 2, 6, 6),))
functional("channel_shuffle", lambda p, x: F.channel_shuffle(x, 2), (x4,))
functional("unfold", lambda p, x: F.unfold(x, 3, padding=1, stride=2), (x4,))
functional("fold", lambda p, x: F.fold(x, (5, 5), 2, stride=1), (r(N, 4 * 4, 16),))
functional("pad reflect", lambda p, x: F.pad(x, (1, 2, 2, 1), mode="reflect"), (x4,))
functional("pad replicate", lambda p, x: F.pad(x, (1, 2, 2, 1), mode="replicate"), (x4,))
functional("pad circular", lambda p, x: F.pad(x, (1, 2, 2, 1), mode="circular"), (x4,))
functional("pad constant", lambda p, x: F.pad(x, (1, 2, 2, 1), value=0.5), (x4,))
functional("flatten + linear", lambda p, x: F.linear(F.flatten(x, 1), p["w"], p["b"]), (x4,),
           {"w": r(3, 4 * 81), "b": r(3)})
functional("prelu softmax gelu", lambda p, x: F.softmax(F.gelu(F.prelu(x, p["a"])), 1), (x4,),
           {"a": r(4)})

# ---------------------------------------------------------------- losses
logits = r(N, 5)
functional("cross_entropy", lambda p, x, y: F.cross_entropy(x, y, p["w"], label_smoothing=0.1),
           (logits, labels(N)), {"w": np.abs(r(5))})
functional("cross_entropy 2d ignore", lambda p, x, y: F.cross_entropy(x, y, ignore_index=2),
           (r(N, 5, 3, 3), labels(N, 3, 3)))
functional("nll_loss", lambda p, x, y: F.nll_loss(F.log_softmax(x, 1), y), (logits, labels(N)))
functional("bce with logits", lambda p, x, y: F.binary_cross_entropy_with_logits(x, y, pos_weight=p["pw"]),
           (logits, (r(N, 5) > 0).astype(np.float32)), {"pw": np.abs(r(5))})
functional("kl_div", lambda p, x, y: F.kl_div(F.log_softmax(x, 1), F.softmax(y, 1), reduction="batchmean"),
           (logits, r(N, 5)))
functional("mse l1 huber smooth_l1", lambda p, x, y: F.mse_loss(x, y) + F.l1_loss(x, y)
           + F.huber_loss(x, y) + F.smooth_l1_loss(x, y, beta=0.5), (logits, r(N, 5)))
functional("gaussian poisson nll", lambda p, x, y: F.gaussian_nll_loss(x, y, jnp.exp(x))
           + F.poisson_nll_loss(x, jnp.abs(y)), (logits, r(N, 5)))
functional("multi_margin", lambda p, x, y: F.multi_margin_loss(x, y), (logits, labels(N)))
functional("multilabel_margin", lambda p, x, y: F.multilabel_margin_loss(x, y),
           (logits, np.concatenate([labels(N, 2), -np.ones((N, 3), np.int32)], 1)))
functional("multilabel_soft_margin", lambda p, x, y: F.multilabel_soft_margin_loss(x, y),
           (logits, (r(N, 5) > 0).astype(np.float32)))
functional("triplet cosine ranking", lambda p, a, b, c, t: F.triplet_margin_loss(a, b, c)
           + F.cosine_embedding_loss(a, b, t) + F.margin_ranking_loss(a[:, 0], b[:, 0], t)
           + F.hinge_embedding_loss(a, jnp.where(c > 0, 1.0, -1.0)) + F.soft_margin_loss(a, jnp.sign(b)),
           (logits, r(N, 5), r(N, 5), np.sign(r(N)).astype(np.float32)))
functional("pairwise_distance", lambda p, a, b: F.pairwise_distance(a, b), (logits, r(N, 5)))
functional("ctc_loss", lambda p, x, y: F.ctc_loss(
    F.log_softmax(jnp.swapaxes(x, 0, 1), 2), y, jnp.full((N,), 6), jnp.full((N,), 2)),
    (r(N, 6, 4), labels(N, 2, high=3) + 1))

# ---------------------------------------------------------------- attention, recurrent
functional("scaled_dot_product_attention", lambda p, q, k, v: F.scaled_dot_product_attention(
    q, k, v, is_causal=True), (r(N, 2, 5, 4), r(N, 2, 5, 4), r(N, 2, 5, 4)))
module("MultiheadAttention batch_first", lambda: nn.MultiheadAttention(
    8, 2, batch_first=True, rngs=nnx.Rngs(0)), (r(N, 5, 8), r(N, 6, 8), r(N, 6, 8)))
module("LSTM batch_first 2 layers bi", lambda: nn.LSTM(4, 6, 2, batch_first=True, bidirectional=True,
                                                          rngs=nnx.Rngs(0)), (r(N, 5, 4),))
module("GRU batch_first", lambda: nn.GRU(4, 6, batch_first=True, rngs=nnx.Rngs(0)), (r(N, 5, 4),))
module("LSTMCell", lambda: nn.LSTMCell(4, 6, rngs=nnx.Rngs(0)), (r(N, 4),))

# ---------------------------------------------------------------- modules (channels-last plan)
module("Conv2d+BN+ReLU+MaxPool (plan)", lambda: nn.Sequential(
    nn.Conv2d(4, 8, 3, padding=1, bias=False, rngs=nnx.Rngs(0)), nn.BatchNorm2d(8), nn.ReLU(),
    nn.MaxPool2d(3, 2, 1)), (x4,))
module("BatchNorm2d eval (plan)", lambda: nn.Sequential(
    nn.Conv2d(4, 8, 3, rngs=nnx.Rngs(0)), nn.BatchNorm2d(8)), (x4,), train=False)
module("depthwise separable (plan)", lambda: nn.Sequential(
    nn.Conv2d(4, 4, 3, 2, 1, groups=4, rngs=nnx.Rngs(0)), nn.Conv2d(4, 8, 1, rngs=nnx.Rngs(1)),
    nn.AvgPool2d(2, ceil_mode=True)), (x4,))
module("ConvTranspose2d + Upsample (plan)", lambda: nn.Sequential(
    nn.ConvTranspose2d(4, 3, 4, 2, 1, rngs=nnx.Rngs(0)), nn.Upsample(scale_factor=2, mode="bilinear"),
    nn.AdaptiveAvgPool2d((3, 5)), nn.Flatten(), nn.Linear(45, 2, rngs=nnx.Rngs(1))), (x4,))
module("LayerNorm GroupNorm (plan)", lambda: nn.Sequential(
    nn.Conv2d(4, 8, 3, rngs=nnx.Rngs(0)), nn.GroupNorm(2, 8), nn.LayerNorm(7)), (x4,))
module("PixelShuffle Unfold (plan)", lambda: nn.Sequential(
    nn.Conv2d(4, 8, 1, rngs=nnx.Rngs(0)), nn.PixelShuffle(2), nn.Unfold(2, stride=2)), (x4,))


# ---------------------------------------------------------------- runner
def _floats(tree):
    return jax.tree_util.tree_map(lambda a: jnp.issubdtype(a.dtype, jnp.floating), tree)


def _program(f):
    """jitted ``(forward, grads)`` of ``f``; grads of ``sum(sin(out))`` by float leaves."""
    def loss(params, batch):
        out = jax.tree_util.tree_leaves(f(params, *batch))
        return sum(jnp.sum(jnp.sin(o.astype(jnp.float32))) for o in out
                   if jnp.issubdtype(o.dtype, jnp.floating))

    def grads(params, batch):
        diff = (params, tuple(b for b in batch))
        mask = _floats(diff)
        dyn, static = jax.tree_util.tree_map(lambda a, m: a if m else None, diff, mask), diff

        def l(d):
            full = jax.tree_util.tree_map(lambda a, s: s if a is None else a, d, static,
                                          is_leaf=lambda a: a is None)
            return loss(*full)
        return jax.grad(l)(dyn)
    return jax.jit(lambda p, b: f(p, *b)), jax.jit(grads)


def _gap(got, want):
    """Largest |got - want| over the leaves, relative to the largest |want| of all of them (the
    scale of the float32 rounding of sums in another order); 1 for a mismatch of structure."""
    got, want = jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)
    if len(got) != len(want) or any(np.shape(g) != np.shape(w) for g, w in zip(got, want)):
        return 1.0
    got, want = [np.asarray(g, np.float64) for g in got], [np.asarray(w, np.float64) for w in want]
    scale = max((np.max(np.abs(w), initial=0) for w in want), default=0) or 1.0
    return max((float(np.max(np.abs(g - w), initial=0)) for g, w in zip(got, want)), default=0) / scale


def run_case(name, mesh):
    build, _ = CASES[name]
    f, params, batch = build()
    params = jax.tree_util.tree_map(jnp.asarray, params)
    batch = tuple(jnp.asarray(b) for b in batch)
    fwd, grads = _program(f)
    want = fwd(params, batch), grads(params, batch)
    try:
        with jax.set_mesh(mesh):
            p = jax.device_put(params, P())
            b = tuple(jax.device_put(x, P("data")) for x in batch)
            got = fwd(p, b), grads(p, b)
    except Exception as e:  # noqa: BLE001 - the report names it
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:400]}"}
    return {"fwd": _gap(got[0], want[0]), "grad": _gap(got[1], want[1])}


# ---------------------------------------------------------------- a hand-written training step
def resnetish():
    """Conv, BatchNorm, max pool, a strided depthwise conv, a 1x1 conv, a transposed conv."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False, rngs=nnx.Rngs(0)), nn.BatchNorm2d(8), nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
        nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False, rngs=nnx.Rngs(1)), nn.BatchNorm2d(8),
        nn.ReLU(), nn.Conv2d(8, 16, 1, rngs=nnx.Rngs(2)),
        nn.ConvTranspose2d(16, 8, 2, stride=2, rngs=nnx.Rngs(3)), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5, rngs=nnx.Rngs(4)))


@nnx.jit
def sgd_step(model, x, y):
    """One SGD step of ``cross_entropy``, written by hand (no ``data_parallel_step``)."""
    loss, grads = nnx.value_and_grad(lambda m: F.cross_entropy(m(x), y))(model)
    params = nnx.state(model, nnx.Param)
    nnx.update(model, jax.tree_util.tree_map(lambda p, g: p - 0.1 * g, params, grads))
    return loss


def train(mesh, steps=2):
    """Losses and the final state of :func:`resnetish` after ``steps`` steps on ``mesh`` (the
    state replicated, the batch sharded), or the error."""
    g = np.random.default_rng(1)
    data = [(g.standard_normal((N, 3, 16, 16)).astype(np.float32) * (1 + t),
             g.integers(0, 5, N).astype(np.int32)) for t in range(steps)]
    model = resnetish().train()
    try:
        with jax.set_mesh(mesh):
            nnx.update(model, jax.device_put(nnx.state(model), P()))
            losses = [sgd_step(model, jax.device_put(x, P("data")), jax.device_put(y, P("data")))
                      for x, y in data]
            return [np.asarray(v) for v in losses], nnx.state(model)
    except Exception as e:  # noqa: BLE001 - the report names it
        return f"{type(e).__name__}: {str(e).splitlines()[0][:400]}", None


def _spatial_error(mesh):
    """The depthwise conv on an input sharded over its height: the error, which names the rule."""
    x, w = r(2, 4, 8, 8), r(4, 1, 3, 3)
    with jax.set_mesh(mesh):
        try:
            jax.jit(lambda x: F.conv2d(x, w, groups=4))(jax.device_put(x, P(None, None, "data")))
        except Exception as e:  # noqa: BLE001 - the test reads it
            return {"error": f"{type(e).__name__}: {e}"}
    return {"error": None}


def main(path, everything):
    mesh = jax.make_mesh((4,), ("data",))  # Explicit axes: JAX 0.10's default
    assert all(t == AxisType.Explicit for t in mesh.axis_types), mesh.axis_types
    names = [n for n, (_, d) in CASES.items() if everything or d]
    results = {n: run_case(n, mesh) for n in names}
    auto = jax.make_mesh((4,), ("data",), axis_types=(AxisType.Auto,))
    got, want = train(mesh), train(auto)
    results["error: depthwise sharded spatially"] = _spatial_error(mesh)
    results["training step"] = ({"error": got[0]} if got[1] is None else
                                {"error": want[0]} if want[1] is None else
                                {"fwd": _gap(got[0], want[0]), "grad": _gap(got[1], want[1])})
    with open(path, "w") as fh:
        json.dump(results, fh, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], "--all" in sys.argv[2:])
