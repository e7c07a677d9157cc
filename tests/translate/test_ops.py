"""Each torch op a forward uses, translated on its own (torch.fx path) and checked against torch
in float64: the value and the gradient with respect to every input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

from equivalence import translate, translate_source
from tests._util import assert_close


class Op(torch.nn.Module):
    """``fn(x, y)`` as a module, so that fx traces it as a forward."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x, y):
        return self.fn(x, y)


X, Y = (2, 3, 4, 5), (2, 3, 4, 5)
OPS = {
    "add-broadcast": (lambda x, y: x + y[:, :1], X, Y),
    "sub-scalar": (lambda x, y: 2.5 - x - y, X, Y),
    "mul-broadcast": (lambda x, y: x * y.mean(dim=(2, 3), keepdim=True), X, Y),
    "div": (lambda x, y: x / (y.abs() + 1), X, Y),
    "torch.add-alpha": (lambda x, y: torch.add(x, y, alpha=0.5), X, Y),
    "cat": (lambda x, y: torch.cat([x, y], dim=1), X, Y),
    "stack": (lambda x, y: torch.stack([x, y], dim=-1), X, Y),
    "chunk": (lambda x, y: x.chunk(2, dim=1)[1] * y[:, 2:], X, Y),
    "split": (lambda x, y: torch.split(x, [1, 3], dim=2)[1] + y[:, :, 1:], X, Y),
    "view": (lambda x, y: x.view(x.size(0), -1) + y.view(2, 60), X, Y),
    "reshape": (lambda x, y: x.reshape(6, -1) * y.reshape(6, 20), X, Y),
    "permute": (lambda x, y: x.permute(0, 2, 3, 1) + y.permute(0, 2, 3, 1), X, Y),
    "transpose": (lambda x, y: torch.transpose(x, 1, 3) * y.transpose(1, 3), X, Y),
    "flatten": (lambda x, y: torch.flatten(x, 1) + y.flatten(start_dim=1), X, Y),
    "squeeze-unsqueeze": (lambda x, y: x.unsqueeze(2).squeeze(2) + y.unsqueeze(0).squeeze(0), X, Y),
    "expand": (lambda x, y: x[:, :1].expand(-1, 3, -1, -1) * y, X, Y),
    "index-slice": (lambda x, y: x[:, 1:, ::2, None, -1] + y[:1, :2, 1:3, None, 0] + y[..., None][0, 0, 0, -1, 0], X, Y),
    "mean-sum-amax-keepdim": (lambda x, y: x.mean(dim=1, keepdim=True) + y.sum(2, keepdim=True)
                              .amax(3, keepdim=True), X, Y),
    "interpolate": (lambda x, y: TF.interpolate(x, scale_factor=2, mode="bilinear",
                                                align_corners=False) + TF.interpolate(y, size=(8, 10)), X, Y),
    "pad": (lambda x, y: TF.pad(x, (1, 2, 0, 1), mode="reflect") + TF.pad(y, (1, 2, 0, 1), value=0.5), X, Y),
    "adaptive_avg_pool2d": (lambda x, y: TF.adaptive_avg_pool2d(x, (3, 2)) * TF.adaptive_avg_pool2d(y, 1), X, Y),
    "sigmoid": (lambda x, y: torch.sigmoid(x) * y.sigmoid(), X, Y),
    "softmax": (lambda x, y: TF.softmax(x, dim=1) + y.softmax(-1), X, Y),
    "matmul": (lambda x, y: x @ y.transpose(-1, -2) + torch.matmul(x, y.mT), X, Y),
    "einsum": (lambda x, y: torch.einsum("nchw,nchv->ncwv", x, y), X, Y),
    "assert": (lambda x, y: (torch._assert(x.dim() == 4, "4-D input"), x + y)[1], X, Y),
    "layer_norm": (lambda x, y: TF.layer_norm(x, (5,)) * y, X, Y),
    "sdpa": (lambda x, y: TF.scaled_dot_product_attention(x, y, y), X, Y),
}


@pytest.mark.parametrize("name", list(OPS))
def test_op_translates_exactly(name):
    fn, xs, ys = OPS[name]
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal(xs), rng.standard_normal(ys)
    tm = Op(fn)
    source = translate_source(tm)
    jm = translate(tm)
    tx, ty = (torch.from_numpy(a).requires_grad_() for a in (x, y))
    expected = tm(tx, ty)
    g = rng.standard_normal(tuple(expected.shape))
    expected.backward(torch.from_numpy(g))

    def f(a, b):
        return jm(a, b)

    out, vjp = jax.vjp(f, jnp.asarray(x), jnp.asarray(y))
    gx, gy = vjp(jnp.asarray(g))
    assert_close(out, expected.detach().numpy(), reduction=20)
    assert_close(gx, tx.grad.numpy(), reduction=20)
    assert_close(gy, ty.grad.numpy(), reduction=20)
    if name == "assert":
        assert "_assert" not in source          # dropped
