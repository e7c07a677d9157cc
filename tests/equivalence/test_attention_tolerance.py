"""Attention is proven layer by layer: the glue code of ``MultiheadAttention`` and of a module
calling ``scaled_dot_product_attention`` gets the running error bound, so correct ports pass
(forward and local gradients, also for an input used as query, key and value) while a
projection weight or the scale off by 1e-3 fails."""
import numpy as np
import pytest
import torch

import equivalence
import jaxconv.functional as F


class SelfAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = torch.nn.MultiheadAttention(16, 4, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


class FusedAttention(torch.nn.Module):
    """timm's ViT attention: a qkv Linear, ``F.scaled_dot_product_attention``, a projection."""

    def __init__(self, dim=16, heads=4):
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.proj(y.transpose(1, 2).reshape(b, n, c))


def _x():
    return torch.from_numpy(np.random.default_rng(0).standard_normal((2, 7, 16)).astype(np.float32) * 2)


def _rows(report):
    return {row.name: row for row in report.rows}


@pytest.mark.parametrize("model", [SelfAttention, FusedAttention])
def test_attention_passes_with_local_gradients(model):
    torch.manual_seed(0)
    tm, x = model().eval(), _x()
    report = equivalence.compare(tm, equivalence.translate(tm, x), x, grads=True)
    assert report.passed, report.to_text()
    rows = _rows(report)
    names = ["attn.in_proj_weight", "attn.out_proj.weight", "input[0]"] if model is SelfAttention else ["input[0]"]
    for name in names:
        assert "end-to-end" not in rows[name].note, rows[name]
    top = max(row.ratio for row in report.rows if row.check == "glue")
    assert top > 1e-5  # the bound is not vacuous: rounding shows


@pytest.mark.parametrize("where", ["attn.in_proj_weight", "attn.out_proj.weight"])
def test_a_projection_off_by_1e_3_fails(where):
    torch.manual_seed(0)
    tm, x = SelfAttention().eval(), _x()
    jm = equivalence.translate(tm, x)
    owner, name = where.rsplit(".", 1)
    param = getattr(jm.attn.out_proj if "out_proj" in owner else jm.attn, name)
    param[...] = param[...] * (1 + 1e-3)
    report = equivalence.compare(tm, jm, x)
    assert not report.passed and not _rows(report)["attn"].passed


def test_a_scale_off_by_1e_3_fails(monkeypatch):
    torch.manual_seed(0)
    tm, x = FusedAttention().eval(), _x()
    jm = equivalence.translate(tm, x)
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: sdpa(q, k, v, scale=1.001 / np.sqrt(q.shape[-1]), **kw))
    report = equivalence.compare(tm, jm, x)
    assert not _rows(report)["(root)"].passed
