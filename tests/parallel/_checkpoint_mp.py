"""The checkpoint side of the multi-process proof, run under ``jaxconv-run`` (or as one process).

``jaxconv-run --nproc P --devices-per-process K -m tests.parallel._checkpoint_mp MODE DIR``:
every process builds the same model and optimizer, FSDP-sharded over all ``P * K`` devices, and

- ``save``: fills them with the reference values (random, drawn from fixed seeds in every
  process), checks that :func:`equivalence.state_dict` gives every process the full arrays and
  that :func:`equivalence.load_state_dict` keeps the sharding, then saves them to ``DIR``;
- ``restore``: restores ``DIR`` (written by any number of processes) into a fresh model and
  optimizer and checks values and shardings against the reference.

Each process prints ``CHECKPOINT-MP-OK <mode> <process index>`` when its checks pass.
"""
from __future__ import annotations

import sys

import jax

import jaxconv.parallel

jaxconv.parallel.initialize()

import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import Mesh  # noqa: E402

import equivalence  # noqa: E402
from equivalence.state_dict import host_copy  # noqa: E402
from tests.parallel._models import adamw, build  # noqa: E402

OptState = nnx.optimizer.OptState


def placed(seed):
    """A model FSDP-sharded over every device of the job, and an optimizer built on it."""
    model = jaxconv.parallel.fsdp(build(seed), Mesh(np.array(jax.devices()), ("data",)))
    return model, nnx.Optimizer(model, adamw(), wrt=nnx.Param)


def reference():
    """Host (numpy) values for the model's and the optimizer's state, the same in every process."""
    model = build(0)
    optimizer = nnx.Optimizer(model, adamw(), wrt=nnx.Param)
    rng = np.random.default_rng(0)

    def draw(x):
        value = (rng.integers(1, 100, x.shape) if np.issubdtype(x.dtype, np.integer)
                 else rng.standard_normal(x.shape))
        return value.astype(x.dtype)

    return jax.tree.map(draw, nnx.state(model)), jax.tree.map(draw, nnx.state(optimizer, OptState))


def host(state):
    return [host_copy(x) for x in jax.tree.leaves(state)]


def shardings(state):
    return [x.sharding for x in jax.tree.leaves(state)]


def check(model, optimizer, ref_model, ref_opt, what):
    for ours, ref, part in ((nnx.state(model), ref_model, "model"),
                            (nnx.state(optimizer, OptState), ref_opt, "optimizer")):
        for a, b in zip(host(ours), jax.tree.leaves(ref), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), f"{what}: {part} differs"


def main(mode, directory):
    ref_model, ref_opt = reference()
    model, optimizer = placed(1)
    before = shardings(nnx.state(model)) + shardings(nnx.state(optimizer, OptState))
    weight = model[4].weight.get_value()
    assert len(weight.sharding.device_set) == len(jax.devices())
    if mode == "save":
        def like(ref, live):  # the reference values on the live arrays' shardings
            return jax.tree.map(lambda r, x: jax.device_put(r, x.sharding), ref, live)

        nnx.update(model, like(ref_model, nnx.state(model)))
        nnx.update(optimizer, like(ref_opt, nnx.state(optimizer, OptState)))
        full = equivalence.state_dict(model)  # full arrays in every process
        on_host = build(3)
        nnx.update(on_host, ref_model)
        expected = equivalence.state_dict(on_host)
        assert list(full) == list(expected)
        assert all(np.array_equal(full[k], expected[k]) for k in full)
        assert full["4.weight"].shape == (5, 64)
        other, _ = placed(2)
        equivalence.load_state_dict(other, full)  # onto the existing sharding
        assert shardings(nnx.state(other)) == shardings(nnx.state(model))
        check(other, optimizer, ref_model, ref_opt, "load_state_dict")
        equivalence.save_checkpoint(directory, model, optimizer)
    else:
        step = equivalence.restore_checkpoint(directory, model, optimizer)
        assert step == int(ref_opt["step"].get_value()), step
        after = shardings(nnx.state(model)) + shardings(nnx.state(optimizer, OptState))
        assert after == before, "restore changed a sharding"
        check(model, optimizer, ref_model, ref_opt, "restore_checkpoint")
    print(f"CHECKPOINT-MP-OK {mode} {jax.process_index()}", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:3])
