"""The benchmark suite's quick mode runs end to end (not timed): every case, every
implementation, each checked against torch before it is timed."""
import json
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from benchmarks import cases, losses, low_precision, measure, models, runner

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAYER_IMPLS = {"jaxconv", "torch", "torch_cl", "lax_nchw", "lax_nhwc", "flax_nnx", "equinox"}


@pytest.fixture(scope="module")
def quick_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # A fresh process: float32 as in a real run (the test session enables x64).
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = sorted(os.listdir(out))
    (js,) = [f for f in files if f.endswith(".json")]
    assert any(f.endswith(".png") for f in files)
    with open(out / js) as f:
        return json.load(f), proc.stdout


def test_quick_run_has_every_case_and_implementation(quick_result):
    result, stdout = quick_result
    names = [r["case"] for r in result["cases"]]
    expected = [c.name for c in cases.layer_cases(quick=True, batch=2)]
    expected += ["cross_entropy_ls_{}x{}".format(*losses.shapes(quick=True))]
    expected += ["adamw_update_4_tensors", "resnet18_train_step_adamw"]
    expected += [f"{m}_{k}" for m in models.MODELS for k in ("forward", "train_step")]
    bf16 = [f"resnet18_{mode}_{k}" for mode in low_precision.MODES for k in ("forward", "train_step")]
    assert bf16 == ["resnet18_bf16_autocast_forward", "resnet18_bf16_autocast_train_step",
                    "resnet18_bf16_forward", "resnet18_bf16_train_step"]
    layout = ["resnet18_forward_kernel_layout"]
    assert names == expected + layout + bf16
    for row in result["cases"]:
        impls = set(row["median_s"])
        tol = 5e-3
        if row["case"] in bf16:  # no translated variant: it is the same jaxconv modules
            assert impls == {"jaxconv", "torch", "torch_cl"}
            assert row["group"].startswith("model") and row["items_per_s"]["jaxconv"] > 0
            tol = low_precision.tolerance(models.TorchResNet18(width=8, blocks=1)) * np.sqrt(2)
        elif row["case"] in layout:  # Flax given torch-layout kernels; jaxconv with constant weights
            assert impls == {"jaxconv", "jaxconv_const", "flax_nnx", "flax_nnx_oihw", "torch", "torch_cl"}
            assert set(row["kernel_layout"]) == {"flax_nnx_oihw_vs_flax_nnx", "jaxconv_vs_flax_nnx_oihw",
                                                 "jaxconv_const_vs_flax_nnx"}
        elif row["group"].startswith("model"):  # *_ynn: compiled with xla_options.ynn_eltwise() (CPU)
            # (the training steps' *_ynn columns only in a full run: their compiles are the costliest)
            ynn = {"jaxconv_ynn", "flax_nnx_ynn"} if jax.default_backend() == "cpu" and "forward" in row["case"] else set()
            assert impls == {"jaxconv", "jaxconv_cl", "translated", "flax_nnx", "torch", "torch_cl"} | ynn
            assert row["translated_vs_handwritten"] > 0
            assert not ynn or set(row["ynn"]) == {"jaxconv_ynn_vs_flax_nnx_ynn", "jaxconv_ynn_vs_best_torch",
                                                  "jaxconv_ynn_vs_jaxconv", "flax_nnx_ynn_vs_flax_nnx"}
            assert set(row["jaxconv_vs_flax"]) == {"jaxconv", "jaxconv_cl", "translated"}
        elif row["group"] == "optimizer":  # one AdamW update: jaxconv.optim, optax, torch's kernels
            assert impls == {"jaxconv", "optax", "torch", "torch_fused"} and row["jaxconv_vs_optax"] > 0
        elif row["group"] == "optimizer train step":  # forward, backward and AdamW
            assert impls == {"jaxconv", "flax_nnx", "torch"} and row["jaxconv_vs_flax"]["jaxconv"] > 0
        elif row["group"] == "loss":  # value and gradient, against torch and optax
            assert impls == {"jaxconv", "torch", "optax"} and row["jaxconv_vs_optax"] > 0
        elif row["group"] == "batchnorm":  # equinox's BatchNorm needs a named axis: not run
            assert impls == LAYER_IMPLS - {"equinox"}
        else:
            assert impls == LAYER_IMPLS
        assert all(row["max_rel_error_vs_torch"][i] <= tol for i in impls)
        assert all(np.isfinite(v) and v > 0 for v in row["median_s"].values())
        assert row["jaxconv_vs_best_torch"] > 0
        assert row["case"] in stdout
    assert result["translation"]["seconds"] > 0 and "translating torchvision" in stdout
    env = result["environment"]
    assert env["device_kind"] and env["versions"]["jax"] and "xla_flags" in env
    assert env["load_average_start"] is not None


def test_bf16_tolerance_follows_depth():
    # 17 convs and a linear on ResNet-18's longest path, plus 3 downsampling convs
    assert low_precision.depth(models.TorchResNet18()) == 21
    assert low_precision.tolerance(models.TorchResNet18()) == 4 * 2.0 ** -7 * np.sqrt(21)


def test_mismatch_fails_loudly():
    ref = np.arange(12.0).reshape(3, 4)
    measure.check("case", "impl", ref + 1e-6, ref, 1e-3)
    with pytest.raises(measure.MismatchError, match="case/impl: max error"):
        measure.check("case", "impl", ref + 0.1 * np.eye(3, 4), ref, 1e-3)
    with pytest.raises(measure.MismatchError, match="shape"):
        measure.check("case", "impl", ref.T, ref, 1e-3)


def test_models_match_torch_parameter_counts():
    # the hand-written torch models have torchvision's / the DCGAN paper's sizes
    counts = {name: sum(p.numel() for p in tcls().parameters()) for name, (tcls, _, _) in models.MODELS.items()}
    assert counts == {"resnet18": 11_689_512, "mobilenet_v2": 3_504_872, "dcgan_generator": 3_576_704}


def test_flax_models_have_the_torch_models_parameter_counts():
    from flax import nnx

    from benchmarks import flax_models

    for name, (tcls, _, _) in models.MODELS.items():
        tmodel = tcls(width=8, blocks=1)  # the Flax twin abstract: shapes without initialising
        fmodel = nnx.eval_shape(lambda: flax_models.FLAX_MODELS[name](width=8, blocks=1))
        n_flax = sum(math.prod(v.shape) for v in jax.tree_util.tree_leaves(nnx.state(fmodel, nnx.Param)))
        assert n_flax == sum(p.numel() for p in tmodel.parameters()), name


def test_scaling_is_left_out_of_quick_and_efficiency_is_per_implementation():
    """``--quick`` stays quick (each scaling configuration starts its own processes); efficiency
    divides by R times the same implementation's 1-replica rate, two processes by one process's."""
    from benchmarks import scaling

    assert scaling.selected(quick=True, only=None) == [] and scaling.selected(False, None) == [1, 2, 4]
    assert scaling.selected(True, ["scaling"]) == [1, 2] and scaling.selected(False, ["resnet18"]) == []
    assert scaling.impls(1) == ["jaxconv", "torch"]
    argv, env = scaling.command("jaxconv", 4, "/c", 8, False)
    assert argv[1:5] == ["-m", "benchmarks.scaling_worker", "jaxconv", "4"]
    assert env["XLA_FLAGS"].endswith("--xla_force_host_platform_device_count=4")
    argv, _ = scaling.command("torch", 2, "/c", 8, True)
    assert argv[1:6] == ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    assert argv[-1] == "--quick"
    rows = [{"replicas": 1, "items_per_s": {"jaxconv": 10.0, "torch": 20.0}},
            {"replicas": 4, "items_per_s": {"jaxconv": 30.0, "jaxconv_2proc": 20.0, "torch": 40.0}}]
    scaling.add_efficiency(rows)
    assert rows[0]["scaling_efficiency"] == {"jaxconv": 1.0, "torch": 1.0}
    assert rows[1]["scaling_efficiency"] == {"jaxconv": 0.75, "jaxconv_2proc": 0.5, "torch": 0.5}


@pytest.mark.slow
def test_scaling_quick_run(tmp_path):
    """``--only scaling --quick``: 1 and 2 replicas of the tiny ResNet-18, every configuration
    checked against torch DDP (first-step loss, averaged gradient) before it is timed."""
    from benchmarks import scaling

    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "scaling", "--out",
                           str(tmp_path), "--no-png"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (js,) = [f for f in os.listdir(tmp_path) if f.endswith(".json")]
    with open(tmp_path / js) as f:
        rows = json.load(f)["cases"]
    assert [r["case"] for r in rows] == ["scaling_r1", "scaling_r2"]
    for row in rows:
        R = row["replicas"]
        assert set(row["median_s"]) == set(scaling.impls(R)) and row["cores"] == scaling.cores()
        assert row["processes"]["torch"] == R and row["processes"]["jaxconv"] == 1
        assert row["processes"].get("jaxconv_2proc", 2) == 2
        assert all(e <= 5e-2 for e in row["max_rel_error_vs_torch"].values())
        assert all(np.isfinite(v) and v > 0 for v in row["items_per_s"].values())
        assert set(row["scaling_efficiency"]) == set(row["median_s"])
        assert f"efficiency ({R} replicas" in proc.stdout
    assert rows[0]["scaling_efficiency"] == {"jaxconv": 1.0, "torch": 1.0}


def test_harness_rows_are_left_out_of_quick_and_report_compile_side_by_side():
    """``--quick`` stays quick (each harness row starts its own process); a model row's compile
    seconds are the median of its rounds, side by side with Flax's."""
    from benchmarks import harness, report

    assert harness.selected(quick=True, only=None) == []
    assert harness.selected(False, None) == ["harness_resnet50", "harness_vit_b_16", "harness_series"]
    assert harness.selected(True, ["harness"]) == harness.rows(True)
    assert harness.selected(False, ["vit"]) == ["harness_vit_b_16"] and harness.selected(False, ["resnet18"]) == []
    assert harness.command("harness_vit_b_16", quick=False)[-3:] == ["one", "tv:vit_b_16", "224"]
    assert harness.command("harness_series", quick=True)[-3:-1] == ["series", "tv:resnet18,timm:resnet10t,tv:resnet18"]
    row = measure.summarise("m_forward", "model forward", {"jaxconv": [2.0], "flax_nnx": [1.0], "torch": [1.0]},
                            {"jaxconv": [3.0, 1.0, 2.0], "translated": [4.0, 5.0, 6.0], "flax_nnx": [1.0, 2.0, 9.0]},
                            {})
    assert row["compile_s"] == {"jaxconv": 2.0, "translated": 5.0, "flax_nnx": 2.0}
    assert row["compile_vs_flax"] == {"jaxconv": 1.0, "translated": 2.5}
    assert row["compile_rounds_s"]["flax_nnx"] == [1.0, 2.0, 9.0]
    result = {"environment": {"device_kind": "cpu", "jax_platform": "cpu", "torch_device": "cpu",
                              "load_average_start": None}, "batch": 1, "rounds": 1, "cases": [row]}
    assert "compile s: jaxconv 2.00 translated 5.00 flax_nnx 2.00" in report.table(result)
    assert report.markdown(result).endswith("| 2.00 / 5.00 / 2.00 |")


@pytest.mark.slow
def test_harness_quick_run(tmp_path):
    """``--only harness --quick``: tiny translate + compare rows, each model passes and is
    collected once dropped, and the series' resident memory is reported per model."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--only", "harness", "--out",
                           str(tmp_path), "--no-png"], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (js,) = [f for f in os.listdir(tmp_path) if f.endswith(".json")]
    with open(tmp_path / js) as f:
        result = json.load(f)
    assert result["cases"] == [] and [r["case"] for r in result["harness"]] == ["harness_resnet50",
                                                                                "harness_vit_b_16", "harness_series"]
    for row in result["harness"][:2]:
        assert row["passed"] and row["translate_s"] > 0 and row["compare_s"] > 0
        assert row["peak_compare_mb"] >= row["peak_translate_mb"] > row["rss_start_mb"] > 0
    series = result["harness"][2]
    assert all(m["passed"] and m["collected"] and m["rss_mb"] > 0 for m in series["models"])
    assert "harness_series: MB resident" in proc.stdout
