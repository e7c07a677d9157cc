"""Failure classes of the torch.export fallback and its ATen graphs, met on models no other test
names (issue 20), each reduced to the smallest torch module that shows it: (1) children whose
calls record no op, (2) in-place writes and indexing, (3) one vocabulary for ATen and torch
calls, (4) blocks the example does not reach, (5) the rest of what a survey of timm and
Hugging Face models found.

Most modules here branch on their input's shape (:class:`_ShapeCheck`), so torch.fx cannot
trace them and ``torch.export`` captures them. Each is checked against torch (float64, random
asymmetric data) through its standalone source (``translate_source``, run on its own as
``translate`` does), eagerly and under ``nnx.jit``, and with ``equivalence.compare`` (in the
default suite where the class concerns the calls compare matches; the rest are ``slow``).
"""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from flax import nnx

import equivalence
from equivalence import TranslationError, translate, translate_source
from equivalence.translator import build_from_source

from tests._util import assert_close, randn, t


def _randomized(m, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)
    return m


def check(m, *inputs, reduction=64, compare=True):
    """``m`` (eval, float64) translated: its standalone source run on its own (what
    ``translate`` does) under ``nnx.jit`` and eagerly, against torch; with ``compare``, the
    eager run is ``equivalence.compare``'s. Returns the translated module."""
    m = _randomized(m).double().eval()
    xs = [t(x) for x in inputs]
    with torch.no_grad():
        ref = m(*xs)
    source = translate_source(m, *xs)
    assert not [line for line in source.splitlines() if line.startswith(("import torch", "from torch"))]
    jm = build_from_source(source, m)
    args = [jnp.asarray(x) for x in inputs]
    refs = jax.tree_util.tree_leaves(ref)
    runs = [nnx.jit(lambda model, *a: model(*a))(jm, *args)] + ([] if compare else [jm(*args)])
    for y in runs:          # compare runs the eager forward itself
        ys = jax.tree_util.tree_leaves(y)
        assert len(ys) == len(refs)
        for a, b in zip(ys, refs):
            assert_close(a, b, reduction=reduction)
    if compare:
        report = equivalence.compare(m, jm, *xs, jit=False)
        assert report.passed, str(report)
    return jm


class _ShapeCheck(torch.nn.Module):
    """A base whose ``forward`` first branches on the input's shape: fx cannot trace it."""

    def crop(self, x):
        if x.shape[-1] % 2:
            x = x[..., :-1]
        return x


# --- 1. children whose calls record no op of their own ---------------------------------------
class IdentityChildren(_ShapeCheck):
    """timm's blocks keep ``nn.Identity`` placeholders (``drop_path1``, ``pool``, ``se``) that
    the call does use; export records no op for them, so unflatten cannot rebuild their calls.
    ``unused`` is never called, ``absent`` is ``None``."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.drop_path1 = torch.nn.Identity()
        self.se = torch.nn.Identity()
        self.pool = torch.nn.Identity()
        self.unused = torch.nn.Conv2d(4, 4, 1)
        self.absent = None

    def forward(self, x):
        x = self.crop(x)
        y = self.conv(x)
        if self.absent is not None:
            y = self.absent(y)
        s = self.se(y)
        s *= 0.5                    # a write through the identity's output: y changes too
        y = x + self.drop_path1(y * s)
        return self.pool(y) - self.drop_path1(x)      # a second call of the same identity


def test_identity_children_keep_their_calls(rng):
    jm = check(IdentityChildren(), randn(rng, 2, 4, 6, 7))
    assert {"drop_path1", "se", "pool"} <= set(jm.__dict__)



class Fusion(torch.nn.Module):
    """Hugging Face DPT's fusion stage: a list out, of which its caller reads one item."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])

    def forward(self, xs):
        out, fused = [], None
        for x, layer in zip(xs[::-1], self.layers):
            fused = layer(x) if fused is None else layer(fused + x)
            out.append(fused)
        return out


class Neck(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.convs = torch.nn.ModuleList([torch.nn.Linear(4, 4) for _ in range(2)])
        self.fusion = Fusion()

    def forward(self, xs):
        return self.fusion([conv(x) for conv, x in zip(self.convs, xs)])


class DeepChildren(_ShapeCheck):
    """unflatten cannot rebuild the grandchildren here ('Could not find output node'): only
    the direct children's calls are rebuilt."""

    def __init__(self):
        super().__init__()
        self.neck, self.head = Neck(), torch.nn.Linear(4, 2)

    def forward(self, x):
        x = self.crop(x)
        return self.head(self.neck([x, x * 2])[-1])


def test_deeper_modules_are_left_to_their_own_capture(rng):
    check(DeepChildren(), randn(rng, 3, 4), compare=False)

# --- 2. in-place writes, advanced indexing, einsum, eye, square ---------------------------------
class InPlace(_ShapeCheck):
    """In-place writes as timm and Hugging Face models write them (``x += y``, ``attn /= s``,
    ``mul_``, slice assignment, an in-place op on a view), read afterwards through the tensor
    and through a view into it taken before the writes."""

    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(6, 6)

    def forward(self, x, y):
        z = self.proj(self.crop(x))
        z += y
        attn = z @ z.transpose(-1, -2)
        attn /= 3.0
        attn.mul_(0.5)
        head = z[:, :2]                             # a view, read after the writes below
        z[:, 1:] = attn[:, :-1, :1] * z[:, :-1]     # slice assignment: slice + copy_
        z[:, 0, 1:] += 1                            # in place on a view of a view
        z.transpose(1, 2)[:, 0] = -2.0              # through a transposed view: fill_
        return z, attn, head * 2


class RelativeBias(_ShapeCheck):
    """Swin/BEiT's relative position bias (``table[index.view(-1)]``: ``aten::index``), einsum,
    ``eye`` and ``square``."""

    def __init__(self, window=2, heads=2):
        super().__init__()
        n = window * window
        self.table = torch.nn.Parameter(torch.randn((2 * window - 1) ** 2, heads))
        coords = torch.stack(torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")).flatten(1)
        rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + window - 1
        self.register_buffer("index", rel[..., 0] * (2 * window - 1) + rel[..., 1], persistent=False)
        self.n, self.heads = n, heads

    def forward(self, q, k):
        q = self.crop(q)                            # (B, heads, n, d)
        bias = self.table[self.index.view(-1)].view(self.n, self.n, -1).permute(2, 0, 1)
        attn = torch.einsum("bhid,bhjd->bhij", q, k) + bias + torch.eye(self.n, dtype=q.dtype)
        return attn.softmax(-1) + torch.square(k)


def test_in_place_writes(rng):
    check(InPlace(), randn(rng, 2, 4, 7), randn(rng, 2, 4, 6), compare=False)


@pytest.mark.slow
def test_in_place_writes_compare(rng):
    check(InPlace(), randn(rng, 2, 4, 7), randn(rng, 2, 4, 6))


def test_relative_position_bias_einsum_eye_square(rng):
    check(RelativeBias(), randn(rng, 2, 2, 4, 5), randn(rng, 2, 2, 4, 4), reduction=4 * 5, compare=False)


@pytest.mark.slow
def test_relative_position_bias_compare(rng):
    check(RelativeBias(), randn(rng, 2, 2, 4, 5), randn(rng, 2, 2, 4, 4), reduction=4 * 5)


class Counter(_ShapeCheck):
    """Writes into its own buffers in ``forward``: a count and a slice of a history."""

    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("history", torch.zeros(4, dtype=torch.float64))

    def forward(self, x):
        x = self.crop(x)
        self.count.add_(1)
        self.history[1:] = x[0, :3]
        return x * self.count + self.history.sum()


def test_writes_into_buffers_are_kept(rng):
    x = randn(rng, 2, 5)
    m = Counter().double()
    jm = translate(m, t(x))
    assert float(m.count) == 0, "translate ran the torch model's forward for good"
    for _ in range(2):
        ref, y = m(t(x)), jm(jnp.asarray(x))
        assert_close(y, ref.detach(), reduction=4)
    sd = equivalence.state_dict(jm)
    assert float(sd["count"]) == 2
    assert_close(sd["history"], m.history.numpy())


# --- 3. one vocabulary: ATen ops reach the jaxconv functions of their name -------------------------
class Vocabulary(_ShapeCheck):
    """Ops that export records under their own ATen names, each translated by the jaxconv
    function of that name (the schema check of ``aten.agrees``) or by an entry of its own."""

    def forward(self, x):
        x = self.crop(x)
        idx = TF.adaptive_max_pool2d(x, (6, 3), return_indices=True)[1] % 6
        return (TF.adaptive_max_pool2d(x, (3, 2)), torch.cumsum(x, 2), torch.roll(x, 1, 3),
                torch.tril(x, -1), torch.where(x > 0, x, 0.5 * x), x.masked_fill(x < -1, 2.0),
                torch.logsumexp(x, (2, 3)), x.var(1, keepdim=True), x.std((2, 3)),
                torch.gather(x, 3, idx), torch.maximum(x, x.flip(3)), TF.pixel_shuffle(x, 2),
                TF.pixel_unshuffle(x, 2), torch.tensor_split(x, 3, dim=2)[1], torch.clip(x, -0.5, 0.5),
                x.unflatten(1, (2, 2)), torch.movedim(x, 1, 3), x.repeat(1, 2, 1, 1),
                TF.channel_shuffle(x, 2), torch.prod(x, 1), x.max(2)[0], x.max(2)[1],
                torch.minimum(x, -x), x.argmax(1), torch.index_select(x, 2, idx[0, 0, :, 0]),
                TF.rms_norm(x, (6,), eps=1e-3), torch.fmod(x, 0.7), torch.remainder(x, 0.7),
                torch.addcmul(x, x, x, value=0.5), torch.narrow(x, 3, 1, 2), x.any(1),
                torch.round(x, decimals=1), torch.trunc(x), torch.sign(x), torch.expm1(x),
                torch.log1p(x.abs()), torch.log2(x.abs() + 1), x.swapaxes(1, 2),
                torch.baddbmm(x[0], x[0], x[1]), TF.instance_norm(x), x.new_full((2,), 3.0),
                torch.sort(x, 3)[0], torch.topk(x, 2, 1)[1], torch.meshgrid(x[0, 0, 0], x[0, 0, :, 0], indexing="xy"))


class FewOfThem(_ShapeCheck):
    """A few of :class:`Vocabulary`'s ops, for the default suite."""

    def forward(self, x):
        x = self.crop(x)
        return (TF.adaptive_max_pool2d(x, (3, 2)), torch.cumsum(x, 2), x.var(1, keepdim=True),
                torch.where(x > 0, x, 0.5 * x), x.max(2)[1], torch.argsort(x, 1))


def _aten_names(m, x):
    graph = torch.export.export(m, (t(x),), strict=False).graph
    return {n.target.__name__ for n in graph.nodes if isinstance(n.target, torch._ops.OpOverload)}


def test_aten_ops_share_the_jaxconv_vocabulary(rng):
    x = randn(rng, 2, 4, 6, 7)
    assert {"adaptive_max_pool2d.default", "cumsum.default", "where.self", "var.dim",
            "max.dim", "argsort.default"} <= _aten_names(FewOfThem(), x)
    check(FewOfThem(), x, reduction=36, compare=False)


@pytest.mark.slow
def test_aten_ops_share_the_jaxconv_vocabulary_all(rng):
    x = randn(rng, 2, 4, 6, 7)
    assert {"adaptive_max_pool2d.default", "cumsum.default", "where.self", "var.dim",
            "pixel_shuffle.default", "rms_norm.default", "max.dim", "baddbmm.default",
            "logsumexp.default", "channel_shuffle.default"} <= _aten_names(Vocabulary(), x)
    check(Vocabulary(), x, reduction=36)


# --- 4. blocks the example does not reach -----------------------------------------------------------
class Block(_ShapeCheck):
    def __init__(self, n=4):
        super().__init__()
        self.fc = torch.nn.Linear(n, n)

    def forward(self, x):
        return self.fc(self.crop(x))


class Partial(torch.nn.Module):
    """Runs only its first ``depth`` blocks (fx traces it); an auxiliary head runs in training
    only, after a BatchNorm that a batch of one cannot train."""

    def __init__(self, depth=1):
        super().__init__()
        self.blocks = torch.nn.ModuleList([Block(), Block()])
        self.norm = torch.nn.BatchNorm1d(4)
        self.aux = Block()
        self.depth = depth

    def forward(self, x):
        for block in self.blocks[:self.depth]:
            x = block(x)
        if self.training:
            return x, self.aux(self.norm(x))
        return x


def test_block_reached_only_in_training(rng):
    m = _randomized(Partial(depth=2)).double().eval()
    x = randn(rng, 3, 4)
    jm = translate(m, t(x))             # aux: recorded from a train-mode run of the example
    m.train(), jm.train()
    with torch.no_grad():
        ref = m(t(x))
    y = jm(jnp.asarray(x))
    for a, b in zip(y, ref):
        assert_close(a, b, reduction=8)


def test_block_no_code_calls_is_a_stub(rng):
    m = _randomized(Partial()).double().eval()
    x = randn(rng, 3, 4)
    with pytest.warns(UserWarning, match=r"blocks\.1 \(.*Block\) was not translated: .* reach it in neither"):
        jm = translate(m, t(x))
    assert_close(jm(jnp.asarray(x)), m(t(x)).detach(), reduction=4)
    assert list(equivalence.state_dict(jm)) == list(m.state_dict())
    with pytest.raises(RuntimeError, match=r"blocks\.1 .* translate with example inputs that reach it"):
        jm.blocks[1](jnp.asarray(x))


def test_block_called_but_never_reached_is_refused(rng):
    m = Partial(depth=2).eval()
    with pytest.raises(TranslationError, match=r"aux \(.*Block\): torch.fx cannot trace .* reach it in "
                                               r"neither train nor eval mode"):
        translate_source(m, torch.randn(1, 4))      # a batch of one: train mode fails


# --- 5. coverage met in the survey ------------------------------------------------------------------
class DrawsInTraining(_ShapeCheck):
    """Hugging Face's per-model ``DropPath`` (``BeitDropPath``, ``Swinv2DropPath``, ...): the
    train branch draws ``torch.rand``; ``export=True`` captures it through torch.export."""

    def __init__(self, export, drop_prob=0.5):
        super().__init__()
        self.export, self.drop_prob = export, drop_prob

    def forward(self, x):
        if self.export:
            x = self.crop(x)
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep = 1 - self.drop_prob
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = keep + torch.rand(shape, dtype=x.dtype, device=x.device)
        mask.floor_()
        return x.div(keep) * mask


@pytest.mark.parametrize("export", [False, True])
def test_random_draws_in_training(export, rng):
    x = randn(rng, 64, 3, 4)
    m = DrawsInTraining(export).train()
    jm = translate(m, t(x))
    y = np.asarray(nnx.jit(lambda model, a: model(a))(jm, jnp.asarray(x)))
    dropped = np.all(y == 0, axis=(1, 2))
    assert 10 < dropped.sum() < 54, "each sample is dropped with probability 0.5"
    assert_close(y[~dropped], x[~dropped] / 0.5)
    jm.eval()
    assert_close(jm(jnp.asarray(x)), x)


class Unsupported(_ShapeCheck):
    """Ops jaxconv does not have, once in a plain export graph and once in a functionalised one."""

    def __init__(self, writes):
        super().__init__()
        self.writes = writes

    def forward(self, x):
        x = self.crop(x) * 2
        if self.writes:
            x += 1
        return self.kth(x) + torch.special.bessel_j0(x)[..., :1]

    def kth(self, x):
        return torch.kthvalue(x, 2).values      # the line named: in the helper, not at its call


@pytest.mark.parametrize("writes", [False, True])
def test_refusal_lists_each_op_with_its_source_line(writes):
    with pytest.raises(TranslationError) as info:
        translate_source(Unsupported(writes), torch.randn(3, 5))
    text = str(info.value)
    assert "2 unsupported" in text
    for op in ("torch.ops.aten.kthvalue.default", "torch.ops.aten.special_bessel_j0.default"):
        assert f"no translation for {op}\n      at {__file__}:" in text
    assert "  return torch.kthvalue(x, 2).values" in text and "return self.kth(x) + torch.special" in text


class SelfNamed(torch.nn.Module):
    """Hugging Face's attention keeps its inner module as ``self.self`` (BERT-style: GLPN, PVT,
    Segformer); a child named ``rngs`` would shadow the constructor's too."""

    def __init__(self):
        super().__init__()
        self.self, self.rngs = torch.nn.Linear(4, 4), torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.rngs(self.self(x))


def test_children_named_self_and_rngs(rng):
    jm = check(torch.nn.Sequential(SelfNamed(), torch.nn.ReLU()), randn(rng, 2, 4), compare=False)
    assert isinstance(jm[0].self, nnx.Module) and isinstance(jm[0].rngs, nnx.Module)


class CeilOfShape(torch.nn.Module):
    """timm's volo ``OutlookAttention``: ``math.ceil(H / self.stride)`` on the input's shape."""

    def __init__(self, stride=2):
        super().__init__()
        self.stride, self.pool = stride, torch.nn.AvgPool2d(stride, stride, ceil_mode=True)

    def forward(self, x):
        h, w = math.ceil(x.shape[2] / self.stride), math.floor(x.shape[3] / self.stride + 0.5)
        return self.pool(x).reshape(x.shape[0], -1, h * w)


def test_math_on_shapes(rng):
    check(CeilOfShape(), randn(rng, 2, 3, 5, 7), reduction=4, compare=False)


class OwnRecurrence(_ShapeCheck):
    """A forward that calls ``torch.lstm`` and ``torch.lstm_cell`` itself, with its own weights."""

    def __init__(self, n=4, hidden=3):
        super().__init__()
        source = torch.nn.LSTM(n, hidden, num_layers=2, batch_first=True)
        self.weights = torch.nn.ParameterList([torch.nn.Parameter(w.detach().clone()) for w in source._flat_weights])

    def forward(self, x):
        x = self.crop(x)
        h = torch.zeros(2, x.shape[0], 3, dtype=x.dtype)
        out, hn, cn = torch.lstm(x, (h, h + 0.5), list(self.weights), True, 2, 0.0, False, False, True)
        step, _ = torch.lstm_cell(x[:, 0], (h[0], h[1]), *self.weights[:4])
        return out, hn, cn, step


@pytest.mark.slow
def test_recurrent_aten_ops(rng):
    check(OwnRecurrence(), randn(rng, 2, 5, 4), reduction=16, compare=False)


class ParameterHolders(torch.nn.Module):
    """Parameters kept in a ``ParameterList`` (named ``'0'``, ``'1'``) and a ``ParameterDict``."""

    def __init__(self):
        super().__init__()
        self.scales = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(4)) for _ in range(2)])
        self.shifts = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.randn(4)),
                                              "b": torch.nn.Parameter(torch.randn(4))})

    def forward(self, x):
        return x * self.scales[0] + self.scales[1] * self.shifts["a"] - self.shifts["b"]


def test_parameter_lists_and_dicts(rng):
    m = ParameterHolders().double()
    jm = check(m, randn(rng, 2, 4), reduction=4)
    assert list(equivalence.state_dict(jm)) == list(m.state_dict()) == ["scales.0", "scales.1", "shifts.a", "shifts.b"]
