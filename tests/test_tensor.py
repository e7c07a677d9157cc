"""jaxconv.tensor against torch: shapes, joins, indexing, creation, every call form, every error.

Reductions, elementwise math and matrix products are in test_tensor_math.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from jaxconv import tensor as T
from tests._util import assert_close, check_grad, np_dtype, randn, same, t

SHAPE = (2, 3, 4)
COND = np.random.default_rng(7).standard_normal((3, 4)) > 0


def _flat(pieces):
    """Tuple of arrays -> one vector (for check_grad), in jax or torch."""
    if isinstance(pieces[0], torch.Tensor):
        return torch.cat([p.reshape(-1) for p in pieces])
    return jnp.concatenate([jnp.ravel(p) for p in pieces])


# (id, ours, torch's, input shapes): differentiable float functions of float64 inputs.
# Each is compared in value and gradient (a random cotangent) under jit.
GRAD_CASES = [
    ("reshape-varargs", lambda x: T.reshape(x, 4, -1), lambda x: x.reshape(4, -1), [SHAPE]),
    ("reshape-tuple", lambda x: T.reshape(x, (3, -1, 2)), lambda x: torch.reshape(x, (3, -1, 2)), [SHAPE]),
    ("reshape-kw", lambda x: T.reshape(x, shape=[24]), lambda x: torch.reshape(x, shape=[24]), [SHAPE]),
    ("view-varargs", lambda x: T.view(x, 6, 4), lambda x: x.view(6, 4), [SHAPE]),
    ("view-tuple", lambda x: T.view(x, (-1,)), lambda x: x.view((-1,)), [SHAPE]),
    ("view-kw", lambda x: T.view(x, size=(2, 12)), lambda x: x.view(size=(2, 12)), [SHAPE]),
    ("flatten", lambda x: T.flatten(x, 1), lambda x: torch.flatten(x, 1), [SHAPE]),
    ("flatten-0d", lambda x: T.flatten(x), lambda x: torch.flatten(x), [()]),
    ("unflatten", lambda x: T.unflatten(x, -1, (2, -1)), lambda x: x.unflatten(-1, (2, -1)), [SHAPE]),
    ("permute-varargs", lambda x: T.permute(x, 2, 0, 1), lambda x: x.permute(2, 0, 1), [SHAPE]),
    ("permute-tuple", lambda x: T.permute(x, (-1, 0, 1)), lambda x: torch.permute(x, (-1, 0, 1)), [SHAPE]),
    ("transpose", lambda x: T.transpose(x, 0, -1), lambda x: x.transpose(0, -1), [SHAPE]),
    ("swapaxes", lambda x: T.swapaxes(x, 1, 2), lambda x: torch.swapaxes(x, 1, 2), [SHAPE]),
    ("t", T.t, torch.t, [(3, 4)]),
    ("movedim", lambda x: T.movedim(x, (0, 1), (2, 0)), lambda x: torch.movedim(x, (0, 1), (2, 0)), [SHAPE]),
    ("squeeze-all", T.squeeze, torch.squeeze, [(1, 3, 1, 2)]),
    ("squeeze-int", lambda x: T.squeeze(x, -2), lambda x: x.squeeze(-2), [(1, 3, 1, 2)]),
    ("squeeze-noop", lambda x: T.squeeze(x, 1), lambda x: x.squeeze(1), [(1, 3, 1, 2)]),
    ("squeeze-tuple", lambda x: T.squeeze(x, (0, 1, 2)), lambda x: x.squeeze((0, 1, 2)), [(1, 3, 1, 2)]),
    ("unsqueeze-end", lambda x: T.unsqueeze(x, 3), lambda x: x.unsqueeze(3), [SHAPE]),
    ("unsqueeze-neg", lambda x: T.unsqueeze(x, -4), lambda x: x.unsqueeze(-4), [SHAPE]),
    ("expand", lambda x: T.expand(x, 2, -1, 3, 4), lambda x: x.expand(2, -1, 3, 4), [(3, 1, 4)]),
    ("expand-tuple", lambda x: T.expand(x, (3, 4)), lambda x: x.expand((3, 4)), [(3, 1)]),
    ("expand_as", lambda x, y: T.expand_as(x, y) * y, lambda x, y: x.expand_as(y) * y, [(3, 1), (2, 3, 4)]),
    ("broadcast_to", lambda x: T.broadcast_to(x, (2, 3, 4)), lambda x: torch.broadcast_to(x, (2, 3, 4)), [(3, 1)]),
    ("repeat", lambda x: T.repeat(x, 2, 1, 3), lambda x: x.repeat(2, 1, 3), [(3, 2)]),
    ("repeat-tuple", lambda x: T.repeat(x, (2, 3)), lambda x: x.repeat((2, 3)), [(3, 2)]),
    ("tile", lambda x: T.tile(x, (2,)), lambda x: torch.tile(x, (2,)), [(3, 2)]),
    ("repeat_interleave", lambda x: T.repeat_interleave(x, 2, 1), lambda x: x.repeat_interleave(2, 1), [(3, 2)]),
    ("repeat_interleave-flat", lambda x: T.repeat_interleave(x, 3), lambda x: x.repeat_interleave(3), [(3, 2)]),
    ("contiguous", T.contiguous, lambda x: x.contiguous(), [SHAPE]),
    ("clone", T.clone, torch.clone, [SHAPE]),
    ("cat", lambda x, y: T.cat([x, y], -1), lambda x, y: torch.cat([x, y], -1), [(2, 3), (2, 5)]),
    ("cat-skips-empty", lambda x, y: T.cat((x, y), dim=1), lambda x, y: torch.cat((x, y), dim=1), [(2, 3), (0,)]),
    ("stack", lambda x, y: T.stack([x, y], 2), lambda x, y: torch.stack([x, y], 2), [(2, 3), (2, 3)]),
    ("stack-neg", lambda x, y: T.stack([x, y], dim=-1), lambda x, y: torch.stack([x, y], dim=-1), [(2, 3), (2, 3)]),
    ("chunk", lambda x: _flat(T.chunk(x, 4, 1)), lambda x: _flat(x.chunk(4, 1)), [(2, 5)]),
    ("split-int", lambda x: _flat(T.split(x, 2, dim=1)), lambda x: _flat(x.split(2, dim=1)), [(2, 5)]),
    ("split-list", lambda x: _flat(T.split(x, [1, 3, 1], 1)), lambda x: _flat(torch.split(x, [1, 3, 1], 1)), [(2, 5)]),
    ("unbind", lambda x: _flat(T.unbind(x, 1)), lambda x: _flat(x.unbind(1)), [(2, 3)]),
    ("narrow", lambda x: T.narrow(x, 1, -3, 2), lambda x: x.narrow(1, -3, 2), [(2, 5)]),
    ("gather", lambda x: T.gather(x, 1, jnp.array([[2, 0], [1, 1]])),
     lambda x: torch.gather(x, 1, torch.tensor([[2, 0], [1, 1]])), [(3, 4)]),
    ("gather-dim0", lambda x: T.gather(x, 0, jnp.array([[2, 0, 1]])),
     lambda x: torch.gather(x, 0, torch.tensor([[2, 0, 1]])), [(3, 4)]),
    ("index_select", lambda x: T.index_select(x, 1, jnp.array([3, 0, 3])),
     lambda x: torch.index_select(x, 1, torch.tensor([3, 0, 3])), [(3, 4)]),
    ("where", lambda x, y: T.where(COND, x, y), lambda x, y: torch.where(t(COND), x, y), [(3, 4)] * 2),
    ("where-scalar", lambda x: T.where(COND, x, 0.5), lambda x: torch.where(t(COND), x, 0.5), [(3, 4)]),
    ("where-broadcast", lambda x, y: T.where(COND[:, :1], x, y), lambda x, y: torch.where(t(COND[:, :1]), x, y),
     [(4,), (3, 1)]),
    ("masked_fill", lambda x: T.masked_fill(x, x > 0.3, -1.5), lambda x: x.masked_fill(x > 0.3, -1.5), [(3, 4)]),
    ("masked_fill-broadcast", lambda x: T.masked_fill(x, COND, 2.0), lambda x: x.masked_fill(t(COND), 2.0), [(4,)]),
    ("flip-varargs", lambda x: T.flip(x, 0, 2), lambda x: x.flip(0, 2), [SHAPE]),
    ("flip-tuple", lambda x: T.flip(x, (-1,)), lambda x: torch.flip(x, (-1,)), [SHAPE]),
    ("roll-flat", lambda x: T.roll(x, 5), lambda x: torch.roll(x, 5), [SHAPE]),
    ("roll-dims", lambda x: T.roll(x, (1, -2), (0, 2)), lambda x: torch.roll(x, (1, -2), (0, 2)), [SHAPE]),
    ("tril", lambda x: T.tril(x, -1), lambda x: torch.tril(x, -1), [(3, 4)]),
    ("triu", lambda x: T.triu(x, diagonal=1), lambda x: x.triu(diagonal=1), [SHAPE]),
]


@pytest.mark.parametrize("name,ours,theirs,shapes", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_shape_and_index_functions_match_torch(rng, name, ours, theirs, shapes):
    args = [randn(rng, *s) for s in shapes]
    check_grad(ours, theirs, args, rng)


@pytest.mark.parametrize("fn,args,expected", [
    (T.chunk, (5, 4), [2, 2, 1]), (T.chunk, (6, 4), [2, 2, 2]), (T.chunk, (5, 6), [1] * 5),
    (T.chunk, (0, 3), [0, 0, 0]), (T.split, (5, 2), [2, 2, 1]), (T.split, (0, 2), [0]),
    (T.split, (5, 7), [5]),
])
def test_chunk_and_split_piece_sizes_are_torchs(fn, args, expected):
    n, k = args
    x = np.arange(n, dtype=np.float64)
    ours = fn(x, k)
    theirs = getattr(torch, fn.__name__)(torch.from_numpy(x), k)
    assert [p.shape[0] for p in ours] == [p.shape[0] for p in theirs] == expected
    same(ours, theirs)


def test_size_numel_dim(rng):
    x = randn(rng, *SHAPE)
    assert T.size(x) == tuple(t(x).size()) and T.size(x, -1) == t(x).size(-1) == 4
    assert isinstance(T.size(x, 1), int) and all(isinstance(s, int) for s in T.size(x))
    assert T.numel(x) == t(x).numel() == 24 and T.dim(x) == t(x).dim() == 3
    assert T.size(np.float64(1.0)) == ()
    assert np.all(jax.grad(lambda x: (T.detach(x) * x).sum())(x) == x)


def test_cat_and_stack_promote_like_torch(rng):
    a, b = randn(rng, 2, 3, dtype=np.float32), np.arange(6).reshape(2, 3)
    same(T.cat([a, b]), torch.cat([t(a), t(b)]))
    same(T.stack([a, b], 1), torch.stack([t(a), t(b)], 1))
    c = randn(rng, 1, 3)
    same(T.cat([a, c]), torch.cat([t(a), t(c)]))


# ---------------------------------------------------------------- creation and conversion

@pytest.mark.parametrize("args,kw", [((5,), {}), ((2, 9, 3), {}), ((0.1, 2.3, 0.37), {}), ((3, -2.5, -0.5), {}),
                                     ((1, 4), {"dtype": jnp.float64}), ((0, 5.5), {"dtype": jnp.int64}),
                                     ((0.5, 3.7), {"dtype": jnp.int32}), ((-1.0, 1.0, 0.1), {}), ((10, 0, -3), {})])
def test_arange_matches_torch(args, kw):
    tkw = {k: getattr(torch, np.dtype(v).name) for k, v in kw.items()}
    ours, theirs = T.arange(*args, **kw), torch.arange(*args, **tkw)
    assert ours.dtype == np_dtype(theirs.dtype)
    if jnp.issubdtype(ours.dtype, jnp.floating):  # torch's SIMD chunks add step in float32: an ulp
        assert_close(ours, theirs.numpy(), ours.dtype)
    else:
        same(ours, theirs)


def test_fill_functions_match_torch(rng):
    x = randn(rng, 2, 3, dtype=np.float32)
    same(T.zeros(2, 3), torch.zeros(2, 3))
    same(T.zeros((2, 3), dtype=jnp.int32), torch.zeros((2, 3), dtype=torch.int32))
    same(T.ones([4], device="cpu"), torch.ones([4], device="cpu"))
    same(T.ones(size=(1, 2)), torch.ones(size=(1, 2)))
    for v in (2.5, 3, True):
        same(T.full((2, 2), v), torch.full((2, 2), v))
    same(T.full([3], 7, dtype=jnp.float64), torch.full([3], 7, dtype=torch.float64))
    same(T.zeros_like(x), torch.zeros_like(t(x)))
    same(T.ones_like(x, dtype=jnp.int64), torch.ones_like(t(x), dtype=torch.int64))
    same(T.full_like(x, 1.25), torch.full_like(t(x), 1.25))
    same(T.full_like(np.arange(3), 2.7), torch.full_like(torch.arange(3), 2.7))
    same(T.new_zeros(x, 3, 1), t(x).new_zeros(3, 1))
    same(T.new_ones(x, (2,)), t(x).new_ones((2,)))
    same(T.new_full(x, (2,), -1), t(x).new_full((2,), -1))
    same(T.new_tensor(x, [1, 2]), t(x).new_tensor([1, 2]))
    for data in ([1.5, 2.0], [[1, 2], [3, 4]], True, 0.5, [True, False]):
        same(T.tensor(data), torch.tensor(data))
    same(T.tensor([1, 2], dtype=jnp.float64), torch.tensor([1, 2], dtype=torch.float64))


def test_eye_matches_torch():
    same(T.eye(3), torch.eye(3))
    same(T.eye(2, 4, dtype=jnp.int64), torch.eye(2, 4, dtype=torch.int64))
    same(T.eye(0, 2), torch.eye(0, 2))
    with pytest.raises(ValueError, match="eye: n must be an integer >= 0, got n=-1"):
        T.eye(-1)
    with pytest.raises(RuntimeError, match="n must be greater or equal to 0"):
        torch.eye(-1)
    with pytest.raises(ValueError, match="eye: m must be an integer >= 0, got m=2.5"):
        T.eye(2, 2.5)


def test_meshgrid_matches_torch(rng):
    a, b = randn(rng, 3), np.arange(4.0)
    for indexing in ("ij", "xy"):
        same(T.meshgrid(a, b, indexing=indexing), torch.meshgrid(t(a), t(b), indexing=indexing))
    same(T.meshgrid([a, b]), torch.meshgrid([t(a), t(b)], indexing="ij"))
    with pytest.raises(ValueError, match="meshgrid: indexing must be 'ij' or 'xy', got indexing='ji'"):
        T.meshgrid(a, b, indexing="ji")
    with pytest.raises(RuntimeError, match="meshgrid expects all tensors to have the same dtype"):
        torch.meshgrid(t(a), torch.arange(4), indexing="ij")
    with pytest.raises(ValueError, match=r"meshgrid: expects all tensors to have the same dtype, got \['float64', 'int"):
        T.meshgrid(a, np.arange(4), indexing="ij")


def test_random_tensors_have_torchs_shapes_dtypes_and_distributions():
    key = jax.random.key(0)
    u, n = T.rand(400, 50, key=key), T.randn((400, 50), key=key, dtype=jnp.float64)
    assert u.shape == n.shape == (400, 50) and u.dtype == jnp.float32 and n.dtype == jnp.float64
    assert 0 <= float(u.min()) and float(u.max()) < 1 and abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float(n.mean())) < 0.01 and abs(float(n.std()) - 1) < 0.01
    x = jnp.zeros((300, 40), jnp.float64)
    assert T.rand_like(x, key=key).dtype == T.randn_like(x, key=key).dtype == jnp.float64
    draws = T.bernoulli(x, 0.25, key=key)
    assert draws.dtype == jnp.float64 and set(np.unique(draws)) == {0.0, 1.0}
    assert abs(float(draws.mean()) - 0.25) < 0.01
    assert float(T.bernoulli(x + 1, key=key).min()) == 1          # probabilities from the input
    with pytest.raises(TypeError, match="rand: a jax.random key is required"):
        T.rand(2, 3)
    with pytest.raises(ValueError, match=r"bernoulli: p must be in \[0, 1\], got p=1.5"):
        T.bernoulli(x, 1.5, key=key)


def test_to_and_type_as_match_torch(rng):
    x = randn(rng, 2, 3) * 3
    i = np.arange(-3, 3)
    same(T.to(x, jnp.float32), t(x).to(torch.float32))
    same(T.to(x, "cpu", jnp.int32), t(x).to("cpu", torch.int32))
    same(T.to(x, dtype=jnp.int64), t(x).to(dtype=torch.int64))
    same(T.to(x, i), t(x).to(t(i)))
    same(T.to(x, "cpu"), t(x).to("cpu"))
    same(T.to(x, None), t(x).to(None))                  # a device of None: x.to(y.device), translated
    same(T.to(x, None, jnp.float32), t(x).to(None, torch.float32))
    same(T.to(i, jnp.bool_), t(i).to(torch.bool))
    same(T.type_as(i, x), t(i).type_as(t(x)))
    check_grad(lambda x: T.to(x, jnp.float64) * 2, lambda x: x.to(torch.float64) * 2, [x], rng)


def test_functions_work_under_jit(rng):
    x = randn(rng, *SHAPE)
    f = jax.jit(lambda x: (T.chunk(x, 2, 2), T.max(x, 1), T.split(x, [1, 2], 1), T.size(x, 0) * T.mean(x, (0, 1)),
                           T.var(x, 1, True, True), T.arange(4) * T.numel(x), T.expand(T.unsqueeze(x, 0), 2, -1, -1, -1)))
    chunks, (values, indices), pieces, m, v, a, e = f(x)
    tx = t(x)
    same(chunks, tx.chunk(2, 2))
    same(indices, tx.max(1).indices)
    same(pieces, tx.split([1, 2], 1))
    assert_close(m, (2 * tx.mean((0, 1))).numpy())
    assert_close(v, tx.var(1, True, True).numpy())
    same(a, torch.arange(4) * 24)
    same(e, tx.unsqueeze(0).expand(2, -1, -1, -1))


# ---------------------------------------------------------------- errors, raised where torch raises

X = np.random.default_rng(3).standard_normal((2, 3, 4))
I = np.arange(6).reshape(2, 3)
ERRORS = [
    # (ours, torch's, our exception, message fragment)
    (lambda m, x: m.chunk(x, 0), ValueError, "chunk: chunks must be greater than 0, got chunks=0"),
    (lambda m, x: m.chunk(x, -2, 1), ValueError, "chunks=-2"),
    (lambda m, x: m.split(x, [1, 2], 2), ValueError, r"split: split sizes .* sum exactly to 4 .*\[1, 2\]"),
    (lambda m, x: m.split(x, -1), ValueError, "split_size must be non-negative, got split_size=-1"),
    (lambda m, x: m.split(x, 0), ValueError, "split_size can only be 0"),
    (lambda m, x: m.reshape(x, -1, -1), ValueError, r"reshape: only one dimension can be inferred .*\[-1, -1\]"),
    (lambda m, x: x.view(-1, -1) if m is torch else m.view(x, -1, -1), ValueError, "view: only one dimension"),
    (lambda m, x: m.reshape(x, 5, -1), ValueError, r"reshape: shape \[5, -1\] is invalid for input of size 24"),
    (lambda m, x: m.reshape(x, 4, 2), ValueError, r"shape \[4, 2\] is invalid for input of size 24"),
    (lambda m, x: m.reshape(x, 2.5), TypeError, "reshape: shape must be ints"),
    (lambda m, x: m.sum(x, 3), ValueError, r"sum: Dimension out of range \(expected to be in range of \[-3, 2\], but got dim=3\)"),
    (lambda m, x: m.sum(x, (0, 0)), ValueError, "sum: dim 0 appears multiple times"),
    (lambda m, x: m.mean(x, -4), ValueError, "mean: Dimension out of range"),
    (lambda m, x: m.amax(x, (1, -2)), ValueError, "amax: dim 1 appears multiple times"),
    (lambda m, x: m.max(x, 3), ValueError, "max: Dimension out of range"),
    (lambda m, x: m.argmax(x, (0, 1)), TypeError, "argmax: dim must be a single int"),
    (lambda m, x: m.prod(x, (0, 1)), TypeError, "prod: dim must be a single int"),
    (lambda m, x: m.cumsum(x, (0, 1)), TypeError, "cumsum: dim must be a single int"),
    (lambda m, x: m.std(x, unbiased=True, correction=1), TypeError, "std: pass unbiased or correction"),
    (lambda m, x: m.logsumexp(x, 5), ValueError, "logsumexp: Dimension out of range"),
    (lambda m, x: m.amax(x[:0], None) if m is T else torch.amax(x[:0]), ValueError, "amax: expected the reduction dim"),
    (lambda m, x: m.mean(m.arange(3)), TypeError, "mean: could not infer output dtype"),
    (lambda m, x: m.permute(x, 0, 1), ValueError, r"permute: dims must have one entry per dimension .*dims=\(0, 1\)"),
    (lambda m, x: m.permute(x, 0, 1, 1), ValueError, r"permute: duplicate dims are not allowed, got dims=\(0, 1, 1\)"),
    (lambda m, x: m.transpose(x, 0, 3), ValueError, "transpose: Dimension out of range .* got dim1=3"),
    (lambda m, x: m.squeeze(x, 3), ValueError, "squeeze: Dimension out of range"),
    (lambda m, x: m.unsqueeze(x, 4), ValueError, r"unsqueeze: Dimension out of range \(expected to be in range of \[-4, 3\]"),
    (lambda m, x: m.unsqueeze(x, -5), ValueError, "unsqueeze: Dimension out of range"),
    (lambda m, x: x.expand(3, 3, 4) if m is torch else m.expand(x, 3, 3, 4), ValueError,
     r"expand: the expanded size of the tensor \(3\) must match the existing size \(2\) at non-singleton dimension 0"),
    (lambda m, x: x.expand(3, 4) if m is torch else m.expand(x, 3, 4), ValueError,
     r"expand: the number of sizes provided \(2\) must be greater or equal to the number of dimensions in the tensor \(3\)"),
    (lambda m, x: x.expand(-1, 2, 3, 4) if m is torch else m.expand(x, -1, 2, 3, 4), ValueError,
     "expand: the expanded size -1 is not allowed in a leading, non-existing dimension 0"),
    (lambda m, x: x.repeat(2, 2) if m is torch else m.repeat(x, 2, 2), ValueError,
     r"repeat: number of dimensions of repeat dims \(2\) can not be smaller than number of dimensions of tensor \(3\)"),
    (lambda m, x: m.cat([x, x[0]]), ValueError, "cat: tensors must have the same number of dimensions: got 3 and 2"),
    (lambda m, x: m.cat([x, x[:, :2, :2]], 1), ValueError, "cat: sizes of tensors must match except in dimension 1"),
    (lambda m, x: m.cat([]), ValueError, "cat: expected a non-empty list"),
    (lambda m, x: m.stack([x, x[0]]), ValueError, r"stack: expects each tensor to be equal size, but got \[2, 3, 4\] at entry 0"),
    (lambda m, x: m.stack([x], 4), ValueError, "stack: Dimension out of range"),
    (lambda m, x: m.narrow(x, 1, 2, 2), ValueError, r"narrow: start \(2\) \+ length \(2\) exceeds dimension size \(3\)"),
    (lambda m, x: m.narrow(x, 1, -4, 1), ValueError, "narrow: start out of range"),
    (lambda m, x: m.narrow(x, 1, 0, -1), ValueError, "narrow: length must be a non-negative int"),
    (lambda m, x: m.roll(x, (1, 2), (0,)), ValueError, "roll: shifts and dimensions must align"),
    (lambda m, x: m.flip(x, (0, 0)), ValueError, "flip: dim 0 appears multiple times"),
    (lambda m, x: m.gather(x, 1, m.zeros((2, 3), dtype=m.int64)), ValueError,
     r"gather: index must have the same number of dimensions as input \(3\)"),
    (lambda m, x: m.gather(x, 1, m.zeros((3, 1, 1), dtype=m.int64)), ValueError, "gather: index of shape .* must be no larger"),
    (lambda m, x: m.gather(x, 1, m.zeros((1, 1, 1))), TypeError, "gather: expected an int32 or int64 index"),
    (lambda m, x: m.index_select(x, 1, m.zeros((1, 1), dtype=m.int64)), ValueError, "index_select: index is supposed to be a vector"),
    (lambda m, x: m.where(x, x, x), TypeError, "where: expected condition to be a bool tensor"),
    (lambda m, x: m.masked_fill(x, m.ones(4, dtype=m.int64), 1.0), TypeError, "masked_fill: only supports boolean masks"),
    (lambda m, x: m.masked_fill(x, x > 0, m.ones(4, dtype=m.float64)), ValueError, "masked_fill: only supports a 0-dimensional value"),
    (lambda m, x: m.clamp(x), ValueError, "clamp: at least one of 'min' or 'max' must not be None"),
    (lambda m, x: m.div(x, x, rounding_mode="round"), ValueError, "div: rounding_mode must be one of"),
    (lambda m, x: m.pow(m.arange(3), -1), ValueError, "pow: integers to negative integer powers are not allowed"),
    (lambda m, x: m.sub(x > 0, x > 1), TypeError, "sub: subtraction of two bool tensors"),
    (lambda m, x: m.tril(x[0, 0]), ValueError, "tril: input tensor must have at least 2 dimensions"),
    (lambda m, x: m.t(x), ValueError, "t: expects a tensor with <= 2 dimensions"),
    (lambda m, x: m.mm(x, x), ValueError, "mm: input and mat2 must be matrices"),
    (lambda m, x: m.mm(x[0], x[0]), ValueError, r"mm: shapes cannot be multiplied \(input, mat2: 3x4 and 3x4\)"),
    (lambda m, x: m.bmm(x, x), ValueError, r"bmm: expected the first two dims of mat2 to be \[2, 4\]"),
    (lambda m, x: m.matmul(x, x), ValueError, "matmul: shapes cannot be multiplied"),
    (lambda m, x: m.matmul(x, m.ones((3, 4, 2), dtype=m.float64)), ValueError, "matmul: batch dims must broadcast"),
    (lambda m, x: m.matmul(x[0, 0, 0], x), ValueError, "matmul: both arguments need to be at least 1D"),
    (lambda m, x: m.matmul(x, m.ones(4, dtype=m.float32)), TypeError, r"matmul: input \(float64\) and other \(float32\)"),
    (lambda m, x: m.einsum("ij,jk", x[0], m.ones((4, 2), dtype=m.float32)), TypeError, "einsum: input"),
    (lambda m, x: m.baddbmm(m.ones(5, dtype=m.float64), x, m.ones((2, 4, 3), dtype=m.float64)), ValueError,
     r"expand: the expanded size of the tensor \(3\) must match the existing size \(5\)"),
    (lambda m, x: m.arange(0, 5, 0), ValueError, "arange: step must be nonzero"),
    (lambda m, x: m.arange(0, 5, -1), ValueError, "arange: upper bound and lower bound inconsistent with step sign"),
    (lambda m, x: m.size(m.ones(()), 0) if m is T else torch.ones(()).size(0), ValueError, "size: dimension specified"),
    (lambda m, x: m.zeros(2, -1), ValueError, "zeros: trying to create a tensor with a negative dimension"),
    (lambda m, x: m.flatten(x, 2, 1), ValueError, "flatten: start_dim cannot come after end_dim"),
]


@pytest.mark.parametrize("call,exc,match", ERRORS, ids=[str(i) for i in range(len(ERRORS))])
def test_errors_are_raised_where_torch_raises(call, exc, match):
    with pytest.raises(exc, match=match):
        call(T, X)
    with pytest.raises((RuntimeError, IndexError, TypeError, ValueError)):
        call(torch, torch.from_numpy(X.copy()))


def test_dtypes_have_torchs_names():
    for name in ("float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"):
        assert np.dtype(getattr(T, name)) == np_dtype(getattr(torch, name))
    assert np.dtype(T.bfloat16) == jnp.bfloat16 and np.dtype(T.int64) == np.int64



@pytest.mark.parametrize("arg,dim", [(3, 0), (4, 1), (1, 1), (7, 0), ((1,), 1), ([1, 3], 0),
                                     ((2, 2), 1), ((0, 5), 0), ((-1,), 1), ((4, 1), 0)])
def test_tensor_split_matches_torch(rng, arg, dim):
    x = randn(rng, 5, 3)
    same(T.tensor_split(x, arg, dim), torch.tensor_split(t(x), arg, dim))


def test_tensor_split_errors_as_torch():
    with pytest.raises(RuntimeError):
        torch.tensor_split(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="larger than 0"):
        T.tensor_split(np.zeros(3), 0)


def test_tensor_split_keyword_forms_match_torch(rng):
    x = randn(rng, 4, 6)
    same(T.tensor_split(x, indices=(1, 4), dim=1), torch.tensor_split(t(x), indices=(1, 4), dim=1))
    same(T.tensor_split(x, sections=3), torch.tensor_split(t(x), sections=3))
