"""Harness false alarms (issue 20): correct ports that ``compare`` failed, one small torch module
per class, each passing now (forward and gradients) while a planted bug still fails at its row.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from equivalence import tolerance
from equivalence.tolerance.running import running_error
from jaxconv import functional as F


def _input(*shape, scale=1.0, offset=0.0, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy((rng.standard_normal(shape) * scale + offset).astype(np.float32))


# ---------------------------------------------------------------------------------------------
# the running error bound of a softmax over masked logits and of a resize


def test_running_bound_of_a_softmax_follows_the_values_it_sees():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal((64, 49)) * 4).astype(np.float32)
    x[rng.random(x.shape) < 0.5] = -np.inf
    x[:, 0] = 1.0  # every row keeps an entry
    y, e = running_error(lambda a: F.softmax(a, -1), x)
    exact = torch.softmax(torch.from_numpy(x.astype(np.float64)), -1).numpy()
    e = np.asarray(e)
    assert np.isfinite(e).all() and (e[exact > 1e-3] > 0).all()
    assert (np.abs(np.asarray(y, np.float64) - exact) <= e).all()


@pytest.mark.parametrize("mode, sizes, align_corners, antialias", [
    ("bicubic", (240, 224), False, False),
    pytest.param("bicubic", (224, 240), True, False, marks=pytest.mark.slow),
    pytest.param("bilinear", (37, 100), False, False, marks=pytest.mark.slow),
    pytest.param("bicubic", (384, 240), False, True, marks=pytest.mark.slow),
    pytest.param("bicubic", (100, 37), True, False, marks=pytest.mark.slow),
    pytest.param("bilinear", (500, 250), False, True, marks=pytest.mark.slow)])
def test_running_bound_of_a_resize_covers_torch(mode, sizes, align_corners, antialias):
    """torch's float32 resize and jaxconv's differ by the rounding of the source coordinates
    (torch's compiled kernel fuses the multiply-add): at 240 -> 224 by 1e-5 relative, as far as
    each is from float64. The running bound carries it, and allows less than 1e-3."""
    n, m = sizes
    x, size = _input(1, 2, n, n + 3, seed=n), (m, m + 1)
    kwargs = {"size": size, "mode": mode, "align_corners": align_corners, "antialias": antialias}
    want = TF.interpolate(x, **kwargs).numpy()
    y, e = running_error(lambda a: F.interpolate(a, **kwargs), x.numpy())
    e = np.asarray(e, np.float64)
    assert (np.abs(np.asarray(y, np.float64) - want) <= e).all()
    assert tolerance.C * e.max() < 3e-3 * np.abs(x.numpy()).max()
