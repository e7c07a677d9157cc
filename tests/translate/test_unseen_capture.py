"""Capture classes met on models nobody here had seen (issue 20), each as the smallest torch
module that showed it: optional arguments left to ``None``, Python values computed from
tensors, lists passed along a ``Sequential``, shapes of one call site applied to another,
and the torch model left bit-identical by translation. Each passes translate (against torch),
``nnx.jit``, the generated source run on its own, and ``equivalence.compare``."""
import dataclasses
import functools

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.fx
from flax import nnx

import equivalence
from equivalence import translate, translate_source
from equivalence.translator import build_from_source
from tests._zoo import assert_unchanged, randomize_batchnorm, relative_error, torch_state
from transformers.utils import ModelOutput


def _x(*shape, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _leaves(y):
    if isinstance(y, dict):
        return [v for k in y for v in _leaves(y[k])]
    if isinstance(y, (list, tuple)):
        return [v for item in y for v in _leaves(item)]
    return [y]


def check(m, *inputs, tol=1e-5, proof=False):
    """Translate ``m`` for ``inputs`` (``translate`` is ``build_from_source`` of
    ``translate_source``: one capture for both); its values under ``nnx.jit`` and from the
    generated source run on its own against torch; with ``proof``, ``compare`` passes
    (:func:`test_each_class_is_proven`, slow: compiling every layer's check takes seconds);
    ``m`` left bit-identical. Returns ``(translated, source)``."""
    before = torch_state(m)
    source = translate_source(m, *inputs)
    jm = build_from_source(source, m)
    assert_unchanged(before, m)
    assert "torch" not in "\n".join(line for line in source.splitlines() if "import" in line)
    namespace = {}
    exec(compile(source, "<standalone>", "exec"), namespace)
    standalone = namespace["build"]()
    equivalence.load_state_dict(standalone, m.state_dict(), strict=True)
    if not m.training:
        standalone.eval()
    with torch.no_grad():
        ref = _leaves(m(*inputs))
    args = torch.utils._pytree.tree_map(
        lambda a: jnp.asarray(a.numpy()) if isinstance(a, torch.Tensor) else a, list(inputs))
    run = nnx.jit(lambda m, *a: m(*a))
    for how, out in (("nnx.jit", run(jm, *args)), ("standalone source", run(standalone, *args))):
        out = _leaves(out)
        assert len(out) == len(ref), how
        for ours, theirs in zip(out, ref):
            assert relative_error(ours, theirs) <= tol, how
    if proof:
        report = equivalence.compare(m, jm, *inputs)
        assert report.passed, str(report)
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
    before = torch_state(m)
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


# --- optional arguments left to None ---------------------------------------------------------
class MaskedAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qk = torch.nn.Linear(8, 8)
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x, attn_mask=None, scale: float = 1.0):
        a = self.qk(x) @ x.transpose(-1, -2) * scale
        if attn_mask is not None:
            a = a + attn_mask
        return self.proj(a.softmax(-1) @ x)


class Encoder(torch.nn.Module):
    """Hugging Face's root pattern: every argument but the first defaults to ``None``."""

    def __init__(self):
        super().__init__()
        self.attn = MaskedAttention()
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x, attn_mask=None, head_mask=None):
        y = self.attn(x, attn_mask) if attn_mask is not None else self.attn(x)
        if head_mask is not None:
            y = y * head_mask
        return self.head(y)


def test_arguments_the_example_does_not_pass_take_their_defaults():
    """The root was traced with every argument a proxy, so ``attn_mask is not None`` held and
    the translation added ``None``."""
    torch.manual_seed(0)
    m = Encoder().eval()
    x = _x(2, 5, 8)
    jm, source = check(m, x)
    assert "def __call__(self, x, attn_mask=None, head_mask=None):" in source
    assert "Specialised to attn_mask=None, head_mask=None, as the example inputs" in source
    with pytest.raises(ValueError, match="translated for head_mask=None only"):
        jm(jnp.asarray(x.numpy()), head_mask=jnp.ones(8))
    assert "Specialised to attn_mask=None, scale=1.0, as its caller calls it." in source


def test_arguments_the_example_passes_stay_arguments():
    torch.manual_seed(0)
    m = Encoder().eval()
    x, mask = _x(2, 5, 8), _x(2, 5, 5, seed=1)
    _, source = check(m, x, mask)
    assert "Specialised to head_mask=None, as the example inputs" in source
    assert "attn_mask is not None" not in source
    assert translate_source(m).count("Specialised to attn_mask=None") == 2   # no example: defaults


class ShapeChecked(torch.nn.Module):
    """Hugging Face's pattern, through the torch.export fallback: a shape check fx cannot
    trace, a ``None`` default and ``**kwargs``."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, pixel_values, bool_masked_pos=None, **kwargs):
        if pixel_values.shape[1] != 3:
            raise ValueError("expected 3 channels")
        y = self.conv(pixel_values)
        if bool_masked_pos is not None:
            y = y * bool_masked_pos
        return y.flatten(1)


def test_exported_forward_is_specialised_and_says_so():
    torch.manual_seed(0)
    m = ShapeChecked().eval()
    x = _x(2, 3, 6, 6)
    jm, source = check(m, x)
    assert "Captured by torch.export" in source and "Specialised to bool_masked_pos=None" in source
    with pytest.raises(ValueError, match=r"translated for no \*\*kwargs only"):
        jm(jnp.asarray(x.numpy()), output_hidden_states=True)



def _checkpointing(forward):
    """Hugging Face's ``GradientCheckpointingLayer`` wrapper: ``(self, *args, **kwargs)``."""
    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        return forward(self, *args, **kwargs)
    return wrapper


@dataclasses.dataclass
class EncoderOutput(ModelOutput):
    last_hidden_state: torch.Tensor = None
    hidden_states: tuple = None


class HFLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = MaskedAttention()
        self.norm = torch.nn.LayerNorm(8)

    @_checkpointing
    def forward(self, hidden_states, height: int, attention_mask=None, **kwargs):
        return self.norm(self.attention(hidden_states, attention_mask) * height + hidden_states)


class HFEncoder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.ModuleList([HFLayer(), HFLayer()])

    def forward(self, x, output_hidden_states=None, return_dict=None):
        hidden = ()
        for layer in self.layer:
            x = layer(x, x.shape[1])
            hidden += (x,)
        return EncoderOutput(last_hidden_state=x, hidden_states=hidden if output_hidden_states else None)


class HFModel(torch.nn.Module):
    """Hugging Face's shape: ``None`` defaults and ``**kwargs`` at the root, ModelOutputs read by
    position and attribute, layers wrapped for gradient checkpointing."""

    def __init__(self):
        super().__init__()
        self.encoder = HFEncoder()
        self.pooler = torch.nn.Linear(8, 4)

    def forward(self, pixel_values=None, output_hidden_states=None, **kwargs):
        out = self.encoder(pixel_values, output_hidden_states=output_hidden_states)
        return EncoderOutput(last_hidden_state=self.pooler(out[0]), hidden_states=out.hidden_states)


def test_hugging_face_root_is_traced_and_keeps_its_output_class():
    """The wrapper's ``*args`` made fx iterate a proxy, and a traced ``ModelOutput`` became a
    plain dict that ``out[0]`` could not read."""
    torch.manual_seed(0)
    m = HFModel().eval()
    x = _x(2, 5, 8)
    jm, source = check(m, x)
    assert "Captured by torch.export" not in source
    assert type(jm(jnp.asarray(x.numpy()))).__name__ == "EncoderOutput"
    with pytest.raises(ValueError, match=r"translated for no \*\*kwargs only"):
        jm(jnp.asarray(x.numpy()), output_attentions=True)


# --- lists passed along a Sequential ---------------------------------------------------------
class Stage(torch.nn.Module):
    """HRNet's pattern: a block of a ``Sequential`` that takes what the block before returns,
    one tensor or a list of them, and returns a list."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x):
        if isinstance(x, (list, tuple)):
            x, features = x[0], list(x[1:])
        else:
            features = []
        y = self.conv(x).relu()
        return (y, *features, x)


class Fuse(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Conv2d(4, 2, 1)

    def forward(self, xs):
        first, *rest = xs
        return self.proj(first + torch.stack(rest).mean(0))


def test_a_sequential_passes_what_each_block_returns():
    """Blocks reached through a Sequential were traced as if given one tensor, so the second
    block took the tensor branch and its conv got the tuple."""
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), Stage(), Stage(),
                            torch.nn.Sequential(Stage()), Fuse()).eval()
    _, source = check(m, _x(2, 3, 6, 6))
    assert source.count("class Stage") == 3         # one variant per input structure
    pair = [_x(2, 4, 5, 5), _x(2, 4, 5, 5, seed=1)]      # compare takes no list inputs
    check(torch.nn.Sequential(Stage(), Fuse()).eval(), pair)


class TupleAttention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(8, 8)

    def forward(self, x):
        return self.proj(x), None          # Hugging Face's (output, attention weights)


class TupleLayer(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attention = TupleAttention()
        self.out = torch.nn.Linear(8, 8)

    def forward(self, x):
        attention_output, *weights = self.attention(x)
        return (self.out(attention_output) + x, *weights)


class TupleModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = TupleLayer()

    def forward(self, x):
        y, *_ = self.layer(x)
        return y


def test_children_return_the_structure_they_returned_on_the_example():
    """fx made a child's tuple one proxy, which ``a, *rest = child(x)`` cannot unpack."""
    torch.manual_seed(0)
    _, source = check(TupleModel().eval(), _x(2, 5, 8))
    assert "Captured by torch.export" not in source


# --- Python values computed from tensors ------------------------------------------------------
class Split(torch.nn.Module):
    """Python numbers read from buffers in forward (taken as they are) and from the input
    (refused, naming the line)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("sizes", torch.tensor([2, 6]))
        self.register_buffer("heads", torch.tensor(2))
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        a, b = torch.split(self.fc(x), self.sizes.tolist(), -1)
        b = b.reshape(b.shape[0], b.shape[1], int(self.heads), -1).mean(-1)
        return a.sum(-1, keepdim=True) * b[..., :1] + b.amax().item() * 0


class SplitFromBuffers(Split):
    def forward(self, x):
        a, b = torch.split(self.fc(x), self.sizes.tolist(), -1)
        b = b.reshape(b.shape[0], b.shape[1], int(self.heads), -1).mean(-1)
        return a.sum(-1, keepdim=True) * b[..., :1]


def test_python_values_computed_from_buffers_are_taken_as_they_are():
    """``.tolist()`` was a node with no translation, ``int(proxy)`` a ``TypeError``."""
    torch.manual_seed(0)
    with pytest.raises(equivalence.TranslationError, match=r"(?s)Tensor.item\(\) of a value computed "
                       r"from the inputs.*at .*b.amax\(\).item\(\)"):
        translate(Split(), _x(2, 5, 8))
    _, source = check(SplitFromBuffers().eval(), _x(2, 5, 8))
    assert "Captured by torch.export" not in source
    assert "- Tensor.tolist() = [2, 6] at " in source and "- int() = 2 at " in source


class Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.tensor(0))

    def forward(self, x):
        self.count.add_(1)
        return x[:, : int(self.count)]


def test_a_value_the_forward_changes_is_refused_with_its_line():
    """Also: the runs of the model the capture makes (to record calls, to export) leave the
    buffer the forward writes into as it was."""
    m = Counter()
    before = torch_state(m)
    with pytest.raises(equivalence.TranslationError, match=r"(?s)<root>.*int\(self.count\)"):
        translate(m, _x(2, 5))
    assert_unchanged(before, m)


class NoGradScale(torch.nn.Module):
    """A ``torch.no_grad()`` region in a forward that only torch.export captures: export wraps
    it in a higher-order op whose body fx's graph held as a module."""

    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)

    def forward(self, x):
        if x.shape[-1] % 2:
            x = x[..., :-1]
        with torch.no_grad():
            scale = x.abs().mean(-1, keepdim=True) + 1.0
        return self.fc(x) / scale


def test_no_grad_region_of_an_exported_forward():
    """The region's body became a constant, and the capture ended in ``AttributeError:
    'GraphModule' object has no attribute 'tolist'``."""
    torch.manual_seed(0)
    m = NoGradScale().eval()
    x = _x(2, 5, 8)
    jm, source = check(m, x)
    assert "Captured by torch.export" in source and "stop_gradient" in source
    xt = x.clone().requires_grad_(True)
    m(xt).square().sum().backward()
    grad = nnx.grad(lambda x: (jm(x) ** 2).sum())(jnp.asarray(x.numpy()))
    assert relative_error(grad, xt.grad) <= 1e-5


# --- one module called at several shapes ------------------------------------------------------
class Heads(torch.nn.Module):
    """torch.export captures it (fx cannot trace its branch on the shape), with every shape of
    the call it was exported on written into its reshapes."""

    def __init__(self, fixed=False):
        super().__init__()
        self.proj = torch.nn.Conv2d(8, 8, 1)
        self.fixed = fixed

    def forward(self, x):
        B, C, H, W = x.shape
        if H % 2 or (self.fixed and H != 8):
            x = torch.nn.functional.pad(x, (0, 0, 0, 1))
            H = H + 1
        q = self.proj(x).reshape(B, 4, C // 4, H * W)
        return (q.softmax(-1) * q).sum(2).reshape(B, 4, H, W)


class Pyramid(torch.nn.Module):
    """One head applied at two resolutions, as a feature pyramid's shared head is."""

    def __init__(self, fixed=False):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.head = Heads(fixed)

    def forward(self, x):
        x = self.stem(x)
        return self.head(x), self.head(torch.nn.functional.avg_pool2d(x, 2))


def test_a_module_called_at_two_shapes_is_exported_for_both():
    """It was exported for its first call only: ``reshape: shape [2, 4, 2, 64] is invalid for
    input of size 256`` on the second."""
    torch.manual_seed(0)
    _, source = check(Pyramid().eval(), _x(2, 3, 8, 8))
    assert "inputs of shapes (2, 8, 8, 8); (2, 8, 4, 4): the" in source
    with pytest.raises(equivalence.TranslationError, match=r"(?s)head .*shapes \[\(2, 8, 8, 8\)\] and "
                                                           r"\[\(2, 8, 4, 4\)\].*for the first only"):
        translate(Pyramid(fixed=True).eval(), _x(2, 3, 8, 8))


#: One model per class, with its example inputs, for the proof.
PROVEN = {
    "train-mode BatchNorm around a traced-into function": (lambda: StatBlock().train(), (2, 3, 5, 5)),
    "two calls of one function": (TwoOffsets, (2, 3)),
    "None defaults at the root and below": (lambda: Encoder().eval(), (2, 5, 8)),
    "an exported forward with None defaults and **kwargs": (lambda: ShapeChecked().eval(), (2, 3, 6, 6)),
    "a Hugging Face-shaped root": (lambda: HFModel().eval(), (2, 5, 8)),
    "a Sequential passing tuples": (lambda: torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 1), Stage(), Stage(), torch.nn.Sequential(Stage()), Fuse()).eval(), (2, 3, 6, 6)),
    "a child returning a tuple": (lambda: TupleModel().eval(), (2, 5, 8)),
    "Python values from buffers": (lambda: SplitFromBuffers().eval(), (2, 5, 8)),
    "a no-grad region of an exported forward": (lambda: NoGradScale().eval(), (2, 5, 8)),
    "a module called at two shapes": (lambda: Pyramid().eval(), (2, 3, 8, 8)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PROVEN))
def test_each_class_is_proven(name):
    """``equivalence.compare`` passes on each class's model (structure, every layer)."""
    torch.manual_seed(0)
    make, shape = PROVEN[name]
    m = randomize_batchnorm(make())
    check(m, _x(*shape), proof=True)
