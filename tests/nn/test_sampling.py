"""Resampling and rearrangement modules against torch's: repr, attributes, forward, jit."""
import jax
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from tests._util import assert_close, randn, t

# (class name, constructor args, constructor kwargs, input shape)
CASES = [
    ("Upsample", (), {"scale_factor": 2}, (2, 3, 4, 5)),
    ("Upsample", (), {"scale_factor": (1.5, 2.0), "mode": "bilinear", "align_corners": True}, (2, 3, 4, 5)),
    ("Upsample", (), {"size": (3, 7), "mode": "bicubic"}, (2, 3, 4, 5)),
    ("Upsample", (), {"size": [4, 5, 6], "mode": "trilinear"}, (1, 2, 3, 4, 5)),
    ("Upsample", (), {"scale_factor": 1.7, "mode": "linear", "recompute_scale_factor": True}, (2, 3, 6)),
    ("Upsample", (), {"scale_factor": 0.5, "mode": "area"}, (2, 3, 6, 8)),
    ("Upsample", (), {"size": 5, "mode": "nearest-exact"}, (2, 3, 3)),
    ("UpsamplingNearest2d", (), {"scale_factor": 3}, (2, 3, 4, 5)),
    ("UpsamplingNearest2d", (), {"size": (7, 3)}, (2, 3, 4, 5)),
    ("UpsamplingBilinear2d", (), {"scale_factor": 2}, (2, 3, 4, 5)),
    ("UpsamplingBilinear2d", (), {"size": 6}, (2, 3, 4, 5)),
    ("PixelShuffle", (2,), {}, (2, 8, 3, 4)),
    ("PixelUnshuffle", (3,), {}, (2, 2, 6, 9)),
    ("ChannelShuffle", (2,), {}, (2, 6, 3, 4)),
    ("Unfold", ((2, 3),), {"dilation": 2, "padding": 1, "stride": (1, 2)}, (2, 3, 7, 8)),
    ("Unfold", (3,), {}, (3, 5, 6)),
    ("Fold", ((5, 6), 2), {"stride": 2, "padding": 1}, (2, 12, 12)),
    ("Fold", ((4, 5), (2, 3)), {"dilation": (1, 2)}, (6, 3)),
]


@pytest.mark.parametrize("name,args,kwargs,shape", CASES)
def test_module_matches_torch(rng, name, args, kwargs, shape):
    ours, theirs = getattr(nn, name)(*args, **kwargs), getattr(torch.nn, name)(*args, **kwargs)
    assert repr(ours) == repr(theirs)
    assert not jax.tree.leaves(nnx.state(ours))  # no parameters or buffers
    x = randn(rng, *shape)
    expected = theirs(t(x)).numpy()
    assert_close(ours(x), expected, reduction=16)
    assert_close(jax.jit(lambda v: ours(v))(x), expected, reduction=16)


def test_upsample_attributes():
    for kwargs in ({"scale_factor": 2}, {"scale_factor": (2, 3)}, {"scale_factor": 0, "size": 4},
                   {"size": (3, 4), "mode": "bilinear", "align_corners": False}):
        ours, theirs = nn.Upsample(**kwargs), torch.nn.Upsample(**kwargs)
        for attr in ("size", "scale_factor", "mode", "align_corners", "recompute_scale_factor"):
            assert getattr(ours, attr) == getattr(theirs, attr), attr
        assert type(ours.scale_factor) is type(theirs.scale_factor)
        assert repr(ours) == repr(theirs)


def test_module_errors_surface_at_call():
    # torch's modules check nothing at construction; the functional errors surface at call
    x = np.random.default_rng(0).standard_normal((1, 4, 5, 6))
    for ours, theirs in [(nn.Upsample(size=3, mode="linear"), torch.nn.Upsample(size=3, mode="linear")),
                         (nn.PixelShuffle(3), torch.nn.PixelShuffle(3)),
                         (nn.Unfold(7), torch.nn.Unfold(7))]:
        with pytest.raises(Exception):
            theirs(t(x))
        with pytest.raises(ValueError):
            ours(x)
