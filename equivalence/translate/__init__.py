"""Translate a torch model into jaxconv: readable Flax source and a live module from it."""
from __future__ import annotations

from .capture import capture
from .emit import generate


class TranslationError(ValueError):
    """Some modules or ops have no translation: ``problems`` lists each with its source line."""

    def __init__(self, problems):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"cannot translate: {len(self.problems)} unsupported module(s) or op(s)\n{lines}")


def translate_source(torch_module, *example_inputs) -> str:
    """The source of a standalone Python module that rebuilds ``torch_module`` in jaxconv."""
    tree, problems = capture(torch_module, example_inputs)
    source = generate(tree, problems)
    if problems:
        raise TranslationError(problems)
    return source


def _load_source(source: str, name: str):
    """Execute generated ``source`` as a module; its lines show in tracebacks (linecache)."""
    import linecache
    import types

    filename = f"<jaxconv translation of {name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"jaxconv_translated_{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    return module


def _copy_modes(torch_module, model) -> None:
    """Give every translated module the train/eval mode of its torch counterpart."""
    from jaxconv.nn import named_modules

    torch_modes = {name: m.training for name, m in torch_module.named_modules()}
    for name, m in named_modules(model):
        if name in torch_modes and hasattr(m, "training"):
            try:
                m.training = torch_modes[name]
            except AttributeError:      # a module whose mode follows from its children's
                pass


def translate(torch_module, *example_inputs, rngs=None):
    """``torch_module`` as a jaxconv module tree holding torch's weights, built from
    :func:`translate_source`'s source (so the two never disagree)."""
    from ..state_dict import load_state_dict

    source = translate_source(torch_module, *example_inputs)
    module = _load_source(source, type(torch_module).__name__)
    model = module.build(rngs)
    load_state_dict(model, torch_module.state_dict(), strict=True)
    _copy_modes(torch_module, model)
    model.__translation_source__ = source
    return model
