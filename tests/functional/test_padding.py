"""``pad`` against torch.nn.functional.pad: four modes, negative pads, gradients, errors."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as TF

import jaxconv.functional as F
from tests._util import assert_close, randn, t

# (mode, input shape, pad, value)
CASES = [
    ("constant", (4, 5), (1, 2), 1.5),
    ("constant", (2, 3, 4, 5), (2, -1, 0, 3, 1, 1), -0.5),
    ("constant", (3, 4, 5, 6), (1, 1, 1, 2, 2, 1, 0, 1), None),    # four dims, the batch dim too
    ("constant", (2, 3, 6), (-2, -3), None),
    ("constant", (7,), (3, 0), 2.0),
    ("reflect", (2, 3, 7), (2, 3), None),
    ("reflect", (3, 7), (6, 1), None),                            # unbatched 1d
    ("reflect", (2, 3, 5, 6), (1, 2, -1, 3), None),
    ("reflect", (3, 5, 6), (4, 0, 2, 2), None),                   # unbatched 2d
    ("reflect", (1, 2, 4, 5, 6), (1, 2, 3, 0, -1, 2), None),
    ("reflect", (2, 4, 5, 6), (1, 1, 2, 2, 3, 3), None),          # unbatched 3d
    ("reflect", (2, 3, 5), (-3, 4), None),                        # pad then crop
    ("replicate", (2, 3, 4), (3, 5), None),
    ("replicate", (3, 4), (-1, 4), None),
    ("replicate", (2, 2, 3, 4), (4, -2, 0, 3), None),
    ("replicate", (2, 3, 4, 5), (1, 2, 3, 4, 5, 6), None),
    ("replicate", (1, 2, 3, 4, 5), (2, 2, -1, 1, 0, 3), None),
    ("circular", (2, 3, 5), (2, 5), None),                        # a full wrap is allowed
    ("circular", (3, 5), (-2, 3), None),                          # crop first: 3 left, pad 3
    ("circular", (2, 3, 4, 5), (1, 4, -1, 2), None),
    ("circular", (2, 4, 5, 6), (0, 3, 2, 1, 4, 2), None),         # unbatched 3d
    ("circular", (1, 2, 3, 4, 5), (1, 2, 3, 1, 2, 1), None),
]


def _id(case):
    mode, shape, pad, value = case
    return f"{mode}-{'x'.join(map(str, shape))}-{','.join(map(str, pad))}-{value}"


def _torch_pad(x, pad, mode, value):
    kw = {} if value is None else {"value": value}
    return TF.pad(t(x), pad, mode, **kw).numpy()


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_pad_matches_torch(rng, case):
    mode, shape, pad, value = case
    x = randn(rng, *shape)
    y = jax.jit(lambda x: F.pad(x, pad, mode, value))(x)
    want = _torch_pad(x, pad, mode, value)
    assert y.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(y), want)  # pad moves values: exact


def test_pad_keeps_float32_and_eager(rng):
    x = randn(rng, 2, 3, 4, 5, dtype=np.float32)
    for mode in ("constant", "reflect", "replicate", "circular"):
        y = F.pad(x, (1, 2, 2, -1), mode)
        assert y.dtype == jnp.float32
        np.testing.assert_array_equal(np.asarray(y), _torch_pad(x, (1, 2, 2, -1), mode, None))


@pytest.mark.parametrize("case", [c for c in CASES if c[0] != "constant" or c[2] == (2, -1, 0, 3, 1, 1)],
                         ids=_id)
def test_pad_grad_matches_torch(rng, case):
    mode, shape, pad, value = case
    x = randn(rng, *shape)
    g = randn(rng, *_torch_pad(x, pad, mode, value).shape)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(F.pad(x, pad, mode, value) * g)))(x)
    tx = t(x).requires_grad_()
    kw = {} if value is None else {"value": value}
    (TF.pad(tx, pad, mode, **kw) * t(g)).sum().backward()
    assert_close(grad, tx.grad.numpy(), reduction=8)


def test_pad_vmap(rng):
    x = randn(rng, 3, 2, 4, 5)
    y = jax.vmap(lambda x: F.pad(x, (2, 1), "reflect"))(x)
    np.testing.assert_array_equal(np.asarray(y), _torch_pad(x.reshape(6, 4, 5), (2, 1), "reflect", None)
                                  .reshape(3, 2, 4, 8))


PAD_ERRORS = {
    "reflect_too_wide": (lambda f, x: f.pad(x, (3, 1), "reflect"), (1, 2, 3), "reflect"),
    "reflect_too_wide_2d": (lambda f, x: f.pad(x, (0, 0, 1, 4), "reflect"), (1, 2, 4, 6), "reflect"),
    "circular_too_wide": (lambda f, x: f.pad(x, (4, 1), "circular"), (1, 2, 3), "circular"),
    "circular_too_wide_2d": (lambda f, x: f.pad(x, (-1, 1, 5, 0), "circular"), (2, 2, 4, 3), "circular"),
    "unknown_mode": (lambda f, x: f.pad(x, (1, 1), "mirror"), (1, 2, 3), "mode"),
    "value_with_reflect": (lambda f, x: f.pad(x, (1, 1), "reflect", 1.0), (1, 2, 3), "value"),
    "value_with_circular": (lambda f, x: f.pad(x, (1, 1), "circular", 2.0), (1, 2, 3), "value"),
    "odd_pad_length": (lambda f, x: f.pad(x, (1, 1, 1)), (1, 2, 3), "pad"),
    "pad_longer_than_rank": (lambda f, x: f.pad(x, (1, 1, 1, 1, 1, 1)), (2, 3), "pad"),
    "reflect_rank_mismatch": (lambda f, x: f.pad(x, (1, 1), "reflect"), (2, 3, 4, 5), "reflect"),
    "replicate_on_1d_input": (lambda f, x: f.pad(x, (1, 1), "replicate"), (5,), "replicate"),
    "constant_crop_below_zero": (lambda f, x: f.pad(x, (-3, -2)), (2, 3, 4), "pad"),
}


@pytest.mark.parametrize("name", list(PAD_ERRORS))
def test_pad_errors_where_torch_raises(rng, name):
    call, shape, match = PAD_ERRORS[name]
    x = randn(rng, *shape)
    with pytest.raises(Exception):
        call(TF, t(x))
    with pytest.raises((ValueError, TypeError), match=match):
        call(F, x)


def test_circular_pad_wider_than_cropped_size_raises(rng):
    """Stricter than torch on purpose: torch checks circular pads against the size before the
    crop, and where a pad exceeds what the crop leaves, its forward result depends on memory
    layout (an internal-overlap error, repeated wraps, or zeros) and its gradient is not the
    gradient of its forward. jaxconv refuses instead of guessing."""
    x = randn(rng, 2, 3, 6, 5)
    with pytest.raises(ValueError, match="circular"):
        F.pad(x, (-3, 5, 4, -4), "circular")
    with pytest.raises(ValueError, match="circular"):
        F.pad(x, (-3, 3), "circular")
    # a pad equal to the cropped size is fine, and matches torch
    np.testing.assert_array_equal(np.asarray(F.pad(x, (-2, 3, 0, 1), "circular")),
                                  _torch_pad(x, (-2, 3, 0, 1), "circular", None))
