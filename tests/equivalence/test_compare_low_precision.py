"""compare in float16 and bfloat16: the issue's failing calls, autocast, dtype errors, and the
dtype each row was checked in (report, certificate)."""
import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import equivalence
from equivalence import examples

SHAPE = (2, 1, 28, 28)


def _port(dtype=None):
    tm = examples.residual_cnn_torch(seed=0)
    jm = examples.residual_cnn_jax()
    if dtype is not None:
        tm.to(getattr(torch, dtype))
    equivalence.load_state_dict(jm, tm.state_dict(), dtype=None if dtype is None else getattr(jnp, dtype))
    return tm.eval(), jm


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_ports_pass_with_every_dtype_form(dtype):
    """The issue's three failing calls (a reduced tensor; ``dtype`` as a string and as a torch
    dtype) and a jnp dtype all run, agree, and pass (with grads for the first); rows say the
    dtype."""
    tm, jm = _port(dtype)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32))
    full = equivalence.compare(tm, jm, x.to(getattr(torch, dtype)), grads=True)
    assert {r.section for r in full.rows} == {"layer", "grad"}
    reports = [full] + [equivalence.compare(tm, jm, x, dtype=d)
                        for d in (dtype, getattr(torch, dtype), getattr(jnp, dtype))]
    for report in reports:
        assert report.passed and report.worst_ratio() < 0.5, report.to_text()
        assert {r.dtype for r in report.rows} == {dtype}
        assert report.meta["inputs"][0]["dtype"] == dtype
    ratios = [[r.ratio for r in report.rows if r.section == "layer"] for report in reports]
    assert all(r == ratios[0] for r in ratios)


def test_autocast_rows_report_the_compute_dtype(tmp_path):
    """Under autocast the weights stay float32 and so do torch's parameter gradients, but they
    were computed in bfloat16 and are checked as such; float32 layers (pooling after a
    float32 input) stay float32. The text, the certificate and the policy say so."""
    tm, jm = _port()
    report = equivalence.compare(tm, jm, SHAPE, grads=True, autocast=torch.bfloat16)
    assert report.passed and report.worst_ratio() < 0.5, report.to_text()
    by_name = {(r.section, r.name): r for r in report.rows}
    assert by_name["layer", "conv1"].dtype == "bfloat16"
    assert by_name["grad", "conv1.weight"].dtype == "bfloat16"
    assert by_name["grad", "input[0]"].dtype == "bfloat16"
    assert "autocast bfloat16" in report.to_text().splitlines()[0]
    cert = json.loads(report.to_json(tmp_path / "c.json"))
    assert cert["autocast"] == "bfloat16"
    assert {r["dtype"] for r in cert["rows"]} == {"bfloat16"}
    assert "float16/bfloat16 rows" in cert["policy"]["text"] and cert["policy"]["formula_reduced"]


def test_mismatched_weight_dtypes_name_the_parameter():
    tm, jm = _port()
    tm.to(torch.bfloat16)
    with pytest.raises(TypeError, match=r"same dtypes, got \d+ that differ: conv1\.weight \(torch bfloat16, "
                                        r"jaxconv float32\).*load_state_dict\(\.\.\., dtype=\.\.\.\)"):
        equivalence.compare(tm, jm, SHAPE)


def test_unknown_dtype_is_named():
    tm, jm = _port()
    with pytest.raises(TypeError, match=r"dtype must name a numpy, jax or torch dtype, got dtype='bf17'"):
        equivalence.compare(tm, jm, SHAPE, dtype="bf17")
    with pytest.raises(TypeError, match=r"dtype must name"):
        equivalence.compare(tm, jm, SHAPE, autocast="bf17")
    with pytest.raises(ValueError, match=r"autocast must be bfloat16 or float16.*autocast='float32'"):
        equivalence.compare(tm, jm, SHAPE, autocast="float32")


def test_reduced_tolerance_formula():
    """Rounded once: ROUNDING ulps of the value plus the float32 accumulation; float32 rows and
    gradients (no value) keep the full formula."""
    t = equivalence.tolerance
    bf16 = np.dtype("bfloat16")
    got = t.tolerance(np.array([4.0]), 16, bf16, c=3.0, rounding=np.array([-2.0]))
    want = t.ROUNDING * 2.0 ** -7 * 2.0 + 3.0 * 2.0 ** -23 * 4 * 4.0
    assert got[0] == pytest.approx(want + float(np.finfo(np.float32).tiny))
    assert t.tolerance(np.array([4.0]), 16, bf16, c=3.0)[0] == pytest.approx(3.0 * 2.0 ** -7 * 4 * 4.0)
    assert t.tolerance(np.array([4.0]), 16, np.float32, rounding=np.array([1e6]))[0] < 1e-4
    assert t.eps("bfloat16") == 2.0 ** -7 and t.eps(np.float16) == 2.0 ** -10
    assert t.compute_dtype(np.float32, bf16) == bf16
    bound = t.Bound(np.array([4.0]), 16, dtype=bf16)
    assert bound.checked_dtype(np.float32) == bf16


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["autocast", "bfloat16"])
def test_resnet18_in_bfloat16_passes_compare(mode):
    """torchvision's ResNet-18 under bfloat16 autocast and as a bfloat16 model: its convs with
    >= 128 input channels run as per-tap bfloat16 products on CPU (jaxconv.functional._lowering
    .conv_taps), every layer and gradient within the reduced-precision policy."""
    from tests._zoo import randomize_batchnorm, torchvision_models

    torch.manual_seed(0)
    tm = randomize_batchnorm(torchvision_models().resnet18()).eval()
    shape = (2, 3, 64, 64)
    jm = equivalence.translate(tm, torch.zeros(shape))
    if mode == "autocast":
        report = equivalence.compare(tm, jm, shape, grads=True, autocast="bfloat16")
    else:
        tm.to(torch.bfloat16)
        equivalence.load_state_dict(jm, tm.state_dict(), dtype=jnp.bfloat16)
        report = equivalence.compare(tm, jm, shape, grads=True, dtype="bfloat16")
    assert report.passed, report.to_text()
    assert {r.dtype for r in report.rows if r.name == "layer4.1.conv2"} == {"bfloat16"}
