"""Shared test helpers: torch is the oracle, data is random and asymmetric."""
import jax
import numpy as np
import torch


def randn(rng, *shape, dtype=np.float64):
    """Standard-normal data: no symmetry a flipped kernel or swapped axis could hide behind."""
    return rng.standard_normal(shape).astype(dtype)


def t(x):
    """numpy -> torch (a copy, so torch never aliases test data)."""
    return torch.from_numpy(np.array(x))


def assert_close(actual, expected, dtype=np.float64, reduction=1, scale=None):
    """Compare with a tolerance from the dtype and the reduction length, not a magic number.

    Error bound: ``8 * eps * sqrt(reduction) * scale`` where ``scale`` is the magnitude of
    the expected values (max |expected|, at least 1).
    """
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"shape {actual.shape} != torch's {expected.shape}"
    eps = np.finfo(dtype).eps
    scale = scale if scale is not None else max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    tol = 8 * eps * np.sqrt(max(reduction, 1)) * scale
    err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)), initial=0.0))
    assert err <= tol, f"max abs error {err:.3g} > tolerance {tol:.3g}"


def check_grad(jfn, tfn, args, rng, reduction=1, dtype=np.float64, grad_dtype=None):
    """Forward and vjp of ``jfn`` (one jit) at ``args`` against torch and its autograd, with a
    random cotangent. ``grad_dtype`` sets the gradient tolerance where torch's backward is
    less precise than the dtype. Returns the forward output."""
    g = randn(rng, *jax.eval_shape(jfn, *args).shape)

    @jax.jit
    def fwd_bwd(args, g):
        out, vjp = jax.vjp(jfn, *args)
        return out, vjp(g)

    out, grads = fwd_bwd(args, g)
    targs = [t(a).requires_grad_() for a in args]
    tout = tfn(*targs)
    tout.backward(t(g))
    assert_close(out, tout.detach().numpy(), dtype, reduction)
    for ours, theirs in zip(grads, targs):
        assert_close(ours, theirs.grad.numpy(), grad_dtype or dtype, reduction)
    return out


def np_dtype(tdtype):
    """The numpy dtype of a torch dtype."""
    return torch.empty((), dtype=tdtype).numpy().dtype


def same(ours, theirs):
    """Exact equality of value, shape and dtype with a torch result (tuples element-wise)."""
    if isinstance(theirs, (tuple, list)):
        assert isinstance(ours, tuple) and len(ours) == len(theirs), (type(ours), len(ours), len(theirs))
        for a, b in zip(ours, theirs):
            same(a, b)
        return
    theirs = theirs.detach().numpy() if isinstance(theirs, torch.Tensor) else np.asarray(theirs)
    ours = np.asarray(ours)
    assert ours.dtype == theirs.dtype, f"dtype {ours.dtype} != torch's {theirs.dtype}"
    np.testing.assert_array_equal(ours, theirs)


def largest_value(jaxpr) -> int:
    """The most elements of any value (or reduction window) in ``jaxpr`` and the jaxprs inside
    it: a deterministic stand-in for peak memory, read without running anything."""
    most = 0
    for eqn in jaxpr.eqns:
        for v in eqn.outvars:
            most = max(most, int(np.prod(getattr(v.aval, "shape", ()))))
        most = max(most, int(np.prod(eqn.params.get("window_dimensions", ()))))
        for p in eqn.params.values():
            for sub in p if isinstance(p, (tuple, list)) else (p,):
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    most = max(most, largest_value(inner))
    return most


def resident_mb() -> float:
    """This process's resident memory in MB (Linux: ``/proc/self/status``)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS"))


def rss_mb() -> float:
    """:func:`resident_mb` after a collection, with freed heap handed back to the system
    (glibc's ``malloc_trim``), so that the allocator's free lists do not count."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    return resident_mb()
