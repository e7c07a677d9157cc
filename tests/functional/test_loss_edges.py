"""The edges of the losses against torch (float64): ignored targets, every target
ignored, the kinks, ``log(0)`` in BCE, empty batches, the deprecated arguments, warnings, and
what a trace does with values it cannot check."""
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as F
from equivalence._torch import to_numpy
from tests.functional._loss_cases import LOW_PRECISION, assert_matches
from tests.functional.test_low_precision import REDUCED, assert_rounded_once


def _grad(jfn, tfn, *args, diff=(0,)):
    """Value and gradients of the sum (one jit), jaxconv's and torch's."""
    targs = [torch.from_numpy(np.array(a)) for a in args]
    for i in diff:
        targs[i].requires_grad_()
    out = tfn(*targs)
    out.sum().backward()
    value, grads = jax.jit(jax.value_and_grad(
        lambda *d: jnp.sum(jfn(*[d[diff.index(i)] if i in diff else a for i, a in enumerate(args)])),
        argnums=tuple(range(len(diff)))))(*[args[i] for i in diff])
    return (value, grads), (out.detach().sum().numpy(), [targs[i].grad.numpy() for i in diff])


def test_ignored_targets_contribute_nothing_and_get_no_gradient(rng):
    x, w = rng.standard_normal((5, 4)), rng.random(4) + 0.5
    target = np.array([1, -100, 3, -100, 0])
    @jax.jit
    def run(x):
        none, vjp = jax.vjp(lambda x: F.cross_entropy(x, target, w, reduction="none", label_smoothing=0.2), x)
        return none, vjp(jnp.ones(5))[0], F.cross_entropy(x, target, w, label_smoothing=0.2)

    none, grad, mean = run(x)
    assert not np.asarray(none)[[1, 3]].any() and not np.asarray(grad)[[1, 3]].any()
    assert np.asarray(grad)[[0, 2, 4]].all()
    np.testing.assert_allclose(mean, np.sum(none) / w[[1, 3, 0]].sum(), rtol=1e-14)


@pytest.mark.parametrize("smoothing", [0.0, 0.3])
def test_every_target_ignored_gives_nan_mean_and_zero_sum(rng, smoothing):
    x, target = rng.standard_normal((3, 4)), np.full(3, -100)
    for reduction, check in (("mean", np.isnan), ("sum", lambda v: v == 0)):
        ours = F.cross_entropy(x, target, reduction=reduction, label_smoothing=smoothing)
        theirs = TF.cross_entropy(torch.from_numpy(x), torch.from_numpy(target), reduction=reduction,
                                  label_smoothing=smoothing)
        assert check(float(ours)) and check(float(theirs))


def test_kinks_take_torchs_gradients():
    """l1 at d = 0; smooth-L1 and Huber at |d| = beta and 0; hinges (clamp_min passes the
    gradient at 0) and the multi-class margins (no gradient at z = 0)."""
    x, y = np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.0, 0.5, 1.5, 1.2])
    for jfn, tfn in ((F.l1_loss, TF.l1_loss),
                     (lambda a, b: F.smooth_l1_loss(a, b, beta=0.5), lambda a, b: TF.smooth_l1_loss(a, b, beta=0.5)),
                     (lambda a, b: F.huber_loss(a, b, delta=0.5), lambda a, b: TF.huber_loss(a, b, delta=0.5)),
                     (lambda a, b: F.hinge_embedding_loss(a - b, -jnp.ones(4), margin=0.5),
                      lambda a, b: TF.hinge_embedding_loss(a - b, -torch.ones(4), margin=0.5)),
                     (lambda a, b: F.margin_ranking_loss(a, b, jnp.ones(4), margin=0.5),
                      lambda a, b: TF.margin_ranking_loss(a, b, torch.ones(4), margin=0.5))):
        (value, grads), (t_value, t_grads) = _grad(jfn, tfn, x, y, diff=(0, 1))
        assert_matches(value, t_value)
        for g, tg in zip(grads, t_grads):
            np.testing.assert_array_equal(g, tg)
    scores, target = np.array([[1.0, 2.0, 0.0, 1.5]]), np.array([1])   # z = 1 - 2 + 1 = 0 at class 0
    for fn in ("multi_margin_loss", "multilabel_margin_loss"):
        t = target if fn == "multi_margin_loss" else np.array([[1, -1, 0, 0]])
        (value, (g,)), (t_value, (tg,)) = _grad(getattr(F, fn), getattr(TF, fn), scores, t)
        np.testing.assert_array_equal(g, tg)


def test_bce_clamps_log_at_minus_100_with_torchs_gradients():
    x = np.array([0.0, 0.0, 1.0, 1.0, 1e-20, 0.5, 1e-7, 0.999])
    y = np.array([0.0, 1.0, 0.0, 1.0, 1.0, 0.3, 0.4, 0.0])
    (value, grads), (t_value, t_grads) = _grad(
        lambda a, b: F.binary_cross_entropy(a, b, reduction="none"),
        lambda a, b: TF.binary_cross_entropy(a, b, reduction="none"), x, y, diff=(0, 1))
    np.testing.assert_allclose(value, t_value, rtol=1e-14)
    assert np.isfinite(F.binary_cross_entropy(x, y, reduction="none")).all()
    for g, tg in zip(grads, t_grads):       # +-1e12 at 0 and 1; the target's is +-inf there
        np.testing.assert_allclose(g, tg, rtol=1e-14)


EMPTY = [
    ("cross_entropy", lambda F, a, i, r: F.cross_entropy(a(0, 4), i(0), reduction=r)),
    ("cross_entropy-probabilities", lambda F, a, i, r: F.cross_entropy(a(0, 4), a(0, 4), reduction=r)),
    ("nll_loss-kdim", lambda F, a, i, r: F.nll_loss(a(0, 4, 3), i(0, 3), reduction=r)),
    ("kl_div-batchmean", lambda F, a, i, r: F.kl_div(a(0, 3), a(0, 3),
                                                    reduction="batchmean" if r == "mean" else r)),
    ("mse_loss", lambda F, a, i, r: F.mse_loss(a(0, 3), a(0, 3), reduction=r)),
    ("triplet_margin_loss", lambda F, a, i, r: F.triplet_margin_loss(a(0, 3), a(0, 3), a(0, 3), reduction=r)),
    # torch's kernels return uninitialised memory for these two reductions: jaxconv's are NaN and 0
    ("multi_margin_loss", lambda F, a, i, r: F.multi_margin_loss(a(0, 3), i(0), reduction=r)),
    ("multilabel_margin_loss", lambda F, a, i, r: F.multilabel_margin_loss(a(0, 3), i(0, 3), reduction=r)),
]
_GARBAGE = {"multi_margin_loss", "multilabel_margin_loss"}


@pytest.mark.parametrize("name,call", EMPTY, ids=[c[0] for c in EMPTY])
def test_empty_batch(name, call):
    """'mean' of nothing is NaN, 'sum' is 0, 'none' is empty, as in torch (the losses whose
    reductions have their own code; the shapes of every loss: test_empty_batch.py)."""
    arrays = ((F, lambda *s: jnp.zeros(s), lambda *s: jnp.zeros(s, jnp.int64)),
              (TF, lambda *s: torch.zeros(s, dtype=torch.float64), lambda *s: torch.zeros(s, dtype=torch.long)))
    for reduction in ("none", "sum", "mean"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ours, theirs = (np.asarray(call(*side, reduction)) for side in arrays)
        assert ours.shape == theirs.shape
        if reduction == "sum":
            assert ours == 0 and (theirs == 0 or name in _GARBAGE)
        elif reduction == "mean":
            assert np.isnan(ours) and (np.isnan(theirs) or name in _GARBAGE)


def test_size_average_and_reduce_override_reduction_with_torchs_warning(rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal((3, 4))
    for size_average, reduce, want in ((None, None, "mean"), (False, None, "sum"), (None, False, "none"),
                                       (True, True, "mean"), (False, True, "sum"), (True, False, "none")):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            legacy = size_average is not None or reduce is not None   # which then overrides:
            ours = F.mse_loss(x, y, size_average, reduce, reduction="sum" if legacy and want != "sum" else "mean")
        np.testing.assert_array_equal(ours, F.mse_loss(x, y, reduction=want))
        theirs = TF.mse_loss(torch.from_numpy(x), torch.from_numpy(y), size_average, reduce)
        assert_matches(ours, theirs.numpy())
        warned = [str(w.message) for w in caught if "size_average" in str(w.message)]
        assert warned == ([] if not legacy else
                          [f"size_average and reduce args will be deprecated, please use reduction='{want}' instead."])


def test_kl_div_mean_warns_as_torch_does_and_batchmean_divides_by_the_batch(rng):
    x, y = np.log(rng.random((4, 3))), rng.random((4, 3))
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        mean = F.kl_div(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        batchmean = F.kl_div(x, y, reduction="batchmean")
        assert_matches(F.kl_div(x[0, 0], y[0, 0], reduction="batchmean"),
                       TF.kl_div(torch.tensor(x[0, 0]), torch.tensor(y[0, 0]), reduction="batchmean").numpy())
    np.testing.assert_allclose(batchmean, float(mean) * 3, rtol=1e-14)


def test_a_target_shape_unlike_the_input_warns_and_broadcasts(rng):
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(4)
    with pytest.warns(UserWarning, match=r"Using a target size \(\(4,\)\) that is different to the input size"):
        ours = F.l1_loss(x, y)
    assert_matches(ours, TF.l1_loss(torch.from_numpy(x), torch.from_numpy(y)).numpy())


def test_negative_label_smoothing_is_no_smoothing(rng):
    x, target = rng.standard_normal((3, 4)), np.array([0, 3, 1])
    np.testing.assert_array_equal(F.cross_entropy(x, target, label_smoothing=-0.2), F.cross_entropy(x, target))


def test_under_jit_values_that_cannot_be_checked_give_nan(rng):
    """Eagerly these raise; traced, the offending element's loss is NaN (so a reduction is)."""
    x = rng.standard_normal((3, 4))
    ce = jax.jit(lambda t: F.cross_entropy(x, t, reduction="none"))(jnp.array([0, 4, -1]))
    assert np.isfinite(ce[0]) and np.isnan(ce[1:]).all()
    assert np.isnan(jax.jit(F.nll_loss)(x, jnp.array([0, 1, 9])))
    assert np.isnan(jax.jit(F.multi_margin_loss)(x, jnp.array([0, 1, 9])))
    bce = jax.jit(lambda p: F.binary_cross_entropy(p, jnp.full(3, 0.5), reduction="none"))(jnp.array([0.5, 1.5, -0.5]))
    assert np.isfinite(bce[0]) and np.isnan(bce[1:]).all()
    assert np.isnan(jax.jit(F.gaussian_nll_loss)(x[0], x[1], jnp.array([1.0, -1.0, 1.0, 1.0])))


@pytest.mark.parametrize("dtype", REDUCED)
def test_reduced_dtypes_compute_in_float32_and_round_once(rng, dtype):
    """float16/bfloat16 arguments (no autocast): every loss returns torch's dtype (the input's;
    where torch has no such kernel, the input's too) and the float64 result of the same rounded
    arguments, rounded once. One jit for all the losses."""
    t_dtype = REDUCED[dtype][0]
    cases = {name: [torch.from_numpy(a).to(t_dtype) if a.dtype.kind == "f" else torch.from_numpy(a)
                    for a in build(rng)] for name, (_, _, build) in LOW_PRECISION.items()}
    got = jax.jit(lambda args: {name: LOW_PRECISION[name][1](*a) for name, a in args.items()})(
        {name: [jnp.asarray(to_numpy(a)) for a in args] for name, args in cases.items()})
    for name, args in cases.items():
        t_op = LOW_PRECISION[name][0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = t_op(*[a.double() if a.is_floating_point() else a for a in args]).numpy()
            try:
                want = str(t_op(*args).dtype).removeprefix("torch.")
            except (RuntimeError, NotImplementedError):     # no float16/bfloat16 CPU kernel
                want = dtype
        assert str(got[name].dtype) == want, name
        try:
            assert_rounded_once(got[name], reference, dtype)
        except AssertionError as e:
            raise AssertionError(f"{name}: {e}") from None
