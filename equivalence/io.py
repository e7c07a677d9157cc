"""Checkpoint files in and out: flat ``name -> array`` mappings as ``.safetensors`` or ``.pt``.

:func:`read` gives a flat, ordered mapping named as torch names its state_dict entries and
:func:`write` writes one; the file's suffix chooses the format, in one table for both
directions (``.safetensors`` needs no torch; ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` need
it). :func:`unwrap` finds the weights inside a training checkpoint such as
``{'epoch': 3, 'model_state_dict': {...}, 'optimizer_state_dict': {...}}``. A file that cannot
be read or written as a checkpoint raises :class:`CheckpointError`, naming the file.
"""
from __future__ import annotations

import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import NamedTuple

import numpy as np

from ._torch import c_contiguous, is_array, is_torch_tensor, require_torch, to_numpy, to_torch

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")

#: Keys under which training checkpoints commonly nest a model's weights, tried in this order.
NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module", "net", "network",
               "weights", "params")


class CheckpointError(ValueError):
    """A file could not be read or written as a checkpoint: unknown suffix, truncated or corrupt
    contents, a pickle that would run code, contents that hold no state_dict, a key that is not a
    string. The message names the file (and the key, where there is one); ``path`` and ``key``
    hold them, and the underlying error, if any, is ``__cause__``.
    """

    def __init__(self, message: str, path: str | None = None, key=None):
        super().__init__(message)
        self.path, self.key = path, key


def _require_safetensors():
    try:
        import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy, so BF16 files read)
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
    is taken as a state_dict (whose other entries loading then reports). The mapping is returned
    as is (torch's ``_metadata`` attribute, when present, is kept).

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


#: The lines of torch's weights_only message that say nothing about the file at hand.
_TORCH_BOILERPLATE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def _detail(err: BaseException, keep=lambda line: True) -> str:
    """The first line of ``err``'s message that concerns the file (and passes ``keep``)."""
    lines = [line.strip() for line in str(err).splitlines()]
    lines = [line for line in lines if line and not line.startswith(_TORCH_BOILERPLATE) and keep(line)]
    if lines:
        return lines[0]
    return "the file ends too early" if isinstance(err, EOFError) else ""


def _corrupt(path: str, kind: str, err: BaseException) -> CheckpointError:
    detail = _detail(err)
    return CheckpointError(f"cannot read {path!r} as a {kind} checkpoint: the file is truncated, "
                           f"corrupt or not in that format ({type(err).__name__}: {detail})", path)


def _read_safetensors(path: str) -> OrderedDict:
    st = _require_safetensors()
    try:
        return OrderedDict(st.load_file(path))
    except FileNotFoundError:
        raise
    except Exception as err:  # SafetensorError (bad header or length), TypeError (dtype), OSError
        raise _corrupt(path, ".safetensors", err) from err


def _torch_load(path: str):
    torch = require_torch(f"reading the torch checkpoint {path!r}")
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        # weights_only=True allows tensors and plain containers; anything else is a GLOBAL the
        # unpickler refuses to import (a class to build, a function to call: code from the file)
        if "global" in str(err).lower():
            found = _detail(err, lambda line: "global" in line.lower())
            raise CheckpointError(
                f"refused to load {path!r}: unpickling it would run code from the file ({found}); "
                "torch.load(weights_only=True) allows only tensors and plain containers. Load it "
                "with torch.load(weights_only=False) only if you trust its source, and pass its "
                "state_dict instead", path) from err
        raise _corrupt(path, "torch", err) from err
    except Exception as err:  # RuntimeError (zip), EOFError (empty), KeyError/ValueError (garbage)
        raise _corrupt(path, "torch", err) from err


def _read_torch(path: str) -> OrderedDict:
    content = _torch_load(path)
    if not isinstance(content, Mapping):
        raise CheckpointError(
            f"{path!r} holds a {type(content).__name__}, not a state_dict (a mapping of names to "
            "tensors) nor a training checkpoint nesting one", path)
    try:
        weights = unwrap(content)
    except ValueError as err:
        raise CheckpointError(f"{path!r} holds no weights: {err}", path) from err
    out = OrderedDict()
    for key, value in weights.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{path!r}: the key {key!r} is a {type(key).__name__}, not a "
                                  "str (state_dict names are strings)", path, key)
        out[key] = to_numpy(value) if is_torch_tensor(value) else value  # others: loading names them
    metadata = getattr(weights, "_metadata", None)
    if metadata is not None:
        out._metadata = metadata
    return out


def _write_safetensors(weights: OrderedDict, path: str, metadata) -> None:
    header = {"format": "pt", **(metadata or {})}
    _require_safetensors().save_file({k: c_contiguous(v) for k, v in weights.items()}, path,
                                     metadata=header)


def _write_torch(weights: OrderedDict, path: str, metadata) -> None:
    torch = require_torch(f"writing the torch checkpoint {path!r}")
    torch.save(OrderedDict((k, to_torch(v)) for k, v in weights.items()), path)


class _Format(NamedTuple):
    read: Callable[[str], OrderedDict]
    write: Callable[[OrderedDict, str, Mapping | None], None]


#: suffix -> (reader, writer): the one place a file's format is decided.
FORMATS = {**{s: _Format(_read_safetensors, _write_safetensors) for s in SAFETENSORS_SUFFIXES},
           **{s: _Format(_read_torch, _write_torch) for s in TORCH_SUFFIXES}}


def _format(path) -> tuple[str, _Format]:
    """(path as str, its format), or the one "unknown checkpoint suffix" error."""
    path = os.fspath(path)
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in FORMATS:
        raise CheckpointError(f"unknown checkpoint suffix {suffix!r} of {path!r}: expected one of "
                              f"{tuple(FORMATS)}", path)
    return path, FORMATS[suffix]


def read(path) -> OrderedDict:
    """Read a checkpoint file into an ordered ``dict[str, np.ndarray]``.

    ``.safetensors`` is read with ``safetensors.numpy`` (no torch needed). ``.pt``, ``.pth``,
    ``.bin`` and ``.ckpt`` are read with ``torch.load(path, weights_only=True,
    map_location='cpu')``, which refuses pickles that would run code; training checkpoints are
    unwrapped with :func:`unwrap`, and entries that are not tensors are kept as they are, for
    loading to report. torch's ``_metadata`` (module versions) is kept as the ``_metadata``
    attribute of the result. Raises :class:`CheckpointError` (naming the file) for an unknown
    suffix, a truncated or corrupt file, a refused pickle, or contents that hold no state_dict.

    **Arguments:**

    - ``path``: the file; its suffix chooses the reader.
    """
    path, fmt = _format(path)
    return fmt.read(path)


def _umask() -> int:
    """The process's umask (read by setting it, then setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write(weights: Mapping, path, metadata: Mapping[str, str] | None = None) -> None:
    """Write a flat mapping of names to arrays to ``path`` as a checkpoint torch can load.

    ``.safetensors`` is written with ``safetensors.numpy`` (no torch needed; load it in torch
    with ``safetensors.torch.load_file``); ``.pt`` / ``.pth`` / ``.bin`` / ``.ckpt`` with
    ``torch.save`` as an ordered dict of tensors (needs torch). Names, order, shapes, dtypes and
    values are kept, so :func:`read` gives back the same mapping bit for bit.

    **Arguments:**

    - ``weights``: ``name -> array`` (numpy, jax or torch), such as
      :func:`equivalence.state_dict`'s result.
    - ``path``: the file to write; its suffix chooses the format.
    - ``metadata``: extra string metadata for the ``.safetensors`` header (torch files have none).
    """
    path, fmt = _format(path)
    arrays = OrderedDict()
    for key, value in weights.items():
        if not isinstance(key, str) or not is_array(value):
            raise CheckpointError(f"cannot write {path!r}: the entry {key!r} is not a str name with an "
                                  f"array value (got {type(key).__name__}: {type(value).__name__})",
                                  path, key)
        arrays[key] = value if isinstance(value, np.ndarray) else to_numpy(value)
    fmt.write(arrays, path, metadata)
    os.chmod(path, 0o666 & ~_umask())      # safetensors' atomic write leaves its temp file's 0600
