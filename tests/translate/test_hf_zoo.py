"""Models that torch.fx cannot trace, translated through the torch.export fallback: Hugging Face
vision models (random weights, from small configs) and timm's TF-'same'-padding models.

Each: eval forward within 1e-4 relative of torch, every output field, and ``state_dict`` equal
to torch's in keys, order, shapes and values. The bigger models are ``slow``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from equivalence import compare, state_dict
from equivalence._torch import import_torchvision
from tests._util import largest_value
from tests._zoo import randomize_batchnorm, relative_error, timm
from tests._zoo import translate_unchanged as translate

import_torchvision()        # transformers' image utilities import torchvision
transformers = pytest.importorskip("transformers")


def _awake(model, seed=0):
    """Random values for parameters initialised to (nearly) zero (layer scales at 1e-6,
    ConvNeXt V2's GRN at 0): else those blocks are the identity and hide bugs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.abs().max() < 1e-3:
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return randomize_batchnorm(model, seed)


def check(model, x):
    """Translate ``model`` (eval) for example input ``x`` and compare it with torch."""
    model = _awake(model).eval()
    jm = translate(model, x)
    y, ty = jm(jnp.asarray(x.numpy())), model(x)
    if isinstance(ty, dict):
        assert type(y).__name__ == type(ty).__name__ and list(y) == list(ty)
        for k in ty:        # a field may be a tuple (hidden states, a backbone's feature maps)
            ours, theirs = jax.tree_util.tree_leaves(getattr(y, k)), torch.utils._pytree.tree_leaves(ty[k])
            assert len(ours) == len(theirs), k
            for a, b in zip(ours, theirs):
                assert relative_error(a, b.detach()) <= 1e-4, k
    else:
        assert relative_error(y, ty.detach()) <= 1e-4
    sd, tsd = state_dict(jm), model.state_dict()
    assert list(sd) == list(tsd)
    for k, v in tsd.items():
        assert np.asarray(sd[k]).shape == tuple(v.shape), k
        np.testing.assert_array_equal(np.asarray(sd[k]), v.numpy(), err_msg=k)
    return jm


def _x(n=2, size=32, seed=0):
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_resnet_model():
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic")
    jm = check(transformers.ResNetModel(cfg), _x())
    y = jm(jnp.asarray(_x().numpy()))
    assert y.pooler_output.shape == (2, 16, 1, 1) and y.hidden_states is None


def test_convnextv2_model():
    cfg = transformers.ConvNextV2Config(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    check(transformers.ConvNextV2Model(cfg), _x())


def test_timm_conv2d_same():
    layers = timm().layers
    model = torch.nn.Sequential(layers.Conv2dSame(3, 6, 3, stride=2), torch.nn.BatchNorm2d(6),
                                layers.Conv2dSame(6, 4, 4, stride=3, groups=2, bias=False))
    check(model, _x(size=23))


@pytest.mark.slow
def test_resnet_for_image_classification():
    cfg = transformers.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 2],
                                    layer_type="bottleneck", num_labels=5)
    check(transformers.ResNetForImageClassification(cfg), _x())


@pytest.mark.slow
def test_convnext_model():
    cfg = transformers.ConvNextConfig(hidden_sizes=[8, 16], depths=[1, 1], num_stages=2)
    check(transformers.ConvNextModel(cfg), _x())


@pytest.mark.slow
def test_regnet_model():
    cfg = transformers.RegNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], groups_width=4)
    check(transformers.RegNetModel(cfg), _x())


@pytest.mark.slow
def test_mobilenet_v2_model():
    cfg = transformers.MobileNetV2Config(depth_multiplier=0.25, image_size=32)
    check(transformers.MobileNetV2Model(cfg), _x())


@pytest.mark.slow
def test_efficientnet_model():
    cfg = transformers.EfficientNetConfig(width_coefficient=0.1, depth_coefficient=0.1, image_size=32,
                                          hidden_dim=128)
    check(transformers.EfficientNetModel(cfg), _x())


def _vit_config(cls, **kwargs):
    return cls(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               image_size=64, patch_size=16, **kwargs)


#: Models whose roots take arguments defaulting to None and ``**kwargs`` (traced for the
#: example's, the defaults), whose layers are wrapped for gradient checkpointing and return
#: tuples, and whose outputs are ModelOutputs read by position and attribute; each also proven.
ROOTS = {
    "ViTModel": lambda: transformers.ViTModel(_vit_config(transformers.ViTConfig)),
    "Dinov2Model": lambda: transformers.Dinov2Model(_vit_config(transformers.Dinov2Config)),
    "SegformerModel": lambda: transformers.SegformerModel(transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16],
        num_attention_heads=[1, 2], patch_sizes=[7, 3], strides=[4, 2], mlp_ratios=[2, 2],
        drop_path_rate=0.0)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(ROOTS))
def test_hugging_face_roots(name):
    torch.manual_seed(0)
    model, x = ROOTS[name](), _x(size=64)
    jm = check(model, x)
    report = compare(model, jm, x)
    assert report.passed, report.to_text()


@pytest.mark.slow
@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_efficientnet_standard_head(pooling):
    """B0's width (hidden_dim 1280): the head pools the 2x2 map of a 64x64 input with a
    1280-wide kernel (ceil_mode), which padded to 1280x1280 windows before pooling clipped them."""
    cfg = transformers.EfficientNetConfig(width_coefficient=1.0, depth_coefficient=0.1, image_size=64,
                                          hidden_dim=1280, pooling_type=pooling, num_labels=5)
    model = transformers.EfficientNetForImageClassification(cfg)
    assert model.efficientnet.pooler.kernel_size == 1280 and model.efficientnet.pooler.ceil_mode
    jm, x = check(model, _x(size=64)), _x(size=64)
    jaxpr = jax.make_jaxpr(lambda a: jm(a).logits)(jnp.asarray(x.numpy())).jaxpr
    assert largest_value(jaxpr) <= 64 * x.numel()  # 17 inputs now; whole windows were 170000


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "tf_mobilenetv3_large_100"])
def test_timm_tf_models(name):
    check(timm().create_model(name, pretrained=False, num_classes=7), _x(size=64))


_VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, image_size=32,
            patch_size=8)
_SWIN = dict(image_size=32, patch_size=2, embed_dim=16, depths=[2, 2], num_heads=[2, 4], window_size=4)
_MIT = dict(num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[8, 16], num_attention_heads=[1, 2])

#: Vision models no other test names, in small configurations, and the issue-20 classes each shows:
#: name -> (constructor, input side)
UNSEEN = {
    # relative position bias (meshgrid, table[index]) in an exported module; DropPath's torch.rand
    "Beit": (lambda: transformers.BeitModel(transformers.BeitConfig(**_VIT, use_relative_position_bias=True)), 32),
    # exported layers whose drop paths are nn.Identity (no op of their own)
    "Data2VecVision (no drop path)": (lambda: transformers.Data2VecVisionModel(transformers.Data2VecVisionConfig(
        **_VIT, use_relative_position_bias=True, drop_path_rate=0.0)), 32),
    "Swin (no drop path)": (lambda: transformers.SwinModel(transformers.SwinConfig(**_SWIN, drop_path_rate=0.0)), 32),
    "Swin": (lambda: transformers.SwinModel(transformers.SwinConfig(**_SWIN)), 32),
    # attention's inner module named `self`; DropPath's torch.rand
    "Segformer": (lambda: transformers.SegformerForSemanticSegmentation(transformers.SegformerConfig(
        **_MIT, decoder_hidden_size=16, num_labels=3)), 32),
    "Pvt": (lambda: transformers.PvtModel(transformers.PvtConfig(
        image_size=64, hidden_sizes=[8, 16], depths=[1, 1], num_encoder_blocks=2, sequence_reduction_ratios=[2, 1],
        num_attention_heads=[1, 2], mlp_ratios=[2, 2], patch_sizes=[4, 2], strides=[4, 2])), 64),
    "Dinov2": (lambda: transformers.Dinov2Model(transformers.Dinov2Config(**_VIT)), 32),
    "DeiT (with teacher)": (lambda: transformers.DeiTForImageClassificationWithTeacher(
        transformers.DeiTConfig(**_VIT, num_labels=5)), 32),
    "MobileViTV2": (lambda: transformers.MobileViTV2Model(transformers.MobileViTV2Config(
        image_size=64, width_multiplier=0.25)), 64),
    "Levit": (lambda: transformers.LevitModel(transformers.LevitConfig(
        image_size=64, hidden_sizes=[16, 24, 32], num_attention_heads=[1, 2, 2], depths=[1, 1, 1],
        key_dim=[8, 8, 8])), 64),
    # a tensor moved to another's device: x.to(y.device)
    "Yolos": (lambda: transformers.YolosModel(transformers.YolosConfig(
        **{**_VIT, "image_size": [32, 32]}, num_detection_tokens=4)), 32),
    "FocalNet": (lambda: transformers.FocalNetModel(transformers.FocalNetConfig(
        image_size=32, patch_size=2, embed_dim=16, depths=[1, 1], focal_levels=[2, 2])), 32),
    "PvtV2": (lambda: transformers.PvtV2Model(transformers.PvtV2Config(
        hidden_sizes=[8, 16], depths=[1, 1], num_encoder_blocks=2, sr_ratios=[2, 1], num_attention_heads=[1, 2],
        mlp_ratios=[2, 2], patch_sizes=[7, 3], strides=[4, 2])), 64),
    # backbones: the root's wrapper passes output_hidden_states=True on, the encoder's hooks
    # collect the hidden states (capture_outputs) and the root's wrapper drops them again
    "ConvNextBackbone": (lambda: transformers.ConvNextBackbone(transformers.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, out_features=["stage1", "stage2"])), 32),
    "Dinov2Backbone": (lambda: transformers.Dinov2Backbone(transformers.Dinov2Config(
        **_VIT, out_features=["stage1", "stage2"])), 32),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(UNSEEN))
def test_unseen_models(name):
    make, side = UNSEEN[name]
    torch.manual_seed(0)
    check(make(), _x(size=side))
