"""torch state_dict names <-> the variables of an ``nnx.Module``: export, strict loading.

Names follow torch with no renaming rules: a module's ``nnx.Param`` attributes are its
parameters, its ``nnx.BatchStat`` attributes its buffers, and submodules (found with
:func:`jaxconv.nn.named_children`, so ``Sequential`` / ``ModuleList`` children are ``'0'``,
``'1'``, ...) are joined with dots: ``layer1.0.conv1.weight``, ``bn1.running_var``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_children
from jaxconv.nn.module import attribute_items

from . import io
from ._torch import is_array, to_numpy

#: The buffer torch counts train-mode BatchNorm steps in; exported as int64, as torch does.
NUM_BATCHES_TRACKED = "num_batches_tracked"
_DATA_PARALLEL_PREFIXES = ("module.", "_orig_mod.")


class IncompatibleKeys(NamedTuple):
    """What a non-strict :func:`load_state_dict` did not match (torch's ``_IncompatibleKeys``)."""

    missing_keys: list[str]
    unexpected_keys: list[str]

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return f"IncompatibleKeys(missing_keys={self.missing_keys}, unexpected_keys={self.unexpected_keys})"

    __str__ = __repr__


class StateDictError(RuntimeError, ValueError):
    """Loading found missing, unexpected or shape-mismatched keys; the module was left unchanged.

    A ``RuntimeError`` as in torch (and a ``ValueError``). The message lists every problem, in
    torch's format; the attributes ``missing_keys``, ``unexpected_keys`` and ``mismatched``
    (``name -> (checkpoint shape, module shape)``) hold them.
    """

    def __init__(self, message, missing_keys=(), unexpected_keys=(), mismatched=None):
        super().__init__(message)
        self.missing_keys = list(missing_keys)
        self.unexpected_keys = list(unexpected_keys)
        self.mismatched = dict(mismatched or {})


def _own_variables(module) -> Iterator[tuple[str, nnx.Variable]]:
    return ((name, v) for name, v in attribute_items(module) if isinstance(v, nnx.Variable))


def named_variables(module, prefix: str = "") -> Iterator[tuple[str, nnx.Variable]]:
    """Every parameter and buffer of ``module`` under its torch name, in torch's order.

    For each module: its ``nnx.Param`` attributes, then its ``nnx.BatchStat`` attributes (each
    in attribute order), then each child's, recursively. Other variables (RNG state, caches,
    intermediates) are not part of a state_dict and are skipped.

    **Arguments:**

    - ``module``: any ``nnx.Module``.
    - ``prefix``: prepended, with a dot, to every name.
    """
    own = list(_own_variables(module))
    dot = f"{prefix}." if prefix else ""
    for kind in (nnx.Param, nnx.BatchStat):
        for name, var in own:
            if isinstance(var, kind):
                yield dot + name, var
    for name, child in named_children(module):
        yield from named_variables(child, dot + name)


def _export(name: str, var: nnx.Variable) -> np.ndarray:
    value = np.array(var.get_value())
    if name.rsplit(".", 1)[-1] == NUM_BATCHES_TRACKED and isinstance(var, nnx.BatchStat):
        value = value.astype(np.int64)
    return value


def state_dict(module) -> OrderedDict:
    """The parameters and buffers of ``module`` as torch's ``module.state_dict()`` gives them.

    An ordered ``dict[str, np.ndarray]`` (copies) with torch's names and order; the values keep
    the module's dtypes except ``num_batches_tracked``, which is int64 as in torch. Feeding it
    to a torch twin's ``load_state_dict`` (after ``torch.from_numpy``) or to
    :func:`load_state_dict` is bit-exact.

    **Arguments:**

    - ``module``: any ``nnx.Module`` (a ``jaxconv.nn.Module`` or a plain one).
    """
    return OrderedDict((name, _export(name, var)) for name, var in named_variables(module))


def _source_weights(source):
    """(flat mapping of raw values, torch _metadata or None) from a path, mapping or module."""
    if isinstance(source, (str, os.PathLike)):
        weights = io.read(source)
    else:
        weights = io.unwrap(source)
    return weights, getattr(weights, "_metadata", None)


def _strip_wrapper_prefix(weights: Mapping, expected: Mapping) -> Mapping:
    for prefix in _DATA_PARALLEL_PREFIXES:
        if (weights and all(k.startswith(prefix) for k in weights)
                and not all(k.startswith(prefix) for k in expected)):
            return OrderedDict((k[len(prefix):], v) for k, v in weights.items())
    return weights


def _optional_counter(name: str, metadata) -> bool:
    """torch lets a checkpoint without module versions (< 2) omit num_batches_tracked."""
    module_name, _, leaf = name.rpartition(".")
    if leaf != NUM_BATCHES_TRACKED:
        return False
    version = None if metadata is None else metadata.get(module_name, {}).get("version")
    return version is None or version < 2


def _shape(value) -> tuple[int, ...]:
    return tuple(int(d) for d in value.shape)


def load_state_dict(module, source, strict: bool = True, dtype=None) -> IncompatibleKeys:
    """Copy torch-named weights from ``source`` into ``module``'s variables, as torch does.

    Every problem is found before anything is written, and all are reported in one
    :class:`StateDictError` (torch's ``Error(s) in loading state_dict for X:`` message); on
    error the module is left unchanged. Shape mismatches are errors also when
    ``strict=False``, as in torch.

    Sources: a mapping of names to torch tensors / numpy / jax arrays (such as torch's
    ``model.state_dict()``), a torch module, a training checkpoint nesting the weights under a
    key like ``'state_dict'``, ``'model_state_dict'`` or ``'model'`` (see
    ``equivalence.io.NESTED_KEYS``), or a path: ``.safetensors`` (no torch needed) or
    ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` (``torch.load(weights_only=True)``; needs torch).
    When *every* checkpoint key starts with ``'module.'`` (``DataParallel``) or
    ``'_orig_mod.'`` (``torch.compile``) and the module's names do not, the prefix is removed.
    As torch does for checkpoints without module versions (safetensors files, hand-made
    dicts), a missing ``num_batches_tracked`` is not an error; the module keeps its count.

    Dtypes: like torch's in-place copy, values are cast to the dtype of the module's existing
    variable (a float64 checkpoint loads into a float32 module as float32). With ``dtype=``,
    every floating variable becomes that dtype instead (the module's dtype changes); integer
    buffers (``num_batches_tracked``) always take the module's integer dtype.

    The module may be abstract (built with ``nnx.eval_shape``, its variables holding
    ``jax.ShapeDtypeStruct``): loading fills it with arrays, skipping random initialisation.
    A variable's sharding, where it has one, is kept.

    **Arguments:**

    - ``module``: the ``nnx.Module`` to load into (modified in place).
    - ``source``: the weights, as above.
    - ``strict``: report missing and unexpected keys as errors (they are returned otherwise).
    - ``dtype``: optional dtype for every floating variable.

    **Returns:** ``IncompatibleKeys(missing_keys, unexpected_keys)``.
    """
    expected = OrderedDict(named_variables(module))
    weights, metadata = _source_weights(source)
    weights = _strip_wrapper_prefix(weights, expected)

    missing = [k for k in expected if k not in weights and not _optional_counter(k, metadata)]
    unexpected = [k for k in weights if k not in expected]
    mismatched, not_arrays = {}, []
    for name, var in expected.items():
        if name not in weights:
            continue
        value = weights[name]
        if not is_array(value):
            not_arrays.append(f"value for {name} is not an array (got {type(value).__name__}).")
        elif _shape(value) != tuple(var.shape):
            mismatched[name] = (_shape(value), tuple(var.shape))

    errors = [f"size mismatch for {name}: copying a param with shape {src} from checkpoint, "
              f"the shape in current model is {dst}." for name, (src, dst) in mismatched.items()]
    errors += not_arrays
    if strict:
        if unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in unexpected)))
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in missing)))
    if errors:
        raise StateDictError(
            "Error(s) in loading state_dict for {}:\n\t{}".format(type(module).__name__, "\n\t".join(errors)),
            missing if strict else (), unexpected if strict else (), mismatched)

    # Convert everything first: a failing conversion must not leave a half-loaded module.
    new_values = []
    for name, var in expected.items():
        if name not in weights:
            continue
        old = var.get_value()
        target = old.dtype
        if dtype is not None and jnp.issubdtype(old.dtype, jnp.floating):
            target = jnp.dtype(dtype)
        value = jnp.asarray(to_numpy(weights[name]).astype(target, copy=False), dtype=target)
        sharding = (getattr(old, "sharding", None)
                    if isinstance(old, (jax.Array, jax.ShapeDtypeStruct)) and not isinstance(old, jax.core.Tracer)
                    else None)
        if sharding is not None:  # keep a sharded model sharded
            value = jax.device_put(value, sharding)
        new_values.append((var, value))
    for var, value in new_values:
        var.set_value(value)
    return IncompatibleKeys(missing, unexpected)
