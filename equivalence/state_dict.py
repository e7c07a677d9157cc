"""torch state_dict names <-> the variables of an ``nnx.Module``: export, strict loading.

Names follow torch with no renaming rules: a module's ``nnx.Param`` attributes are its
parameters, its ``nnx.BatchStat`` attributes its buffers, and submodules (found with
:func:`jaxconv.nn.named_children`, so ``Sequential`` / ``ModuleList`` children are ``'0'``,
``'1'``, ...) are joined with dots: ``layer1.0.conv1.weight``, ``bn1.running_var``.
:func:`save` writes :func:`state_dict` to a file with :func:`equivalence.io.write`.
"""
from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxconv.nn import named_children
from jaxconv.nn.module import attribute_items
from jaxconv.parallel.fsdp import place

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


def host_copy(value) -> np.ndarray:
    """A full numpy copy of ``value`` in every process, whatever its sharding.

    An array every process addresses whole (one device, or sharded over local devices) is
    copied as it is; one replicated over processes from a local replica; one sharded over
    processes by :func:`jax.experimental.multihost_utils.process_allgather`, a collective that
    every process must reach in the same order (the decision rests on the sharding, which
    every process sees the same).
    """
    if not isinstance(value, jax.Array) or value.is_fully_addressable:
        return np.array(value)
    if value.is_fully_replicated:
        return np.array(value.addressable_data(0))
    from jax.experimental import multihost_utils

    return np.array(multihost_utils.process_allgather(value, tiled=True))


def _export(name: str, var: nnx.Variable) -> np.ndarray:
    value = host_copy(var.get_value())
    if name.rsplit(".", 1)[-1] == NUM_BATCHES_TRACKED and isinstance(var, nnx.BatchStat):
        value = value.astype(np.int64)
    return value


def state_dict(module) -> OrderedDict:
    """The parameters and buffers of ``module`` as torch's ``module.state_dict()`` gives them.

    An ordered ``dict[str, np.ndarray]`` (copies) with torch's names and order; the values keep
    the module's dtypes except ``num_batches_tracked``, which is int64 as in torch. Feeding it
    to a torch twin's ``load_state_dict`` (after ``torch.from_numpy``) or to
    :func:`load_state_dict` is bit-exact. Every process gets the full arrays, whether the
    model is on one device, replicated, or sharded over devices or processes
    (:func:`host_copy`); with several processes every one of them must call it.

    **Arguments:**

    - ``module``: any ``nnx.Module`` (a ``jaxconv.nn.Module`` or a plain one).
    """
    return OrderedDict((name, _export(name, var)) for name, var in named_variables(module))


def save(module, path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module``'s state_dict to ``path`` in a file torch's ``load_state_dict`` accepts.

    ``.safetensors`` is written with ``safetensors.numpy`` (no torch needed; load it in torch
    with ``safetensors.torch.load_file``). ``.pt`` / ``.pth`` / ``.bin`` are written with
    ``torch.save`` as a dict of tensors (needs torch). Names, order, shapes and values are those
    of :func:`state_dict`, so reading the file back is bit-exact (:func:`equivalence.io.write`).

    **Arguments:**

    - ``module``: the ``nnx.Module`` to save.
    - ``path``: the file to write; its suffix chooses the format.
    - ``metadata``: extra string metadata for the ``.safetensors`` header.
    """
    io.write(state_dict(module), path, metadata)


def _source_weights(source):
    """(flat mapping of raw values, torch _metadata or None, the path or None) from a path,
    mapping or module."""
    if isinstance(source, (str, os.PathLike)):
        weights, path = io.read(source), os.fspath(source)
    else:
        weights, path = io.unwrap(source), None
    return weights, getattr(weights, "_metadata", None), path


def _strip_wrapper_prefix(weights: Mapping, expected: Mapping) -> Mapping:
    def all_start(keys, prefix):
        return all(isinstance(k, str) and k.startswith(prefix) for k in keys)

    for prefix in _DATA_PARALLEL_PREFIXES:
        if weights and all_start(weights, prefix) and not all_start(expected, prefix):
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


class _BadValue(ValueError):
    """A checkpoint value that cannot be copied into its variable; the message is one error line."""


def _cast(name: str, value, target) -> np.ndarray:
    """``value`` as ``target`` dtype, cast as torch's ``param.copy_(value)`` casts.

    torch copies any number dtype into any other: ints and bools into floats, floats into ints
    truncated toward zero, complex into real dropping the imaginary part with a warning. Where
    the result would be garbage (a NaN or infinity into an integer) or would not fit the
    module's integer dtype (an int32 counter without x64, where torch's is int64), raise.
    """
    array = to_numpy(value)
    source = array.dtype
    if not (source == np.bool_ or jnp.issubdtype(source, jnp.number)):
        raise _BadValue(f"value for {name} has dtype {source}, not a number or bool type.")
    if jnp.issubdtype(source, jnp.complexfloating) and not jnp.issubdtype(target, jnp.complexfloating):
        warnings.warn(f"{name}: casting complex values to real discards the imaginary part "
                      "(as torch's load_state_dict does)", UserWarning, stacklevel=4)
        array = np.real(array)
    if jnp.issubdtype(target, jnp.integer) and array.size:
        if jnp.issubdtype(array.dtype, jnp.floating):
            wide = array.astype(np.float64)
            if not np.all(np.isfinite(wide)):
                raise _BadValue(f"value for {name} holds NaN or infinity, which the integer dtype "
                                f"{jnp.dtype(target)} of the module cannot hold.")
            low, high = float(np.trunc(wide.min())), float(np.trunc(wide.max()))
        else:
            low, high = int(array.min()), int(array.max())
        info = jnp.iinfo(target)
        if low < info.min or high > info.max:
            raise _BadValue(f"value for {name} ranges over [{low}, {high}], outside the range "
                            f"[{info.min}, {info.max}] of the module's dtype {jnp.dtype(target)}.")
    return array.astype(target, copy=False)


def _kept_sharding(old):
    """The sharding a loaded value takes: that of a concrete array or ``ShapeDtypeStruct``.

    A tracer's (loading under ``nnx.jit``) is abstract: jax gives it only through
    ``jax.typeof`` and raises ``AttributeError`` for ``.sharding``; ``device_put`` cannot use it.
    """
    if isinstance(old, jax.ShapeDtypeStruct):
        return old.sharding
    if isinstance(old, jax.Array):
        try:
            return old.sharding
        except AttributeError:  # a tracer
            return None
    return None


def _new_value(name: str, value, old, dtype):
    target = old.dtype
    if dtype is not None and jnp.issubdtype(old.dtype, jnp.floating):
        target = jnp.dtype(dtype)
    host = _cast(name, value, target)
    sharding = _kept_sharding(old)
    new = jnp.asarray(host, dtype=target)
    # a sharded model stays so; over processes each one places its own devices' shards
    return new if sharding is None else place(new, sharding)


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

    A bad file raises :class:`equivalence.io.CheckpointError` naming it; problems with the
    weights raise :class:`StateDictError`, whose first line then names the file.

    Dtypes: like torch's in-place copy, values are cast to the dtype of the module's existing
    variable (a float64 checkpoint loads into a float32 module as float32; integer and bool
    values into float parameters; a float into ``num_batches_tracked`` truncated toward zero;
    complex into real with a warning, dropping the imaginary part). Values that are not numbers,
    NaN or infinity into an integer variable, and integers outside the module's integer dtype
    are errors. With ``dtype=``, every floating variable becomes that dtype instead (the
    module's dtype changes); integer buffers (``num_batches_tracked``) always take the module's
    integer dtype.

    The module may be abstract (built with ``nnx.eval_shape``, its variables holding
    ``jax.ShapeDtypeStruct``): loading fills it with arrays, skipping random initialisation.
    A variable's sharding, where it has one, is kept (not for variables traced under
    ``nnx.jit``, whose sharding is abstract): a replicated or sharded model stays so, also
    across processes, where every process passes the full weights and keeps the shards of its
    own devices.

    **Arguments:**

    - ``module``: the ``nnx.Module`` to load into (modified in place).
    - ``source``: the weights, as above.
    - ``strict``: report missing and unexpected keys as errors (they are returned otherwise).
    - ``dtype``: optional dtype for every floating variable.

    **Returns:** ``IncompatibleKeys(missing_keys, unexpected_keys)``.
    """
    expected = OrderedDict(named_variables(module))
    weights, metadata, path = _source_weights(source)
    weights = _strip_wrapper_prefix(weights, expected)

    missing = [k for k in expected if k not in weights and not _optional_counter(k, metadata)]
    unexpected = [k for k in weights if k not in expected]
    # Check and convert everything first: a failing value must not leave a half-loaded module.
    mismatched, errors, new_values, cause = {}, [], [], None
    for name, var in expected.items():
        if name not in weights:
            continue
        value = weights[name]
        if not is_array(value):
            errors.append(f"value for {name} is not an array (got {type(value).__name__}).")
            continue
        if _shape(value) != tuple(var.shape):
            mismatched[name] = (_shape(value), tuple(var.shape))
            errors.append(f"size mismatch for {name}: copying a param with shape {_shape(value)} "
                          f"from checkpoint, the shape in current model is {tuple(var.shape)}.")
            continue
        try:
            new_values.append((var, _new_value(name, value, var.get_value(), dtype)))
        except _BadValue as err:
            errors.append(str(err))
        except Exception as err:  # torch's wording for a failing copy_
            errors.append(f'While copying the parameter named "{name}", whose dimensions in the model '
                          f"are {tuple(var.shape)} and whose dimensions in the checkpoint are "
                          f"{_shape(value)}, an exception occurred : {err.args}.")
            cause = cause or err
    if strict:
        if unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in unexpected)))
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: {}. ".format(
                ", ".join(f'"{k}"' for k in missing)))
    if errors:
        where = type(module).__name__ + (f" from {path!r}" if path else "")
        raise StateDictError(
            "Error(s) in loading state_dict for {}:\n\t{}".format(where, "\n\t".join(errors)),
            missing if strict else (), unexpected if strict else (), mismatched) from cause
    for var, value in new_values:
        var.set_value(value)
    return IncompatibleKeys(missing, unexpected)
