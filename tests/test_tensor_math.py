"""jaxconv.tensor's reductions, elementwise math and matrix products against torch."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxconv import tensor as T
from tests._util import assert_close, check_grad, np_dtype, randn, same, t

SHAPE = (2, 3, 4)

# ---------------------------------------------------------------- reductions

DIMS = [None, 1, -1, (0, 2), ()]


@pytest.mark.parametrize("dim", DIMS)
@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "var", "std", "norm"])
def test_multi_dim_reductions_match_torch(rng, name, dim, keepdim):
    x = randn(rng, *SHAPE)
    if name == "norm":
        ours = lambda x: T.norm(x, dim=dim, keepdim=keepdim)
        theirs = lambda x: torch.norm(x, dim=dim if dim != () else None, keepdim=keepdim)
    else:
        ours = lambda x: getattr(T, name)(x, dim, keepdim=keepdim)
        theirs = lambda x: getattr(torch, name)(x, dim, keepdim=keepdim)
    check_grad(ours, theirs, [x], rng, reduction=24)


@pytest.mark.parametrize("dim,keepdim", [(1, False), (-1, True), ((0, 2), False), ((0, 1, 2), True)])
def test_logsumexp_matches_torch(rng, dim, keepdim):
    x = randn(rng, *SHAPE) * 5
    check_grad(lambda x: T.logsumexp(x, dim, keepdim), lambda x: torch.logsumexp(x, dim, keepdim), [x], rng,
               reduction=24)
    same(T.logsumexp(np.full((2, 3), -np.inf), 1), torch.logsumexp(torch.full((2, 3), -np.inf, dtype=torch.float64), 1))
    same(T.logsumexp(np.arange(4), 0).dtype == jnp.float32, True)


@pytest.mark.parametrize("call", [
    lambda m, x: m.var(x, 1, True, True), lambda m, x: m.var(x, True), lambda m, x: m.var(x, False),
    lambda m, x: m.var(x, (0, 2), correction=0), lambda m, x: m.std(x, dim=1, correction=2, keepdim=True),
    lambda m, x: m.std(x, 2, False), lambda m, x: m.var(x, dim=None, keepdim=True)])
def test_var_std_call_forms_match_torch(rng, call):
    x = randn(rng, *SHAPE)
    check_grad(lambda x: call(T, x), lambda x: call(torch, x), [x], rng, reduction=24)


def test_var_with_no_degrees_of_freedom_is_torchs(rng):
    x = randn(rng, *SHAPE)
    with pytest.warns(UserWarning, match="degrees of freedom"):
        same(T.var(x, correction=30), torch.var(t(x), correction=30))  # sum / max(0, N - c) = inf
    with pytest.warns(UserWarning, match="degrees of freedom"):
        same(T.std(x[:1, :1, :1], 1), torch.std(t(x[:1, :1, :1]), 1))  # 0 / 0 = nan


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_three_forms(rng, name):
    x, y = randn(rng, *SHAPE), randn(rng, *SHAPE)
    ours, theirs = getattr(T, name), getattr(torch, name)
    check_grad(lambda x: ours(x), lambda x: theirs(x), [x], rng)
    for dim, keepdim in [(1, False), (-1, True), (0, False)]:
        res, tres = ours(x, dim, keepdim), theirs(t(x), dim, keepdim)
        same(res.values, tres.values)
        same(res.indices, tres.indices)
        values, indices = res
        same(indices, tres[1])
        check_grad(lambda x: ours(x, dim=dim, keepdim=keepdim).values,
                   lambda x: theirs(x, dim=dim, keepdim=keepdim).values, [x], rng)
    check_grad(lambda x, y: ours(x, y), lambda x, y: theirs(x, y), [x, y], rng)
    check_grad(lambda x, y: ours(x, other=y), lambda x, y: theirs(x, other=y), [x, y], rng)
    res = jax.jit(lambda x: ours(x, 1))(x)
    same(res.indices, theirs(t(x), 1).indices)


def test_max_ties_take_the_first_index_and_split_gradients(rng):
    x = np.array([[1.0, 3.0, 3.0, 2.0], [0.5, 0.5, -1.0, 0.5]])
    same(T.max(x, 1).indices, torch.max(t(x), 1).indices)
    same(T.argmin(x, 1), torch.argmin(t(x), 1))
    check_grad(T.amax, torch.amax, [x], rng)
    check_grad(T.max, torch.max, [x], rng)
    y = np.array([[3.0, 3.0, 0.0, 2.0], [0.5, 1.5, -1.0, 0.0]])
    check_grad(T.maximum, torch.maximum, [x, y], rng)
    check_grad(T.minimum, torch.minimum, [x, y], rng)


@pytest.mark.parametrize("name", ["argmax", "argmin"])
@pytest.mark.parametrize("dim,keepdim", [(None, False), (None, True), (1, False), (-1, True)])
def test_argmax_argmin_match_torch(rng, name, dim, keepdim):
    x = randn(rng, *SHAPE)
    same(getattr(T, name)(x, dim, keepdim), getattr(torch, name)(t(x), dim, keepdim))


@pytest.mark.parametrize("name", ["cumsum", "cumprod", "prod"])
@pytest.mark.parametrize("dim", [0, -1])
def test_cumulative_and_prod_match_torch(rng, name, dim):
    x = randn(rng, *SHAPE)
    check_grad(lambda x: getattr(T, name)(x, dim), lambda x: getattr(torch, name)(x, dim), [x], rng, reduction=4)
    i = np.arange(-3, 3, dtype=np.int8).reshape(2, 3)
    same(getattr(T, name)(i, dim), getattr(torch, name)(t(i), dim))
    same(getattr(T, name)(i > 0, dim), getattr(torch, name)(t(i) > 0, dim))


def test_integer_reductions_match_torch(rng):
    i = rng.integers(-5, 5, size=SHAPE).astype(np.int8)
    same(T.sum(i), torch.sum(t(i)))
    same(T.sum(i > 0, (0, 1)), torch.sum(t(i) > 0, (0, 1)))
    same(T.prod(i), torch.prod(t(i)))
    same(T.sum(i, 1, dtype=jnp.float64), torch.sum(t(i), 1, dtype=torch.float64))
    assert_close(T.mean(i, 1, dtype=jnp.float32), torch.mean(t(i), 1, dtype=torch.float32), np.float32, 3)
    same(T.all(i, (0, 2)), torch.all(t(i), (0, 2)))
    same(T.any(i > 3, 1, True), torch.any(t(i) > 3, 1, True))
    same(T.amax(i, (0, 1)), torch.amax(t(i), (0, 1)))


@pytest.mark.parametrize("p", [1, 3, float("inf"), float("-inf"), 0, "fro"])
def test_norm_orders_match_torch(rng, p):
    x = randn(rng, *SHAPE)
    if p == 0:
        same(T.norm(x, p, 1), torch.norm(t(x), p, 1))
    else:
        check_grad(lambda x: T.norm(x, p, (1, 2)), lambda x: torch.norm(x, p, (1, 2)), [x], rng, reduction=12)


# ---------------------------------------------------------------- pointwise

POS = ["sqrt", "rsqrt", "log", "log1p", "log2"]
UNARY = ["exp", "expm1", "sin", "cos", "erf", "tanh", "sigmoid", "abs", "neg", "reciprocal"]


@pytest.mark.parametrize("name", POS + UNARY)
def test_unary_functions_match_torch(rng, name):
    x = randn(rng, 3, 4)
    if name in POS:
        x = np.abs(x) + 0.1
    check_grad(getattr(T, name), getattr(torch, name), [x], rng)
    i = np.arange(1, 7, dtype=np.int64).reshape(2, 3)
    ours, theirs = getattr(T, name)(i), getattr(torch, name)(t(i))
    assert np.asarray(ours).dtype == np_dtype(theirs.dtype)  # float32 (torch's default) for ints
    assert_close(ours, theirs.numpy(), np.float32)


@pytest.mark.parametrize("descending", [False, True])
def test_sorting_matches_torchs_stable_sort(rng, descending):
    ties = rng.integers(0, 4, (3, 7)).astype(np.float64)
    ties[0, 2] = np.nan                                 # sorts as the largest, as in torch
    for dim in (1, 0, -1):
        ours, theirs = T.sort(ties, dim, descending), torch.sort(t(ties), dim=dim, descending=descending, stable=True)
        np.testing.assert_array_equal(ours.values, theirs.values.numpy())
        same(ours.indices, theirs.indices)
        same(T.argsort(ties, dim, descending), torch.argsort(t(ties), dim=dim, descending=descending, stable=True))
    x = randn(rng, 3, 7)
    check_grad(lambda x: T.sort(x, 1, descending).values, lambda x: torch.sort(x, 1, descending).values, [x], rng)
    for largest in (True, False):
        ours, theirs = T.topk(x, 3, 0 if descending else -1, largest), torch.topk(t(x), 3, 0 if descending else -1, largest)
        same(ours.indices, theirs.indices)
        check_grad(lambda x: T.topk(x, 2, 1, largest).values, lambda x: torch.topk(x, 2, 1, largest).values, [x], rng)
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        torch.topk(t(x), 8)
    with pytest.raises(ValueError, match=r"topk: k must be an int in \[0, 7\] \(the size of dim -1\), got k=8"):
        T.topk(x, 8)


def test_square_matches_torch(rng):
    x = randn(rng, 3, 4)
    check_grad(T.square, torch.square, [x], rng)
    for i in (np.arange(-3, 3), np.arange(-3, 3).astype(np.int32), np.array([True, False])):
        same(T.square(i), torch.square(t(i)))      # integers stay integers, bools become int64


@pytest.mark.parametrize("name", ["floor", "ceil", "trunc", "round", "sign"])
def test_rounding_functions_match_torch(rng, name):
    x = np.concatenate([randn(rng, 8) * 3, [0.5, 1.5, 2.5, -0.5, -2.5, 0.0]])
    same(getattr(T, name)(x), getattr(torch, name)(t(x)))
    same(getattr(T, name)(np.arange(-3, 3)), getattr(torch, name)(torch.arange(-3, 3)))
    # torch's round(x * 100) / 100; XLA divides by the scalar through its reciprocal (1 ulp).
    assert_close(T.round(x * 10, decimals=2), torch.round(t(x * 10), decimals=2).numpy())
    assert_close(T.round(x * 1000, decimals=-2), torch.round(t(x * 1000), decimals=-2).numpy())


@pytest.mark.parametrize("exponent", [2, 3, 0, -1, 0.5, 2.5, "tensor"])
def test_pow_matches_torch(rng, exponent):
    x, e = np.abs(randn(rng, 3, 4)) + 0.1, randn(rng, 3, 4)
    if exponent == "tensor":
        check_grad(T.pow, torch.pow, [x, e], rng)
        check_grad(lambda e: T.pow(2.0, e), lambda e: torch.pow(2.0, e), [e], rng)
    else:
        check_grad(lambda x: T.pow(x, exponent), lambda x: torch.pow(x, exponent), [x], rng)
    i = np.arange(6).reshape(2, 3)
    if exponent != "tensor" and not (isinstance(exponent, int) and exponent < 0):
        ours, theirs = T.pow(i, exponent), torch.pow(t(i), exponent)
        assert np.asarray(ours).dtype == np_dtype(theirs.dtype)
        assert_close(ours, theirs.numpy(), np.float32)
    same(T.pow(2.5, i).dtype == jnp.float32, torch.pow(2.5, t(i)).dtype == torch.float32)


@pytest.mark.parametrize("mode", [None, "trunc", "floor"])
def test_div_rounding_modes_match_torch(rng, mode):
    x, y = randn(rng, 4, 5) * 7, randn(rng, 4, 5)
    same(T.div(x, y, rounding_mode=mode), torch.div(t(x), t(y), rounding_mode=mode))
    # XLA divides by a broadcast scalar through its reciprocal: 1 ulp from torch's x / y.
    assert_close(T.div(x, -0.75, rounding_mode=mode), torch.div(t(x), -0.75, rounding_mode=mode).numpy())
    i, j = rng.integers(-9, 9, (4, 5)), rng.integers(1, 4, (4, 5)) * rng.choice([-1, 1], (4, 5))
    if mode is None:  # integers give float32
        assert_close(T.div(i, j), torch.div(t(i), t(j)).numpy(), np.float32)
        assert T.div(i, j).dtype == jnp.float32 and T.div(i, 4).dtype == jnp.float32
    else:
        same(T.div(i, j, rounding_mode=mode), torch.div(t(i), t(j), rounding_mode=mode))
        same(T.div(i, 4, rounding_mode=mode), torch.div(t(i), 4, rounding_mode=mode))
    if mode is None:
        check_grad(T.div, torch.div, [x, y], rng)
    same(T.floor_divide(i, j), torch.floor_divide(t(i), t(j)))
    same(T.floor_divide(x, y), torch.floor_divide(t(x), t(y)))
    same(T.remainder(i, j), torch.remainder(t(i), t(j)))
    same(T.fmod(i, j), torch.fmod(t(i), t(j)))
    assert_close(T.remainder(x, y), torch.remainder(t(x), t(y)).numpy(), reduction=7)


def test_add_sub_mul_match_torch(rng):
    x, y = randn(rng, 3, 4), randn(rng, 4)
    check_grad(lambda x, y: T.add(x, y, alpha=2.5), lambda x, y: torch.add(x, y, alpha=2.5), [x, y], rng)
    check_grad(lambda x, y: T.sub(x, y, alpha=-3), lambda x, y: torch.sub(x, y, alpha=-3), [x, y], rng)
    check_grad(T.mul, torch.mul, [x, y], rng)
    i = np.arange(6).reshape(2, 3)
    for ours, theirs in [(T.add(i, 1.5), torch.add(t(i), 1.5)), (T.mul(i, 2), torch.mul(t(i), 2)),
                         (T.sub(i, 0.5), torch.sub(t(i), 0.5)), (T.add(i > 2, 1), torch.add(t(i) > 2, 1))]:
        same(ours, theirs)


@pytest.mark.parametrize("lo,hi", [(-0.5, 0.7), (None, 0.2), (-0.3, None), (0.5, -0.5), ("tensor", "tensor"),
                                   ("tensor", None)])
def test_clamp_matches_torch(rng, lo, hi):
    x = randn(rng, 3, 4)
    x[0, :2] = [-0.5, 0.7] if lo == -0.5 else x[0, :2]  # values on the bounds: torch passes the gradient
    if lo == "tensor":
        bounds = [randn(rng, 4) - 0.5] + ([randn(rng, 3, 1) + 0.5] if hi else [])
        check_grad(lambda x, *b: T.clamp(x, *b), lambda x, *b: torch.clamp(x, *b), [x, *bounds], rng)
        check_grad(lambda x, *b: T.clip(x, min=b[0]), lambda x, *b: torch.clip(x, min=b[0]), [x, bounds[0]], rng)
    else:
        check_grad(lambda x: T.clamp(x, lo, hi), lambda x: torch.clamp(x, lo, hi), [x], rng)
        x[1, 0] = np.nan  # NaN stays NaN, with torch's zero gradient
        same(T.clamp(x, lo, hi), torch.clamp(t(x), lo, hi))
        tx = t(x).requires_grad_()
        torch.clamp(tx, lo, hi).sum().backward()
        same(jax.grad(lambda x: T.clamp(x, lo, hi).sum())(x), tx.grad)
        if lo is not None and hi is None:
            same(T.clamp_min(x, lo), torch.clamp_min(t(x), lo))
        if hi is not None and lo is None:
            same(T.clamp_max(x, hi), torch.clamp_max(t(x), hi))
    i = np.arange(-3, 3)
    same(T.clamp(i, -1, 1), torch.clamp(t(i), -1, 1))
    same(T.clamp(i, 0.5), torch.clamp(t(i), 0.5))


# ---------------------------------------------------------------- matrix products

@pytest.mark.parametrize("a,b", [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                                 ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2)), ((3, 4), (2, 4, 5))])
def test_matmul_matches_torch(rng, a, b):
    check_grad(T.matmul, torch.matmul, [randn(rng, *a), randn(rng, *b)], rng, reduction=4)


@pytest.mark.parametrize("name", ["mm", "bmm", "baddbmm", "baddbmm-scaled", "baddbmm-beta0", "addmm",
                                  "addmm-scaled", "einsum", "einsum-list", "einsum-sublist", "einsum-ellipsis"])
def test_products_match_torch(rng, name):
    a, b, c = randn(rng, 2, 3, 4), randn(rng, 2, 4, 5), randn(rng, 3, 5)
    cases = {
        "mm": (T.mm, torch.mm, [a[0], b[0]]),
        "bmm": (T.bmm, torch.bmm, [a, b]),
        "baddbmm": (T.baddbmm, torch.baddbmm, [c, a, b]),
        "baddbmm-scaled": (lambda c, a, b: T.baddbmm(c, a, b, beta=0.5, alpha=-2),
                           lambda c, a, b: torch.baddbmm(c, a, b, beta=0.5, alpha=-2), [c, a, b]),
        "baddbmm-beta0": (lambda a, b: T.baddbmm(np.full((2, 3, 5), np.nan), a, b, beta=0),
                          lambda a, b: torch.baddbmm(torch.full((2, 3, 5), np.nan, dtype=torch.float64), a, b,
                                                     beta=0), [a, b]),
        "addmm": (T.addmm, torch.addmm, [c[0], a[0], b[0]]),
        "addmm-scaled": (lambda c, a, b: T.addmm(c, a, b, beta=2, alpha=0.5),
                         lambda c, a, b: torch.addmm(c, a, b, beta=2, alpha=0.5), [c, a[0], b[0]]),
        "einsum": (lambda a, b: T.einsum("bij,bjk->bik", a, b), lambda a, b: torch.einsum("bij,bjk->bik", a, b), [a, b]),
        "einsum-list": (lambda a, b: T.einsum("bij, bjk", [a, b]), lambda a, b: torch.einsum("bij, bjk", [a, b]), [a, b]),
        "einsum-sublist": (lambda a, b: T.einsum(a, [0, 1, 2], b, [0, 2, 3], [0, 3, 1]),
                           lambda a, b: torch.einsum(a, [0, 1, 2], b, [0, 2, 3], [0, 3, 1]), [a, b]),
        "einsum-ellipsis": (lambda a: T.einsum("...ij->...ji", a), lambda a: torch.einsum("...ij->...ji", a), [a]),
    }
    ours, theirs, args = cases[name]
    check_grad(ours, theirs, args, rng, reduction=4)


@pytest.mark.parametrize("name", ["matmul", "mm", "bmm", "baddbmm", "addmm", "einsum"])
def test_products_run_at_full_float32_precision(rng, name):
    k = 256
    a, b, c = (randn(rng, 2, 8, k, dtype=np.float32), randn(rng, 2, k, 16, dtype=np.float32),
               randn(rng, 8, 16, dtype=np.float32))
    args = {"matmul": (a, b), "mm": (a[0], b[0]), "bmm": (a, b), "baddbmm": (c, a, b), "addmm": (c, a[0], b[0]),
            "einsum": ("bij,bjk->bik", a, b)}[name]
    y = jax.jit(getattr(T, name), static_argnums=(0,) if name == "einsum" else ())(*args)
    assert y.dtype == np.float32
    exact = getattr(torch, name)(*[a if isinstance(a, str) else t(a).double() for a in args]).numpy()
    assert_close(y, exact, np.float32, reduction=k)


# ---------------------------------------------------------------- addcmul / addcdiv (timm's GRN)

@pytest.mark.parametrize("value", [1, -0.75])
def test_addcmul_addcdiv_match_torch(rng, value):
    x, a, b = randn(rng, 3, 4), randn(rng, 4), randn(rng, 3, 1) + 3
    check_grad(lambda x, a, b: T.addcmul(x, a, b, value=value),
               lambda x, a, b: torch.addcmul(x, a, b, value=value), [x, a, b], rng)
    check_grad(lambda x, a, b: T.addcdiv(x, a, b, value=value),
               lambda x, a, b: torch.addcdiv(x, a, b, value=value), [x, a, b], rng)
    i = np.arange(6).reshape(2, 3)
    same(T.addcmul(i, i, i + 1, value=2), torch.addcmul(t(i), t(i), t(i + 1), value=2))
    same(T.addcdiv(i, i.astype(np.float32), i + 1), torch.addcdiv(t(i), t(i.astype(np.float32)), t(i + 1)))
    x32 = randn(rng, 3, 4).astype(np.float32)       # torch may fuse the multiply-add: 1 ulp
    ours, theirs = T.addcmul(x32, x32, x32), torch.addcmul(t(x32), t(x32), t(x32))
    assert ours.dtype == jnp.float32
    assert_close(ours, theirs.numpy(), np.float32)


def test_addcdiv_of_integers_raises_as_torch_does():
    i = np.arange(1, 4)
    with pytest.raises(RuntimeError, match="Integer division"):
        torch.addcdiv(t(i), t(i), t(i))
    with pytest.raises(ValueError, match="addcdiv: integer division"):
        T.addcdiv(i, i, i)
