"""Layer cases and, per case, the same computation through every implementation.

Each builder returns ``{impl: (fn, args, to_nchw)}``: ``fn(*args)`` is timed, and
``to_nchw(out)`` gives a numpy array in torch's layout to check against torch's result.
Weights come from one numpy draw shared by every implementation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LayerCase:
    name: str
    group: str  # the layer class the targets are stated for
    kind: str   # conv | conv_t | maxpool | bn_train | bn_eval
    shape: tuple  # input (N, C, H, W)
    params: dict = field(default_factory=dict)


def layer_cases(quick: bool, batch: int) -> list[LayerCase]:
    """The layer cases; quick mode keeps every case with tiny channels and sizes."""
    def c(v):  # channel count
        return max(2, v // 16) if quick else v

    def s(v):  # spatial size
        return max(4, v // 8) if quick else v

    def conv(name, group, cin, cout, k, stride, pad, hw, groups=1, dilation=1):
        return LayerCase(name, group, "conv", (batch, cin, hw, hw),
                         dict(cout=cout, k=k, stride=stride, padding=pad, groups=groups, dilation=dilation))

    cases = [
        conv("resnet_stem_7x7s2", "conv 7x7 stem", 3, c(64), 7, 2, 3, s(224)),
        conv("resnet_3x3_56", "conv 3x3", c(64), c(64), 3, 1, 1, s(56)),
        conv("resnet_3x3_28", "conv 3x3", c(128), c(128), 3, 1, 1, s(28)),
        conv("resnet_3x3_14", "conv 3x3", c(256), c(256), 3, 1, 1, s(14)),
        conv("resnet_3x3_7", "conv 3x3", c(512), c(512), 3, 1, 1, s(7)),
        conv("resnet_1x1s2_down", "conv 1x1 s2", c(128), c(256), 1, 2, 0, s(28)),
        conv("mbv2_dw3x3_144_56", "depthwise 3x3", c(144), c(144), 3, 1, 1, s(56), groups=c(144)),
        conv("mbv2_dw3x3_576_14", "depthwise 3x3", c(576), c(576), 3, 1, 1, s(14), groups=c(576)),
        conv("dilated_3x3_d2", "dilated 3x3", c(256), c(256), 3, 1, 2, s(28), dilation=2),
        LayerCase("dcgan_convT_512_8", "transposed k4 s2", "conv_t", (batch, c(512), s(8), s(8)),
                  dict(cout=c(256), k=4, stride=2, padding=1)),
        LayerCase("dcgan_convT_128_32", "transposed k4 s2", "conv_t", (batch, c(128), s(32), s(32)),
                  dict(cout=c(64), k=4, stride=2, padding=1)),
        LayerCase("maxpool_3x3s2_112", "max pool", "maxpool", (batch, c(64), s(112), s(112)), dict(k=3, stride=2, padding=1)),
        LayerCase("batchnorm_train_56", "batchnorm", "bn_train", (batch, c(64), s(56), s(56)), {}),
        LayerCase("batchnorm_eval_56", "batchnorm", "bn_eval", (batch, c(64), s(56), s(56)), {}),
    ]
    return cases


def _nchw(y):
    return np.asarray(y)


def _from_nhwc(y):
    return np.asarray(y).transpose(0, 3, 1, 2)


def _torch_np(y):
    return y.detach().float().cpu().numpy()


def build(case: LayerCase, rng, torch_device: str):
    """``{impl: (fn, args, to_nchw)}`` for one layer case."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp
    import torch
    from flax import nnx
    from jax import lax

    import jaxconv.functional as F

    tF = torch.nn.functional
    N, C, H, W = case.shape
    x = rng.standard_normal(case.shape).astype(np.float32)
    xj = jnp.asarray(x)
    xj_nhwc = jnp.asarray(x.transpose(0, 2, 3, 1))
    tx = torch.from_numpy(x).to(torch_device)
    tx_cl = tx.contiguous(memory_format=torch.channels_last)
    p = case.params
    impls = {}
    key = jax.random.key(0)

    def torch_pair(f):
        impls["torch"] = (f, (tx,), _torch_np)
        impls["torch_cl"] = (f, (tx_cl,), _torch_np)

    if case.kind in ("conv", "conv_t"):
        k, st, pad, g = p["k"], p["stride"], p["padding"], p.get("groups", 1)
        d = p.get("dilation", 1)
        cout = p["cout"]
        if case.kind == "conv":
            wshape = (cout, C // g, k, k)
            fan_in = C // g * k * k
        else:
            wshape = (C, cout, k, k)
            fan_in = C * k * k
        w = (rng.standard_normal(wshape) / np.sqrt(fan_in)).astype(np.float32)
        b = rng.standard_normal((cout,)).astype(np.float32)
        wj, bj = jnp.asarray(w), jnp.asarray(b)
        tw, tb = torch.from_numpy(w).to(torch_device), torch.from_numpy(b).to(torch_device)
        tw_cl = tw.contiguous(memory_format=torch.channels_last)
        if case.kind == "conv":
            impls["jaxconv"] = (jax.jit(lambda x, w, b: F.conv2d(x, w, b, st, pad, d, g)), (xj, wj, bj), _nchw)
            impls["torch"] = (lambda x: tF.conv2d(x, tw, tb, st, pad, d, g), (tx,), _torch_np)
            impls["torch_cl"] = (lambda x: tF.conv2d(x, tw_cl, tb, st, pad, d, g), (tx_cl,), _torch_np)
            pads = [(pad, pad)] * 2
            impls["lax_nchw"] = (jax.jit(lambda x, w, b: lax.conv_general_dilated(
                x, w, (st, st), pads, rhs_dilation=(d, d), feature_group_count=g,
                dimension_numbers=("NCHW", "OIHW", "NCHW")) + b[:, None, None]), (xj, wj, bj), _nchw)
            w_hwio = jnp.asarray(w.transpose(2, 3, 1, 0))
            impls["lax_nhwc"] = (jax.jit(lambda x, w, b: lax.conv_general_dilated(
                x, w, (st, st), pads, rhs_dilation=(d, d), feature_group_count=g,
                dimension_numbers=("NHWC", "HWIO", "NHWC")) + b), (xj_nhwc, w_hwio, bj), _from_nhwc)
            m = nnx.Conv(C, cout, (k, k), (st, st), padding=pads, kernel_dilation=(d, d),
                         feature_group_count=g, rngs=nnx.Rngs(0))
            m.kernel[...] = w_hwio
            m.bias[...] = bj
            gd, state = nnx.split(m)
            impls["flax_nnx"] = (jax.jit(lambda s, x: nnx.merge(gd, s)(x)), (state, xj_nhwc), _from_nhwc)
            e = eqx.nn.Conv2d(C, cout, k, st, pad, d, g, key=key)
            e = eqx.tree_at(lambda m: (m.weight, m.bias), e, (wj, bj[:, None, None]))
            impls["equinox"] = (eqx.filter_jit(lambda m, x: jax.vmap(m)(x)), (e, xj), _nchw)
        else:
            impls["jaxconv"] = (jax.jit(lambda x, w, b: F.conv_transpose2d(x, w, b, st, pad)), (xj, wj, bj), _nchw)
            impls["torch"] = (lambda x: tF.conv_transpose2d(x, tw, tb, st, pad), (tx,), _torch_np)
            impls["torch_cl"] = (lambda x: tF.conv_transpose2d(x, tw_cl, tb, st, pad), (tx_cl,), _torch_np)
            # plain lax: the textbook lowering (input dilated by the stride, kernel flipped)
            tpads = [(k - 1 - pad, k - 1 - pad)] * 2
            w_oihw = jnp.asarray(np.flip(w, (2, 3)).transpose(1, 0, 2, 3).copy())
            impls["lax_nchw"] = (jax.jit(lambda x, w, b: lax.conv_general_dilated(
                x, w, (1, 1), tpads, lhs_dilation=(st, st),
                dimension_numbers=("NCHW", "OIHW", "NCHW")) + b[:, None, None]), (xj, w_oihw, bj), _nchw)
            w_hwio = jnp.asarray(np.flip(w, (2, 3)).transpose(2, 3, 0, 1).copy())
            impls["lax_nhwc"] = (jax.jit(lambda x, w, b: lax.conv_general_dilated(
                x, w, (1, 1), tpads, lhs_dilation=(st, st),
                dimension_numbers=("NHWC", "HWIO", "NHWC")) + b), (xj_nhwc, w_hwio, bj), _from_nhwc)
            m = nnx.ConvTranspose(C, cout, (k, k), (st, st), padding=tpads, transpose_kernel=True,
                                  rngs=nnx.Rngs(0))
            # transpose_kernel=True: flax flips the kernel and swaps in/out itself
            m.kernel[...] = jnp.asarray(w.transpose(2, 3, 1, 0))
            m.bias[...] = bj
            gd, state = nnx.split(m)
            impls["flax_nnx"] = (jax.jit(lambda s, x: nnx.merge(gd, s)(x)), (state, xj_nhwc), _from_nhwc)
            # equinox stores (out, in, k, k), flipped relative to torch's (in, out, k, k)
            e = eqx.nn.ConvTranspose2d(C, cout, k, st, 0, pad, key=key)
            e = eqx.tree_at(lambda m: (m.weight, m.bias), e,
                            (jnp.asarray(np.flip(w.transpose(1, 0, 2, 3), (2, 3)).copy()), bj[:, None, None]))
            impls["equinox"] = (eqx.filter_jit(lambda m, x: jax.vmap(m)(x)), (e, xj), _nchw)
    elif case.kind == "maxpool":
        k, st, pad = p["k"], p["stride"], p["padding"]
        impls["jaxconv"] = (jax.jit(lambda x: F.max_pool2d(x, k, st, pad)), (xj,), _nchw)
        torch_pair(lambda x: tF.max_pool2d(x, k, st, pad))
        pads4 = ((0, 0), (0, 0), (pad, pad), (pad, pad))
        impls["lax_nchw"] = (jax.jit(lambda x: lax.reduce_window(
            x, -jnp.inf, lax.max, (1, 1, k, k), (1, 1, st, st), pads4)), (xj,), _nchw)
        pads4h = ((0, 0), (pad, pad), (pad, pad), (0, 0))
        impls["lax_nhwc"] = (jax.jit(lambda x: lax.reduce_window(
            x, -jnp.inf, lax.max, (1, k, k, 1), (1, st, st, 1), pads4h)), (xj_nhwc,), _from_nhwc)
        impls["flax_nnx"] = (jax.jit(lambda x: nnx.max_pool(x, (k, k), (st, st), ((pad, pad), (pad, pad)))),
                             (xj_nhwc,), _from_nhwc)
        e = eqx.nn.MaxPool2d(k, st, pad)
        impls["equinox"] = (eqx.filter_jit(lambda m, x: jax.vmap(m)(x)), (e, xj), _nchw)
    else:  # batchnorm
        training = case.kind == "bn_train"
        gamma = (1 + 0.1 * rng.standard_normal(C)).astype(np.float32)
        beta = rng.standard_normal(C).astype(np.float32)
        rm = rng.standard_normal(C).astype(np.float32)
        rv = rng.uniform(0.5, 2.0, C).astype(np.float32)
        tm_ = [torch.from_numpy(v).to(torch_device) for v in (rm, rv, gamma, beta)]
        jv = [jnp.asarray(v) for v in (rm, rv, gamma, beta)]
        if training:
            jfn = lambda x, m, v, g, b: F.batch_norm(x, None, None, g, b, training=True)  # noqa: E731
        else:
            jfn = lambda x, m, v, g, b: F.batch_norm(x, m, v, g, b, training=False)  # noqa: E731
        impls["jaxconv"] = (jax.jit(jfn), (xj, *jv), _nchw)
        torch_pair(lambda x: tF.batch_norm(x, None if training else tm_[0], None if training else tm_[1],
                                           tm_[2], tm_[3], training=training))

        def plain(x, m, v, g, b, axes, shape):
            if training:
                m = jnp.mean(x, axes)
                v = jnp.var(x, axes)
            r = lax.rsqrt(v + 1e-5) * g
            return x * r.reshape(shape) + (b - m * r).reshape(shape)
        impls["lax_nchw"] = (jax.jit(lambda x, *a: plain(x, *a, (0, 2, 3), (-1, 1, 1))), (xj, *jv), _nchw)
        impls["lax_nhwc"] = (jax.jit(lambda x, *a: plain(x, *a, (0, 1, 2), (-1,))), (xj_nhwc, *jv), _from_nhwc)
        bn = nnx.BatchNorm(C, use_running_average=not training, epsilon=1e-5, rngs=nnx.Rngs(0))
        bn.scale[...], bn.bias[...] = jv[2], jv[3]
        bn.mean[...], bn.var[...] = jv[0], jv[1]
        gd, state = nnx.split(bn)
        impls["flax_nnx"] = (jax.jit(lambda s, x: nnx.merge(gd, s)(x)), (state, xj_nhwc), _from_nhwc)
        # equinox's BatchNorm needs a named vmap axis and a state object; not comparable here.
    return impls
