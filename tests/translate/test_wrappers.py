"""What runs around a forward's code: library wrappers and the hooks they install (issue 20).

torch.fx traces a forward's own code; the capture traces library wrappers
``(self, *args, **kwargs)`` through. Hugging Face's ``capture_outputs`` installs forward hooks
on the children and adds what they collect to the output, and ``filter_output_hidden_states``
forces a keyword into the arguments passed on. Their translation lost both: a field torch
sets read ``None`` (Segformer's decode head got no hidden states), or a child ran with its
default (silently wrong values). Each model here is the smallest torch module showing the
class; each passes translate, ``nnx.jit`` and the standalone source (``check``), and
``compare`` in the slow test.
"""
import dataclasses
import functools

import jax.numpy as jnp
import pytest
import torch
from torch.utils import _pytree as pytree

from equivalence import translate_source
from equivalence.translator import TranslationError
from tests.translate.test_unseen_capture import _x, check


@dataclasses.dataclass
class Output(dict):
    """Hugging Face's ``ModelOutput`` in a few lines: a dataclass, and a dict of its fields
    that are set; a torch pytree, as transformers registers it."""

    logits: torch.Tensor = None
    last: torch.Tensor = None
    features: tuple = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if getattr(self, f.name) is not None:
                dict.__setitem__(self, f.name, getattr(self, f.name))

    def __setitem__(self, key, value):
        dict.__setitem__(self, key, value)
        object.__setattr__(self, key, value)


pytree.register_pytree_node(Output, lambda o: (list(o.values()), list(o.keys())),
                            lambda values, keys: Output(**dict(zip(keys, values))),
                            serialized_type_name=f"{__name__}.Output")


def collect(forward):
    """transformers' ``capture_outputs``: forward hooks on the blocks collect what they
    return, added to the result as ``features`` when the call asks for them (with
    ``ordered``, in the order of their means)."""
    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        seen = []
        hooks = ([b.register_forward_hook(lambda m, a, out: seen.append(out)) for b in self.blocks]
                 if kwargs.get("features") else [])
        try:
            out = forward(self, *args, **kwargs)
        finally:
            for h in hooks:
                h.remove()
        if seen:
            out["features"] = tuple(sorted(seen, key=lambda f: float(f.mean())) if self.ordered else seen)
        return out
    return wrapper


def keep_features(forward):
    """transformers' ``filter_output_hidden_states``: asks for the features (a keyword it
    passes on) and leaves them out of the result."""
    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        kwargs["features"] = True
        out = forward(self, *args, **kwargs)
        return Output(logits=out.logits)
    return wrapper


class Encoder(torch.nn.Module):
    def __init__(self, ordered=False):
        super().__init__()
        self.blocks = torch.nn.ModuleList([torch.nn.Conv2d(3, 4, 3, padding=1),
                                           torch.nn.Conv2d(4, 4, 3, padding=1)])
        self.ordered = ordered

    @collect
    def forward(self, x, **kwargs):
        for block in self.blocks:
            x = torch.tanh(block(x))
        return Output(last=x)


class Segmenter(torch.nn.Module):
    """Segformer's shape: the root's wrapper asks for the features, the encoder's hooks
    collect them, the head reads them and the root's wrapper drops them from the result."""

    def __init__(self, ordered=False):
        super().__init__()
        self.encoder = Encoder(ordered)
        self.head = torch.nn.Conv2d(4, 2, 1)

    @keep_features
    def forward(self, x, **kwargs):
        out = self.encoder(x, **kwargs)
        return Output(logits=self.head(out.features[0] - out.features[1]), features=out.features)


def scaled(forward):
    """A wrapper that rewrites the keywords its forward passes on."""
    @functools.wraps(forward)
    def wrapper(self, *args, **kwargs):
        kwargs["scale"] = 2.0
        return forward(self, *args, **kwargs)
    return wrapper


class Scale(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)

    def forward(self, x, scale=1.0):
        return self.conv(x) * scale


class Scaled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = Scale()

    @scaled
    def forward(self, x, **kwargs):
        return torch.relu(self.inner(x, **kwargs))


def test_outputs_that_hooks_collect_are_translated():
    """The encoder's graph returned ``Output(last=...)`` without the hooks' features (and
    the head read ``None``): it is captured by torch.export, which runs the hooks."""
    torch.manual_seed(0)
    m = Segmenter().eval()
    jm, source = check(m, _x(2, 3, 6, 5))
    encoder = source[source.index("class Encoder("):source.index("def build(")]
    assert "Captured by torch.export" in encoder and "features=(" in encoder
    assert list(jm(jnp.asarray(_x(2, 3, 6, 5).numpy()))) == list(m(_x(2, 3, 6, 5))) == ["logits"]


def test_keywords_a_wrapper_passes_on_are_translated():
    """The root's graph called ``inner(x)``, and the translation computed ``scale=1.0``
    where torch computes ``scale=2.0``: a silently wrong value."""
    torch.manual_seed(0)
    m = Scaled().eval()
    _, source = check(m, _x(2, 3, 6, 5))
    assert "self.inner(x, scale=2.0)" in source


def test_a_wrapper_export_cannot_run_is_refused_naming_the_module():
    """Where torch.export cannot capture what the wrapper does either (it keeps the
    features in the order of their means: control flow on data), the translation is refused with
    the module and what differs, never a field read as ``None``."""
    torch.manual_seed(0)
    m = Segmenter(ordered=True).eval()
    with pytest.raises(TranslationError, match=r"encoder \(.*Encoder\): its traced forward returns "
                       r"Output\(last=<value>\) where torch's call returned Output\(last=<tensor>, "
                       r"features=\(<tensor>, <tensor>\)\) \(a wrapper.*torch.export failed too"):
        translate_source(m, _x(2, 3, 6, 5))


@pytest.mark.slow
@pytest.mark.parametrize("make", [Segmenter, Scaled], ids=["hooks", "keywords"])
def test_each_wrapper_class_is_proven(make):
    """``equivalence.compare`` passes on each model (structure, every layer)."""
    torch.manual_seed(0)
    check(make().eval(), _x(2, 3, 6, 5), proof=True)
