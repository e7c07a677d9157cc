"""ResNet, translated from ``torchvision.models.resnet.ResNet`` by equivalence.translate.

``build(rngs=None)`` returns the model with jaxconv's (torch's) default initialisation, in train
mode as torch builds it; load torch's weights with ``equivalence.load_state_dict(model, state_dict)``.
"""
import jax
import jax.numpy as jnp
from flax import nnx

import jaxconv.functional as F
from jaxconv import nn, tensor as T


class ResNet(nn.Module):
    """Translated from ``torchvision.models.resnet.ResNet``."""

    def __init__(self, conv1, bn1, relu, maxpool, layer1, layer2, layer3, layer4, avgpool, fc):
        self.conv1 = conv1
        self.bn1 = bn1
        self.relu = relu
        self.maxpool = maxpool
        self.layer1 = layer1
        self.layer2 = layer2
        self.layer3 = layer3
        self.layer4 = layer4
        self.avgpool = avgpool
        self.fc = fc

    def __call__(self, x):
        conv1 = self.conv1(x)
        bn1 = self.bn1(conv1)
        relu = self.relu(bn1)
        maxpool = self.maxpool(relu)
        layer1 = self.layer1(maxpool)
        layer2 = self.layer2(layer1)
        layer3 = self.layer3(layer2)
        layer4 = self.layer4(layer3)
        avgpool = self.avgpool(layer4)
        flatten = T.flatten(avgpool, 1)
        fc = self.fc(flatten)
        return fc


class Bottleneck(nn.Module):
    """Translated from ``torchvision.models.resnet.Bottleneck``."""

    def __init__(self, conv1, bn1, conv2, bn2, conv3, bn3, relu, downsample=None):
        self.conv1 = conv1
        self.bn1 = bn1
        self.conv2 = conv2
        self.bn2 = bn2
        self.conv3 = conv3
        self.bn3 = bn3
        self.relu = relu
        self.downsample = downsample

    def __call__(self, x):
        conv1 = self.conv1(x)
        bn1 = self.bn1(conv1)
        relu = self.relu(bn1)
        conv2 = self.conv2(relu)
        bn2 = self.bn2(conv2)
        relu_1 = self.relu(bn2)
        conv3 = self.conv3(relu_1)
        bn3 = self.bn3(conv3)
        downsample = x if self.downsample is None else self.downsample(x)
        add = bn3 + downsample
        relu_2 = self.relu(add)
        return relu_2


def build(rngs=None):
    """The translated ``ResNet``; ``rngs``: an ``nnx.Rngs`` or key for the parameters (the jaxconv stream when ``None``)."""
    return ResNet(
        conv1=nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False, rngs=rngs),
        bn1=nn.BatchNorm2d(64),
        relu=nn.ReLU(inplace=True),
        maxpool=nn.MaxPool2d(3, stride=2, padding=1),
        layer1=nn.Sequential(
            Bottleneck(
                conv1=nn.Conv2d(64, 64, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(64),
                conv2=nn.Conv2d(64, 64, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(64),
                conv3=nn.Conv2d(64, 256, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(256),
                relu=nn.ReLU(inplace=True),
                downsample=nn.Sequential(nn.Conv2d(64, 256, 1, bias=False, rngs=rngs), nn.BatchNorm2d(256)),
            ),
            Bottleneck(
                conv1=nn.Conv2d(256, 64, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(64),
                conv2=nn.Conv2d(64, 64, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(64),
                conv3=nn.Conv2d(64, 256, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(256),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(256, 64, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(64),
                conv2=nn.Conv2d(64, 64, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(64),
                conv3=nn.Conv2d(64, 256, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(256),
                relu=nn.ReLU(inplace=True),
            ),
        ),
        layer2=nn.Sequential(
            Bottleneck(
                conv1=nn.Conv2d(256, 128, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(128),
                conv2=nn.Conv2d(128, 128, 3, stride=2, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(128),
                conv3=nn.Conv2d(128, 512, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(512),
                relu=nn.ReLU(inplace=True),
                downsample=nn.Sequential(
                    nn.Conv2d(256, 512, 1, stride=2, bias=False, rngs=rngs),
                    nn.BatchNorm2d(512),
                ),
            ),
            Bottleneck(
                conv1=nn.Conv2d(512, 128, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(128),
                conv2=nn.Conv2d(128, 128, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(128),
                conv3=nn.Conv2d(128, 512, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(512),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(512, 128, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(128),
                conv2=nn.Conv2d(128, 128, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(128),
                conv3=nn.Conv2d(128, 512, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(512),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(512, 128, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(128),
                conv2=nn.Conv2d(128, 128, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(128),
                conv3=nn.Conv2d(128, 512, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(512),
                relu=nn.ReLU(inplace=True),
            ),
        ),
        layer3=nn.Sequential(
            Bottleneck(
                conv1=nn.Conv2d(512, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, stride=2, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
                downsample=nn.Sequential(
                    nn.Conv2d(512, 1024, 1, stride=2, bias=False, rngs=rngs),
                    nn.BatchNorm2d(1024),
                ),
            ),
            Bottleneck(
                conv1=nn.Conv2d(1024, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(1024, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(1024, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(1024, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(1024, 256, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(256),
                conv2=nn.Conv2d(256, 256, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(256),
                conv3=nn.Conv2d(256, 1024, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(1024),
                relu=nn.ReLU(inplace=True),
            ),
        ),
        layer4=nn.Sequential(
            Bottleneck(
                conv1=nn.Conv2d(1024, 512, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(512),
                conv2=nn.Conv2d(512, 512, 3, stride=2, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(512),
                conv3=nn.Conv2d(512, 2048, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(2048),
                relu=nn.ReLU(inplace=True),
                downsample=nn.Sequential(
                    nn.Conv2d(1024, 2048, 1, stride=2, bias=False, rngs=rngs),
                    nn.BatchNorm2d(2048),
                ),
            ),
            Bottleneck(
                conv1=nn.Conv2d(2048, 512, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(512),
                conv2=nn.Conv2d(512, 512, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(512),
                conv3=nn.Conv2d(512, 2048, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(2048),
                relu=nn.ReLU(inplace=True),
            ),
            Bottleneck(
                conv1=nn.Conv2d(2048, 512, 1, bias=False, rngs=rngs),
                bn1=nn.BatchNorm2d(512),
                conv2=nn.Conv2d(512, 512, 3, padding=1, bias=False, rngs=rngs),
                bn2=nn.BatchNorm2d(512),
                conv3=nn.Conv2d(512, 2048, 1, bias=False, rngs=rngs),
                bn3=nn.BatchNorm2d(2048),
                relu=nn.ReLU(inplace=True),
            ),
        ),
        avgpool=nn.AdaptiveAvgPool2d(1),
        fc=nn.Linear(2048, 1000, rngs=rngs),
    )
