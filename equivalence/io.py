"""Checkpoint files in and out: ``.safetensors`` (no torch needed) and ``.pt`` / ``.pth`` / ``.bin``.

Reading gives a flat, ordered ``dict[str, np.ndarray]`` named as torch names its state_dict
entries; :func:`unwrap` finds the weights inside a training checkpoint such as
``{'epoch': 3, 'model_state_dict': {...}, 'optimizer_state_dict': {...}}``.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping

import numpy as np

from ._torch import is_array, require_torch, to_numpy

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

#: Keys under which training checkpoints commonly nest a model's weights, tried in this order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
               "weights", "params")


def _require_safetensors():
    try:
        import safetensors.numpy as st
    except ImportError as err:
        raise ImportError("reading or writing .safetensors files needs the `safetensors` package; "
                          "install it with `pip install 'jaxconv[equivalence]'`") from err
    return st


def _weights_like(mapping: Mapping) -> bool:
    return len(mapping) > 0 and all(isinstance(k, str) and is_array(v) for k, v in mapping.items())


def unwrap(checkpoint):
    """The flat weights mapping inside ``checkpoint`` (itself when it already is one).

    A mapping whose values are all arrays is a state_dict. Otherwise the first of
    :data:`NESTED_KEYS` whose value is a mapping (or has a ``state_dict()`` method, such as a
    torch module) is searched in turn, so ``{'epoch': 3, 'model_state_dict': {...}}`` and
    Lightning's ``{'state_dict': {...}}`` both work; failing that, a mapping holding some arrays
    is taken as a state_dict (whose other entries loading then reports). The mapping is returned as is (torch's
    ``_metadata`` attribute, when present, is kept).

    **Arguments:**

    - ``checkpoint``: a mapping, or an object with a ``state_dict()`` method (a torch module).
    """
    if not isinstance(checkpoint, Mapping) and callable(getattr(checkpoint, "state_dict", None)):
        checkpoint = checkpoint.state_dict()
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"source must be a mapping of names to arrays, a torch module or a checkpoint "
                        f"path, got {type(checkpoint).__name__}")
    if len(checkpoint) == 0 or _weights_like(checkpoint):
        return checkpoint
    for key in NESTED_KEYS:
        inner = checkpoint.get(key)
        if isinstance(inner, Mapping) or callable(getattr(inner, "state_dict", None)):
            return unwrap(inner)
    if any(is_array(v) for v in checkpoint.values()):
        return checkpoint  # a state_dict with some bad entries: load_state_dict names them
    described = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in list(checkpoint.items())[:12])
    raise ValueError(
        "source is neither a state_dict (a mapping of names to arrays) nor a training checkpoint "
        f"nesting one under any of the keys {list(NESTED_KEYS)}; it holds {{{described}}}")


def read(path) -> OrderedDict:
    """Read a checkpoint file into an ordered ``dict[str, np.ndarray]``.

    ``.safetensors`` is read with ``safetensors.numpy`` (no torch needed). ``.pt``, ``.pth``,
    ``.bin`` and ``.ckpt`` are read with ``torch.load(path, weights_only=True,
    map_location='cpu')``; training checkpoints are unwrapped with :func:`unwrap`. torch's
    ``_metadata`` (module versions) is kept as the ``_metadata`` attribute of the result.

    **Arguments:**

    - ``path``: the file; its suffix chooses the reader.
    """
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in SAFETENSORS_SUFFIXES:
        return OrderedDict(_require_safetensors().load_file(path))
    if suffix in TORCH_SUFFIXES:
        torch = require_torch(f"reading the torch checkpoint {path!r}")
        weights = unwrap(torch.load(path, weights_only=True, map_location="cpu"))
        out = OrderedDict((k, to_numpy(v)) for k, v in weights.items())
        metadata = getattr(weights, "_metadata", None)
        if metadata is not None:
            out._metadata = metadata
        return out
    raise ValueError(f"unknown checkpoint suffix {suffix!r} of {path!r}: expected one of "
                     f"{SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")


def save(module, path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``module``'s state_dict to ``path`` in a file torch's ``load_state_dict`` accepts.

    ``.safetensors`` is written with ``safetensors.numpy`` (no torch needed; load it in torch
    with ``safetensors.torch.load_file``). ``.pt`` / ``.pth`` / ``.bin`` are written with
    ``torch.save`` as a dict of tensors (needs torch). Names, order, shapes and values are those
    of :func:`equivalence.state_dict`, so reading the file back is bit-exact.

    **Arguments:**

    - ``module``: the ``nnx.Module`` to save.
    - ``path``: the file to write; its suffix chooses the format.
    - ``metadata``: extra string metadata for the ``.safetensors`` header.
    """
    from .state_dict import state_dict

    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    weights = state_dict(module)
    if suffix in SAFETENSORS_SUFFIXES:
        header = {"format": "pt", **(metadata or {})}
        _require_safetensors().save_file({k: _contiguous(v) for k, v in weights.items()},
                                         path, metadata=header)
    elif suffix in TORCH_SUFFIXES:
        torch = require_torch(f"writing the torch checkpoint {path!r}")
        torch.save(OrderedDict((k, _to_torch(torch, v)) for k, v in weights.items()), path)
    else:
        raise ValueError(f"unknown checkpoint suffix {suffix!r} of {path!r}: expected one of "
                         f"{SAFETENSORS_SUFFIXES + TORCH_SUFFIXES}")


def _contiguous(array: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray: it turns 0-d arrays (num_batches_tracked) into shape (1,)
    return np.require(array, requirements="C")


def _to_torch(torch, array: np.ndarray):
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(_contiguous(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(_contiguous(array))
