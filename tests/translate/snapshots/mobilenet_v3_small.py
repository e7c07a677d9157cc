"""MobileNetV3, translated from ``torchvision.models.mobilenetv3.MobileNetV3`` by equivalence.translate.

``build(rngs=None)`` returns the model with jaxconv's (torch's) default initialisation, in train
mode as torch builds it; load torch's weights with ``equivalence.load_state_dict(model, state_dict)``.
"""
import jax
import jax.numpy as jnp
from flax import nnx

import jaxconv.functional as F
from jaxconv import nn, tensor as T


class MobileNetV3(nn.Module):
    """Translated from ``torchvision.models.mobilenetv3.MobileNetV3``."""

    def __init__(self, features, avgpool, classifier):
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier

    def __call__(self, x):
        features = self.features(x)
        avgpool = self.avgpool(features)
        flatten = T.flatten(avgpool, 1)
        classifier = self.classifier(flatten)
        return classifier


class InvertedResidual(nn.Module):
    """Translated from ``torchvision.models.mobilenetv3.InvertedResidual``."""

    def __init__(self, block):
        self.block = block

    def __call__(self, input):
        block = self.block(input)
        return block


class SqueezeExcitation(nn.Module):
    """Translated from ``torchvision.ops.misc.SqueezeExcitation``."""

    def __init__(self, avgpool, fc1, fc2, activation, scale_activation):
        self.avgpool = avgpool
        self.fc1 = fc1
        self.fc2 = fc2
        self.activation = activation
        self.scale_activation = scale_activation

    def __call__(self, input):
        avgpool = self.avgpool(input)
        fc1 = self.fc1(avgpool)
        activation = self.activation(fc1)
        fc2 = self.fc2(activation)
        scale_activation = self.scale_activation(fc2)
        mul = scale_activation * input
        return mul


class InvertedResidual_1(nn.Module):
    """Translated from ``torchvision.models.mobilenetv3.InvertedResidual``."""

    def __init__(self, block):
        self.block = block

    def __call__(self, input):
        block = self.block(input)
        add = block + input
        return add


def build(rngs=None):
    """The translated ``MobileNetV3``; ``rngs``: an ``nnx.Rngs`` or key for the parameters (the jaxconv stream when ``None``)."""
    return MobileNetV3(
        features=nn.Sequential(
            nn.Sequential(
                nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False, rngs=rngs),
                nn.BatchNorm2d(16, eps=0.001, momentum=0.01),
                nn.Hardswish(inplace=True),
            ),
            InvertedResidual(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False, rngs=rngs),
                        nn.BatchNorm2d(16, eps=0.001, momentum=0.01),
                        nn.ReLU(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(16, 8, 1, rngs=rngs),
                        fc2=nn.Conv2d(8, 16, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(16, 16, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(16, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(16, 72, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(72, eps=0.001, momentum=0.01),
                        nn.ReLU(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(72, 72, 3, stride=2, padding=1, groups=72, bias=False, rngs=rngs),
                        nn.BatchNorm2d(72, eps=0.001, momentum=0.01),
                        nn.ReLU(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(72, 24, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(24, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(24, 88, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(88, eps=0.001, momentum=0.01),
                        nn.ReLU(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(88, 88, 3, padding=1, groups=88, bias=False, rngs=rngs),
                        nn.BatchNorm2d(88, eps=0.001, momentum=0.01),
                        nn.ReLU(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(88, 24, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(24, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(24, 96, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(96, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(96, 96, 5, stride=2, padding=2, groups=96, bias=False, rngs=rngs),
                        nn.BatchNorm2d(96, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(96, 24, 1, rngs=rngs),
                        fc2=nn.Conv2d(24, 96, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(96, 40, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(40, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(40, 240, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(240, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(240, 240, 5, padding=2, groups=240, bias=False, rngs=rngs),
                        nn.BatchNorm2d(240, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(240, 64, 1, rngs=rngs),
                        fc2=nn.Conv2d(64, 240, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(240, 40, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(40, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(40, 240, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(240, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(240, 240, 5, padding=2, groups=240, bias=False, rngs=rngs),
                        nn.BatchNorm2d(240, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(240, 64, 1, rngs=rngs),
                        fc2=nn.Conv2d(64, 240, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(240, 40, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(40, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(40, 120, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(120, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(120, 120, 5, padding=2, groups=120, bias=False, rngs=rngs),
                        nn.BatchNorm2d(120, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(120, 32, 1, rngs=rngs),
                        fc2=nn.Conv2d(32, 120, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(120, 48, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(48, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(48, 144, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(144, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(144, 144, 5, padding=2, groups=144, bias=False, rngs=rngs),
                        nn.BatchNorm2d(144, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(144, 40, 1, rngs=rngs),
                        fc2=nn.Conv2d(40, 144, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(144, 48, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(48, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(48, 288, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(288, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(
                            288,
                            288,
                            5,
                            stride=2,
                            padding=2,
                            groups=288,
                            bias=False,
                            rngs=rngs,
                        ),
                        nn.BatchNorm2d(288, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(288, 72, 1, rngs=rngs),
                        fc2=nn.Conv2d(72, 288, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(288, 96, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(96, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(96, 576, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(576, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(576, 576, 5, padding=2, groups=576, bias=False, rngs=rngs),
                        nn.BatchNorm2d(576, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(576, 144, 1, rngs=rngs),
                        fc2=nn.Conv2d(144, 576, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(576, 96, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(96, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            InvertedResidual_1(
                block=nn.Sequential(
                    nn.Sequential(
                        nn.Conv2d(96, 576, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(576, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    nn.Sequential(
                        nn.Conv2d(576, 576, 5, padding=2, groups=576, bias=False, rngs=rngs),
                        nn.BatchNorm2d(576, eps=0.001, momentum=0.01),
                        nn.Hardswish(inplace=True),
                    ),
                    SqueezeExcitation(
                        avgpool=nn.AdaptiveAvgPool2d(1),
                        fc1=nn.Conv2d(576, 144, 1, rngs=rngs),
                        fc2=nn.Conv2d(144, 576, 1, rngs=rngs),
                        activation=nn.ReLU(),
                        scale_activation=nn.Hardsigmoid(),
                    ),
                    nn.Sequential(
                        nn.Conv2d(576, 96, 1, bias=False, rngs=rngs),
                        nn.BatchNorm2d(96, eps=0.001, momentum=0.01),
                    ),
                ),
            ),
            nn.Sequential(
                nn.Conv2d(96, 576, 1, bias=False, rngs=rngs),
                nn.BatchNorm2d(576, eps=0.001, momentum=0.01),
                nn.Hardswish(inplace=True),
            ),
        ),
        avgpool=nn.AdaptiveAvgPool2d(1),
        classifier=nn.Sequential(
            nn.Linear(576, 1024, rngs=rngs),
            nn.Hardswish(inplace=True),
            nn.Dropout(p=0.2, inplace=True, rngs=rngs),
            nn.Linear(1024, 1000, rngs=rngs),
        ),
    )
