"""Pooling windows larger than the input: torch's values, indices and gradients, and memory
bounded by the input, not the kernel (``ceil_mode`` used to pad to whole windows, so Hugging
Face EfficientNet's ``AvgPool2d(1280, ceil_mode=True)`` over a 2x2 map asked for gigabytes)."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import jaxconv.functional as F
from jaxconv.functional import pooling
from tests._util import check_grad, largest_value, randn, t


MEMORY = [  # (function, kwargs): the kernel is far larger than the 2x3 input
    ("avg_pool2d", dict(kernel_size=1280, ceil_mode=True)),
    ("avg_pool2d", dict(kernel_size=1281, stride=1, padding=640, count_include_pad=False)),
    ("avg_pool2d", dict(kernel_size=1281, stride=641, padding=640, ceil_mode=True)),
    ("max_pool2d", dict(kernel_size=1280, ceil_mode=True, return_indices=True)),
    ("max_pool2d", dict(kernel_size=(1281, 3), stride=(700, 1), padding=(640, 1), dilation=(1, 2),
                        ceil_mode=True)),
    ("lp_pool2d", dict(norm_type=2, kernel_size=1280, ceil_mode=True)),
]


@pytest.mark.parametrize("name, kw", MEMORY)
def test_memory_does_not_grow_with_the_kernel(name, kw):
    """Every value (and window) of the forward and the gradient stays within a few inputs.

    Per dimension a run of windows spans at most 3 inputs, and the gradient of reduce_window
    pads it by its taps (at most as many again): 6**2 inputs in 2d, whatever the kernel.
    """
    x = jax.ShapeDtypeStruct((2, 8, 2, 3), jnp.float32)

    def loss(a):
        y = getattr(F, name)(a, **kw)
        return jnp.sum((y[0] if isinstance(y, tuple) else y) ** 2)

    assert largest_value(jax.make_jaxpr(jax.value_and_grad(loss))(x).jaxpr) <= 6 ** 2 * math.prod(x.shape)


# (n, input spatial size, kwargs): kernels larger than the input with padding, ceil_mode,
# strides, both divisor rules and divisor_override, and a run of windows split in two (large
# padding with a large stride). torch's avg_pool3d refuses kernels larger than the input.
SLOW = pytest.mark.slow  # the default run keeps one case of each feature
AVG = [
    pytest.param(1, (3,), dict(kernel_size=40, ceil_mode=True), marks=SLOW),
    (1, (2,), dict(kernel_size=9, stride=5, padding=4, ceil_mode=True, count_include_pad=False)),
    (2, (2, 3), dict(kernel_size=(7, 9), stride=(1, 2), padding=(3, 4), count_include_pad=False)),
    (2, (3, 2), dict(kernel_size=(11, 5), stride=(6, 3), padding=(5, 2), ceil_mode=True,
                     divisor_override=7)),
    pytest.param(2, (2, 3), dict(kernel_size=(7, 9), stride=(1, 2), padding=(3, 4)), marks=SLOW),
    pytest.param(2, (5, 2), dict(kernel_size=(2, 64), stride=(2, 64), padding=(1, 0), ceil_mode=True,
                                 count_include_pad=False), marks=SLOW),
    (3, (3, 4, 3), dict(kernel_size=(3, 4, 2), stride=(2, 3, 2), padding=(1, 2, 1), ceil_mode=True)),
]


@pytest.mark.parametrize("n, size, kw", AVG)
def test_avg_pool_kernel_beyond_input(rng, n, size, kw):
    """Values and gradients against torch."""
    check_grad(lambda a: getattr(F, f"avg_pool{n}d")(a, **kw),
               lambda a: getattr(TF, f"avg_pool{n}d")(a, **kw), (randn(rng, 2, 3, *size),), rng,
               reduction=64)


MAX = [  # windows of many taps (reduce_window, which clips), and one of few (the unrolled scan)
    pytest.param(1, (3,), dict(kernel_size=40, stride=3, padding=20, ceil_mode=True), marks=SLOW),
    (1, (2,), dict(kernel_size=41, stride=21, padding=20, ceil_mode=True)),
    (2, (2, 9), dict(kernel_size=(7, 9), stride=(1, 2), padding=(3, 4), dilation=(1, 2))),
    pytest.param(2, (3, 2), dict(kernel_size=(7, 5), stride=4, padding=(3, 2), ceil_mode=True),
                 marks=SLOW),
    (2, (2, 2), dict(kernel_size=1280, ceil_mode=True)),
    pytest.param(2, (2, 3), dict(kernel_size=(3, 5), stride=(2, 1), padding=(1, 2), ceil_mode=True),
                 marks=SLOW),
    (3, (2, 3, 2), dict(kernel_size=(5, 8, 3), stride=(3, 4, 1), padding=(2, 4, 1), ceil_mode=True)),
]


@pytest.mark.parametrize("n, size, kw", MAX)
def test_max_pool_kernel_beyond_input(rng, n, size, kw):
    """Values, torch's indices (with ties) and gradients against torch, in one jit."""
    x = randn(rng, 2, 3, *size)
    x[0, 0] = np.round(x[0, 0])  # ties: the first element in torch's scan order wins
    tx = t(x).requires_grad_()
    ty, ti = getattr(TF, f"max_pool{n}d")(tx, return_indices=True, **kw)
    g = randn(rng, *ty.shape)
    ty.backward(t(g))

    @jax.jit
    def run(a):
        y, vjp, i = jax.vjp(lambda b: getattr(F, f"max_pool{n}d")(b, return_indices=True, **kw),
                            a, has_aux=True)
        return y, i, vjp(g)[0]

    y, i, grad = run(x)
    np.testing.assert_array_equal(np.asarray(y), ty.detach().numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    np.testing.assert_array_equal(np.asarray(grad), tx.grad.numpy())


@pytest.mark.parametrize("n, size, kw", [
    pytest.param(1, (3,), dict(kernel_size=8, ceil_mode=True), marks=SLOW),
    (2, (7, 3), dict(kernel_size=(3, 40), stride=(2, 40), ceil_mode=True)),
])
def test_lp_pool_kernel_beyond_input(rng, n, size, kw):
    """torch's rescaling of the clipped windows (its avg_pool times the kernel's size)."""
    x = np.abs(randn(rng, 2, 3, *size)) + 0.1
    check_grad(lambda a: getattr(F, f"lp_pool{n}d")(a, 3, **kw),
               lambda a: getattr(TF, f"lp_pool{n}d")(a, 3, **kw), (x,), rng, reduction=64)


def test_runs_clip_exactly():
    """Every clipped window holds the input elements of the full window; at most 3x the input.

    The sweep covers kernels, strides, paddings and dilations past inputs of 1..6 elements
    in both rounding modes, and checks the one-run shape wherever the kernel fits the input.
    """
    split = 0
    for i in range(1, 7):
        for k in range(1, 12):
            for s in range(1, 10):
                for p in range(k // 2 + 1):
                    for d in range(1, 4):
                        for ceil in (False, True):
                            out = F.pool_output_size(i, k, s, p, d, ceil)[0]
                            if out < 1:
                                continue
                            runs = pooling._window_runs((i,), (out,), (k,), (s,), (p,), (d,))[0]
                            split += len(runs) > 1
                            assert len(runs) == 1 or d * (k - 1) + 1 > i
                            j = 0
                            for count, lo, hi, taps in runs:
                                assert lo + i + hi == (count - 1) * s + d * (taps - 1) + 1 <= 3 * i
                                for w in range(count):
                                    full = {j * s - p + q * d for q in range(k)}
                                    clip = {w * s - lo + q * d for q in range(taps)}
                                    assert full & set(range(i)) == clip & set(range(i))
                                    j += 1
                            assert j == out
    assert split > 0
