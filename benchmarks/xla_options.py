"""XLA:CPU compiler options measured as their own benchmark columns (``jaxconv_ynn``, ``flax_nnx_ynn``).

``jax.jit(f, compiler_options=ynn_eltwise())`` widens the operations XLA:CPU hands to YNNPACK for
that one function: this jaxlib's default list is individual convolutions, individual dots and
reductions; ``ELTWISE`` adds elementwise ops, which then join a convolution's YNNPACK call (bias,
BatchNorm affine, ReLU) or run as YNNPACK calls of their own. The option overwrites the list, so
the default's entries are named again: the shorter ``INDIVIDUAL_CONVOLUTION,ELTWISE`` takes the
classifier's dot and the reductions off YNNPACK. This is what
``XLA_FLAGS=--xla_cpu_experimental_ynn_fusion_type=+eltwise`` gives, per function (the ``+``
form is refused in ``compiler_options``).

jaxconv does not apply it (benchmarks/README.md, "XLA:CPU library paths"): jaxconv's MobileNetV2
ran 2.3-2.9x slower under it, because the elementwise ops around its depthwise and 1x1 lowerings
become separate YNNPACK calls instead of XLA's fused loops, and ResNet-18 showed no gain larger
than the noise.
"""
from __future__ import annotations

import functools

YNN_FUSION_TYPE = "xla_cpu_experimental_ynn_fusion_type"
# this jaxlib's default (INDIVIDUAL_CONVOLUTION, INDIVIDUAL_DOT, REDUCE; read from the optimized
# HLO under "-individual_dot", "-reduce", ... in XLA_FLAGS) plus ELTWISE
YNN_ELTWISE = {YNN_FUSION_TYPE: ",".join(f"LIBRARY_FUSION_TYPE_{t}" for t in (
    "INDIVIDUAL_CONVOLUTION", "INDIVIDUAL_DOT", "REDUCE", "ELTWISE"))}


@functools.cache
def _accepted() -> bool:
    """Whether this jaxlib's CPU compiler takes the option (another XLA may not know a value)."""
    import jax

    try:
        one = jax.device_put(1.0, jax.devices("cpu")[0])
        jax.jit(lambda x: x + 1, compiler_options=YNN_ELTWISE).lower(one).compile()
    except Exception:  # XlaRuntimeError naming the unknown option or enum value
        return False
    return True


def ynn_eltwise() -> dict:
    """The option as a new dict on a CPU backend whose XLA accepts it; ``{}`` otherwise (the
    ``*_ynn`` columns are then left out)."""
    import jax

    return dict(YNN_ELTWISE) if jax.default_backend() == "cpu" and _accepted() else {}
