"""Orbax checkpoints (equivalence.save_checkpoint / restore_checkpoint): sharded saves restored on
other shardings and on one device, optimizer state round trips, structure mismatches refused with
nothing changed, and a torch training checkpoint converted by ``jaxconv-port port --orbax``."""
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import equivalence
from equivalence import CheckpointMismatchError, restore_checkpoint, save_checkpoint
from jaxconv.optim import SGD
from tests.parallel import _launch
from tests.parallel._models import X, Y, adamw, build, train_step

MP = _launch.ROOT / "tests" / "parallel" / "_checkpoint_mp.py"


def trained(tx, steps=2, seed=0):
    model = build(seed)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    for _ in range(steps):
        train_step(model, optimizer, X, Y)
    return model, optimizer


def leaves(tree):
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def assert_same(a, b):
    a, b = leaves(a), leaves(b)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.dtype == y.dtype and np.array_equal(x, y)


@pytest.mark.parametrize("make_tx", [adamw, lambda: optax.chain(optax.clip_by_global_norm(1.0),
                                                                    optax.adamw(1e-2))],
                         ids=["jaxconv-AdamW-groups-OneCycleLR", "optax-chain"])
def test_optimizer_state_round_trip_continues_the_same_run(tmp_path, make_tx):
    model, optimizer = trained(make_tx())
    assert save_checkpoint(tmp_path, model, optimizer) == 2            # step=None: optimizer.step
    fresh, fresh_opt = trained(make_tx(), steps=0, seed=7)             # other weights, zero state
    assert restore_checkpoint(tmp_path, fresh, fresh_opt) == 2
    assert_same(nnx.state(fresh_opt), nnx.state(optimizer))
    assert_same(nnx.state(fresh), nnx.state(model))
    for _ in range(2):  # the schedule, the moments and the counts carry on as in the saved run
        train_step(model, optimizer, X, Y)
        train_step(fresh, fresh_opt, X, Y)
    assert_same(nnx.state(fresh), nnx.state(model))
    assert_same(nnx.state(fresh_opt), nnx.state(optimizer))


def test_a_model_of_another_structure_is_refused_naming_the_key_and_nothing_changes(tmp_path):
    model, optimizer = trained(adamw(), steps=1)
    save_checkpoint(tmp_path, model, optimizer)
    other = build(3, classes=3)
    before = equivalence.state_dict(other)
    with pytest.raises(CheckpointMismatchError) as err:
        restore_checkpoint(tmp_path, other)
    assert "first mismatch: '4.weight' has shape (5, 64) in the checkpoint, (3, 64) in the model" \
        in str(err.value)
    assert err.value.item == "model" and err.value.mismatched == {
        "4.weight": ((5, 64), (3, 64)), "4.bias": ((5,), (3,))}
    after = equivalence.state_dict(other)
    assert all(np.array_equal(before[k], after[k]) for k in before)

    # the model fits, the optimizer does not (SGD with momentum, in the same two groups, vs
    # AdamW): neither changes
    same = build(4)
    groups = [{"params": lambda name, p: p.ndim <= 1}, {"params": lambda name, p: p.ndim > 1}]
    sgd = nnx.Optimizer(same, SGD(groups, lr=0.1, momentum=0.9), wrt=nnx.Param)
    before, opt_before = equivalence.state_dict(same), leaves(nnx.state(sgd))
    with pytest.raises(CheckpointMismatchError) as err:
        restore_checkpoint(tmp_path, same, sgd)
    assert err.value.item == "optimizer"
    assert "first mismatch: 'opt_state.slots.momentum_buffer.0.bias' of the optimizer is not in" \
        in str(err.value)
    assert "'opt_state.slots.exp_avg.0.bias'" in str(err.value)            # unexpected, listed
    after = equivalence.state_dict(same)
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert all(np.array_equal(a, b) for a, b in zip(opt_before, leaves(nnx.state(sgd))))


def test_steps_metadata_and_errors(tmp_path):
    model, optimizer = trained(adamw(), steps=1)
    assert save_checkpoint(tmp_path, model) == 0                       # no optimizer: step 0
    assert save_checkpoint(tmp_path, model, optimizer, step=5, metadata={"epoch": 2}) == 5
    with pytest.raises(FileExistsError, match="step 5 already exists"):
        save_checkpoint(tmp_path, model, optimizer, step=5)
    with pytest.raises(ValueError, match=r"step must be an int >= 0 or None, got -1"):
        save_checkpoint(tmp_path, model, step=-1)
    with pytest.raises(TypeError, match="optimizer must be an nnx.Optimizer or None, got"):
        save_checkpoint(tmp_path, model, optimizer.opt_state)
    assert equivalence.checkpoint_metadata(tmp_path) == {"epoch": 2}  # the latest step's
    fresh = build(9)
    fresh_opt = nnx.Optimizer(fresh, adamw(), wrt=nnx.Param)
    with pytest.raises(CheckpointMismatchError, match="step 0 holds no optimizer state"):
        restore_checkpoint(tmp_path, fresh, fresh_opt, step=0)
    with pytest.raises(FileNotFoundError, match=r"has no step 3; its steps are \[0, 5\]"):
        restore_checkpoint(tmp_path, fresh, step=3)
    with pytest.raises(FileNotFoundError, match="no Orbax checkpoint in"):
        restore_checkpoint(tmp_path / "nothing", fresh)
    assert restore_checkpoint(tmp_path, fresh) == 5                    # the latest; model alone
    assert_same(nnx.state(fresh), nnx.state(model))
    abstract = nnx.eval_shape(lambda: build(0))                        # no initialisation
    assert restore_checkpoint(tmp_path, abstract, step=0) == 0
    assert_same(nnx.state(abstract), nnx.state(model))


SHARDED = textwrap.dedent('''
    import sys
    import jax, numpy as np
    from flax import nnx
    from jax.sharding import Mesh
    import equivalence
    from jaxconv.parallel import fsdp
    from tests.parallel._models import adamw, build

    assert len(jax.devices()) == 4, jax.devices()

    def placed(seed, devices):
        """A model FSDP-sharded over ``devices`` and an optimizer built on it (sharded alike)."""
        model = fsdp(build(seed), Mesh(np.array(devices), ("data",)))
        return model, nnx.Optimizer(model, adamw(), wrt=nnx.Param)

    def shardings(*objs):
        return [x.sharding for o in objs for x in jax.tree.leaves(nnx.state(o))]

    def same(a, b):
        return all(np.array_equal(np.asarray(x), np.asarray(y))
                   for x, y in zip(jax.tree.leaves(nnx.state(a)), jax.tree.leaves(nnx.state(b))))

    def scramble(tree, seed):
        """Random values (ints for counters) in place of every array, on its sharding."""
        rng = np.random.default_rng(seed)
        def draw(x):
            if np.issubdtype(x.dtype, np.integer):
                value = rng.integers(1, 100, x.shape)
            else:
                value = rng.standard_normal(x.shape)
            return jax.device_put(value.astype(x.dtype), x.sharding)
        return jax.tree.map(draw, tree)

    model, optimizer = placed(0, jax.devices())
    nnx.update(model, scramble(nnx.state(model), 1))
    nnx.update(optimizer, scramble(nnx.state(optimizer, nnx.optimizer.OptState), 2))
    weight = model[4].weight.get_value()
    assert len(weight.sharding.device_set) == 4 and not weight.sharding.is_fully_replicated

    # state_dict: full arrays; load_state_dict onto a sharded model keeps its sharding
    full = equivalence.state_dict(model)
    assert full["4.weight"].shape == (5, 64) and np.array_equal(full["4.weight"], np.asarray(weight))
    other, _ = placed(1, jax.devices()[:2])
    expected = shardings(other)
    equivalence.load_state_dict(other, full)
    assert shardings(other) == expected and same(other, model)

    saved = equivalence.save_checkpoint(sys.argv[1], model, optimizer)
    for devices in (jax.devices()[2:], jax.devices()[:1]):  # 2 devices, sharded; then one device
        target, target_opt = placed(5, devices)
        expected = shardings(target, target_opt)
        assert equivalence.restore_checkpoint(sys.argv[1], target, target_opt) == saved
        assert shardings(target, target_opt) == expected
        assert {d for s in shardings(target) for d in s.device_set} == set(devices)
        assert same(target, model) and same(target_opt, optimizer)
    plain = build(6)                                       # the default device, no mesh
    plain_opt = nnx.Optimizer(plain, adamw(), wrt=nnx.Param)
    equivalence.restore_checkpoint(sys.argv[1], plain, plain_opt)
    assert same(plain, model) and same(plain_opt, optimizer)
    print("CHECKPOINT-OK")
''')


@pytest.mark.slow  # the multi-process tests below cover the same by default
def test_sharded_checkpoint_restores_on_other_shardings_and_one_device(tmp_path):
    """4 forced host devices in a subprocess: an FSDP-sharded model and optimizer holding random
    values, saved, restored onto 2 devices, onto one, and unsharded; state_dict and
    load_state_dict on the sharded model."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
           "JAX_PLATFORMS": "cpu", "PYTHONPATH": root}
    proc = subprocess.run([sys.executable, "-c", SHARDED, str(tmp_path / "ckpt")], cwd=root,
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "CHECKPOINT-OK" in proc.stdout, proc.stdout + proc.stderr[-4000:]


@pytest.fixture(scope="module")
def saved_by_two_processes(tmp_path_factory):
    """A checkpoint of an FSDP model and its optimizer written by 2 processes x 2 devices."""
    out = tmp_path_factory.mktemp("mp")
    code, output = _launch.run(MP, out, nproc=2, devices=2, args=["save", out / "ckpt"])
    assert code == 0 and output.count("CHECKPOINT-MP-OK save") == 2, output[-4000:]
    return out / "ckpt"


@pytest.mark.parametrize("nproc, devices", [(1, 1), pytest.param(2, 1, marks=pytest.mark.slow),
                                             pytest.param(1, 4, marks=pytest.mark.slow)])
def test_a_checkpoint_of_two_processes_restores_in_another_number(saved_by_two_processes, tmp_path,
                                                                   nproc, devices):
    """Written by 2 processes x 2 devices (state_dict and load_state_dict checked there too),
    restored by ``nproc`` x ``devices`` onto its own FSDP sharding, values bit-exact."""
    code, output = _launch.run(MP, tmp_path, nproc=nproc, devices=devices,
                               args=["restore", saved_by_two_processes])
    assert code == 0 and output.count("CHECKPOINT-MP-OK restore") == nproc, output[-4000:]


@pytest.mark.slow  # ~3 s: a forward comparison and torch training; the usage test below is quick
def test_port_orbax_converts_a_torch_training_checkpoint(tmp_path, capsys):
    """torch trains 3 steps (AdamW in two groups, OneCycleLR) and saves a torchvision-style
    checkpoint; ``port --orbax`` converts it; restore_checkpoint gives torch's weights, buffers,
    optimizer slots, step and epoch, and training on continues as torch's."""
    from equivalence import cli
    from equivalence.cli_training import build_recipe
    from equivalence.training import optimizer_state_dict, translate_optimizer
    from tests.equivalence import _training_twins as twins

    recipe = {"optimizer": "AdamW(lr=1e-3, weight_decay=0.05)",
              "scheduler": "OneCycleLR(max_lr=1e-2, total_steps=10)"}
    torch_model = twins.torch_model()
    opt, sched, loss = build_recipe(torch_model, recipe["optimizer"], recipe["scheduler"],
                                    "CrossEntropyLoss()", no_decay=True)
    x, y = torch.from_numpy(X[:4]), torch.from_numpy(Y[:4])
    for _ in range(3):
        opt.zero_grad()
        loss(torch_model(x), y).backward()
        opt.step()
        sched.step()
    path = tmp_path / "train.pt"
    torch.save({"model": torch_model.state_dict(), "optimizer": opt.state_dict(),
                "lr_scheduler": sched.state_dict(), "epoch": 7}, path)

    status = cli.main(["port", "--torch", "tests.equivalence._training_twins:torch_model",
                       "--jax", "tests.equivalence._training_twins:jax_model",
                       "--checkpoint", str(path), "--input-shape", twins.SHAPE, "--quiet",
                       "--out", str(tmp_path / "out"), "--orbax", str(tmp_path / "orbax"),
                       "--optimizer", recipe["optimizer"], "--scheduler", recipe["scheduler"],
                       "--no-decay"])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert "orbax checkpoint: " in printed and "step 3 (model and AdamW state, epoch 7)" in printed

    model = twins.jax_model()
    tx = translate_optimizer(opt, torch_model, scheduler=sched)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    assert restore_checkpoint(tmp_path / "orbax", model, optimizer) == 3
    assert equivalence.checkpoint_metadata(tmp_path / "orbax") == {"epoch": 7}
    assert int(optimizer.step.get_value()) == 3
    for k, v in torch_model.state_dict().items():
        assert np.array_equal(equivalence.state_dict(model)[k], v.numpy()), k
    theirs = opt.state_dict()
    ours = optimizer_state_dict(optimizer, torch_model)
    for i, entry in theirs["state"].items():
        for slot, value in entry.items():
            assert np.array_equal(np.asarray(ours["state"][i][slot]), value.numpy()), (i, slot)
    assert [g["lr"] for g in ours["param_groups"]] == pytest.approx(
        [g["lr"] for g in theirs["param_groups"]], rel=1e-6)


def test_port_orbax_usage_errors(tmp_path, capsys):
    from equivalence import cli

    base = ["port", "--torch", "tests.equivalence._training_twins:torch_model",
            "--jax", "tests.equivalence._training_twins:jax_model", "--input-shape", "4,3,6,6",
            "--out", str(tmp_path / "out"), "--orbax", str(tmp_path / "orbax")]
    assert cli.main(base + ["--optimizer", "SGD(lr=0.1)"]) == 2
    assert "--orbax with --optimizer 'SGD(lr=0.1)' needs --checkpoint" in capsys.readouterr().err
    assert cli.main(base + ["--loss", "MSELoss()"]) == 2
    assert "--loss given without --train-steps" in capsys.readouterr().err
