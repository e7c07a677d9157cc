"""Data parallel: a ported model's forward and training gradients with the batch sharded over 8
(forced host) devices equal the single-device run, within the tolerance policy."""
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import jax, jax.numpy as jnp, numpy as np
    from flax import nnx
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import equivalence
    from equivalence import examples, tolerance

    assert len(jax.devices()) == 8, jax.devices()
    torch_model = examples.cifar_net_torch(seed=0)
    model = examples.cifar_net_jax()
    equivalence.load_state_dict(model, torch_model.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3, 32, 32)).astype(np.float32)
    ct = rng.standard_normal((16, 2)).astype(np.float32)

    def loss_fn(m, x, ct):
        return jnp.sum(m(x) * ct)

    @nnx.jit
    def step(m, x, ct):
        out = m(x)
        grads = nnx.grad(loss_fn)(m, x, ct)
        return out, grads

    out1, g1 = step(model, jnp.asarray(x), jnp.asarray(ct))          # one device
    # magnitude of the batch sum: sum over examples of |per-example gradient|
    magnitude = None
    for i in range(16):
        _, gi = step(model, jnp.asarray(x[i:i + 1]), jnp.asarray(ct[i:i + 1]))
        gi = jax.tree.map(jnp.abs, gi)
        magnitude = gi if magnitude is None else jax.tree.map(jnp.add, magnitude, gi)

    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, P("data"))                            # split the batch
    replicated = NamedSharding(mesh, P())                             # parameters everywhere
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, replicated))
    xs, cts = jax.device_put(x, batch), jax.device_put(ct, batch)
    out8, g8 = step(model, xs, cts)
    assert len(out8.sharding.device_set) == 8, out8.sharding
    assert out8.sharding.spec == P("data") or out8.sharding.is_equivalent_to(batch, 4)

    # forward: per-example computation, identical up to the policy's tolerance for the last Linear
    eps_tol = tolerance.tolerance(np.abs(np.asarray(out1)), 32, np.float32)
    assert np.all(np.abs(np.asarray(out8) - np.asarray(out1)) <= eps_tol), "forward differs"
    # gradients: a sum over the batch split across devices; the policy's tolerance with
    # S = sum over examples of |per-example gradient| and n = batch size
    flat1, flat8 = nnx.to_flat_state(g1), dict(nnx.to_flat_state(g8))
    flat_pe = dict(nnx.to_flat_state(magnitude))
    checked = 0
    for path, v in flat1:
        a, b = np.asarray(v[...]), np.asarray(flat8[path][...])
        s = np.asarray(flat_pe[path][...])
        tol = tolerance.tolerance(s, 16, np.float32)
        assert np.all(np.abs(a - b) <= tol), (path, np.max(np.abs(a - b) / tol))
        checked += 1
    assert checked == 8, checked
    print("SHARDED-OK", checked)
''')


def test_sharded_batch_matches_single_device():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "SHARDED-OK 8" in proc.stdout, proc.stdout + proc.stderr
