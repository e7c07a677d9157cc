"""The translator on timm's CNN families (timm 1.0.31, random weights, built offline).

Per model: randomised BatchNorm; the eval forward within 1e-4 of torch (float32); the
state_dict equal to torch's (names, order, shapes, bits); and, where torch's train forward
is deterministic (no dropout or drop-path), the train forward and the BatchNorm buffers it
writes. One representative per family group runs by default; the whole list is ``slow``.
Forwards that compute Python values from the input's shape, which torch.fx cannot trace
(timm's vgg ``ConvMlp``, dm_nfnet's 'same'-padding ``ScaledStdConv2dSame``), go through the
torch.export fallback on the example input; the tf_* models are in ``test_hf_zoo.py``.
"""
import copy

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

import equivalence
from tests._zoo import randomize_batchnorm, relative_error, timm
from tests._zoo import translate_unchanged as translate


def _convmixer():
    from timm.models.convmixer import ConvMixer

    return ConvMixer(dim=64, depth=2, kernel_size=5, patch_size=4, num_classes=10)


def _reparameterized(name):
    def make():
        model = timm().create_model(name, pretrained=False, num_classes=10)
        return timm().utils.reparameterize_model(model)
    return make


def _timm(name, **kwargs):
    return lambda: timm().create_model(name, pretrained=False, num_classes=10, **kwargs)


#: name -> (constructor or None for ``timm.create_model(name)``, input side)
MODELS = {
    "resnet18d": (None, 64), "resnet26d": (None, 64),
    "efficientnet_b0": (None, 64),
    "mobilenetv3_small_100": (None, 64), "mobilenetv3_large_100": (None, 64),
    "regnetx_002": (None, 64), "regnety_002": (None, 64),
    "convnext_atto": (None, 64), "convnext_nano": (None, 64),
    "rexnet_100": (None, 64), "rexnet_100 (drop_rate 0)": (_timm("rexnet_100", drop_rate=0.0), 64),
    "ghostnet_100": (None, 64), "ghostnet_100 (drop_rate 0)": (_timm("ghostnet_100", drop_rate=0.0), 64),
    "dla34": (None, 64), "dla46_c": (None, 64),
    "res2net50_14w_8s": (None, 64),
    "dpn68": (None, 64),
    "nf_resnet26": (None, 64), "eca_nfnet_l0": (None, 64),
    "repvgg_a0": (None, 64), "repvgg_a0 (reparameterized)": (_reparameterized("repvgg_a0"), 64),
    "mixnet_s": (None, 64),
    "inception_v3": (None, 75), "inception_v4": (None, 75),
    "densenet121": (None, 64),
    "poolformer_s12": (None, 64), "poolformerv2_s12": (None, 64),
    "convmixer (dim 64, depth 2)": (_convmixer, 32),
    # library layers seen in few families: GRN (addcmul), SplitAttn, CondConv2d, BlurPool2d, eSE
    "convnextv2_atto": (None, 64), "resnest14d": (None, 64), "efficientnet_cc_b0_4e": (None, 64),
    "resnetblur18": (None, 64), "ese_vovnet19b_dw": (None, 64),
    # shape-dependent forwards: captured by torch.export
    "vgg11": (None, 64), "dm_nfnet_f0": (None, 64),
    # blocks of a Sequential that pass a list along and test isinstance(x, list)
    "selecsls42b": (None, 64),
    # issue 20, met surveying architectures no test named: exported blocks with nn.Identity
    # children (drop_path1, pool, se), in-place writes (x += y, slice assignment), advanced
    # indexing and einsum in exported code, math.ceil on shapes
    "tiny_vit_5m_224": (None, 64), "nest_tiny": (_timm("nest_tiny", img_size=64), 64),
    "fastvit_t8": (None, 64), "twins_svt_small": (_timm("twins_svt_small", img_size=64), 64),
    "mvitv2_tiny": (_timm("mvitv2_tiny", img_size=64), 64), "volo_d1_224": (_timm("volo_d1_224", img_size=64), 64),
}
#: Models whose train forward draws dropout masks: no train-mode comparison.
STOCHASTIC = {"rexnet_100", "ghostnet_100", "nest_tiny"}
#: Models whose train forward normalises a batch of 2 at 1x1 or 2x2 (inception's last blocks):
#: float32 rounding is amplified past 1e-4, so train mode is compared in float64.
ILL_CONDITIONED = {"inception_v3", "inception_v4", "res2net50_14w_8s", "selecsls42b"}
FAST = {"resnet18d", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto", "nf_resnet26",
        "convmixer (dim 64, depth 2)"}


def _build(name):
    make, side = MODELS[name]
    torch.manual_seed(0)
    model = make() if make else timm().create_model(name, pretrained=False, num_classes=10)
    return randomize_batchnorm(model).eval(), side


def _input(side, seed=0):
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.standard_normal((2, 3, side, side)).astype(np.float32))


def _forward(jm, x):
    return nnx.jit(lambda m, x: m(x))(jm, jnp.asarray(x.numpy()))


def _draws_in_train(tm):
    """Whether torch's train forward draws masks: a dropout or drop-path with p > 0 (timm keeps
    a functional dropout's rate in ``drop_rate``)."""
    return any(getattr(m, a, 0) > 0 for m in tm.modules() for a in ("p", "drop_prob", "drop_rate")
               if isinstance(getattr(m, a, 0), float))


@pytest.mark.parametrize("name", [pytest.param(n, marks=() if n in FAST else pytest.mark.slow)
                                  for n in MODELS])
def test_timm_model_matches_torch(name):
    tm, side = _build(name)
    x = _input(side)
    train_twin = copy.deepcopy(tm)
    jm = translate(tm, x)

    with torch.no_grad():
        ref = tm(x)
    assert relative_error(_forward(jm, x), ref) <= 1e-4, "eval forward"

    ours, theirs = equivalence.state_dict(jm), tm.state_dict()
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        assert ours[k].shape == tuple(v.shape), k
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)

    assert _draws_in_train(tm) == (name in STOCHASTIC)
    if name in STOCHASTIC:
        return
    tolerance = 1e-4
    if name in ILL_CONDITIONED:
        train_twin, x, tolerance = train_twin.double(), x.double(), 1e-8
        jm = translate(train_twin, x)
    train_twin.train()
    jm.train()
    with torch.no_grad():
        ref = train_twin(x)
    assert relative_error(_forward(jm, x), ref) <= tolerance, "train forward"
    ours, theirs = equivalence.state_dict(jm), train_twin.state_dict()
    for k, v in theirs.items():
        if k.endswith("num_batches_tracked"):
            assert int(ours[k]) == int(v) == 1, k
        elif k.endswith(("running_mean", "running_var")):
            assert relative_error(ours[k], v) <= tolerance, k
        else:
            np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
