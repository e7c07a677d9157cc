"""``ctc_loss`` against torch in float64: padded, concatenated and unbatched targets, both
``zero_infinity`` settings on impossible alignments, every reduction; gradients on raw
``log_probs`` (torch's own backward formula) and through a ``log_softmax``; jit and vmap."""
import jax
import numpy as np
import pytest
import torch.nn.functional as TF

import jaxconv.functional as F
from tests.functional._loss_cases import check_case

T_, B, K = 9, 4, 5
# sample 0: repeated labels (needs a blank between); 1: the target is empty; 2: impossible
# (4 labels with a repeat need 5 steps, it has 4); 3: an input length of 0 with an empty target
TARGETS = np.array([[1, 2, 2, 3], [0, 0, 0, 0], [4, 4, 1, 3], [2, 1, 0, 0]])
INPUT_LENGTHS, TARGET_LENGTHS = np.array([9, 6, 4, 0]), np.array([4, 0, 4, 0])


def _build(targets, input_lengths, target_lengths, shape=(T_, B, K)):
    return lambda r: [r.standard_normal(shape) * 2, targets, input_lengths, target_lengths]


def _case(softmax, **kw):
    def wrap(F_, prep):
        return lambda x, *a, **k: F_(prep(x), *a, **kw, **k)
    return (wrap(F.ctc_loss, (lambda x: jax.nn.log_softmax(x, -1)) if softmax else (lambda x: x)),
            wrap(TF.ctc_loss, (lambda x: x.log_softmax(-1)) if softmax else (lambda x: x)))


def _concatenated():
    return np.concatenate([t[:n] for t, n in zip(TARGETS, TARGET_LENGTHS)])


CTC_CASES = {
    "padded-raw-log_probs": (*_case(False), _build(TARGETS, INPUT_LENGTHS, TARGET_LENGTHS), (1, 0, 0, 0)),
    "padded-log_softmax-zero_infinity": (*_case(True, zero_infinity=True),
                                         _build(TARGETS, INPUT_LENGTHS, TARGET_LENGTHS), (1, 0, 0, 0)),
    "concatenated-int32-blank=2": (*_case(True, blank=2),
                                   _build(np.where(TARGETS == 2, 0, TARGETS)[[0, 2, 1, 3]].reshape(-1)[:9]
                                          .astype(np.int32), INPUT_LENGTHS, np.array([4, 4, 1, 0])), None),
    "unbatched-zero_infinity": (*_case(True, zero_infinity=True),
                                _build(TARGETS[0], np.array(7), np.array(4), (T_, K)), None),
}


@pytest.mark.parametrize("name", CTC_CASES)
def test_ctc_matches_torch(name, rng):
    jfn, tfn, build, axes = CTC_CASES[name]
    check_case((jfn, tfn, build, (0,), axes, ("none", "mean", "sum")), rng)


def test_impossible_alignment_is_infinite_and_zero_infinity_zeroes_it_and_its_gradient(rng):
    lp = jax.nn.log_softmax(rng.standard_normal((3, 1, 4)), -1)
    targets, lengths = np.array([[1, 1, 2]]), (np.array([3]), np.array([3]))
    loss, grad = jax.value_and_grad(lambda x: F.ctc_loss(x, targets, *lengths, reduction="sum"))(lp)
    assert np.isinf(loss) and np.isnan(grad).all()     # as torch: inf, and 0 * inf in its backward
    loss, grad = jax.value_and_grad(
        lambda x: F.ctc_loss(x, targets, *lengths, reduction="sum", zero_infinity=True))(lp)
    assert loss == 0 and not np.asarray(grad).any()


def test_mean_divides_by_the_target_lengths_clamped_to_one(rng):
    lp = jax.nn.log_softmax(rng.standard_normal((T_, B, K)), -1)
    none = F.ctc_loss(lp, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, reduction="none", zero_infinity=True)
    mean = F.ctc_loss(lp, TARGETS, INPUT_LENGTHS, TARGET_LENGTHS, zero_infinity=True)
    np.testing.assert_allclose(mean, np.mean(np.asarray(none) / np.maximum(TARGET_LENGTHS, 1)), rtol=1e-14)
