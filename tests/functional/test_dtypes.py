"""Mixed dtypes: for every op with a weight or bias, a matrix of dtype combinations.

For each combination torch (2.13, CPU) raises if and only if jaxconv raises (a ``TypeError``
naming the arguments and their dtypes); where both accept, the outputs (and updated running
statistics) match in dtype and value.
"""
import itertools
import re

import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
import torch
import torch.nn.functional as TF

import jaxconv.functional as JF
from jaxconv import nn

DTYPES = ("float16", "bfloat16", "float32", "float64", "complex128", "int64")
FLOATS = ("float16", "bfloat16", "float32", "float64")
EPS = {"float16": 2.0 ** -10, "bfloat16": 2.0 ** -7, "float32": 2.0 ** -23, "float64": 2.0 ** -52,
       "complex128": 2.0 ** -52, "int64": 0.0}


def pair(rng, shape, dtype, positive=False):
    """The same values as a torch tensor and a jax array of ``dtype`` (``None`` -> ``None, None``)."""
    if dtype is None:
        return None, None
    if dtype == "int64":
        a = rng.integers(1 if positive else -3, 4, shape)
        return torch.from_numpy(a), jnp.asarray(a)
    a = rng.uniform(0.5, 2.0, shape) if positive else rng.standard_normal(shape)
    if dtype == "complex128":
        a = a + 1j * rng.standard_normal(shape)
        return torch.from_numpy(a), jnp.asarray(a)
    t = torch.from_numpy(a).to(getattr(torch, dtype))
    return t, jnp.asarray(t.to(torch.float64).numpy()).astype(ml_dtypes.bfloat16 if dtype == "bfloat16" else dtype)


def numpy(x):
    if isinstance(x, torch.Tensor):
        return (x.to(torch.float64) if x.dtype == torch.bfloat16 else x).detach().numpy()
    return np.asarray(x.astype(jnp.float64) if x.dtype == jnp.bfloat16 else x)


def close(ours, theirs, reduction, via=None):
    """Same dtype, and values within the error of the dtype (or of ``via``, a coarser dtype
    the value was computed in)."""
    dtype = str(theirs.dtype).removeprefix("torch.")
    assert str(ours.dtype) == dtype
    a, b = numpy(ours), numpy(theirs)
    scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
    tol = 8 * max(EPS[dtype], EPS.get(via, 0.0)) * np.sqrt(reduction) * scale
    np.testing.assert_allclose(a, b, rtol=0, atol=tol)


def run_matrix(rng, torch_fn, jax_fn, shapes, options, reduction, positive=(), refused=()):
    """Every combination in ``options`` (one tuple of dtypes per argument); returns the count
    of combinations both accepted, so that a test can check it exercised values too. For
    the norms, the last two arguments are the running statistics: both or neither.
    ``refused``: combinations jaxconv refuses whatever this machine's torch does (where torch's
    CPU kernels differ by CPU)."""
    accepted = 0
    for combo in itertools.product(*options):
        if len(combo) == 5 and (combo[3] is None) != (combo[4] is None):
            continue  # a ValueError in both, tested in test_normalization
        if combo in refused:
            with pytest.raises(TypeError, match="dtype"):
                jax_fn(*[pair(rng, s, d)[1] for s, d in zip(shapes, combo)])
            continue
        args = [pair(rng, s, d, i in positive) for i, (s, d) in enumerate(zip(shapes, combo))]
        targs, jargs = [a for a, _ in args], [b for _, b in args]
        try:
            expected = torch_fn(*targs)
        except (RuntimeError, NotImplementedError):
            with pytest.raises(TypeError, match="dtype"):
                jax_fn(*jargs)
            continue
        accepted += 1
        got = jax_fn(*jargs)
        if isinstance(got, tuple):  # running statistics, updated in place in torch
            got, stats = got[0], got[1:]
            for ours, theirs in zip(stats, expected[1:]):  # updated in the input's precision
                close(ours, theirs, reduction, via=combo[0])
            expected = expected[0]
        close(got, expected, reduction)
    return accepted


OPTIONAL = DTYPES + (None,)


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("x_dtype", DTYPES)
def test_conv(rng, n, x_dtype):
    shapes = [(2, 3) + (5,) * n, (4, 3) + (2,) * n, (4,)]
    name = f"conv{n}d"
    accepted = run_matrix(rng, getattr(TF, name), getattr(JF, name), shapes,
                          [(x_dtype,), DTYPES, OPTIONAL], 3 * 2 ** n)
    assert accepted == 2  # the input's dtype for weight and bias, or no bias


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("x_dtype", DTYPES)
@pytest.mark.parametrize("stride", [1, 2])
def test_conv_transpose(rng, n, x_dtype, stride):
    """Bias rule of torch's CPU kernels: 1d/2d on float64/int64 input add any
    bias that casts to the input's dtype; float32, complex and 3d need the same dtype, and so
    do float16/bfloat16 inputs (refused by torch on CPUs with AVX512-FP16, by jaxconv
    everywhere)."""
    shapes = [(2, 3) + (4,) * n, (3, 2) + (2,) * n, (2,)]
    name = f"conv_transpose{n}d"
    half_pairs = {(x_dtype, w, b) for w in DTYPES for b in DTYPES
                  if x_dtype in ("float16", "bfloat16") and b != x_dtype}
    accepted = run_matrix(rng, lambda x, w, b: getattr(TF, name)(x, w, b, stride),
                          lambda x, w, b: getattr(JF, name)(x, w, b, stride), shapes,
                          [(x_dtype,), DTYPES, OPTIONAL], 3 * 2 ** n, refused=half_pairs)
    assert accepted >= 2


@pytest.mark.parametrize("x_shape", [(3, 5), (2, 3, 5), (5,)])
@pytest.mark.parametrize("x_dtype", DTYPES)
def test_linear(rng, x_shape, x_dtype):
    accepted = run_matrix(rng, TF.linear, JF.linear, [x_shape, (4, 5), (4,)],
                          [(x_dtype,), DTYPES, OPTIONAL], 5)
    assert accepted == 2


@pytest.mark.parametrize("x_dtype", DTYPES)
def test_prelu(rng, x_dtype):
    accepted = run_matrix(rng, TF.prelu, JF.prelu, [(2, 3, 4), (3,)], [(x_dtype,), DTYPES], 1)
    assert accepted == (1 if x_dtype in FLOATS else 0)  # torch has no int or complex prelu


P = FLOATS + ("complex128", "int64", None)


@pytest.mark.parametrize("x_dtype", DTYPES)
def test_layer_norm(rng, x_dtype):
    accepted = run_matrix(rng, lambda x, w, b: TF.layer_norm(x, (4, 5), w, b),
                          lambda x, w, b: JF.layer_norm(x, (4, 5), w, b),
                          [(3, 4, 5), (4, 5), (4, 5)], [(x_dtype,), P, P], 20)
    # the input's dtype (or None) for both, and float32 (or None) for a reduced input
    assert accepted == {"float16": 7, "bfloat16": 7, "float32": 4, "float64": 4}.get(x_dtype, 0)


@pytest.mark.parametrize("x_dtype", DTYPES)
def test_group_norm(rng, x_dtype):
    accepted = run_matrix(rng, lambda x, w, b: TF.group_norm(x, 2, w, b),
                          lambda x, w, b: JF.group_norm(x, 2, w, b),
                          [(3, 4, 5), (4,), (4,)], [(x_dtype,), P, P], 10)
    assert accepted == {"float16": 7, "bfloat16": 7, "float32": 4, "float64": 4}.get(x_dtype, 0)


@pytest.mark.parametrize("x_dtype", DTYPES)
def test_rms_norm(rng, x_dtype):
    """torch takes a weight of any dtype: the product promotes and is cast to the input's dtype."""
    accepted = run_matrix(rng, lambda x, w: TF.rms_norm(x, (5,), w),
                          lambda x, w: JF.rms_norm(x, (5,), w),
                          [(3, 4, 5), (5,)], [(x_dtype,), OPTIONAL], 5)
    assert accepted == (0 if x_dtype == "int64" else len(OPTIONAL))


NORM_P = FLOATS + (None,)


def _torch_norm(norm, training):
    """torch's batch/instance norm returning ``(y, new_mean, new_var)`` as jaxconv's do."""
    def fn(x, w, b, m, v):
        m, v = (None if a is None else a.clone() for a in (m, v))
        y = norm(x, m, v, w, b, training, 0.3)
        return (y, m, v) if training and m is not None else y
    return fn


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("x_dtype", DTYPES)
def test_batch_norm(rng, x_dtype, training):
    """Mixed precision as torch: a float16/bfloat16 input takes float32 parameters and running
    statistics (all of them); otherwise everything has the input's dtype."""
    stats = NORM_P if training else FLOATS
    accepted = run_matrix(
        rng, _torch_norm(TF.batch_norm, training),
        lambda x, w, b, m, v: JF.batch_norm(x, m, v, w, b, training, 0.3),
        [(6, 3, 4), (3,), (3,), (3,), (3,)],
        [(x_dtype,), NORM_P + ("int64",), NORM_P, stats, stats], 24, positive=(4,))
    if x_dtype in FLOATS:
        assert accepted > 0


@pytest.mark.parametrize("use_input_stats", [True, False])
@pytest.mark.parametrize("x_dtype", FLOATS + ("int64",))
def test_instance_norm(rng, x_dtype, use_input_stats):
    """As batch_norm, except that torch casts a running_mean of any floating dtype."""
    stats = NORM_P if use_input_stats else FLOATS
    accepted = run_matrix(
        rng, _torch_norm(TF.instance_norm, use_input_stats),
        lambda x, w, b, m, v: JF.instance_norm(x, m, v, w, b, use_input_stats, 0.3),
        [(2, 3, 6), (3,), (3,), (3,), (3,)],
        [(x_dtype,), NORM_P, NORM_P, stats, stats], 6, positive=(4,))
    if x_dtype in FLOATS:
        assert accepted > 0


def test_instance_norm_refuses_a_non_float_running_mean():
    """torch takes an int64 or complex running_mean and truncates or drops the imaginary
    part on the update; jaxconv refuses it rather than compute a silently different value."""
    x = jnp.ones((2, 3, 4))
    for dtype in ("int64", "complex128"):
        with pytest.raises(TypeError, match=f"running_mean, got running_mean of dtype {dtype}"):
            JF.instance_norm(x, jnp.zeros(3, dtype), jnp.ones(3))


@pytest.mark.parametrize("dtypes,message", [
    (("int64", "int64", "float64"), "input (int64) and bias (float64)"),
    (("float64", "float64", "complex128"), "input (float64) and bias (complex128)"),
    (("bfloat16", "float32", None), "input (bfloat16) and weight (float32) must have the same "
                                    "dtype (for mixed precision, run it under jaxconv.autocast)"),
    (("float32", "float64", "float64"), "input (float32) and weight (float64)"),
])
def test_messages_name_the_arguments(rng, dtypes, message):
    """The issue's examples: an int64 input with a float64 bias, a float64 input with a
    complex128 bias, a bfloat16 input with a float32 weight."""
    x, w, b = (pair(rng, s, d)[1] for s, d in zip([(1, 2, 5, 5), (3, 2, 3, 3), (3,)], dtypes))
    if "autocast" not in message:
        message += " must have the same dtype"
    with pytest.raises(TypeError, match=rf"^conv2d: {re.escape(message)}$"):
        JF.conv2d(x, w, b)


@pytest.mark.parametrize("name,args,kwargs,shape,dtype", [
    ("Conv2d", (2, 3, 3), {}, (1, 2, 5, 5), "bfloat16"),
    ("Conv2d", (2, 3, 3), {"padding": 1, "padding_mode": "reflect"}, (1, 2, 5, 5), "float64"),
    ("Conv1d", (2, 3, 3), {}, (1, 2, 5), "float32"),
    ("ConvTranspose2d", (2, 3, 3), {}, (1, 2, 5, 5), "float64"),
    ("ConvTranspose1d", (2, 3, 3), {}, (1, 2, 5), "float16"),
    ("Linear", (5, 3), {}, (2, 5), "bfloat16"),
    ("PReLU", (), {}, (2, 5), "float64"),
    ("BatchNorm2d", (2,), {}, (3, 2, 4, 4), "bfloat16"),
    ("BatchNorm2d", (2,), {}, (3, 2, 4, 4), "float64"),
    ("InstanceNorm1d", (2,), {"affine": True, "track_running_stats": True}, (3, 2, 4), "float16"),
    ("LayerNorm", (4,), {}, (3, 4), "float16"),
    ("LayerNorm", (4,), {}, (3, 4), "float64"),
    ("GroupNorm", (2, 4), {}, (3, 4, 2), "float64"),
    ("GroupNorm", (2, 4), {}, (3, 4, 2), "bfloat16"),
    ("RMSNorm", (4,), {}, (3, 4), "float64"),
])
def test_modules_get_the_functional_rule(rng, name, args, kwargs, shape, dtype):
    """Default (float32) modules on another input dtype: raise where torch's modules raise."""
    t_x, x = pair(rng, shape, dtype)
    try:
        expected = getattr(torch.nn, name)(*args, **kwargs)(t_x)
    except RuntimeError:
        with pytest.raises(TypeError, match=rf"input \({dtype}\) and weight \(float32\)"):
            getattr(nn, name)(*args, **kwargs)(x)
        return
    assert str(getattr(nn, name)(*args, **kwargs)(x).dtype) == str(expected.dtype).removeprefix("torch.")
