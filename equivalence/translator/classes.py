"""The class of one traced module: its constructor, its ``__call__`` and its docstring.

A traced module's class takes its children as constructor arguments (``build()`` passes them)
and its own parameters as shapes; its ``__call__`` is its fx graph written by :class:`.emit.Body`
(one for each of train and eval mode where they differ). Instances share a class when their
graphs, children and variables agree (:func:`variant`).
"""
from __future__ import annotations

import textwrap

import torch

from .emit import Body
from .graph import Part, signature
from .leaves import qualified_name
from .text import Header, constant_name, indent, literal, param


def own_variables(m: torch.nn.Module):
    """A module's own ``(parameters, persistent buffers)`` as ``(name, tensor)`` lists."""
    persistent = [(n, t) for n, t in m._buffers.items()
                  if t is not None and n not in m._non_persistent_buffers_set]
    params = [(n, p) for n, p in m._parameters.items() if p is not None]
    return params, persistent


def non_persistent(m: torch.nn.Module):
    """A module's own buffers that its state_dict leaves out: their values go in the source."""
    return [(n, t) for n, t in m._buffers.items()
            if t is not None and n in m._non_persistent_buffers_set]


def variant(part: Part) -> str:
    """The key of ``part``'s class: its torch class, graphs, children and variables."""
    params, buffers = own_variables(part.module)
    return repr((qualified_name(part.cls), [signature(g) for g in part.graphs.values()],
                 list(part.graphs), [n for n, _ in part.children], sorted(part.optional),
                 [(n, str(p.dtype), p.dim()) for n, p in params + buffers],
                 {k: v.tolist() for k, v in part.constants.items()},
                 [t.key() for t in part.functions.values()], sorted(part.specialised.items()),
                 not part.path, part.frozen))


def _variable_lines(m: torch.nn.Module, constants: dict) -> tuple[list[str], list[str]]:
    """``(constructor parameters, __init__ lines)`` for a module's own parameters and buffers."""
    params, buffers = own_variables(m)
    args, lines = [], []
    def assign(n, value):       # a ParameterList's '0' is no identifier
        return f"self.{n} = {value}" if param(n) == n else f"setattr(self, {n!r}, {value})"

    for kind, items in (("nnx.Param", params), ("nnx.BatchStat", buffers)):
        for n, t in items:
            args.append(param(n))
            lines.append(assign(n, f"{kind}(jnp.zeros({param(n)}, {literal(t.dtype)}))"))
    for n, t in [*non_persistent(m), *((constant_name(k), v) for k, v in constants.items())]:
        args.append(param(n))
        lines.append(assign(n, f"nnx.Variable(jnp.asarray({param(n)}, {literal(t.dtype)}))"))
    return args, lines


def _specialisation(name: str, part: Part) -> tuple[list[str], list[str]]:
    """``(docstring lines, __call__ lines)`` for the arguments ``part`` was traced with as
    constants (:mod:`.callsite`): the docstring names them and, at the root (the user's call),
    a call with other values raises instead of computing the branch that was not translated.
    A child is called by the translation itself, as its parent's graph calls it."""
    items = {k: v for k, v in part.specialised.items() if not (isinstance(v, float) and v != v)}
    if not items:
        return [], []
    shown = [(f"{k}={literal(v)}" if v else f"no {k}") if k.startswith("**") else f"{k}={literal(v)}"
             for k, v in items.items()]
    how = ("as the example inputs call it; other values raise: translate again with example "
           "inputs that pass them." if not part.path else "as its caller calls it.")
    doc = ["", *textwrap.wrap(f"Specialised to {', '.join(shown)}, {how}", 96,
                              initial_indent="    ", subsequent_indent="    ")]
    if part.path:
        return doc, []
    lines = []
    for (k, v), what in zip(items.items(), shown):
        test = (f"{k} is not None" if v is None else f"{k} != {literal(v)}") if not k.startswith("**") \
            else f"{k[2:]} != {literal(v)}" if v else k[2:]
        message = f"{name} was translated for {what} only; translate again for other values"
        lines += [f"if {test}:", f"    raise ValueError({message!r})"]
    return doc, lines


def class_source(name: str, part: Part, parts: dict, header: Header,
                 problems: list) -> tuple[str, bool]:
    """The source of the class that ``part`` (and every instance of its variant) runs, and
    whether its constructor takes ``rngs`` (it draws dropout masks of its own)."""
    children = [n for n, _ in part.children]
    var_args, var_lines = _variable_lines(part.module, part.constants)
    body = Body(part, parts, header, problems)
    bodies = {mode: body.run(graph) for mode, graph in part.graphs.items()}
    params = next(iter(bodies.values()))[0]
    init_params = [f"{param(c)}=None" if c in part.optional else param(c) for c in children]
    init_params = [c for c in init_params if "=" not in c] + [c for c in init_params if "=" in c]
    if var_args:
        init_params += ["*"] + var_args
    if body.needs_rng:
        init_params += ([] if var_args else ["*"]) + ["rngs=None"]
    init = [f"self.{c} = {c}" if param(c) == c else f"setattr(self, {c!r}, {param(c)})"
            for c in children] + var_lines
    if len(part.graphs) > 1:
        init.append("self.training = True")
    if body.needs_rng:
        init.append("self.rngs = nn.init.dropout_rngs(rngs)")
    if len(part.graphs) == 1:
        call = bodies[None][1]
    else:
        call = (["if self.training:"] + indent(bodies[True][1])
                + ["else:"] + indent(bodies[False][1]))
    doc = [f'    """Translated from ``{qualified_name(part.cls)}``.']
    calls = getattr(part, "exported_shapes", None)      # captured by .export: shapes per call
    if calls is not None and len(calls) == 1:
        doc += ["", "    Captured by torch.export for inputs of shapes "
                f"{', '.join(map(str, calls[0]))}:", "    shapes in it are fixed to those."]
    elif calls is not None:
        doc += ["", *textwrap.wrap(
            "Captured by torch.export for calls with inputs of shapes "
            f"{'; '.join(', '.join(map(str, c)) for c in calls)}: the dimensions in which they "
            "differ are read from the inputs, the others are fixed.", 96,
            initial_indent="    ", subsequent_indent="    ")]
    special_doc, checks = _specialisation(name, part)
    doc += special_doc
    if part.frozen:
        doc += ["", "    Python values its forward computes from its parameters and buffers are those of the",
                "    translated model:", *(f"    - {f}" for f in part.frozen)]
    doc = [doc[0] + '"""'] if len(doc) == 1 else doc + ['    """']
    call = checks + call
    lines = [f"class {name}(nn.Module):", *doc, "",
             f"    def __init__({', '.join(['self'] + init_params)}):",
             *indent(init or ["pass"], 2), "",
             f"    def __call__({', '.join(['self'] + params)}):",
             *indent(call, 2)]
    return "\n".join(lines), body.needs_rng
