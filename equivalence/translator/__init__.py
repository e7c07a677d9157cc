"""Translate a torch model into jaxconv: readable Flax source, and a live module built from it.

- :func:`translate_source` captures the model (:mod:`.capture`), maps every op through one
  lookup (:mod:`.dispatch`, :mod:`.leaves`) and writes a standalone module (:mod:`.emit`,
  :mod:`.classes`, :mod:`.source`) that imports jax, flax and jaxconv, never torch, and
  defines ``build(rngs=None)``.
- :func:`translate` runs that very source, builds the model and loads torch's weights into it,
  so the source and the live module can never disagree.
- :func:`register` teaches it a module class or function of your own.

The phases, each importing only those above it (``tests/translate/test_structure.py``)::

    graph text state        Part, Problem, signature, writes (the in-place predicate), dead
                            code; literals, names (one Namespace), the header; save/restore
                            and call recording of the torch model
    leaves outputs concrete unreached
                            leaf classes; ModelOutput; Python values read from buffers; stubs
    ops, aten/, dispatch    the torch-function/method table, the ATen table (built on it), and
                            the one lookup: ATen, output classes, then torch
    callsite program export functions capture
                            call-site specialisation; torch.export programs and their graphs;
                            Python functions traced into; the part tree (fx, export fallback)
    emit classes source     one graph as statements (fx.Interpreter's shape); one class per
                            variant; the module with build()
"""
from __future__ import annotations

import inspect

from . import leaves, ops
from .capture import capture
from .source import generate


class TranslationError(ValueError):
    """Some modules or ops have no translation: ``problems`` lists each with its source line."""

    def __init__(self, problems):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"cannot translate: {len(self.problems)} unsupported module(s) or op(s)\n{lines}")


def positional(torch_module, args: tuple, kwargs: dict) -> tuple:
    """Example inputs given by keyword (``labels=y``) as positional ones: ``forward``'s
    parameters between the last positional input and the last keyword one take their defaults,
    as a call that leaves them out gives them (``model(x, labels=y)`` is ``model(x, None, y)``
    where ``labels`` comes third).

    Raises ``TypeError`` for a keyword that names no positional parameter of ``forward`` (the
    capture binds positions), for one given by position too, and for a parameter without
    default left out before a given one.
    """
    if not kwargs:
        return tuple(args)
    cls = type(torch_module).__name__
    order = [p for p in inspect.signature(torch_module.forward).parameters.values()
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    names = [p.name for p in order]
    bad = [k for k in kwargs if k not in names]
    if bad:
        raise TypeError(f"translate: example keyword inputs must name positional parameters of "
                        f"{cls}.forward ({', '.join(names)}), got {', '.join(bad)}")
    twice = [k for k in kwargs if names.index(k) < len(args)]
    if twice:
        raise TypeError(f"translate: example inputs give {', '.join(twice)} both by position and by keyword")
    out = list(args)
    for p in order[len(args):max(names.index(k) for k in kwargs) + 1]:
        if p.name not in kwargs and p.default is p.empty:
            raise TypeError(f"translate: example inputs leave out {p.name!r}, which {cls}.forward "
                            f"needs before {', '.join(kwargs)}")
        out.append(kwargs[p.name] if p.name in kwargs else p.default)
    return tuple(out)


def translate_source(torch_module, *example_inputs, **example_kwargs) -> str:
    """The source of a standalone Python module that rebuilds ``torch_module`` in jaxconv.

    It defines one class per torch module class (and per forward variant), whose ``__call__``
    follows torch's ``forward`` node by node, and ``build(rngs=None)``, which returns the root
    module with torch's default initialisation, ready for ``equivalence.load_state_dict``.

    **Arguments:**

    - ``torch_module``: the ``torch.nn.Module`` to translate; left unchanged.
    - ``*example_inputs``, ``**example_kwargs``: inputs of one forward (used where a module
      must be captured by running it); keywords (``labels=y``) as :func:`positional` binds them.

    Raises :class:`TranslationError`, listing every op and module without a translation with
    its source line, before anything is built.
    """
    tree, problems = capture(torch_module, positional(torch_module, example_inputs, example_kwargs))
    source = generate(tree, problems)
    if problems:
        raise TranslationError(problems)
    return source


#: sha256 of each generated source executed -> its module (see :func:`_load_source`).
_LOADED: dict = {}


def _load_source(source: str, name: str):
    """Execute generated ``source`` as a module; its lines show in tracebacks (linecache).

    Its classes live as long as the process whatever holds them (flax registers every
    ``nnx.Module`` subclass with JAX's pytree registry, which never forgets a type), so a
    source executed before gives the module made then: translating the same model again
    makes no new classes, registry entries or linecache lines."""
    import hashlib
    import linecache
    import types

    key = hashlib.sha256(source.encode()).hexdigest()
    if key in _LOADED:
        return _LOADED[key]
    filename = f"<jaxconv translation of {name} {key[:12]}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"jaxconv_translated_{name}")
    module.__file__ = filename
    exec(compile(source, filename, "exec"), module.__dict__)
    _LOADED[key] = module
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


def _built_with_weights(build, rngs, weights):
    """``build(rngs)`` holding ``weights``, without the random initial parameters they replace.

    The model is built abstractly (``nnx.eval_shape``) and loaded (strict). What the weights do
    not cover (dropout's RNG streams, buffers torch does not save) then comes from a compiled
    ``build`` that returns only those variables, so XLA drops the rest of the initialisation.
    Building concretely and overwriting held two copies of the weights at once, in memory
    fragmented enough that a 630M-parameter model peaked at 3.6x its size.
    """
    import jax
    from flax import nnx

    from ..state_dict import load_state_dict

    spare = nnx.clone(rngs) if isinstance(rngs, nnx.Rngs) else rngs
    model = nnx.eval_shape(build, rngs)
    load_state_dict(model, weights, strict=True)
    pending = {path for path, v in nnx.to_flat_state(nnx.state(model))
               if isinstance(v.get_value(), jax.ShapeDtypeStruct)}
    if pending:
        def rest(r):
            flat = nnx.to_flat_state(nnx.state(build(r)))
            return nnx.State.from_flat_path([(p, v) for p, v in flat if p in pending])
        nnx.update(model, nnx.jit(rest)(spare))
    return model


def build_from_source(source: str, torch_module=None, *, rngs=None):
    """Run translated ``source`` and return its ``build(rngs)``; with ``torch_module``, with
    torch's weights (strict load, no random initialisation first) and each submodule's
    train/eval mode."""
    name = type(torch_module).__name__ if torch_module is not None else "model"
    build = _load_source(source, name).build
    if torch_module is None:
        return build(rngs)
    model = _built_with_weights(build, rngs, torch_module.state_dict())
    _copy_modes(torch_module, model)
    return model


def translate(torch_module, *example_inputs, rngs=None, **example_kwargs):
    """``torch_module`` as a jaxconv module tree with torch's attribute names and weights.

    Built by running :func:`translate_source`'s source, so the two never disagree.
    ``equivalence.state_dict(result)`` equals ``torch_module.state_dict()`` (names, order,
    shapes, values); calling it returns torch's output structure with jax arrays; it works
    under ``nnx.jit`` / ``nnx.grad`` and follows ``train()`` / ``eval()``, starting in the
    torch modules' modes.

    **Arguments:** as :func:`translate_source` (example inputs by position or keyword:
    ``translate(model, x, labels=y)``); ``rngs`` seeds the dropout streams (and the
    discarded initial parameters).
    """
    return build_from_source(translate_source(torch_module, *example_inputs, **example_kwargs),
                             torch_module, rngs=rngs)


def register(torch_object, target: str, arguments=None) -> None:
    """Translate a torch module class or function of your own into ``target``.

    **Arguments:**

    - ``torch_object``: a ``torch.nn.Module`` subclass (each instance becomes a ``target``
      module, built with ``arguments(torch_module) -> (args, kwargs)``, by default the
      instance attributes named after the constructor's parameters), or a function that
      traced forwards call (each call becomes a call of ``target`` with the same arguments).
    - ``target``: the jaxconv class or function, or its ``'package.module:Name'``; the
      generated source imports it from there.

    The module's variables must carry the torch module's state_dict names.
    """
    if not isinstance(target, str):
        target = f"{target.__module__}:{target.__qualname__}"
    if inspect.isclass(torch_object):
        leaves.register(torch_object, target, arguments)
    else:
        if arguments is not None:
            raise TypeError("register: arguments= applies to module classes, not functions")
        ops.register_function(torch_object, target)


def unregister(torch_object) -> None:
    """Undo :func:`register`."""
    if inspect.isclass(torch_object):
        leaves.unregister(torch_object)
    else:
        ops.unregister_function(torch_object)
