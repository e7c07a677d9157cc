"""Model zoo helpers for the translator tests: torchvision/timm/transformers models built
offline with random weights, and BatchNorm statistics randomised so that they matter."""
import numpy as np
import torch

from equivalence._torch import import_torchvision


def torchvision_models():
    """``torchvision.models`` (imported through the one helper that makes it load here)."""
    import_torchvision()
    import torchvision.models

    return torchvision.models


def timm():
    """``timm`` (it imports torchvision, so through the same helper)."""
    import_torchvision()
    import timm as timm_

    return timm_


def randomize_batchnorm(model, seed=0):
    """Random running statistics and affine parameters in every BatchNorm: an untrained
    BatchNorm is nearly the identity and hides bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                if m.running_mean is not None:
                    m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                    m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                if m.weight is not None:
                    m.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(n, generator=g) * 0.1)
    return model


def relative_error(ours, theirs) -> float:
    """max |ours - theirs| / max |theirs|."""
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-30))


def torch_state(model) -> dict:
    """Every parameter and buffer of ``model`` (clones, shared ones under each name) and every
    submodule's mode: what ``equivalence.translate`` must leave as it found it."""
    out = {f"{k} (tensor)": v.detach().clone() for k, v in
           [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]}
    out.update({f"{k} (training)": m.training for k, m in model.named_modules()})
    return out


def assert_unchanged(before: dict, model) -> None:
    """``model``'s parameters, buffers and modes are bit-identical to ``before``
    (:func:`torch_state`)."""
    after = torch_state(model)
    assert list(after) == list(before)
    for k, v in before.items():
        a = after[k]
        same = (v.dtype == a.dtype and v.shape == a.shape and bool(((v == a) | (v != v) & (a != a)).all())
                if hasattr(v, "dtype") else v == a)
        assert same, f"translate changed the torch model's {k}"


def translate_unchanged(model, *inputs):
    """``equivalence.translate(model, *inputs)``, asserting that ``model`` is left bit-identical."""
    from equivalence import translate

    before = torch_state(model)
    out = translate(model, *inputs)
    assert_unchanged(before, model)
    return out
