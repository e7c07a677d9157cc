"""Pooling against torch: values, torch's flat indices, gradients, ceil_mode, errors, jit."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings, strategies as st

import jaxconv.functional as F
from jaxconv.functional import pooling
from tests._util import assert_close, randn, t

SIZES = (5, 7, 6)


@functools.lru_cache(maxsize=None)
def _jit(name, **kw):
    """A jitted ``F.<name>`` with static configuration, compiled once per configuration."""
    return jax.jit(functools.partial(getattr(F, name), **kw))


def _kw(**kw):
    return tuple(sorted(kw.items()))


def _cut(value, n):
    return value[:n] if isinstance(value, tuple) else value


# (kernel_size, stride, padding, dilation, ceil_mode); on SIZES, config "drop" hits torch's
# rule that a ceil_mode window starting in the right padding is dropped.
MAX_CONFIGS = {
    "plain": (3, None, 0, 1, False),
    "overlap": (3, 2, 1, 1, True),
    "drop": (2, 2, 1, 1, True),
    "mixed": ((3, 2, 2), (2, 1, 3), (1, 0, 1), (2, 1, 1), True),
    "k4s3": (4, 3, 2, 1, True),
    "floor": (2, 3, 1, 2, False),
}


def _max_args(n, cfg):
    k, s, p, d, c = MAX_CONFIGS[cfg]
    return dict(kernel_size=_cut(k, n), stride=_cut(s, n), padding=_cut(p, n),
                dilation=_cut(d, n), ceil_mode=c)


def test_drop_rule_bites():
    """The 'drop' configuration really exercises the rule, and pool_output_size matches torch."""
    naive = -(-(5 + 2 - 1 - 1) // 2) + 1
    assert F.pool_output_size(5, 2, 2, 1, 1, True) == (naive - 1,)
    for n in (1, 2, 3):
        for cfg in MAX_CONFIGS:
            kw = _max_args(n, cfg)
            x = torch.zeros((1, 1) + SIZES[:n])
            expect = tuple(getattr(TF, f"max_pool{n}d")(x, **kw).shape[2:])
            assert F.pool_output_size(SIZES[:n], **kw) == expect, (n, cfg)


@pytest.mark.parametrize("cfg", list(MAX_CONFIGS))
@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_values_and_indices(rng, n, cfg):
    kw = _max_args(n, cfg)
    x = randn(rng, 2, 3, *SIZES[:n])
    y, i = _jit(f"max_pool{n}d", return_indices=True, **kw)(x)
    ty, ti = getattr(TF, f"max_pool{n}d")(t(x), return_indices=True, **kw)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())


@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_unbatched_without_indices(rng, n):
    kw = _max_args(n, "mixed")
    x = randn(rng, 3, *SIZES[:n])
    np.testing.assert_array_equal(np.asarray(_jit(f"max_pool{n}d", **kw)(x)),
                                  getattr(TF, f"max_pool{n}d")(t(x), **kw).numpy())


LARGE = [  # windows of more than pooling._FOLD_TAPS taps take the reduce_window path
    (1, (2, 3, 50), dict(kernel_size=40, stride=7, padding=20, ceil_mode=True)),
    (2, (2, 3, 13, 11), dict(kernel_size=6, stride=(3, 2), padding=(3, 2), dilation=(1, 2), ceil_mode=True)),
    (3, (1, 2, 6, 7, 5), dict(kernel_size=(4, 3, 3), stride=2, padding=1)),
]


@pytest.mark.parametrize("n, shape, kw", LARGE)
def test_max_pool_large_windows(rng, n, shape, kw):
    assert np.prod(pooling._args.ntuple(kw["kernel_size"], n, "k")) > pooling._FOLD_TAPS
    x = randn(rng, *shape)
    y, i = _jit(f"max_pool{n}d", return_indices=True, **kw)(x)
    ty, ti = getattr(TF, f"max_pool{n}d")(t(x), return_indices=True, **kw)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    g = randn(rng, *ty.shape)
    _check_grad(f"max_pool{n}d", kw, x, g, 0)


def _check_grad(name, kw, x, g, reduction, dtype=np.float64):
    fn = getattr(F, name)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(fn(a, **kw) * g)))(x)
    tx = t(x).requires_grad_()
    (getattr(TF, name)(tx, **kw) * t(g)).sum().backward()
    assert_close(grad, tx.grad.numpy(), dtype, reduction)


@pytest.mark.parametrize("cfg", ["mixed", "k4s3"])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_max_pool_grad(rng, n, cfg):
    kw = _max_args(n, cfg)
    x = randn(rng, 2, 3, *SIZES[:n])
    g = randn(rng, *getattr(TF, f"max_pool{n}d")(t(x), **kw).shape)
    _check_grad(f"max_pool{n}d", kw, x, g, 0)


@pytest.mark.parametrize("kernel_size", [3, 6])  # the unrolled scan and the reduce_window path
def test_max_pool_ties_nan_and_inf_like_torch(kernel_size):
    """Ties go to the first element, NaN propagates (last NaN wins), -inf windows keep the first tap."""
    nan, inf = np.nan, np.inf
    rows = [[1, 5, 3, 5, 5, 0, 2, 2, 2, 2, 0, 0],
            [1, nan, 3, nan, 2, 5, 5, 0, nan, 1, 7, 7],
            [-inf, -inf, -inf, 4, 4, -inf, -inf, -inf, -inf, 3, 0, 0]]
    x = np.array(rows, np.float64).reshape(1, 3, 2, 6)
    kw = dict(kernel_size=kernel_size, stride=2, padding=kernel_size // 2, ceil_mode=True)
    y, i = _jit("max_pool2d", return_indices=True, **kw)(x)
    ty, ti = TF.max_pool2d(t(x), return_indices=True, **kw)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    g = np.arange(1.0, ty.numel() + 1).reshape(ty.shape)
    grad = jax.jit(jax.grad(lambda a: jnp.sum(F.max_pool2d(a, **kw) * g)))(x)
    tx = t(x).requires_grad_()
    (TF.max_pool2d(tx, **kw) * t(g)).sum().backward()
    np.testing.assert_array_equal(np.asarray(grad), tx.grad.numpy())


def test_max_pool_integer_and_float32(rng):
    xi = rng.integers(-5, 5, (2, 3, 7, 6)).astype(np.int32)
    y, i = _jit("max_pool2d", kernel_size=3, stride=2, padding=1, return_indices=True)(xi)
    ty, ti = TF.max_pool2d(t(xi), 3, 2, 1, return_indices=True)
    assert y.dtype == jnp.int32
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    x32 = randn(rng, 2, 3, 7, 6, dtype=np.float32)
    y = _jit("max_pool2d", kernel_size=2)(x32)
    assert y.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(y), TF.max_pool2d(t(x32), 2).numpy())


AVG_CONFIGS = {
    "plain": (3, None, 0, False),
    "pad": (3, 2, 1, False),
    "ceil": (3, 2, 1, True),
    "drop": (2, 2, 1, True),
    "mixed": ((3, 2, 4), (2, 1, 3), (1, 0, 2), True),
}


@pytest.mark.parametrize("n, cfg, count_include_pad, divisor_override", [
    (n, cfg, cip, None) for n in (1, 2, 3) for cfg in AVG_CONFIGS for cip in (True, False)
] + [(n, cfg, True, 3) for n in (2, 3) for cfg in ("ceil", "mixed")])  # no divisor_override in 1d
def test_avg_pool(rng, n, cfg, count_include_pad, divisor_override):
    k, s, p, c = AVG_CONFIGS[cfg]
    kw = dict(kernel_size=_cut(k, n), stride=_cut(s, n), padding=_cut(p, n), ceil_mode=c,
              count_include_pad=count_include_pad)
    if divisor_override is not None:
        kw["divisor_override"] = divisor_override
    x = randn(rng, 2, 3, *SIZES[:n])
    ty = getattr(TF, f"avg_pool{n}d")(t(x), **kw)
    assert_close(_jit(f"avg_pool{n}d", **kw)(x), ty.numpy(), reduction=27)
    if cfg == "mixed":
        assert_close(_jit(f"avg_pool{n}d", **kw)(x[0]), ty[0].numpy(), reduction=27)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_avg_pool_grad_and_float32(rng, n):
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
    x = randn(rng, 2, 3, *SIZES[:n])
    g = randn(rng, *getattr(TF, f"avg_pool{n}d")(t(x), **kw).shape)
    _check_grad(f"avg_pool{n}d", kw, x, g, 27)
    x32 = x.astype(np.float32)
    y = getattr(F, f"avg_pool{n}d")(x32, **kw)
    assert y.dtype == jnp.float32
    assert_close(y, getattr(TF, f"avg_pool{n}d")(t(x32), **kw).numpy(), np.float32, 27)


def test_avg_pool_integer_truncates_like_torch(rng):
    x = rng.integers(-9, 9, (2, 3, 6, 7)).astype(np.int64)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    y = F.avg_pool2d(x, **kw)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(y), TF.avg_pool2d(t(x), **kw).numpy())


ADAPTIVE = [  # (n, input spatial, output_size, check grads): non-divisible, divisible,
    # upsampling, empty output, None entries
    (1, (7,), 3, True), (1, (10,), (4,), False), (1, (5,), 7, False), (1, (6,), 0, False),
    (2, (7, 10), (3, 4), True), (2, (5, 8), 7, False), (2, (8, 6), (4, None), False),
    (2, (9, 9), 1, False), (3, (5, 7, 4), (2, 3, None), True), (3, (4, 6, 3), 2, False),
]


@pytest.mark.parametrize("n, size, out, grads", ADAPTIVE)
def test_adaptive_pools(rng, n, size, out, grads):
    x = randn(rng, 2, 3, *size)
    if not grads:  # the unbatched form, through the same code
        x = x[0]
    tx = t(x)
    ty = getattr(TF, f"adaptive_avg_pool{n}d")(tx, out)
    assert_close(_jit(f"adaptive_avg_pool{n}d", output_size=out)(x), ty.numpy(), reduction=10)
    ty, ti = getattr(TF, f"adaptive_max_pool{n}d")(tx, out, True)
    y, i = _jit(f"adaptive_max_pool{n}d", output_size=out, return_indices=True)(x)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    if grads:
        g = randn(rng, *ty.shape)
        _check_grad(f"adaptive_avg_pool{n}d", dict(output_size=out), x, g, 10)
        _check_grad(f"adaptive_max_pool{n}d", dict(output_size=out), x, g, 0)
        np.testing.assert_array_equal(np.asarray(_jit(f"adaptive_max_pool{n}d", output_size=out)(x)),
                                      ty.numpy())


def test_adaptive_max_ties_and_nan():
    x = np.array([[[1, 1, np.nan, 2, np.nan, 0, 3, 3, 3, -1]], [[2, 2, 1, 3, 3, 3, -1, -1, 5, 5]]])
    y, i = _jit("adaptive_max_pool1d", output_size=4, return_indices=True)(x)
    ty, ti = TF.adaptive_max_pool1d(t(x), 4, return_indices=True)
    np.testing.assert_array_equal(np.asarray(y), ty.numpy())
    np.testing.assert_array_equal(np.asarray(i), ti.numpy())


LP = [(1, 2, 3, None, False), (1, 1.5, 3, 2, True), (2, 2, (3, 2), None, False),
      (2, 3, 2, 1, True), (2, 1, 3, 2, True), (3, 2, 2, (1, 2, 1), True), (2, float("inf"), 3, 2, True)]


@pytest.mark.parametrize("n, p, k, s, c", LP)
def test_lp_pool(rng, n, p, k, s, c):
    """Negative inputs included: odd and fractional powers give torch's NaNs."""
    x = randn(rng, 2, 3, *SIZES[:n])
    kw = dict(norm_type=p, kernel_size=k, stride=s, ceil_mode=c)
    ty = getattr(TF, f"lp_pool{n}d")(t(x), **kw).numpy()
    y = np.asarray(_jit(f"lp_pool{n}d", **kw)(x))
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty))
    assert_close(np.nan_to_num(y), np.nan_to_num(ty), reduction=27)
    if p in (2, float("inf")):
        _check_grad(f"lp_pool{n}d", kw, x, randn(rng, *ty.shape), 27)


def _raises(ours, theirs):
    with pytest.raises(Exception):
        theirs()
    with pytest.raises((ValueError, TypeError)) as info:
        ours()
    return str(info.value)


X1, X2, X3 = (np.zeros((1, 2) + SIZES[:n]) for n in (1, 2, 3))

ERRORS = [  # (function, input, args, kwargs, words the message must contain)
    ("max_pool2d", X2, (3,), dict(padding=2), "half of kernel size"),
    ("max_pool2d", X2, (3,), dict(dilation=2, padding=2), "half of kernel size"),
    ("avg_pool1d", X1, (3,), dict(padding=2), "half of kernel size"),
    ("avg_pool3d", X3, (2,), dict(padding=2), "half of kernel size"),
    ("max_pool2d", X2, (0,), dict(stride=1), "kernel_size"),
    ("max_pool1d", X1, (-1,), dict(stride=1), "kernel_size"),
    ("avg_pool2d", X2, (0,), dict(stride=1), "kernel_size"),
    ("max_pool2d", X2, (2,), dict(stride=0), "stride"),
    ("avg_pool3d", X3, (2,), dict(stride=-1), "stride"),
    ("max_pool2d", X2, (2,), dict(dilation=0), "dilation"),
    ("max_pool2d", X2, (2,), dict(padding=-1), "padding"),
    ("max_pool2d", X2, (8,), {}, "Output size is too small"),
    ("avg_pool2d", X2, (8,), {}, "Output size is too small"),
    ("max_pool3d", X3, (8,), dict(padding=1), "Output size is too small"),
    ("avg_pool2d", X2, (2,), dict(divisor_override=0), "divisor"),
    ("max_pool2d", X2, ((2, 2, 2),), {}, "kernel_size"),
    ("avg_pool2d", X2, (2,), dict(stride=(1, 2, 3)), "stride"),
    ("max_pool2d", X2, (2.0,), {}, "kernel_size"),
    ("max_pool2d", X2, (True,), {}, "kernel_size"),
    ("max_pool1d", X2, (2,), {}, "input"),
    ("max_pool2d", np.zeros(5), (2,), {}, "input"),
    ("avg_pool3d", np.zeros((5, 7)), (2,), {}, "input"),
    ("adaptive_avg_pool2d", X2, (-1,), {}, "output_size"),
    ("adaptive_max_pool1d", X1, (-1,), {}, "output_size"),
    ("adaptive_avg_pool2d", X2, ((3, 4, 5),), {}, "output_size"),
    ("adaptive_max_pool2d", X2, ((3, 4, 5),), {}, "output_size"),
    ("adaptive_avg_pool1d", X1, ((2, 3),), {}, "output_size"),
    ("adaptive_avg_pool1d", X1, (None,), {}, "output_size"),
    ("adaptive_avg_pool2d", X2, (None,), {}, "output_size"),
    ("adaptive_max_pool1d", X1, ((None,),), {}, "output_size"),
    ("adaptive_avg_pool2d", np.zeros((1, 2, 0, 4)), (2,), {}, "non-empty"),
    ("adaptive_max_pool3d", X1, (2,), {}, "input"),
    ("lp_pool2d", X2, (2, 6), {}, "Output size is too small"),
    ("lp_pool2d", X2, (0, 2), {}, "norm_type"),
    ("avg_pool3d", X3, (6,), dict(padding=3, ceil_mode=True), "smaller than kernel_size"),
    ("lp_pool3d", X3, (2, (2, 8, 2)), dict(ceil_mode=True), "smaller than kernel_size"),
]


@pytest.mark.parametrize("name, x, args, kw, words", ERRORS)
def test_errors_where_torch_raises(name, x, args, kw, words):
    msg = _raises(lambda: getattr(F, name)(x, *args, **kw),
                  lambda: getattr(TF, name)(t(x), *args, **kw))
    assert words in msg


def test_signatures_match_torch():
    import inspect
    for n in (1, 2, 3):
        for name in ("max_pool", "avg_pool", "adaptive_avg_pool", "adaptive_max_pool", "lp_pool"):
            ours = list(inspect.signature(getattr(F, f"{name}{n}d")).parameters)
            ours[0] = "input"
            if name == "avg_pool" and n == 1:
                assert "divisor_override" not in ours
            doc = getattr(TF, f"{name}{n}d").__doc__ or ""
            try:
                theirs = list(inspect.signature(getattr(TF, f"{name}{n}d")).parameters)
            except (TypeError, ValueError):  # a builtin: read the signature line of its docstring
                line = doc.strip().splitlines()[0]
                theirs = [a.split("=")[0].strip() for a in line[line.index("(") + 1:line.rindex(")")].split(",")]
            if name == "max_pool":  # boolean_dispatch hides the signature behind *args
                theirs = ["input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"]
                ref = inspect.signature(getattr(TF, f"max_pool{n}d_with_indices"))
                assert list(ref.parameters) == theirs
            if name == "adaptive_max_pool":
                theirs = list(inspect.signature(getattr(TF, f"adaptive_max_pool{n}d_with_indices")).parameters)
            assert ours == theirs, (name, n)


@st.composite
def _pool2d_case(draw):
    k = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    d = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    size = (draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    return size, k, s, p, d, draw(st.booleans()), draw(st.booleans())


def _sweep_case(case):
    size, k, s, p, d, ceil_mode, cip = case
    x = np.random.default_rng(sum(size) + sum(k)).standard_normal((1, 2) + size)
    kw = dict(kernel_size=k, stride=s, padding=p, ceil_mode=ceil_mode)
    try:
        ty, ti = TF.max_pool2d(t(x), dilation=d, return_indices=True, **kw)
    except RuntimeError:
        with pytest.raises(ValueError):
            F.max_pool2d(x, dilation=d, **kw)
    else:
        y, i = _jit("max_pool2d", dilation=d, return_indices=True, **kw)(x)
        np.testing.assert_array_equal(np.asarray(y), ty.numpy())
        np.testing.assert_array_equal(np.asarray(i), ti.numpy())
    try:
        ty = TF.avg_pool2d(t(x), count_include_pad=cip, **kw)
    except RuntimeError:
        with pytest.raises(ValueError):
            F.avg_pool2d(x, count_include_pad=cip, **kw)
    else:
        assert_close(_jit("avg_pool2d", count_include_pad=cip, **kw)(x), ty.numpy(), reduction=16)


@settings(max_examples=12)
@given(_pool2d_case())
def test_hypothesis_max_avg_pool2d(case):
    _sweep_case(case)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(_pool2d_case())
def test_hypothesis_max_avg_pool2d_long(case):
    _sweep_case(case)
