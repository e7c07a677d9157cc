"""The generated module as a whole: its header, one class per variant, and ``build()``.

:func:`generate` names one class per torch class and forward variant (:func:`.classes.variant`),
writes each with :func:`.classes.class_source`, and writes ``build()``, the expression that
constructs the whole tree: every leaf from its torch instance's attributes, every traced
module from its children and variable shapes (:class:`Builder`).
"""
from __future__ import annotations

import collections
import inspect

import numpy as np
import torch

from .graph import Part, Problem, rebind_in_place
from .classes import class_source, non_persistent, own_variables, variant
from .leaves import NOT_RANDOM, qualified_name
from .state import tied
from .text import IMPORTS, Header, constant_name, identifier, literal, param

_WIDTH = 100


def _call_text(fn: str, args: list[str], width: int, depth: int) -> str:
    one = f"{fn}({', '.join(args)})"
    if len(one) + 4 * depth <= width and "\n" not in one:
        return one
    pad = "    " * (depth + 1)
    return f"{fn}(\n" + "".join(f"{pad}{a},\n" for a in args) + "    " * depth + ")"


def _argument(v) -> str:
    """Source of a leaf's constructor argument: a tensor (a loss's class ``weight``, a buffer
    the strict load overwrites) as its values in its dtype, anything else as a constant."""
    if isinstance(v, torch.Tensor):
        return f"jnp.asarray({v.detach().cpu().tolist()!r}, {literal(v.dtype)})"
    return literal(v)


class Builder:
    """``build()``'s expression: the module tree, with each class and leaf constructed.

    A shared module (a child of several parents, or of one under two names) is constructed
    once, bound to a local named after its first path (``bindings``, each after those it
    uses), and passed to each parent by that name: the built tree holds one object, as torch's.
    """

    def __init__(self, names: dict, header: Header, problems: list, with_rngs: set,
                 shared=frozenset(), locals_=None):
        self.names, self.header, self.problems = names, header, problems
        self.with_rngs = with_rngs      # classes whose constructor takes rngs
        self.shared = shared            # parts that several parents (or names) take
        self.locals = locals_ or header.names.child()   # build()'s locals: no module name shadowed
        self.bindings: list[str] = []   # ``name = expression`` of each shared module
        self._bound: dict = {}          # shared part -> its local

    def leaf(self, part: Part) -> tuple[str, list[str]]:
        leaf = part.leaf
        cls = leaf.resolve()
        fn = (f"nn.{leaf.name}" if leaf.module == "jaxconv.nn"
              else self.header.imported(leaf.module, leaf.name))
        try:
            args, kwargs = leaf.call(part.module)
        except TypeError as e:
            self.problems.append(Problem(part.path, qualified_name(part.cls), str(e)))
            return fn, []
        dtype = next((t.dtype for t in part.module.state_dict().values()
                      if t.is_floating_point()), torch.float32)
        text = [_argument(a) for a in args] + [f"{k}={_argument(v)}" for k, v in kwargs.items()]
        params = inspect.signature(cls.__init__).parameters
        if dtype != torch.float32 and "dtype" in params:
            text.append(f"dtype={literal(dtype)}")
        if "rngs" in params and not any(w in leaf.name for w in NOT_RANDOM):
            text.append("rngs=rngs")
        return fn, text

    def expr(self, part: Part, depth: int = 0) -> str:
        """Source that constructs ``part`` and everything below it (a shared part: its local)."""
        if part not in self.shared:
            return self._construct(part, depth)
        if part not in self._bound:
            text = self._construct(part, 1)
            self._bound[part] = self.locals.create_name(part.path, part)     # blocks.0.cpe -> blocks_0_cpe
            self.bindings.append(f"{self._bound[part]} = {text}")
        return self._bound[part]

    def _construct(self, part: Part, depth: int) -> str:
        if part.kind == "leaf":
            fn, args = self.leaf(part)
            return _call_text(fn, args, _WIDTH, depth)
        children = [(n, self.expr(c, depth + 1)) for n, c in part.children if c is not None]
        if part.kind in ("sequential", "list"):
            if all(n == str(i) for i, (n, _) in enumerate(children)):
                items = [e for _, e in children]
            else:
                items = ["{" + ", ".join(f"{n!r}: {e}" for n, e in children) + "}"]
            if part.kind == "list":
                items = ["[" + ", ".join(items) + "]"]
            return _call_text(f"nn.{'Sequential' if part.kind == 'sequential' else 'ModuleList'}",
                              items, _WIDTH, depth)
        if part.kind == "dict":
            items = ["{" + ", ".join(f"{n!r}: {e}" for n, e in children) + "}"]
            return _call_text("nn.ModuleDict", items, _WIDTH, depth)
        if variant(part) not in self.names:     # its forward did not trace (a problem already)
            return "None"
        args = [f"{param(n)}={e}" for n, e in children]
        m = part.module
        params, buffers = own_variables(m)
        args += [f"{param(n)}={tuple(t.shape)!r}" for n, t in params + buffers]
        args += [f"{param(n)}={np.asarray(t.detach().cpu()).tolist()!r}" for n, t in non_persistent(m)]
        args += [f"{constant_name(k)}={np.asarray(v.detach().cpu()).tolist()!r}"
                 for k, v in part.constants.items()]
        if self.names[variant(part)] in self.with_rngs:
            args.append("rngs=rngs")
        return _call_text(self.names[variant(part)], args, _WIDTH, depth)


def _tie(name: str, first: str, parts: dict) -> str:
    """The statement that makes the variable of state_dict name ``name`` the one of ``first``
    in the built tree (from ``<root>``): ``<root>.head.weight = <root>.embed.weight``."""
    def reach(name):
        text, path = "<root>", ""
        *modules, leaf = name.split(".")
        for piece in modules:
            indexed = parts[path].kind in ("sequential", "list") and piece.isdigit()
            text = (f"{text}[{piece}]" if indexed else f"{text}.{piece}" if identifier(piece)
                    else f"getattr({text}, {piece!r})")
            path = f"{path}.{piece}" if path else piece
        return text, leaf

    owner, leaf = reach(first)
    value = f"{owner}.{leaf}" if identifier(leaf) else f"getattr({owner}, {leaf!r})"
    owner, leaf = reach(name)
    return f"{owner}.{leaf} = {value}" if identifier(leaf) else f"setattr({owner}, {leaf!r}, {value})"


def generate(tree: Part, problems: list) -> str:
    """The whole module source for ``tree``; problems found on the way are appended."""
    parts = {path: p for p in tree.parts() for path in p.paths}
    for part in tree.parts():       # before any variant key is taken: it rewires the graphs
        for graph in part.graphs.values():
            rebind_in_place(graph, part.module)
    names, classes, header, with_rngs = {}, [], Header(), set()
    for part in tree.parts():
        if part.kind != "traced" or not part.graphs:
            continue
        key = variant(part)
        if key in names:
            continue
        name = names[key] = header.names.create_name(
            part.cls.__name__ if part.cls.__name__.isidentifier() else "Module", key)
        text, takes_rngs = class_source(name, part, parts, header, problems)
        if takes_rngs:
            with_rngs.add(name)
        classes.append(text)
    leaf_names = {p.leaf.name for p in tree.parts() if p.kind == "leaf"}
    uses = collections.Counter(c for p in tree.parts() for _, c in p.children if c is not None)
    builder = Builder(names, header, problems, with_rngs, {p for p, n in uses.items() if n > 1},
                      header.names.child(leaf_names))
    build = builder.expr(tree, 1)
    head = [f'"""{tree.cls.__name__}, translated from ``{qualified_name(tree.cls)}`` by '
            'equivalence.translate.', "",
            "``build(rngs=None)`` returns the model with jaxconv's (torch's) default "
            "initialisation, in train", "mode as torch builds it; load torch's weights with "
            "``equivalence.load_state_dict(model, state_dict)``.", '"""', *IMPORTS]
    head += header.lines()
    ties = [_tie(name, first, parts) for name, first in tied(tree.module)]
    if ties:            # one variable held by two modules (weight tying), as in torch
        model = builder.locals.create_name("model", None)
        ties = [f"{model} = {build}", *(t.replace("<root>", model) for t in ties)]
        build = model
    footer = ["def build(rngs=None):",
              f'    """The translated ``{tree.cls.__name__}``; ``rngs``: an ``nnx.Rngs`` or '
              'key for the parameters (the jaxconv stream when ``None``)."""',
              *(f"    {line}" for line in builder.bindings + ties), f"    return {build}"]
    return "\n".join(head) + "\n\n\n" + "\n\n\n".join(classes + ["\n".join(footer)]) + "\n"
