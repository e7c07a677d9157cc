"""Loss modules against torch: eager values with their configuration, reprs, attributes, and
``weight`` / ``pos_weight`` as buffers in the state_dict (torch's names, loading both ways)."""
import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
import jaxconv.nn as nn
from tests.functional._loss_cases import assert_matches

N, C = 4, 3


def _args(rng, kind):
    """Arguments of a forward call, per kind of loss (numpy, float64)."""
    x, y = rng.standard_normal((N, C)), rng.standard_normal((N, C))
    p = rng.random((N, C))
    sign = np.sign(rng.standard_normal(N))
    return {
        "pair": [x, y], "index": [x, rng.integers(0, C, N)], "probability": [p * 0.9 + 0.05, p[::-1].copy()],
        "logits": [x * 4, p], "log": [np.log(p), p[::-1].copy()], "poisson": [x, rng.integers(0, 4, (N, C)) * 1.0],
        "gaussian": [x, y, p + 0.1], "sign": [x, np.sign(y)], "labels": [x, np.array([[0, 2, -1], [1, -1, 0],
                                                                                    [2, 1, 0], [-1, 0, 0]])],
        "ranking": [x[:, 0], y[:, 0], sign], "cosine": [x, y, sign], "triplet": [x, y, p],
        "ctc": [np.log(rng.dirichlet(np.ones(C), (6, 2))), np.array([[1, 2], [2, 0]]), np.array([6, 5]),
                np.array([2, 1])],
    }[kind]


W = np.array([0.5, 2.0, 1.25])
MODULES = [
    # (torch-and-jaxconv constructor, its keywords, kind of arguments)
    ("L1Loss", {}, "pair"),
    ("MSELoss", {"reduction": "sum"}, "pair"),
    ("CrossEntropyLoss", {"weight": W, "ignore_index": 1, "label_smoothing": 0.1}, "index"),
    ("NLLLoss", {"weight": W, "reduction": "none"}, "index"),
    ("BCELoss", {"weight": W}, "probability"),
    ("BCEWithLogitsLoss", {"weight": W, "pos_weight": W[::-1].copy()}, "logits"),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": False}, "log"),
    ("SmoothL1Loss", {"beta": 0.5}, "pair"),
    ("HuberLoss", {"delta": 0.5, "reduction": "sum"}, "pair"),
    ("PoissonNLLLoss", {"full": True}, "poisson"),
    ("GaussianNLLLoss", {"full": True, "eps": 1e-3}, "gaussian"),
    ("SoftMarginLoss", {}, "sign"),
    ("MultiLabelSoftMarginLoss", {"weight": W}, "probability"),
    ("MultiLabelMarginLoss", {}, "labels"),
    ("MultiMarginLoss", {"p": 2, "margin": 0.5, "weight": W}, "index"),
    ("MarginRankingLoss", {"margin": 0.2}, "ranking"),
    ("HingeEmbeddingLoss", {"margin": 0.5}, "sign"),
    ("CosineEmbeddingLoss", {"margin": 0.1}, "cosine"),
    ("TripletMarginLoss", {"margin": 0.5, "p": 1.0, "swap": True}, "triplet"),
    ("TripletMarginWithDistanceLoss", {"swap": True}, "triplet"),
    ("CTCLoss", {"blank": 0, "zero_infinity": True}, "ctc"),
]


def _build(name, kw):
    tkw = {k: torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    jkw = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    return getattr(torch.nn, name)(**tkw), getattr(nn, name)(**jkw)


@pytest.mark.parametrize("name,kw,kind", MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_torch(rng, name, kw, kind):
    theirs, ours = _build(name, kw)
    args = _args(rng, kind)
    assert repr(ours) == repr(theirs)
    for attr in vars(theirs):
        if not attr.startswith("_") and attr != "training":
            assert getattr(ours, attr) is not None or getattr(theirs, attr) is None, attr
            if not isinstance(getattr(theirs, attr), (torch.Tensor, torch.nn.Module)):
                assert getattr(ours, attr) == getattr(theirs, attr), attr
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = theirs(*[torch.from_numpy(np.array(a)) for a in args])
        got = ours(*[jnp.asarray(a) for a in args])
    assert_matches(got, want.numpy(), N * C)
    torch_state = {k: v.numpy() for k, v in theirs.state_dict().items()}
    ours_state = equivalence.state_dict(ours)
    assert list(ours_state) == list(torch_state)
    for key in torch_state:
        np.testing.assert_array_equal(ours_state[key], torch_state[key])


def test_weights_are_buffers_that_load_both_ways(rng):
    theirs = torch.nn.BCEWithLogitsLoss(pos_weight=torch.rand(3, dtype=torch.float64))
    ours = nn.BCEWithLogitsLoss(pos_weight=jnp.ones(3, jnp.float64))
    equivalence.load_state_dict(ours, {k: v.numpy() for k, v in theirs.state_dict().items()})
    np.testing.assert_array_equal(ours.pos_weight[...], theirs.pos_weight.numpy())
    back = torch.nn.BCEWithLogitsLoss(pos_weight=torch.zeros(3, dtype=torch.float64))
    back.load_state_dict({k: torch.from_numpy(v) for k, v in equivalence.state_dict(ours).items()})
    assert torch.equal(back.pos_weight, theirs.pos_weight)
    model = nn.Sequential(nn.Linear(2, 3), nn.CrossEntropyLoss(weight=jnp.asarray(W)))
    assert list(equivalence.state_dict(model)) == ["0.weight", "0.bias", "1.weight"]
    with pytest.raises(Exception, match="weight"):
        equivalence.load_state_dict(nn.CrossEntropyLoss(), {"weight": W})     # no buffer: unexpected


def test_size_average_and_reduce_set_the_reduction_at_construction():
    for size_average, reduce, want in ((False, None, "sum"), (None, False, "none"), (True, True, "mean")):
        with pytest.warns(UserWarning, match=f"please use reduction='{want}'"):
            assert nn.CrossEntropyLoss(size_average=size_average, reduce=reduce).reduction == want
    assert nn.MSELoss(reduction="sum").reduction == "sum"


def test_constructor_checks():
    with pytest.raises(ValueError, match=r"p must be 1 or 2, got p=3"):
        nn.MultiMarginLoss(p=3)
    with pytest.raises(ValueError, match=r"weight must be one-dimensional"):
        nn.MultiMarginLoss(weight=jnp.ones((2, 2)))
    with pytest.raises(ValueError, match=r"margin must be greater than 0, got margin=0"):
        nn.TripletMarginLoss(margin=0)
    distance = nn.TripletMarginWithDistanceLoss(distance_function=lambda a, b: jnp.abs(a - b).sum(-1))
    assert repr(distance) == "TripletMarginWithDistanceLoss()"


def test_pairwise_distance_module(rng):
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((3, 5))
    theirs, ours = torch.nn.PairwiseDistance(p=3, eps=1e-3, keepdim=True), nn.PairwiseDistance(p=3, eps=1e-3, keepdim=True)
    assert repr(ours) == repr(theirs) and ours.norm == theirs.norm
    assert_matches(ours(x, y), theirs(torch.from_numpy(x), torch.from_numpy(y)).numpy())


@pytest.mark.parametrize("name,kw,args", [
    ("CrossEntropyLoss", {"weight": W, "label_smoothing": 0.1}, lambda: [np.zeros((0, C)), np.zeros(0, np.int64)]),
    ("BCEWithLogitsLoss", {"pos_weight": W}, lambda: [np.zeros((0, C)), np.zeros((0, C))]),
    ("TripletMarginWithDistanceLoss", {}, lambda: [np.zeros((0, C))] * 3),
])
def test_empty_batch_under_nnx_jit(name, kw, args):
    """An empty batch: 'mean' is NaN as in torch; the buffers are unchanged."""
    theirs, ours = _build(name, kw)
    got = nnx.jit(lambda m, *a: m(*a))(ours, *[jnp.asarray(a) for a in args()])
    assert np.isnan(got) and np.isnan(theirs(*[torch.from_numpy(a) for a in args()]).item())
    for key, value in equivalence.state_dict(ours).items():
        np.testing.assert_array_equal(value, theirs.state_dict()[key].numpy())
