"""The few torch (and array) helpers the rest of ``equivalence`` shares; none imports torch unless it must."""
from __future__ import annotations

import numpy as np


def require_torch(purpose: str):
    """Import and return ``torch``, or raise an ``ImportError`` that names the extra to install.

    **Arguments:**

    - ``purpose``: what torch is needed for, used in the message.
    """
    try:
        import torch
    except ImportError as err:  # also raised when sys.modules['torch'] is None
        raise ImportError(
            f"{purpose} needs PyTorch, which is not installed; install it with "
            "`pip install 'jaxconv[torch]'` (or read/write .safetensors files, which need no torch)"
        ) from err
    return torch


def is_torch_tensor(value) -> bool:
    """Whether ``value`` is a ``torch.Tensor`` (checked without importing torch)."""
    return any(c.__module__.startswith("torch") and c.__name__ == "Tensor" for c in type(value).__mro__)


def is_array(value) -> bool:
    """Whether ``value`` is array-like: a numpy array or scalar, a jax array or a torch tensor."""
    if isinstance(value, (np.ndarray, np.generic)) or is_torch_tensor(value):
        return True
    return hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "__array__")


def to_numpy(value) -> np.ndarray:
    """A numpy copy of a torch tensor, jax array or numpy array; bfloat16 stays bfloat16.

    **Arguments:**

    - ``value``: the tensor or array.
    """
    if is_torch_tensor(value):
        import torch  # present, since value is a torch tensor

        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:
            import ml_dtypes

            return value.view(torch.int16).numpy().view(ml_dtypes.bfloat16).copy()
        return value.numpy().copy()
    return np.array(value)


def numpy_dtype(dtype) -> np.dtype:
    """A numpy dtype from a name (``'bfloat16'``, ``'float16'``, ...), a numpy or jnp dtype, an
    ``ml_dtypes`` type or a torch dtype (``torch.bfloat16``). Raises ``TypeError`` naming it.

    **Arguments:**

    - ``dtype``: the dtype in any of those forms.
    """
    import ml_dtypes  # noqa: F401  (registers bfloat16 with numpy)

    name = str(dtype).removeprefix("torch.") if type(dtype).__module__.startswith("torch") else dtype
    name = {"half": "float16", "float": "float32", "double": "float64"}.get(name, name)
    try:
        return np.dtype(name)
    except TypeError:
        raise TypeError(f"dtype must name a numpy, jax or torch dtype, got dtype={dtype!r}") from None


def c_contiguous(array: np.ndarray) -> np.ndarray:
    """``array`` in C order, copied only if it is not (0-d arrays stay 0-d, unlike
    ``np.ascontiguousarray``, which would turn ``num_batches_tracked`` into shape ``(1,)``)."""
    return np.require(array, requirements="C")


def to_torch(array: np.ndarray):
    """A torch tensor sharing ``array``'s memory (made C-contiguous); bfloat16 stays bfloat16.

    **Arguments:**

    - ``array``: a numpy array (``ml_dtypes.bfloat16`` included).
    """
    torch = require_torch("making a torch tensor")
    array = c_contiguous(array)
    if array.dtype.name == "bfloat16":
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def import_torchvision():
    """Import and return ``torchvision`` where its compiled ops cannot load.

    torch 2.13's torchvision (0.28.0) ships as a CUDA build whose C++ ops fail to load next to
    a CPU torch, and ``torchvision/_meta_registrations.py`` registers meta kernels for exactly
    those ops at import, which then fails. Its model code is pure Python: with that one module
    stubbed out first, ``torchvision.models`` (and timm, which imports torchvision) import and
    run. Only the fake-tensor kernels of torchvision's detection ops (nms, roi_align) are lost.
    This is the one place that does it; call it before importing torchvision or timm.
    """
    import sys
    import types

    if "torchvision" not in sys.modules:
        sys.modules.setdefault("torchvision._meta_registrations",
                               types.ModuleType("torchvision._meta_registrations"))
    import torchvision

    return torchvision
