"""A module object used by several parents (or under two names) stays one object when translated.

torch lets one module instance be a child of many modules: timm's CoaT hands one ``ConvPosEnc``
to every block of a stage. Its parameters are then one tensor, which training updates once with
the gradients of every use summed, and ``state_dict()`` lists it under every path. The
translation must keep that: one jaxconv module in the live tree, constructed once in ``build()``,
listed under every path by ``equivalence.state_dict``, and ``compare`` naming its calls as
torch's hooks do (by its first path, ``#k`` per call).
"""
import copy
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from flax import nnx

import equivalence
from equivalence import translate, translate_source
from jaxconv import nn
from jaxconv.summary import summary
from tests._zoo import randomize_batchnorm, relative_error, timm


class PosEnc(torch.nn.Module):
    """A traced module every block calls (CoaT's ``ConvPosEnc``): a parameter of its own and a
    depthwise conv; ``residual`` is a flag only the blocks pass, the root never calls it."""

    def __init__(self, c):
        super().__init__()
        self.gamma = torch.nn.Parameter(torch.rand(c, 1, 1) + 0.5)
        self.proj = torch.nn.Conv2d(c, c, 3, padding=1, groups=c)

    def forward(self, x, residual=False):
        y = self.gamma * self.proj(x)
        if residual:
            y = y + x
        return y


class Block(torch.nn.Module):
    def __init__(self, pos, mix, act, c):
        super().__init__()
        self.pos = pos          # a shared traced module
        self.norm = torch.nn.BatchNorm2d(c)
        self.mix = mix          # a shared leaf with parameters
        self.act = act          # a shared leaf without
        self.fc = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        x = self.pos(x, residual=True)
        return x + self.fc(self.act(self.mix(self.norm(x))))


class Stage(torch.nn.Module):
    def __init__(self, c=4):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, c, 3, padding=1)
        self.pos = PosEnc(c)    # its first path is here, as CoaT's cpe1, though only blocks call it
        mix, act = torch.nn.Conv2d(c, c, 1), torch.nn.GELU()
        self.blocks = torch.nn.ModuleList([Block(self.pos, mix, act, c) for _ in range(2)])
        self.head = self.out = torch.nn.Conv2d(c, 2, 1)    # one module under two names
        self.tail = torch.nn.Sequential(act, act)           # twice in one Sequential

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.tail(self.head(x) - 0.5 * self.out(x))


def _stage():
    torch.manual_seed(0)
    return randomize_batchnorm(Stage()).eval()


def _input(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((2, 3, 6, 7)).astype(np.float32))


@pytest.fixture(scope="module")
def stage():
    tm = _stage()
    return tm, translate(tm, _input())


def test_one_object_per_torch_module_and_torchs_values(stage):
    tm, jm = stage
    assert jm.pos is jm.blocks[0].pos is jm.blocks[1].pos
    assert jm.blocks[0].mix is jm.blocks[1].mix and jm.blocks[0].act is jm.blocks[1].act is jm.tail[0] is jm.tail[1]
    assert jm.head is jm.out and jm.blocks[0].fc is not jm.blocks[1].fc
    n_params = len(jax.tree_util.tree_leaves(nnx.state(jm, nnx.Param)))
    assert n_params == len(list(tm.parameters())) == 17       # each shared tensor once
    x = _input(1)
    with torch.no_grad():
        ref = tm(x).numpy()
    out = nnx.jit(lambda m, x: m(x))(jm, jnp.asarray(x.numpy()))
    assert relative_error(out, ref) < 1e-5
    names = [n for n, _ in nn.named_modules(jm)]
    assert names == [n for n, _ in tm.named_modules()]
    assert [n for n, _ in nn.named_modules(jm, remove_duplicate=False)] == [
        n for n, _ in tm.named_modules(remove_duplicate=False)]


def test_a_change_through_one_path_is_seen_through_the_other(stage):
    tm, jm = (copy.deepcopy(stage[0]), nnx.clone(stage[1]))     # both keep their sharing
    w = jm.blocks[1].pos.proj.weight
    w.set_value(w.get_value() * 2)
    before = tm.pos.proj.weight.detach().clone()
    with torch.no_grad():
        tm.blocks[1].pos.proj.weight.mul_(2)
    ours = equivalence.state_dict(jm)
    for name in ("pos.proj.weight", "blocks.0.pos.proj.weight", "blocks.1.pos.proj.weight"):
        np.testing.assert_array_equal(ours[name], tm.state_dict()[name].numpy(), err_msg=name)
    np.testing.assert_array_equal(ours["pos.proj.weight"], 2 * before.numpy())


def test_state_dict_lists_a_shared_tensor_under_every_path_and_loads_torchs(stage):
    tm, jm = stage
    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs)
    assert {"pos.gamma", "blocks.0.pos.gamma", "blocks.1.pos.gamma", "head.weight", "out.weight"} <= set(ours)
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
    other = _stage()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in other.parameters():
            p.copy_(torch.randn_like(p))
    fresh = translate(_stage(), _input())
    assert repr(equivalence.load_state_dict(fresh, other.state_dict(), strict=True)) == "<All keys matched successfully>"
    for k, v in other.state_dict().items():
        np.testing.assert_array_equal(equivalence.state_dict(fresh)[k], v.numpy(), err_msg=k)
    assert fresh.pos is fresh.blocks[1].pos
    with pytest.raises(equivalence.StateDictError, match='Missing key.*"blocks.1.pos.gamma"'):
        equivalence.load_state_dict(fresh, {k: v for k, v in theirs.items() if k != "blocks.1.pos.gamma"})


def _torch_grads(tm, x, cot):
    tm.zero_grad(set_to_none=True)
    (tm(x) * cot).sum().backward()
    return {n: p.grad.numpy() for n, p in tm.named_parameters(remove_duplicate=False)}


def test_gradients_sum_every_use_as_torchs_do_and_one_step_keeps_the_sharing(stage):
    tm, jm = (copy.deepcopy(stage[0]), nnx.clone(stage[1]))
    x, cot = _input(3), torch.from_numpy(np.random.default_rng(4).standard_normal((2, 2, 6, 7)).astype(np.float32))
    theirs = _torch_grads(tm, x, cot)
    xj, cotj = jnp.asarray(x.numpy()), jnp.asarray(cot.numpy())
    loss = lambda m: jnp.sum(m(xj) * cotj)
    grads = nnx.jit(nnx.grad(loss))(jm)
    graphdef, _, rest = nnx.split(jm, nnx.Param, ...)
    ours = dict(equivalence.named_variables(nnx.merge(graphdef, grads, rest)))
    assert set(theirs) <= set(ours)
    for name, g in theirs.items():
        assert relative_error(ours[name][...], g) < 1e-5, name
    # a use's gradient alone is not the sum: the check can tell them apart
    assert relative_error(ours["pos.gamma"][...], theirs["pos.gamma"] / 2) > 0.1

    optimizer = nnx.Optimizer(jm, optax.sgd(0.1), wrt=nnx.Param)
    optimizer.update(jm, grads)
    torch.optim.SGD(tm.parameters(), lr=0.1).step()
    assert jm.pos is jm.blocks[1].pos and jm.head is jm.out
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(equivalence.state_dict(jm)[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_build_constructs_a_shared_module_once():
    source = translate_source(_stage(), _input())
    build = source[source.index("def build"):]
    assert build.count("PosEnc(") == 1 and build.count("nn.Conv2d(4, 2, 1") == 1
    assert build.count("nn.GELU(") == 1 and build.count("nn.Conv2d(4, 4, 1,") == 3  # mix once, fc twice
    assert "    pos = PosEnc(" in build and "pos=pos," in build and "head=head," in build and "out=head," in build
    model = equivalence.build_from_source(source, _stage())
    assert model.pos is model.blocks[1].pos


def test_compare_passes_names_calls_by_first_path_and_catches_planted_bugs(stage):
    tm, jm = stage
    report = equivalence.compare(tm, jm, (2, 3, 6, 7), grads=True)
    assert report.passed, report.to_text()
    layers = [r.name for r in report.rows if r.section == "layer"]
    assert [n for n in layers if n.startswith("pos")] == ["pos.proj#0", "pos#0", "pos.proj#1", "pos#1"]
    assert "head#1" in layers and "blocks.0.act#3" in layers and "blocks.0.mix#1" in layers
    grads = {r.name for r in report.rows if r.section == "grad"}
    assert "pos.gamma" in grads and "blocks.1.pos.gamma" not in grads    # torch's named_parameters

    # planted bugs (one compare finds both): the same values in two objects, where torch has one;
    # and a wrong value in the shared module
    wrong = nnx.clone(jm)
    wrong.blocks[1].pos = nnx.clone(wrong.pos)
    wrong.pos.gamma.set_value(wrong.pos.gamma.get_value() * 1.001)
    report = equivalence.compare(tm, wrong, (2, 3, 6, 7))
    assert report.structure == ["pos.proj: torch called it 2 time(s), jaxconv 1",
                                "pos: torch called it 2 time(s), jaxconv 1",
                                "blocks.1.pos.proj: torch called it 0 time(s), jaxconv 1",
                                "blocks.1.pos: torch called it 0 time(s), jaxconv 1",
                                *(f"blocks.1.pos.{n}: torch's is pos.{n}'s tensor, jaxconv's a variable of its own"
                                  for n in ("gamma", "proj.weight", "proj.bias"))]
    failing = {r.name for r in report.rows if not r.passed}
    assert {"pos#0", "pos#1"} <= failing and not any(n.startswith("blocks") for n in failing)


def test_summary_counts_a_shared_parameter_once_and_indents_its_calls_where_they_run(stage):
    tm, jm = stage
    table = summary(jm, (3, 6, 7))
    assert table.total_params == sum(p.numel() for p in tm.parameters())
    # rows named as torch's hooks name them, indented where they run (inside each block)
    rows = [(r.name, r.depth) for r in table.rows]
    assert rows[1:4] == [("blocks.0", 1), ("pos", 2), ("pos.proj", 3)]
    assert rows.count(("pos", 2)) == 2 and rows[-3:] == [("tail", 0), ("blocks.0.act", 1), ("blocks.0.act", 1)]
    assert table.row("blocks.0").params == sum(p.numel() for p in tm.blocks[0].parameters())


@pytest.mark.slow
def test_timm_coat_keeps_its_shared_position_encodings():
    # CoaT's stages hand one ConvPosEnc and one ConvRelPosEnc to every serial block; compare on
    # it (with gradients) is in test_zoo_proofs.py
    torch.manual_seed(0)
    tm = timm().create_model("coat_lite_tiny", pretrained=False, num_classes=10, img_size=32).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32))
    source = translate_source(tm, x)
    build = source[source.index("def build"):]
    for k in range(1, 5):
        assert build.count(f"    cpe{k} = ConvPosEnc(") == build.count(f"    crpe{k} = ConvRelPosEnc") == 1
        assert len(re.findall(rf"\bcpe=cpe{k}\b", build)) == len(re.findall(rf"\bcrpe=crpe{k}\b", build)) == 2
    jm = equivalence.build_from_source(source, tm)
    for k in range(1, 5):
        blocks = getattr(jm, f"serial_blocks{k}")
        assert all(b.cpe is getattr(jm, f"cpe{k}") for b in blocks)
        assert all(b.factoratt_crpe.crpe is getattr(jm, f"crpe{k}") for b in blocks)
    assert len(jax.tree_util.tree_leaves(nnx.state(jm, nnx.Param))) == len(list(tm.parameters()))
    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs) and len(theirs) > len(dict(tm.named_parameters()))
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
    with torch.no_grad():
        ref = tm(x).numpy()
    assert relative_error(nnx.jit(lambda m, x: m(x))(jm, jnp.asarray(x.numpy())), ref) < 1e-4


class Gate(torch.nn.Module):
    """A forward torch.fx cannot trace (``int`` of a shape): captured by torch.export."""

    def __init__(self, c):
        super().__init__()
        self.conv = torch.nn.Conv2d(c, c, 1)

    def forward(self, x):
        return self.conv(x) * (2.0 if int(x.shape[-1]) % 2 == 0 else 0.5)


class GatedPair(torch.nn.Module):
    def __init__(self):
        super().__init__()
        gate = Gate(3)
        self.a = torch.nn.Sequential(gate, torch.nn.Conv2d(3, 3, 1))
        self.b = torch.nn.Sequential(gate, torch.nn.ReLU())

    def forward(self, x):
        return self.b(self.a(x))


def test_a_shared_module_captured_by_torch_export_stays_shared():
    torch.manual_seed(0)
    tm = GatedPair()
    x = _input()
    jm = translate(tm, x)
    assert jm.a[0] is jm.b[0]
    with torch.no_grad():
        ref = tm(x).numpy()
    assert relative_error(jm(jnp.asarray(x.numpy())), ref) < 1e-5
    assert list(equivalence.state_dict(jm)) == list(tm.state_dict()) == [
        "a.0.conv.weight", "a.0.conv.bias", "a.1.weight", "a.1.bias", "b.0.conv.weight", "b.0.conv.bias"]


class Flagged(torch.nn.Module):
    def __init__(self, p, residual):
        super().__init__()
        self.p, self.residual = p, residual

    def forward(self, x):
        return self.p(x, residual=self.residual)


def test_a_shared_module_its_callers_call_with_different_flags_is_refused_by_name():
    # one class cannot be specialised to both, and torch.export of one call would compute the
    # other call wrongly: refused, naming the argument (two copies would lose the sharing)
    pos = PosEnc(3)
    tm = torch.nn.Sequential(Flagged(pos, True), Flagged(pos, False))
    with pytest.raises(equivalence.TranslationError, match=r"0\.p \(.*PosEnc\): torch\.fx cannot trace "
                       r"its forward: .*its call sites pass different constants \(residual is True or False\)"):
        translate(tm, _input())


# --- one parameter held by two modules (weight tying) -----------------------------------------
class Tied(torch.nn.Module):
    """Weight tying: the head reuses the embedding's weight (``head.weight = embed.weight``),
    and a ModuleList item's LayerNorm holds the root's own parameter."""

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.rand(4) + 0.5)
        self.embed = torch.nn.Linear(4, 4)
        self.blocks = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.LayerNorm(4)])
        self.head = torch.nn.Linear(4, 4, bias=False)
        self.head.weight = self.embed.weight
        self.blocks[1].weight = self.scale

    def forward(self, x):
        y = self.blocks[1](self.blocks[0](torch.tanh(self.embed(x))))
        return self.head(y) * self.scale


def _tied_input(seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((3, 4)).astype(np.float32))


@pytest.fixture(scope="module")
def tied():
    torch.manual_seed(0)
    tm = Tied().eval()
    return tm, translate(tm, _tied_input())


def test_a_tied_parameter_is_one_variable_in_the_source_the_module_and_the_state_dict(tied):
    """The translation built two variables with equal values: training would untie them."""
    tm, jm = tied
    source = translate_source(tm, _tied_input())
    assert "    model.head.weight = model.embed.weight\n" in source
    assert "    model.blocks[1].weight = model.scale\n" in source
    assert jm.head.weight is jm.embed.weight and jm.blocks[1].weight is jm.scale
    assert len(jax.tree_util.tree_leaves(nnx.state(jm, nnx.Param))) == len(list(tm.parameters())) == 6
    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
    fresh = translate(Tied().eval(), _tied_input())
    equivalence.load_state_dict(fresh, theirs, strict=True)
    assert fresh.head.weight is fresh.embed.weight
    x = _tied_input(1)
    with torch.no_grad():
        ref = tm(x).numpy()
    assert relative_error(nnx.jit(lambda m, x: m(x))(fresh, jnp.asarray(x.numpy())), ref) < 1e-6


def test_a_tied_parameter_gets_the_sum_of_its_uses_and_one_step_keeps_it_tied(tied):
    tm, jm = (copy.deepcopy(tied[0]), nnx.clone(tied[1]))
    x, cot = _tied_input(2), torch.from_numpy(np.random.default_rng(3).standard_normal((3, 4)).astype(np.float32))
    theirs = _torch_grads(tm, x, cot)
    xj, cotj = jnp.asarray(x.numpy()), jnp.asarray(cot.numpy())
    grads = nnx.jit(nnx.grad(lambda m: jnp.sum(m(xj) * cotj)))(jm)
    graphdef, _, rest = nnx.split(jm, nnx.Param, ...)
    ours = dict(equivalence.named_variables(nnx.merge(graphdef, grads, rest)))
    for name, g in theirs.items():
        assert relative_error(ours[name][...], g) < 1e-5, name
    optimizer = nnx.Optimizer(jm, optax.sgd(0.1), wrt=nnx.Param)
    optimizer.update(jm, grads)
    torch.optim.SGD(tm.parameters(), lr=0.1).step()
    assert jm.head.weight is jm.embed.weight and jm.blocks[1].weight is jm.scale
    for k, v in tm.state_dict().items():
        np.testing.assert_allclose(equivalence.state_dict(jm)[k], v.numpy(), rtol=1e-5, atol=1e-6, err_msg=k)


def test_compare_passes_a_tied_parameter_and_catches_one_untied(tied):
    tm, jm = tied
    assert equivalence.compare(tm, jm, _tied_input(4)).passed
    untied = nnx.clone(jm)
    untied.head.weight = nnx.Param(untied.embed.weight.get_value())
    report = equivalence.compare(tm, untied, _tied_input(4))
    assert report.structure == ["head.weight: torch's is embed.weight's tensor, jaxconv's a variable of its own"]
