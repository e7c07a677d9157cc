"""Tracing into torch.fx.wrap-ped Python functions: shape branches (with guards), item
assignment, writes into arguments, nested calls, calls with no tensor argument."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.fx

from equivalence import TranslationError, translate, translate_source
from tests._util import assert_close


def _window(n: int, size: int) -> list:
    return [min(n, size), n // min(n, size)]


def _mask(x, rows: int):
    m = x.new_zeros((rows, x.shape[-1]))
    m[: rows // 2, 1:] = 1.0
    return m


def _shift(x, y, k: int):
    """Pads to a multiple of k, branches on the padded size, writes into y."""
    n = x.shape[-1]
    x = torch.nn.functional.pad(x, (0, (k - n % k) % k))
    if x.shape[-1] > k:
        x = torch.roll(x, 1, dims=-1)
    y[:, :1] += 1.0
    y.mul_(2.0)
    return x[..., :n] * 2 + _mask(x, x.shape[-2])[..., :n]


torch.fx.wrap("_window")
torch.fx.wrap("_shift")


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(7, 7)

    def forward(self, x):
        w = _window(x.shape[-1], 3)
        y = self.lin(x)
        z = _shift(y, x, w[0])
        return z + x          # x was written into by _shift, as torch's aliasing has it


@pytest.mark.parametrize("n", [7, 3])
def test_wrapped_functions_match_torch(n):
    torch.manual_seed(0)
    m = (Net() if n == 7 else _Net3()).double()
    x = torch.randn(2, 4, n, dtype=torch.float64)
    jm = translate(m, x.clone())
    ours = jm(jnp.asarray(x.numpy()))
    with torch.no_grad():
        theirs = m(x.clone())
    assert_close(ours, theirs.numpy(), reduction=n)
    source = translate_source(m, x.clone())
    assert "def shift(x, y):" in source and "assert" in source


class _Net3(Net):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)


def test_guard_fails_on_another_branch():
    torch.manual_seed(0)
    m = Net()
    jm = translate(m, torch.randn(2, 4, 7))
    with pytest.raises(AssertionError, match="traced"):
        jm(np.random.default_rng(0).standard_normal((2, 4, 2)).astype(np.float32))


def test_needs_example_inputs():
    with pytest.raises(TranslationError, match="needs example inputs"):
        translate_source(Net())
