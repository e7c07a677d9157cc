"""The loss cases shared by the loss tests: random, asymmetric float64 arguments built the same
way for torch and jaxconv, with the arguments torch differentiates and the batch axes vmap maps.

Each case is ``(jaxconv fn, torch fn, build(rng) -> args, differentiated arg indices,
batch axis per arg (None: shared), reductions)``; both functions take ``reduction=``.
"""
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as TF

import jaxconv.functional as F

R3 = ("none", "mean", "sum")
N, C = 6, 5


def _targets(rng, shape, classes=C, ignore=None, count=2):
    """Class indices with ``count`` of them replaced by ``ignore``."""
    out = rng.integers(0, classes, shape)
    if ignore is not None:
        flat = out.reshape(-1)
        flat[rng.choice(flat.size, count, replace=False)] = ignore
    return out


def _probs(rng, *shape, axis=1):
    p = rng.random(shape) + 0.05
    return p / p.sum(axis, keepdims=True)


def _weight(rng, n=C):
    return rng.random(n) + 0.25


def _kinked(rng, beta):
    """(input, target) with differences exactly 0, +-beta and random ones."""
    x = rng.standard_normal((N, C))
    y = x + rng.standard_normal((N, C))
    y[0, :4] = x[0, :4] + np.array([0.0, beta, -beta, 2 * beta])
    return x, y


def _f32_logits(r):
    return r.standard_normal((6, 5)).astype(np.float32) * 3


def _f32_probs(r, *shape):
    return r.uniform(0.05, 0.95, shape or (6, 5)).astype(np.float32)


def _f32_labels(r, *shape):
    return r.integers(0, 5, shape or (6,))


# The losses in low precision: name: (torch loss, jaxconv loss, rng -> numpy arguments), float32
# or integer; floating ones are cast to the dtype under test, integer ones (class indices,
# lengths) kept. Names after a '-' are variants. (tests/test_autocast.py, test_loss_edges.py)
LOW_PRECISION = {
    "cross_entropy": (TF.cross_entropy, F.cross_entropy, lambda r: [_f32_logits(r), _f32_labels(r)]),
    "cross_entropy-probabilities": (lambda x, t: TF.cross_entropy(x, t, label_smoothing=0.1),
                                    lambda x, t: F.cross_entropy(x, t, label_smoothing=0.1),
                                    lambda r: [_f32_logits(r), _f32_probs(r)]),
    "nll_loss": (TF.nll_loss, F.nll_loss, lambda r: [-_f32_probs(r), _f32_labels(r)]),
    "binary_cross_entropy": (TF.binary_cross_entropy, F.binary_cross_entropy, lambda r: [_f32_probs(r), _f32_probs(r)]),
    "binary_cross_entropy_with_logits": (TF.binary_cross_entropy_with_logits, F.binary_cross_entropy_with_logits,
                                         lambda r: [_f32_logits(r), _f32_probs(r)]),
    "kl_div": (lambda x, t: TF.kl_div(x, t, reduction="batchmean"), lambda x, t: F.kl_div(x, t, reduction="batchmean"),
               lambda r: [-_f32_probs(r), _f32_probs(r)]),
    "mse_loss": (TF.mse_loss, F.mse_loss, lambda r: [_f32_logits(r), _f32_logits(r)]),
    "mse_loss-weight": (lambda x, t, w: TF.mse_loss(x, t, weight=w), lambda x, t, w: F.mse_loss(x, t, weight=w),
                        lambda r: [_f32_logits(r), _f32_logits(r), _f32_probs(r)]),
    "l1_loss": (TF.l1_loss, F.l1_loss, lambda r: [_f32_logits(r), _f32_logits(r)]),
    "l1_loss-weight": (lambda x, t, w: TF.l1_loss(x, t, weight=w), lambda x, t, w: F.l1_loss(x, t, weight=w),
                       lambda r: [_f32_logits(r), _f32_logits(r), _f32_probs(r)]),
    "smooth_l1_loss": (TF.smooth_l1_loss, F.smooth_l1_loss, lambda r: [_f32_logits(r), _f32_logits(r)]),
    "huber_loss": (lambda x, t, w: TF.huber_loss(x, t, weight=w), lambda x, t, w: F.huber_loss(x, t, weight=w),
                   lambda r: [_f32_logits(r), _f32_logits(r), _f32_probs(r)]),
    "poisson_nll_loss": (TF.poisson_nll_loss, F.poisson_nll_loss, lambda r: [_f32_logits(r) / 3, _f32_probs(r) * 4]),
    "gaussian_nll_loss": (TF.gaussian_nll_loss, F.gaussian_nll_loss, lambda r: [_f32_logits(r), _f32_logits(r), _f32_probs(r)]),
    "soft_margin_loss": (TF.soft_margin_loss, F.soft_margin_loss, lambda r: [_f32_logits(r), np.sign(_f32_logits(r))]),
    "multilabel_soft_margin_loss": (TF.multilabel_soft_margin_loss, F.multilabel_soft_margin_loss,
                                    lambda r: [_f32_logits(r), _f32_probs(r)]),
    "multilabel_margin_loss": (TF.multilabel_margin_loss, F.multilabel_margin_loss,
                               lambda r: [_f32_logits(r), np.where(np.arange(5) < 2, _f32_labels(r, 6, 5), -1)]),
    "multi_margin_loss": (TF.multi_margin_loss, F.multi_margin_loss, lambda r: [_f32_logits(r), _f32_labels(r)]),
    "margin_ranking_loss": (TF.margin_ranking_loss, F.margin_ranking_loss,
                            lambda r: [_f32_logits(r)[:, 0], _f32_logits(r)[:, 0], np.sign(_f32_logits(r)[:, 0])]),
    "hinge_embedding_loss": (TF.hinge_embedding_loss, F.hinge_embedding_loss,
                             lambda r: [_f32_logits(r), np.sign(_f32_logits(r))]),
    "cosine_embedding_loss": (TF.cosine_embedding_loss, F.cosine_embedding_loss,
                              lambda r: [_f32_logits(r), _f32_logits(r), np.sign(_f32_logits(r)[:, 0])]),
    "triplet_margin_loss": (TF.triplet_margin_loss, F.triplet_margin_loss, lambda r: [_f32_logits(r) for _ in range(3)]),
    "triplet_margin_with_distance_loss": (TF.triplet_margin_with_distance_loss, F.triplet_margin_with_distance_loss,
                                          lambda r: [_f32_logits(r) for _ in range(3)]),
    "pairwise_distance": (TF.pairwise_distance, F.pairwise_distance, lambda r: [_f32_logits(r), _f32_logits(r)]),
    "ctc_loss": (TF.ctc_loss, F.ctc_loss,
                 lambda r: [np.log(r.dirichlet(np.ones(5), (7, 2))).astype(np.float32), _f32_labels(r, 2, 3) % 4 + 1,
                            np.array([7, 6]), np.array([3, 2])]),
}


CASES = {}
#: Variants of a case already in the default run (``slow``).
SLOW = {"cross_entropy-probabilities-kdim", "nll_loss-kdim", "gaussian_nll_loss-broadcast",
        "triplet_margin_loss-p=1", "triplet_margin_loss-p=3", "triplet_margin_loss-p=0.5"}


def case(name, jfn, tfn, build, diff=(0,), axes=None, reductions=R3):
    CASES[name] = (jfn, tfn, build, tuple(diff), axes, reductions)


def both(name, kw=None, **options):
    """A case calling the same-named function on both sides with keywords ``kw``."""
    kw = kw or {}
    case(options.pop("id", name), lambda *a, **k: getattr(F, name)(*a, **kw, **k),
         lambda *a, **k: getattr(TF, name)(*a, **kw, **k), **options)


# class-index and class-probability losses
both("cross_entropy", build=lambda r: [r.standard_normal((N, C)) * 3, _targets(r, N, ignore=-100)],
     axes=(0, 0))
both("cross_entropy", dict(ignore_index=2, label_smoothing=0.15), id="cross_entropy-weight-ignore-smoothing",
     build=lambda r: [r.standard_normal((N, C)), _targets(r, N), _weight(r)], axes=(0, 0, None))
both("cross_entropy", dict(ignore_index=255, label_smoothing=0.1), id="cross_entropy-segmentation-int32",
     build=lambda r: [r.standard_normal((2, C, 6, 7)),
                      _targets(r, (2, 6, 7), ignore=255, count=9).astype(np.int32), _weight(r)],
     axes=(0, 0, None))
both("cross_entropy", dict(label_smoothing=0.2), id="cross_entropy-unbatched",
     build=lambda r: [r.standard_normal(C), np.array(3)])
both("cross_entropy", dict(label_smoothing=0.25), id="cross_entropy-probabilities",
     build=lambda r: [r.standard_normal((N, C)), _probs(r, N, C), _weight(r)], diff=(0, 1, 2),
     axes=(0, 0, None))
both("cross_entropy", id="cross_entropy-probabilities-kdim",
     build=lambda r: [r.standard_normal((2, C, 3)), _probs(r, 2, C, 3)], diff=(0, 1))
both("nll_loss", id="nll_loss", build=lambda r: [r.standard_normal((N, C)), _targets(r, N, ignore=-100),
                                                 _weight(r)], axes=(0, 0, None))
both("nll_loss", dict(ignore_index=1), id="nll_loss-kdim",
     build=lambda r: [r.standard_normal((3, C, 2, 3, 2)), _targets(r, (3, 2, 3, 2))], axes=(0, 0))
both("binary_cross_entropy", build=lambda r: [r.random((N, C)) * 0.98 + 0.01, r.random((N, C)),
                                              _weight(r)], diff=(0, 1), axes=(0, 0, None))
both("binary_cross_entropy_with_logits",
     build=lambda r: [r.standard_normal((N, C)) * 30, r.random((N, C)), _weight(r)], diff=(0, 1),
     axes=(0, 0, None))
case("binary_cross_entropy_with_logits-pos_weight",
     lambda x, y, w, pw, **k: F.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, **k),
     lambda x, y, w, pw, **k: TF.binary_cross_entropy_with_logits(x, y, w, pos_weight=pw, **k),
     lambda r: [r.standard_normal((N, C)) * 30, r.random((N, C)), _weight(r), _weight(r)],
     axes=(0, 0, None, None))


def _kl(log_target):
    def build(r):
        t = _probs(r, N, C)
        t[0, 1] = 0.0
        return [np.log(_probs(r, N, C)), np.log(t) if log_target else t]
    return build


for lt in (False, True):
    both("kl_div", dict(log_target=lt), id=f"kl_div-log_target={lt}", build=_kl(lt), diff=(0, 1),
         axes=(0, 0), reductions=R3 + ("batchmean",))

# regression
both("mse_loss", build=lambda r: list(_kinked(r, 0.5)), diff=(0, 1), axes=(0, 0))
case("mse_loss-weight", lambda x, y, w, **k: F.mse_loss(x, y, weight=w, **k),
     lambda x, y, w, **k: TF.mse_loss(x, y, weight=w, **k),
     lambda r: list(_kinked(r, 0.5)) + [r.random((N, C))], (0, 1, 2))
both("l1_loss", build=lambda r: list(_kinked(r, 0.5)), diff=(0, 1), axes=(0, 0))
case("l1_loss-weight", lambda x, y, w, **k: F.l1_loss(x, y, weight=w, **k),
     lambda x, y, w, **k: TF.l1_loss(x, y, weight=w, **k),
     lambda r: list(_kinked(r, 0.5)) + [r.random((N, C))], (0, 1, 2))
both("smooth_l1_loss", dict(beta=0.5), id="smooth_l1_loss", build=lambda r: list(_kinked(r, 0.5)),
     diff=(0, 1), axes=(0, 0))
both("smooth_l1_loss", dict(beta=0.0), id="smooth_l1_loss-beta=0", build=lambda r: list(_kinked(r, 0.5)),
     diff=(0, 1))
both("huber_loss", dict(delta=0.75), id="huber_loss", build=lambda r: list(_kinked(r, 0.75)),
     diff=(0, 1), axes=(0, 0))
case("huber_loss-weight", lambda x, y, w, **k: F.huber_loss(x, y, delta=0.75, weight=w, **k),
     lambda x, y, w, **k: TF.huber_loss(x, y, delta=0.75, weight=w, **k),
     lambda r: list(_kinked(r, 0.75)) + [r.random((N, C))], (0, 1, 2))
both("poisson_nll_loss", dict(full=True), id="poisson_nll_loss-full",
     build=lambda r: [r.standard_normal((N, C)), r.integers(0, 6, (N, C)).astype(float)], diff=(0, 1),
     axes=(0, 0))
both("poisson_nll_loss", dict(log_input=False, eps=1e-3), id="poisson_nll_loss-linear",
     build=lambda r: [r.random((N, C)) * 3, r.integers(0, 6, (N, C)).astype(float)], diff=(0, 1))


def _gauss(var_shape):
    def build(r):
        v = r.random(var_shape) + 0.1
        v.reshape(-1)[0] = 1e-8        # clamped to eps
        return [r.standard_normal((N, C)), r.standard_normal((N, C)), v]
    return build


for label, shape in (("", (N, C)), ("-per-row", (N,)), ("-broadcast", (1, C))):
    both("gaussian_nll_loss", dict(full=True, eps=1e-4), id=f"gaussian_nll_loss{label}",
         build=_gauss(shape), diff=(0, 1, 2))

# margins, rankings, embeddings
both("soft_margin_loss", build=lambda r: [r.standard_normal((N, C)) * 2, np.sign(r.standard_normal((N, C)))],
     axes=(0, 0))
both("multilabel_soft_margin_loss", build=lambda r: [r.standard_normal((N, C)) * 3, r.random((N, C)), _weight(r)],
     diff=(0, 1, 2), axes=(0, 0, None))
_LABELS = np.array([[0, 2, -1, 1, 3], [3, -1, 0, 0, 0], [1, 1, 4, -1, 2], [-1, 0, 0, 0, 0],
                    [0, 1, 2, 3, 4], [4, 0, 3, 1, -1]])
both("multilabel_margin_loss", build=lambda r: [r.standard_normal((N, C)), _LABELS], axes=(0, 0))
for p in (1, 2):
    case(f"multi_margin_loss-p={p}",
         lambda x, y, w, p=p, **k: F.multi_margin_loss(x, y, p, 0.8, w, **k),
         lambda x, y, w, p=p, **k: TF.multi_margin_loss(x, y, p, 0.8, w, **k),
         lambda r: [r.standard_normal((N, C)), _targets(r, N), _weight(r)], axes=(0, 0, None))
both("margin_ranking_loss", dict(margin=0.3),
     build=lambda r: [r.standard_normal(N), r.standard_normal(N), np.sign(r.standard_normal(N))],
     diff=(0, 1, 2), axes=(0, 0, 0))
both("hinge_embedding_loss", dict(margin=0.8),
     build=lambda r: [r.standard_normal((N, C)), r.choice([-1.0, 1.0, 0.5], (N, C))], axes=(0, 0))
both("cosine_embedding_loss", dict(margin=0.2),
     build=lambda r: [r.standard_normal((N, C)), r.standard_normal((N, C)), r.choice([-1.0, 1.0, 0.0], N)],
     diff=(0, 1), axes=(0, 0, 0))
both("cosine_embedding_loss", id="cosine_embedding_loss-unbatched",
     build=lambda r: [r.standard_normal(C), r.standard_normal(C), np.array(-1.0)], diff=(0, 1))
for p in (2, 1, 3, math.inf, 0.5):
    both("triplet_margin_loss", dict(margin=1.5, p=p, eps=1e-3, swap=p == 2),
         id=f"triplet_margin_loss-p={p}", diff=(0, 1, 2), axes=(0, 0, 0),
         build=lambda r: [r.standard_normal((N, C)) for _ in range(3)])
both("triplet_margin_with_distance_loss", dict(swap=True), diff=(0, 1, 2), axes=(0, 0, 0),
     build=lambda r: [r.standard_normal((N, C)) for _ in range(3)])
case("triplet_margin_with_distance_loss-cosine",
     lambda a, p, n, **k: F.triplet_margin_with_distance_loss(
         a, p, n, distance_function=lambda x, y: 1 - (x * y).sum(-1), margin=0.5, **k),
     lambda a, p, n, **k: TF.triplet_margin_with_distance_loss(
         a, p, n, distance_function=lambda x, y: 1 - (x * y).sum(-1), margin=0.5, **k),
     lambda r: [r.standard_normal((N, C)) for _ in range(3)], (0, 1, 2), axes=(0, 0, 0))


def assert_matches(ours, theirs, n=1):
    """Non-finite values (NaN, +-inf) equal; finite ones within ``16 eps sqrt(n)`` of the
    magnitude of torch's finite values (``n``: the length of the reductions involved)."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, f"shape {ours.shape} != torch's {theirs.shape}"
    finite = np.isfinite(theirs)
    np.testing.assert_array_equal(ours[~finite], theirs[~finite])
    assert np.isfinite(ours[finite]).all(), "non-finite where torch's value is finite"
    scale = max(1.0, float(np.max(np.abs(theirs[finite]), initial=0.0)))
    err = float(np.max(np.abs(ours[finite] - theirs[finite]), initial=0.0))
    tol = 16 * np.finfo(np.float64).eps * math.sqrt(max(n, 1)) * scale
    assert err <= tol, f"max abs error {err:.3g} > tolerance {tol:.3g}"


def _torch(a):
    """A torch copy; integer targets as int64 (torch's class indices are Long)."""
    a = np.array(a)
    return torch.from_numpy(a.astype(np.int64) if a.dtype.kind in "iu" else a)


def torch_side(tfn, args, diff, reductions, rng):
    """torch's value and the gradients of a random cotangent, per reduction; and the cotangents."""
    expected, cotangents = {}, []
    for r in reductions:
        targs = [_torch(a) for a in args]
        for i in diff:
            targs[i].requires_grad_()
        out = tfn(*targs, reduction=r)
        cot = rng.standard_normal(out.shape)
        out.backward(torch.from_numpy(np.array(cot)))
        expected[r] = (out.detach().numpy(), [targs[i].grad.numpy() for i in diff])
        cotangents.append(cot)
    return expected, cotangents


def jax_side(jfn, args, diff, axes, reductions, cotangents):
    """One ``jax.jit`` of: per reduction, the value and the vjp of its cotangent; and with
    ``axes``, the ``'none'`` loss computed sample by sample under ``jax.vmap``."""
    @jax.jit
    def run(args, cotangents):
        out = {}
        for r, cot in zip(reductions, cotangents):
            def f(*d, r=r):
                full = list(args)
                for i, v in zip(diff, d):
                    full[i] = v
                return jfn(*full, reduction=r)
            value, vjp = jax.vjp(f, *[args[i] for i in diff])
            out[r] = (value, vjp(cot))
        if axes is not None:
            def one(*a):
                full = [v if ax is None else jnp.expand_dims(v, ax) for v, ax in zip(a, axes)]
                return jfn(*full, reduction="none")
            out["vmap"] = jax.vmap(one, in_axes=axes)(*args)
        return out
    return run([jnp.asarray(a) for a in args], [jnp.asarray(c) for c in cotangents])


def check_case(case, rng):
    """A case against torch: every reduction, value and gradients, under jit and vmap."""
    jfn, tfn, build, diff, axes, reductions = case
    args = build(rng)
    n = max(int(np.size(a)) for a in args)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected, cotangents = torch_side(tfn, args, diff, reductions, rng)
        got = jax_side(jfn, args, diff, axes, reductions, cotangents)
    for r in reductions:
        (value, grads), (t_value, t_grads) = got[r], expected[r]
        assert_matches(value, t_value, n)
        for i, g, tg in zip(diff, grads, t_grads):
            try:
                assert_matches(g, tg, n)
            except AssertionError as e:
                raise AssertionError(f"gradient of argument {i}, reduction={r!r}: {e}") from None
    if axes is not None:
        none = np.asarray(got["none"][0])
        np.testing.assert_allclose(np.asarray(got["vmap"])[:, 0] if none.ndim else got["vmap"], none,
                                   rtol=1e-13, atol=1e-13)
    return args
