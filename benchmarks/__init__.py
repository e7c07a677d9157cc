"""Side-by-side speed suite: jaxconv against torch, plain ``jax.lax``, flax and equinox.

Run ``python -m benchmarks`` (full) or ``python -m benchmarks --quick`` (tiny shapes, for
the tests). See ``benchmarks/README.md``.
"""
