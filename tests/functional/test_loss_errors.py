"""Each error torch raises for a loss, jaxconv raises too, with a message naming the argument,
the rule and the value (eagerly, where it needs the values)."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as JF


class Side:
    """One framework's functional module and array constructor (the same values on both sides)."""

    def __init__(self, jax_side):
        self.F = JF if jax_side else TF
        self._jax, self._rng = jax_side, np.random.default_rng(0)

    def a(self, *shape, value=None, dtype=np.float64):
        """A random (or constant ``value``) array; integer dtypes give class indices 0..2."""
        if value is not None:
            x = np.asarray(value, dtype)
        elif np.dtype(dtype).kind in "iu":
            x = self._rng.integers(0, 3, shape).astype(dtype)
        else:
            x = self._rng.random(shape).astype(dtype)
        return jnp.asarray(x) if self._jax else torch.from_numpy(x)


I64 = np.int64
CASES = [
    # (id, call, jaxconv's exception, a regex of jaxconv's message)
    ("reduction-unknown", lambda s: s.F.mse_loss(s.a(3), s.a(3), reduction="avg"), ValueError,
     r"mse_loss: reduction must be one of 'none', 'mean', 'sum', got reduction='avg'"),
    ("reduction-kl_div", lambda s: s.F.kl_div(s.a(3), s.a(3), reduction="batch"), ValueError,
     r"'batchmean', got reduction='batch'"),
    ("reduction-python-checked", lambda s: s.F.poisson_nll_loss(s.a(3), s.a(3), reduction="elementwise_mean"),
     ValueError, r"poisson_nll_loss: reduction .* got reduction='elementwise_mean'"),
    ("reduction-weighted-mse", lambda s: s.F.mse_loss(s.a(3), s.a(3), weight=s.a(3), reduction="x"),
     ValueError, r"got reduction='x'"),
    ("reduction-ctc", lambda s: s.F.ctc_loss(s.a(4, 1, 3), s.a(1, 2, dtype=I64), s.a(value=[4], dtype=I64),
                                             s.a(value=[2], dtype=I64), reduction="avg"), ValueError, "avg"),
    ("nll-0d-input", lambda s: s.F.nll_loss(s.a(), s.a(dtype=I64)), ValueError, r"1 or more dimensions.*\(\)"),
    ("nll-batch-mismatch", lambda s: s.F.nll_loss(s.a(3, 4), s.a(2, dtype=I64)), ValueError,
     r"target must have shape \(N, d1, ..., dK\) = \(3,\), got target of shape \(2,\)"),
    ("nll-kdim-mismatch", lambda s: s.F.nll_loss(s.a(2, 4, 3, 3), s.a(2, 3, 2, dtype=I64)), ValueError,
     r"= \(2, 3, 3\), got target of shape \(2, 3, 2\)"),
    ("nll-target-2d", lambda s: s.F.nll_loss(s.a(3, 4), s.a(3, 1, dtype=I64)), ValueError, r"\(3, 1\)"),
    ("nll-out-of-range", lambda s: s.F.nll_loss(s.a(3, 4), s.a(value=[0, 4, 1], dtype=I64)), IndexError,
     r"target values must be class indices in \[0, 3\] or ignore_index=-100, got target value 4"),
    ("nll-negative", lambda s: s.F.nll_loss(s.a(3, 4), s.a(value=[0, -1, 1], dtype=I64), reduction="none"),
     IndexError, r"got target value -1"),
    ("nll-weight-length", lambda s: s.F.nll_loss(s.a(3, 4), s.a(3, dtype=I64), s.a(3)), ValueError,
     r"weight must hold one value per class \(4\), got weight of shape \(3,\)"),
    ("nll-weight-dtype", lambda s: s.F.nll_loss(s.a(3, 4), s.a(3, dtype=I64), s.a(4, dtype=np.float32)),
     TypeError, r"input \(float64\) and weight \(float32\)"),
    ("nll-float-target", lambda s: s.F.nll_loss(s.a(3, 4), s.a(3)), TypeError,
     r"target must hold class indices of an integer dtype, got target of dtype float64"),
    ("nll-integer-input", lambda s: s.F.nll_loss(s.a(3, 4, dtype=I64), s.a(3, dtype=I64)), TypeError,
     r"expected a floating-point input, got input of dtype int64"),
    ("ce-label_smoothing", lambda s: s.F.cross_entropy(s.a(3, 4), s.a(3, dtype=I64), label_smoothing=1.5),
     ValueError, r"label_smoothing must be between 0.0 and 1.0, got label_smoothing=1.5"),
    ("ce-probabilities-shape", lambda s: s.F.cross_entropy(s.a(3, 4), s.a(3, 3)), ValueError,
     r"must have the input's shape \(3, 4\), got target of shape \(3, 3\)"),
    ("ce-probabilities-ignore_index", lambda s: s.F.cross_entropy(s.a(3, 4), s.a(3, 4), ignore_index=1),
     ValueError, r"ignore_index is not supported for class-probability targets, got ignore_index=1"),
    ("ce-probabilities-weight", lambda s: s.F.cross_entropy(s.a(3, 4), s.a(3, 4), s.a(3)), ValueError,
     r"weight of shape \(3,\)"),
    ("ce-out-of-range-kdim", lambda s: s.F.cross_entropy(s.a(1, 3, 2), s.a(value=[[0, 3]], dtype=I64)),
     IndexError, r"got target value 3"),
    ("ce-no-classes", lambda s: s.F.cross_entropy(s.a(2, 0), s.a(value=[0, 0], dtype=I64)), IndexError,
     r"class indices in \[0, -1\]"),
    ("bce-input-range", lambda s: s.F.binary_cross_entropy(s.a(value=[0.5, 1.5]), s.a(2)), ValueError,
     r"all elements of input should be between 0 and 1, got input value 1.5"),
    ("bce-input-nan", lambda s: s.F.binary_cross_entropy(s.a(value=[0.5, np.nan]), s.a(2)), ValueError,
     r"got input value nan"),
    ("bce-target-range", lambda s: s.F.binary_cross_entropy(s.a(2), s.a(value=[0.5, -0.5])), ValueError,
     r"all elements of target should be between 0 and 1, got target value -0.5"),
    ("bce-shape", lambda s: s.F.binary_cross_entropy(s.a(3, 4), s.a(4)), ValueError,
     r"target must have the shape of input \(3, 4\), got target of shape \(4,\)"),
    ("bce-dtype", lambda s: s.F.binary_cross_entropy(s.a(3), s.a(3, dtype=np.float32)), TypeError,
     r"input \(float64\) and target \(float32\)"),
    ("bce-weight", lambda s: s.F.binary_cross_entropy(s.a(3, 4), s.a(3, 4), s.a(3)), ValueError,
     r"the shapes must broadcast together, got target \(3, 4\), weight \(3,\)"),
    ("bce-weight-larger", lambda s: s.F.binary_cross_entropy(s.a(3, 4), s.a(3, 4), s.a(2, 3, 4)), ValueError,
     r"weight must broadcast to the target's shape \(3, 4\), got weight of shape \(2, 3, 4\)"),
    ("bce-logits-shape", lambda s: s.F.binary_cross_entropy_with_logits(s.a(3, 4), s.a(4)), ValueError,
     r"got target of shape \(4,\)"),
    ("bce-logits-pos_weight", lambda s: s.F.binary_cross_entropy_with_logits(s.a(3, 4), s.a(3, 4),
                                                                            pos_weight=s.a(3)),
     ValueError, r"pos_weight \(3,\)"),
    ("bce-logits-integer-target", lambda s: s.F.binary_cross_entropy_with_logits(s.a(3), s.a(3, dtype=I64)),
     TypeError, r"floating-point target, got target of dtype int64"),
    ("mse-broadcast", lambda s: s.F.mse_loss(s.a(3, 4), s.a(3, 3)), ValueError,
     r"mse_loss: the shapes must broadcast together, got input \(3, 4\), target \(3, 3\)"),
    ("mse-weight-shape", lambda s: s.F.mse_loss(s.a(3, 4), s.a(3, 4), weight=s.a(4)), ValueError,
     r"weight must have the input's shape \(3, 4\).*got weight of shape \(4,\)"),
    ("l1-integer", lambda s: s.F.l1_loss(s.a(3, dtype=I64), s.a(3, dtype=I64)), TypeError, r"int64"),
    ("huber-weight-shape", lambda s: s.F.huber_loss(s.a(3, 4), s.a(3, 4), weight=s.a(3, 1)), ValueError,
     r"got weight of shape \(3, 1\)"),
    ("smooth_l1-beta", lambda s: s.F.smooth_l1_loss(s.a(3), s.a(3), beta=-1.0), ValueError,
     r"beta must be non-negative, got beta=-1.0"),
    ("huber-delta", lambda s: s.F.huber_loss(s.a(3), s.a(3), delta=0.0), ValueError,
     r"delta must be greater than 0, got delta=0.0"),
    ("gaussian-negative-var", lambda s: s.F.gaussian_nll_loss(s.a(3), s.a(3), s.a(value=[1.0, -0.5, 1.0])),
     ValueError, r"var must be non-negative .*got a var value -0.5"),
    ("gaussian-negative-float", lambda s: s.F.gaussian_nll_loss(s.a(3), s.a(3), -1.0), ValueError,
     r"got var=-1.0"),
    ("gaussian-var-shape", lambda s: s.F.gaussian_nll_loss(s.a(3, 4), s.a(3, 4), s.a(2, 1)), ValueError,
     r"var of shape \(2, 1\)"),
    ("gaussian-var-two-mismatches", lambda s: s.F.gaussian_nll_loss(s.a(2, 3, 4), s.a(2, 3, 4), s.a(2, 1, 1)),
     ValueError, r"incorrect size"),
    ("gaussian-reduction", lambda s: s.F.gaussian_nll_loss(s.a(3), s.a(3), s.a(3), reduction="avg"),
     ValueError, r"got reduction='avg'"),
    ("multilabel_soft_margin-reduction", lambda s: s.F.multilabel_soft_margin_loss(s.a(3, 4), s.a(3, 4),
                                                                                   reduction="avg"),
     ValueError, r"got reduction='avg'"),
    ("multilabel_margin-shape", lambda s: s.F.multilabel_margin_loss(s.a(3, 4), s.a(3, dtype=I64)),
     ValueError, r"target must have the shape of input \(3, 4\)"),
    ("multilabel_margin-range", lambda s: s.F.multilabel_margin_loss(s.a(1, 4), s.a(value=[[0, 1, -1, 7]], dtype=I64)),
     IndexError, r"class indices in \[-1, 3\], got target value 7"),
    ("multilabel_margin-3d", lambda s: s.F.multilabel_margin_loss(s.a(2, 3, 4), s.a(2, 3, 4, dtype=I64)),
     ValueError, r"non-empty vector \(C,\) or a matrix \(N, C\).*\(2, 3, 4\)"),
    ("multi_margin-p", lambda s: s.F.multi_margin_loss(s.a(3, 4), s.a(3, dtype=I64), p=3), ValueError,
     r"p must be 1 or 2 .*got p=3"),
    ("multi_margin-weight-2d", lambda s: s.F.multi_margin_loss(s.a(3, 4), s.a(3, dtype=I64), weight=s.a(2, 2)),
     ValueError, r"weight must be one-dimensional, got weight of shape \(2, 2\)"),
    ("multi_margin-weight-length", lambda s: s.F.multi_margin_loss(s.a(3, 4), s.a(3, dtype=I64), weight=s.a(3)),
     ValueError, r"one value per class \(4\)"),
    ("multi_margin-range", lambda s: s.F.multi_margin_loss(s.a(3, 4), s.a(value=[0, 4, 1], dtype=I64)),
     IndexError, r"got target value 4"),
    ("multi_margin-target-size", lambda s: s.F.multi_margin_loss(s.a(3, 4), s.a(2, dtype=I64)), ValueError,
     r"size 3, got target of shape \(2,\)"),
    ("margin_ranking-rank", lambda s: s.F.margin_ranking_loss(s.a(3, 4), s.a(3, 4), s.a(3)), ValueError,
     r"same shape \(no broadcasting\), got shapes \(3, 4\), \(3, 4\) and \(3,\)"),
    ("margin_ranking-shape", lambda s: s.F.margin_ranking_loss(s.a(3), s.a(2), s.a(3)), ValueError,
     r"got shapes \(3,\), \(2,\) and \(3,\)"),
    ("cosine-3d", lambda s: s.F.cosine_embedding_loss(s.a(2, 3, 4), s.a(2, 3, 4), s.a(2)), ValueError,
     r"a 1-D target needs 2-D inputs, got input1 of shape \(2, 3, 4\)"),
    ("cosine-target-2d", lambda s: s.F.cosine_embedding_loss(s.a(3, 4), s.a(3, 4), s.a(3, 1)), ValueError,
     r"target must be 0-D or 1-D .*\(3, 1\)"),
    ("cosine-shapes", lambda s: s.F.cosine_embedding_loss(s.a(3, 4), s.a(3, 3), s.a(3)), ValueError,
     r"got input1 \(3, 4\), input2 \(3, 3\)"),
    ("triplet-margin", lambda s: s.F.triplet_margin_loss(s.a(3, 4), s.a(3, 4), s.a(3, 4), margin=0.0),
     ValueError, r"margin must be greater than 0, got margin=0.0"),
    ("triplet-ranks", lambda s: s.F.triplet_margin_loss(s.a(3, 4), s.a(4), s.a(3, 4)), ValueError,
     r"got anchor 2D, positive 1D and negative 2D inputs"),
    ("triplet-shapes", lambda s: s.F.triplet_margin_loss(s.a(3, 4), s.a(3, 3), s.a(3, 4)), ValueError,
     r"positive \(3, 3\)"),
    ("triplet-distance-margin", lambda s: s.F.triplet_margin_with_distance_loss(
        s.a(3, 4), s.a(3, 4), s.a(3, 4), margin=-1.0), ValueError, r"got margin=-1.0"),
    ("triplet-distance-reduction", lambda s: s.F.triplet_margin_with_distance_loss(
        s.a(3, 4), s.a(3, 4), s.a(3, 4), reduction="elementwise_mean"), ValueError, r"elementwise_mean"),
    ("ctc-input_lengths-size", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(2, 2, dtype=I64), s.a(value=[4], dtype=I64),
                                                      s.a(value=[2, 1], dtype=I64)),
     ValueError, r"input_lengths must be of size batch_size \(2\), got input_lengths of shape \(1,\)"),
    ("ctc-input_lengths-too-long", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(2, 2, dtype=I64),
                                                          s.a(value=[5, 4], dtype=I64), s.a(value=[2, 1], dtype=I64)),
     ValueError, r"input_lengths must be in \[0, 4\], got input_lengths=\[5, 4\]"),
    ("ctc-negative-target_lengths", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(2, 2, dtype=I64),
                                                           s.a(value=[4, 4], dtype=I64), s.a(value=[-1, 1], dtype=I64)),
     ValueError, r"target_lengths must be >= 0, got target_lengths=\[-1, 1\]"),
    ("ctc-padded-too-short", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(2, 2, dtype=I64),
                                                    s.a(value=[4, 4], dtype=I64), s.a(value=[3, 1], dtype=I64)),
     ValueError, r"S >= max\(target_lengths\) = 3, got targets of shape \(2, 2\)"),
    ("ctc-concatenated-size", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(4, dtype=I64),
                                                     s.a(value=[4, 4], dtype=I64), s.a(value=[2, 1], dtype=I64)),
     ValueError, r"sum\(target_lengths\) = 3 elements, got targets of shape \(4,\)"),
    ("ctc-blank", lambda s: s.F.ctc_loss(s.a(4, 2, 3), s.a(2, 2, dtype=I64), s.a(value=[4, 4], dtype=I64),
                                         s.a(value=[2, 1], dtype=I64), blank=3),
     ValueError, r"blank must be in label range \[0, 2\], got blank=3"),
]


@pytest.mark.parametrize("call,error,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_loss_raises_where_torch_raises(call, error, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(Exception):
            call(Side(False))
        with pytest.raises(error, match=message):
            call(Side(True))


def test_ctc_target_values_out_of_range_raise_though_torch_reads_past_its_buffer():
    s = Side(True)
    with pytest.raises(IndexError, match=r"targets values must be class indices in \[0, 2\], got targets value 5"):
        JF.ctc_loss(s.a(4, 1, 3), s.a(value=[[1, 5]], dtype=I64), [4], [2])
