"""XLA:CPU's YNNPACK fusion of elementwise ops, given to one function (``benchmarks/xla_options.py``,
the ``*_ynn`` benchmark columns): it puts the ops after a convolution into its YNNPACK call, and a
training step under it still matches torch's float64 result within float32 rounding (what the
README says of passing it to ``jax.jit``)."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import jaxconv.nn as nn
from benchmarks import xla_options as XO
from tests._util import assert_close, randn, t
from tests._zoo import randomize_batchnorm

cpu_only = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the options are XLA:CPU's")


def test_the_option_names_the_default_list_again():
    types = set(XO.YNN_ELTWISE[XO.YNN_FUSION_TYPE].split(","))
    # this jaxlib's default list is named again, or overwriting it would take dots and reductions
    # off YNNPACK
    assert types == {f"LIBRARY_FUSION_TYPE_{k}" for k in ("INDIVIDUAL_CONVOLUTION", "INDIVIDUAL_DOT", "REDUCE",
                                                           "ELTWISE")}
    opts = XO.ynn_eltwise()
    assert opts == (XO.YNN_ELTWISE if jax.default_backend() == "cpu" else {})
    opts["xla_cpu_use_onednn"] = True       # the caller's copy
    assert "xla_cpu_use_onednn" not in XO.ynn_eltwise()


@cpu_only
def test_an_option_this_jaxlib_refuses_gives_none(monkeypatch):
    monkeypatch.setattr(XO, "YNN_ELTWISE", {XO.YNN_FUSION_TYPE: "LIBRARY_FUSION_TYPE_NO_SUCH"})
    XO._accepted.cache_clear()
    try:
        assert XO.ynn_eltwise() == {}
    finally:
        XO._accepted.cache_clear()


def _library_calls(text):
    """The op names inside each ``__ynn_fusion`` computation of an optimized HLO text."""
    called = {re.search(r"calls=%?([\w.\-]+)", line).group(1) for line in text.splitlines()
              if "kind=kCustom" in line and "__ynn_fusion" in line}
    blocks = re.findall(r"^(?:ENTRY )?%([\w.\-]+) [^\n]*\{\n(.*?)\n\}", text, re.M | re.S)
    return [set(re.findall(r" ([a-z][\w\-]*)\(", body)) - {"parameter"} for name, body in blocks if name in called]


def _block():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Conv2d(24, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(),
                             torch.nn.Conv2d(32, 40, 3, 2, 1, bias=False), torch.nn.BatchNorm2d(40),
                             torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                             torch.nn.Linear(40, 5))
    randomize_batchnorm(tm)
    m = nn.Sequential(nn.Conv2d(24, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                      nn.Conv2d(32, 40, 3, 2, 1, bias=False), nn.BatchNorm2d(40), nn.ReLU(),
                      nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(40, 5))
    for name, v in tm.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        *path, leaf = name.split(".")
        obj = m
        for p in path:
            obj = obj[int(p)]
        getattr(obj, leaf)[...] = jnp.asarray(v.numpy(), jnp.float32)
    return tm, m


@cpu_only
def test_bias_and_relu_join_the_convolution_call():
    _, m = _block()
    m.eval()
    conv = nn.Sequential(m[0], m[1], m[2])      # conv, BatchNorm (eval), ReLU; no reduction after
    x = jnp.asarray(randn(np.random.default_rng(0), 2, 24, 10, 10, dtype=np.float32))

    def calls(opts):
        return _library_calls(nnx.jit(lambda m, x: m(x)).lower(conv, x).compile(opts).as_text())
    assert {"convolution"} in calls({}) and not any({"convolution", "maximum"} <= c for c in calls({}))
    assert any({"convolution", "maximum"} <= c for c in calls(XO.YNN_ELTWISE))


@cpu_only
def test_training_step_under_the_options_matches_torch():
    """Loss and every gradient of a train-mode step (two convs, BatchNorm with random statistics,
    ReLU, pooling, linear) compiled with the options, against torch in float64."""
    tm, m = _block()
    rng = np.random.default_rng(1)
    x = randn(rng, 4, 24, 12, 11, dtype=np.float32)
    m.train()
    step = nnx.jit(lambda m, x: nnx.value_and_grad(lambda m: jnp.mean(m(x) ** 2))(m))
    loss, grads = step.lower(m, jnp.asarray(x)).compile(XO.YNN_ELTWISE)(m, jnp.asarray(x))
    tm = tm.double().train()
    tloss = (tm(t(x).double()) ** 2).mean()
    tloss.backward()
    assert_close(loss, tloss.item(), np.float32, reduction=32 * 9)
    for name, p in tm.named_parameters():
        *path, leaf = name.split(".")
        g = grads[path[0]][leaf][...]
        assert_close(g, p.grad.numpy(), np.float32, reduction=4 * 12 * 11 * 9,
                     scale=max(1.0, float(np.abs(p.grad.numpy()).max())))
