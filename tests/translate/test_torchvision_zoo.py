"""Every torchvision classification, segmentation and video model, translated and run against
torch: eval outputs within 1e-4 (float32, randomised BatchNorm), the state_dict bit-equal,
``equivalence.compare`` passing layer by layer, and, for models without dropout, one train-mode
step (outputs and BatchNorm buffers).

The whole zoo is ``slow``; one small model per family runs by default."""
import jax.numpy as jnp
from flax import nnx
import numpy as np
import pytest
import torch

from equivalence import compare, state_dict
from tests._zoo import randomize_batchnorm, relative_error, torchvision_models
from tests._zoo import translate_unchanged as translate

TOL = 1e-4
TRAIN_MAX_PARAMS = 350_000_000    # see _train_step_fits
_FULL = __import__("os").environ.get("ZOO_FULL") == "1"      # the quick models at full width too
SMALL = (1, 3, 64, 64)
CLIP = (1, 3, 8, 64, 64)
FULL_CLIP = (1, 3, 16, 224, 224)

#: name -> (input shape, constructor kwargs); everything else: SMALL, no kwargs.
SPECIAL = {
    "vgg11": ((1, 3, 32, 32), {}), "inception_v3": ((1, 3, 96, 96), {"init_weights": False}),
    "maxvit_t": ((1, 3, 224, 224), {}), "googlenet": (SMALL, {"init_weights": False}),
    "vit_b_16": (SMALL, {"image_size": 64}), "vit_b_32": (SMALL, {"image_size": 64}),
    "vit_l_16": (SMALL, {"image_size": 64}), "vit_l_32": (SMALL, {"image_size": 64}),
    "vit_h_14": ((1, 3, 56, 56), {"image_size": 56}),
    "s3d": ((1, 3, 16, 224, 224), {}), "mvit_v1_b": (FULL_CLIP, {}), "mvit_v2_s": (FULL_CLIP, {}),
}
#: one small model per family, run by default (the rest are ``slow``): vgg11 (130M
#: parameters) and maxvit_t (224x224 only) take most of a minute each on one core, so slow too,
#: and swin_t (over a minute; vit_b_32 keeps a transformer in the quick run).
QUICK = {"resnet18", "densenet121", "efficientnet_b0", "mobilenet_v3_small",
         "regnet_x_400mf", "squeezenet1_1", "shufflenet_v2_x0_5", "mnasnet0_5", "googlenet",
         "convnext_tiny", "vit_b_32", "lraspp_mobilenet_v3_large", "r3d_18"}
#: the quick run builds slim twins of the same classes (same code paths, fewer channels).
SLIM = {"densenet121": lambda tvm: tvm.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2),
                                                 num_init_features=16, num_classes=10),
        "efficientnet_b0": lambda tvm: tvm.EfficientNet(
            tvm.efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.5, depth_mult=0.3)[0],
            dropout=0.2, num_classes=10),
        "convnext_tiny": lambda tvm: tvm.ConvNeXt(
            [tvm.convnext.CNBlockConfig(c, None if c == 192 else 2 * c, 1) for c in (24, 48, 96, 192)],
            stochastic_depth_prob=0.1, num_classes=10),
        "r3d_18": lambda tvm: tvm.video.resnet.VideoResNet(
            tvm.video.resnet.BasicBlock, [tvm.video.resnet.Conv3DSimple] * 4, [1, 1, 1, 1],
            tvm.video.resnet.BasicStem, num_classes=10)}


def _names():
    tvm = torchvision_models()
    out = [(n, "classification") for n in tvm.list_models(module=tvm)]
    out += [(n, "segmentation") for n in tvm.list_models(module=tvm.segmentation)]
    out += [(n, "video") for n in tvm.list_models(module=tvm.video)]
    return out


def _params():
    for name, kind in _names():
        marks = () if name in QUICK else (pytest.mark.slow,)
        yield pytest.param(name, kind, id=name, marks=marks)


def _build(name, kind):
    tvm = torchvision_models()
    shape, kwargs = SPECIAL.get(name, (CLIP if kind == "video" else SMALL, {}))
    if kind == "segmentation":
        kwargs = {"weights": None, "weights_backbone": None,
                  "aux_loss": not name.startswith("lraspp")}
    torch.manual_seed(0)
    slim = SLIM.get(name) if name in QUICK and not _FULL else None
    model = randomize_batchnorm(slim(tvm) if slim else tvm.get_model(name, **kwargs))
    with torch.no_grad():       # torchvision zero-initialises some heads: make them matter
        for p in model.parameters():
            if not p.any():
                p.copy_(torch.randn(p.shape) * 0.05)
    return model, shape


def _outputs(y):
    """``{key: array}`` of a model output (a tensor, a dict or a named tuple)."""
    if isinstance(y, dict):
        return dict(y)
    if isinstance(y, tuple):
        return {str(i): v for i, v in enumerate(y) if v is not None}
    return {"": y}


@nnx.jit
def _run(model, x):
    """One forward, compiled whole (op-by-op dispatch compiles each op and is much slower);
    BatchNorm's train-mode buffer updates come back to ``model``."""
    return model(x)


def _has_dropout(model) -> bool:
    kinds = (torch.nn.Dropout, torch.nn.Dropout2d, torch.nn.Dropout3d)
    tvops = __import__("torchvision.ops", fromlist=["StochasticDepth"])
    return any(isinstance(m, kinds + (tvops.StochasticDepth,)) and m.p > 0 for m in model.modules()) \
        or any(getattr(m, "drop_rate", 0) > 0 or getattr(m, "attention_dropout", 0) > 0
               or getattr(m, "stochastic_depth_prob", 0) > 0 for m in model.modules())


def _train_step_fits(model) -> bool:
    """Whether the float64 train-mode step fits beside another test worker: it holds torch's and
    the translation's float64 weights, 16 bytes a parameter, which for vit_h_14 and
    regnet_y_128gf (630-645M parameters) is over 10 GB; their families' smaller members
    (vit_l_16, regnet_y_32gf) take the step."""
    return sum(p.numel() for p in model.parameters()) <= TRAIN_MAX_PARAMS


@pytest.mark.parametrize("name,kind", list(_params()))
def test_translated_model_matches_torch(name, kind):
    model, shape = _build(name, kind)
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
    take_train_step = not _has_dropout(model) and _train_step_fits(model)
    model.eval()
    jm = translate(model, x)

    theirs = model.state_dict()
    ours = state_dict(jm)
    assert list(ours) == list(theirs)
    for k, v in theirs.items():
        assert ours[k].shape == tuple(v.shape) and ours[k].dtype == v.numpy().dtype, k
        np.testing.assert_array_equal(ours[k], v.numpy(), err_msg=k)
    del ours, theirs  # host copies: a model's worth for the largest ones

    with torch.no_grad():
        expected = _outputs(model(x))
    got = _outputs(_run(jm, jnp.asarray(x.numpy())))
    assert sorted(got) == sorted(expected)
    if len(expected) > 1 and isinstance(expected, dict):    # jit sorts a dict's keys: order eagerly
        assert list(jm(jnp.asarray(x.numpy()))) == list(expected)
    for k in expected:
        assert relative_error(got[k], expected[k]) <= TOL, (k, relative_error(got[k], expected[k]))
    report = compare(model, jm, x)      # and proven layer by layer
    assert report.passed, report.to_text()

    if not take_train_step:
        return
    # the same torch model (eval mode changed nothing in it), converted in place: the eval
    # checks' copies are released first, so the largest models fit in memory
    del jm, got, expected, report
    # float64: train mode normalises deep layers by the statistics of a 2-sample batch of
    # small maps, which amplifies float32 rounding past 1e-3 in resnet152
    train = model.train().double()
    jt = translate(train, torch.zeros((2, *shape[1:]), dtype=torch.float64))
    x2 = torch.from_numpy(np.random.default_rng(1).standard_normal((2, *shape[1:])))
    with torch.no_grad():
        expected = _outputs(train(x2))
    got = _outputs(_run(jt, jnp.asarray(x2.numpy())))
    for k in expected:
        assert relative_error(got[k], expected[k]) <= TOL, ("train", k)
    after = state_dict(jt)
    for k, v in train.state_dict().items():
        if k.endswith("num_batches_tracked"):
            assert int(after[k]) == int(v), k
        elif k.endswith(("running_mean", "running_var")):
            assert relative_error(after[k], v.numpy()) <= TOL, k
