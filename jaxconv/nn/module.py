"""The base of jaxconv's modules: an ``nnx.Module`` with torch's conveniences."""
from __future__ import annotations

import functools
import inspect
from collections.abc import Iterator

import jax
from flax import nnx

from ..layout import channels_last, plan_applies


_ORDER = "_torch_order"


def attribute_items(module) -> list:
    """A module's ``(name, value)`` attributes in registration order (torch's order).

    nnx's split/merge (and so ``nnx.jit``, ``nnx.eval_shape``, ...) rebuilds a module with its
    attributes sorted by name; ``jaxconv.nn.Module`` records the order of assignment in a
    static tuple so that torch's order (children, parameters, Sequential '0'..'10') survives.
    An ``nnx.List`` / ``nnx.Dict`` gives its items named by index / key, like torch's
    ``ModuleList`` / ``ModuleDict``.
    """
    if isinstance(module, nnx.List):
        return [(str(i), v) for i, v in enumerate(module)]
    if isinstance(module, nnx.Dict):
        return [(str(k), v) for k, v in module.items()]
    items = vars(module)
    order = items.get(_ORDER)
    if order is None:
        return list(items.items())
    rank = {name: i for i, name in enumerate(order)}
    return sorted(items.items(), key=lambda kv: rank.get(kv[0], len(rank)))


def named_children(module) -> Iterator[tuple[str, nnx.Module]]:
    """Direct submodules of any ``nnx.Module`` in registration order, named as torch names them."""
    return ((name, value) for name, value in attribute_items(module) if isinstance(value, nnx.Module))


def named_modules(module, prefix: str = "", remove_duplicate: bool = True,
                  _seen=None) -> Iterator[tuple[str, nnx.Module]]:
    """``module`` itself (named ``prefix``) and every submodule, depth first, dotted names.

    As in torch, a module reachable by several paths (one module object assigned to several
    parents, or twice to one) is listed once, under its first name; with
    ``remove_duplicate=False`` it is listed under every path, as ``state_dict`` names it.
    """
    _seen = set() if _seen is None else _seen
    if id(module) in _seen:
        return
    if remove_duplicate:
        _seen.add(id(module))
    yield prefix, module
    for name, child in named_children(module):
        yield from named_modules(child, f"{prefix}.{name}" if prefix else name, remove_duplicate, _seen)


class _ConstructorSignature:
    """``inspect.signature(cls)``: the constructor's parameters, as for a plain class.

    nnx's metaclass defines ``__call__(cls, *args, **kwargs)``, which ``inspect`` would report
    for every module class (and ``help()`` would print). On an instance this gives ``None``,
    so that ``inspect.signature(module)`` stays that of ``__call__``.
    """

    def __get__(self, obj, cls):
        if obj is not None:
            return None
        sig = inspect.signature(cls.__init__)
        return sig.replace(parameters=list(sig.parameters.values())[1:])


def _indent(text: str) -> str:
    return text.replace("\n", "\n  ")


class RandomInTraining:
    """Mixin: torch's ``training`` flag for modules that draw masks, stored as nnx's
    ``deterministic`` (``training = not deterministic``, settable as in torch)."""

    @property
    def training(self) -> bool:
        return not self.deterministic

    @training.setter
    def training(self, mode: bool):
        self.deterministic = not mode


def _call_planned(call, module, args, kwargs):
    """``call(module, *args, **kwargs)`` under :func:`jaxconv.channels_last`: the module split
    into its state, merged inside, its updated state (BatchNorm statistics, RNG counts) written
    back. Arguments that are not arrays (flags, ``None``) are passed as they are."""
    graphdef, state = nnx.split(module)
    leaves, tree = jax.tree_util.tree_flatten((args, kwargs))
    where = [i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, jax.core.Tracer))]

    def pure(state, arrays):
        given = list(leaves)
        for i, x in zip(where, arrays):
            given[i] = x
        a, k = tree.unflatten(given)
        copy = nnx.merge(graphdef, state)
        return call(copy, *a, **k), nnx.state(copy)
    out, new = channels_last(pure)(state, [leaves[i] for i in where])
    before = dict(nnx.to_flat_state(state))
    changed = [(path, var) for path, var in nnx.to_flat_state(new)
               if path not in before or var.get_value() is not before[path].get_value()]
    if changed:  # only what the call wrote: a call that writes nothing may run in any trace
        nnx.update(module, nnx.from_flat_state(changed))
    return out


def _planned(call):
    """``__call__`` that runs the channels-last plan when it is the outermost module call being
    traced on CPU (see :func:`jaxconv.layout.plan_applies`), and as written otherwise."""
    @functools.wraps(call)
    def __call__(self, *args, **kwargs):
        if not plan_applies((args, kwargs)):
            return call(self, *args, **kwargs)
        return _call_planned(call, self, args, kwargs)
    __call__._jaxconv_planned = True
    return __call__


class Module(nnx.Module):
    """``flax.nnx.Module`` that prints like torch and switches mode like torch.

    Subclass it (or plain ``nnx.Module``) to port a torch model: attribute names become
    the state_dict names. ``print(model)`` gives torch's nested repr, ``model.train()`` /
    ``model.eval()`` switch BatchNorm and Dropout and return the model.
    """

    __signature__ = _ConstructorSignature()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        call = cls.__dict__.get("__call__")
        if call is not None and not getattr(call, "_jaxconv_planned", False):
            cls.__call__ = _planned(call)

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        if name != _ORDER and not name.startswith("_pytree__"):
            order = vars(self).get(_ORDER, ())
            if name not in order:
                super().__setattr__(_ORDER, (*order, name))

    def __delattr__(self, name):
        super().__delattr__(name)
        order = vars(self).get(_ORDER, ())
        if name in order:
            super().__setattr__(_ORDER, tuple(n for n in order if n != name))

    def extra_repr(self) -> str:
        """The text inside the parentheses of this module's one-line repr."""
        return ""

    def __repr__(self) -> str:
        extra = self.extra_repr()
        lines = ([extra] if extra else []) + [
            f"({name}): {_indent(repr(child))}" for name, child in named_children(self)
        ]
        if len(lines) == 1 and extra:
            return f"{type(self).__name__}({extra})"
        body = "".join(f"\n  {line}" for line in lines)
        return f"{type(self).__name__}({body}{chr(10) if lines else ''})"

    __str__ = __repr__

    def train(self, mode: bool = True, **attributes):
        """Set training mode (``mode=False`` is eval) on this module and all submodules.

        Sets ``deterministic`` (Dropout), ``use_running_average`` (BatchNorm) and
        ``training`` (a module's own flag, as translated models read it) wherever they exist.
        """
        self.set_attributes(deterministic=not mode, use_running_average=not mode,
                            training=mode, **attributes, raise_if_not_found=False)
        return self

    def eval(self, **attributes):
        """Set eval mode: BatchNorm uses its running statistics and Dropout is off."""
        return self.train(False, **attributes)

    def named_children(self):
        return named_children(self)

    def named_modules(self, prefix: str = "", remove_duplicate: bool = True):
        return named_modules(self, prefix, remove_duplicate)

    def children(self):
        return (m for _, m in named_children(self))

    def modules(self):
        return (m for _, m in named_modules(self))
