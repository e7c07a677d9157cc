"""Structured outputs in the generated source: Hugging Face's ``ModelOutput``.

A ``ModelOutput`` is an ``OrderedDict`` subclass and a dataclass: its keys are the fields that
are not ``None``, in field order, read also as attributes and by position. The generated source
defines one ``ModelOutput`` base with that behaviour, registered as a jax pytree (so ``nnx.jit``
returns it), and one subclass per torch class, of the same name and fields.
"""
from __future__ import annotations

import dataclasses

_OUTPUT_BASE = '''
class ModelOutput(dict):
    """A Hugging Face ``ModelOutput``: a dict of the fields that are not None, in field order,
    read also as attributes (``None`` for a field not set) or by position; a jax pytree."""

    _fields = ()

    def __init__(self, **fields):
        super().__init__((k, fields[k]) for k in self._fields if fields.get(k) is not None)

    def __getattr__(self, name):
        if name in type(self)._fields:
            return self.get(name)
        raise AttributeError(f"{type(self).__name__} has no field {name!r}")

    def __getitem__(self, key):
        return self.to_tuple()[key] if isinstance(key, (int, slice)) else super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())

    def tree_flatten(self):
        return tuple(self.values()), tuple(self.keys())

    @classmethod
    def tree_unflatten(cls, keys, values):
        out = dict.__new__(cls)
        dict.update(out, zip(keys, values))
        return out'''


def is_output_class(target) -> bool:
    """Whether ``target`` is a structured output class rebuilt by :func:`emitter`."""
    return (isinstance(target, type) and issubclass(target, dict) and dataclasses.is_dataclass(target))


def emitter(cls):
    """The emitter of a call of ``cls``: defines the pytree class in the generated source."""
    def emit(e, *args, **kwargs):
        base = e.header.define("ModelOutput", _OUTPUT_BASE,
                               lambda n: _OUTPUT_BASE.replace("class ModelOutput(", f"class {n}(", 1))
        fields = tuple(f.name for f in dataclasses.fields(cls))
        name = e.header.define(cls.__name__, cls, lambda n: (
            f"\n\n@jax.tree_util.register_pytree_node_class\nclass {n}({base}):\n"
            f'    """``{cls.__module__}.{cls.__qualname__}``."""\n\n'
            f"    _fields = {fields!r}"))
        return e.call(name, args, kwargs)
    return emit
