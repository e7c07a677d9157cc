"""Hugging Face image classifiers translated for calls with ``labels=``: the loss in their output
equals torch's for every ``problem_type`` (``self.loss_function``: cross entropy, BCE with logits,
MSE; for ``num_labels == 1`` the squeezed regression), and so do its gradients, so the port trains
as its torch original does. Float64, random weights from small configs; ``slow``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from equivalence._torch import import_torchvision
from equivalence.state_dict import named_variables
from tests._zoo import translate_unchanged

import_torchvision()        # transformers' image utilities import torchvision
transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.slow

PROBLEMS = {  # problem_type: (num_labels, labels of a batch of 2)
    "single_label_classification": (3, lambda g: torch.randint(0, 3, (2,), generator=g)),
    "multi_label_classification": (3, lambda g: torch.rand(2, 3, generator=g, dtype=torch.float64)),
    "regression": (3, lambda g: torch.randn(2, 3, generator=g, dtype=torch.float64)),
    "regression-1": (1, lambda g: torch.randn(2, generator=g, dtype=torch.float64)),
}


def _model(arch, num_labels, problem_type):
    if arch == "vit":
        cfg = transformers.ViTConfig(image_size=16, patch_size=8, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32)
        cls = transformers.ViTForImageClassification
    elif arch == "resnet":
        cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
        cls = transformers.ResNetForImageClassification
    else:
        cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
        cls = transformers.ConvNextForImageClassification
    cfg.num_labels, cfg.problem_type = num_labels, problem_type
    torch.manual_seed(0)
    return cls(cfg).double().eval()


def _param_grads(jm, x, labels) -> dict:
    graphdef, params, rest = nnx.split(jm, nnx.Param, ...)
    grads = jax.grad(lambda p: nnx.merge(graphdef, p, rest)(x, labels=labels).loss)(params)
    merged = nnx.merge(graphdef, grads, rest)
    return {n: np.asarray(v[...]) for n, v in named_variables(merged) if isinstance(v, nnx.Param)}


@pytest.mark.parametrize("problem", PROBLEMS)
@pytest.mark.parametrize("arch", ["vit", "resnet", "convnext"])
def test_classifier_with_labels_returns_torchs_loss_and_gradients(arch, problem):
    num_labels, draw = PROBLEMS[problem]
    g = torch.Generator().manual_seed(1)
    model = _model(arch, num_labels, problem.removesuffix("-1"))
    x = torch.randn(2, 3, 16 if arch == "vit" else 32, 16 if arch == "vit" else 32, generator=g, dtype=torch.float64)
    labels = draw(g)
    jm = translate_unchanged(model, x, labels) if arch == "vit" else equivalence.translate(model, x, labels=labels)
    xj, yj = jnp.asarray(x.numpy()), jnp.asarray(labels.numpy())
    out, ref = jm(xj, labels=yj), model(x, labels=labels)
    assert abs(float(out.loss) - ref.loss.item()) <= 1e-12 * max(1.0, abs(ref.loss.item()))
    np.testing.assert_allclose(np.asarray(out.logits), ref.logits.detach().numpy(), rtol=1e-10, atol=1e-12)
    ref.loss.backward()
    ours = _param_grads(jm, xj, yj)
    theirs = {n: p.grad.numpy() for n, p in model.named_parameters() if p.grad is not None}
    assert set(ours) == {n for n, _ in model.named_parameters()} and set(theirs) <= set(ours)
    for n, want in theirs.items():
        np.testing.assert_allclose(ours[n], want, rtol=1e-8, atol=1e-12 * max(1.0, np.abs(want).max()), err_msg=n)


@pytest.mark.parametrize("problem", ["single_label_classification", "regression"])
def test_compare_proves_a_classifier_with_labels(problem):
    """``compare`` checks the loss as a layer, and the gradients of the loss and the logits."""
    num_labels, draw = PROBLEMS[problem]
    model = _model("resnet", num_labels, problem).float()
    g = torch.Generator().manual_seed(2)
    x, labels = torch.randn(2, 3, 32, 32, generator=g), draw(g)
    labels = labels.float() if labels.is_floating_point() else labels
    jm = equivalence.translate(model, x, labels)
    report = equivalence.compare(model, jm, x, labels, grads=True)
    assert report.passed, report.to_text()
    grads = {r.name for r in report.rows if r.section == "grad"}
    assert "classifier.1.weight" in grads and ("input[1]" in grads) is (problem == "regression")
