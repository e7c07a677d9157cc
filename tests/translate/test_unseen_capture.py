"""Capture classes met on models nobody here had seen (issue 20), each as the smallest torch
module that showed it: optional arguments left to ``None``, Python values computed from
tensors, lists passed along a ``Sequential``, shapes of one call site applied to another,
and the torch model left bit-identical by translation. Each passes translate (against torch),
``nnx.jit``, the generated source run on its own, and ``equivalence.compare``."""
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.fx
from flax import nnx

import equivalence
from equivalence import translate, translate_source
from tests._zoo import randomize_batchnorm, relative_error


def _x(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def state(m) -> dict:
    """Every parameter and buffer of ``m`` (clones), and every module's mode."""
    out = {f"{k} (tensor)": v.detach().clone() for k, v in
           [*m.named_parameters(remove_duplicate=False), *m.named_buffers(remove_duplicate=False)]}
    out.update({f"{k} (training)": sub.training for k, sub in m.named_modules()})
    return out


def assert_unchanged(before: dict, m) -> None:
    """``m``'s parameters, buffers and modes are bit-identical to ``before`` (:func:`state`)."""
    after = state(m)
    assert list(after) == list(before)
    for k, v in before.items():
        same = torch.equal(v, after[k]) if isinstance(v, torch.Tensor) else v == after[k]
        assert same, f"translate changed the torch model's {k}"


def _leaves(y):
    if isinstance(y, dict):
        return [v for k in y for v in _leaves(y[k])]
    if isinstance(y, (list, tuple)):
        return [v for item in y for v in _leaves(item)]
    return [y]


def check(m, *inputs, tol=1e-5, proof=True):
    """Translate ``m`` for ``inputs``; its values, under ``nnx.jit`` and from the generated
    source run on its own, against torch; ``compare`` passes; ``m`` unchanged. Returns
    ``(translated, source)``."""
    before = state(m)
    jm = translate(m, *inputs)
    assert_unchanged(before, m)
    source = translate_source(m, *inputs)
    assert "torch" not in "\n".join(line for line in source.splitlines() if "import" in line)
    namespace = {}
    exec(compile(source, "<standalone>", "exec"), namespace)
    standalone = namespace["build"]()
    equivalence.load_state_dict(standalone, m.state_dict(), strict=True)
    if not m.training:
        standalone.eval()
    with torch.no_grad():
        ref = _leaves(m(*inputs))
    args = [jnp.asarray(a.numpy()) if isinstance(a, torch.Tensor) else a for a in inputs]
    for how, out in (("translate", jm(*args)), ("nnx.jit", nnx.jit(lambda m, *a: m(*a))(jm, *args)),
                     ("standalone source", standalone(*args))):
        out = _leaves(out)
        assert len(out) == len(ref), how
        for ours, theirs in zip(out, ref):
            assert relative_error(ours, theirs) <= tol, how
    if proof:
        report = equivalence.compare(m, jm, *inputs)
        assert report.passed, str(report)
    assert_unchanged(before, m)
    return jm, source


# --- translate leaves the torch model bit-identical ---------------------------------------
def _stat(x, k: int):
    """A Python function a forward calls whole (traced into, on recorded arguments)."""
    return x * k + x.mean()


torch.fx.wrap("_stat")


class StatBlock(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm2d(3)
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return _stat(self.conv(self.bn(x)), 2)


def test_translating_a_train_mode_model_leaves_its_statistics_alone():
    """The function-call recorder ran the children in train mode and restored only the traced
    module's own buffers: the BatchNorm statistics moved."""
    torch.manual_seed(0)
    m = randomize_batchnorm(StatBlock()).train()
    before = state(m)
    jm = translate(m, _x(2, 3, 5, 5))
    assert_unchanged(before, m)
    jm.eval(), m.eval()
    x = _x(2, 3, 5, 5, seed=1)
    with torch.no_grad():
        assert relative_error(jm(jnp.asarray(x.numpy())), m(x)) <= 1e-5


# --- tensor constants of two calls of one function -------------------------------------------
def _offset(x, k: float):
    """A tensor made from a constant argument: a constant of the traced body."""
    return x + torch.tensor([k, 2 * k, -k])


torch.fx.wrap("_offset")


class TwoOffsets(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(3, 3)

    def forward(self, x):
        return _offset(self.fc(x), 0.5) * _offset(x, -3.0)


def test_two_calls_of_one_function_keep_their_own_constants():
    """Both bodies' constants were named ``offset_tensor_constant0`` and the second overwrote
    the first."""
    torch.manual_seed(0)
    _, source = check(TwoOffsets(), _x(2, 3))
    assert "def offset(" in source and "def offset_1(" in source
