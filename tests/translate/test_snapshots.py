"""Snapshots of generated source: a change in what the translator writes shows up in review.

After an intended change, rewrite them with
``JAXCONV_UPDATE_SNAPSHOTS=1 python -m pytest tests/translate/test_snapshots.py``.
"""
import os
import pathlib

import pytest
import torch

from equivalence.examples import EXAMPLES
from equivalence import translate_source
from tests._zoo import torchvision_models

HERE = pathlib.Path(__file__).parent / "snapshots"


def _models():
    return {
        "residual_cnn": lambda: EXAMPLES["residual_cnn"].torch_factory(seed=0),
        "dcgan_generator": lambda: EXAMPLES["dcgan_generator"].torch_factory(seed=0),
        "resnet50": lambda: torchvision_models().resnet50(),
        "mobilenet_v3_small": lambda: torchvision_models().mobilenet_v3_small(),
    }


@pytest.mark.parametrize("name", list(_models()))
def test_generated_source_matches_its_snapshot(name):
    torch.manual_seed(0)
    source = translate_source(_models()[name]())
    path = HERE / f"{name}.py.txt"
    if os.environ.get("JAXCONV_UPDATE_SNAPSHOTS"):
        path.write_text(source)
        pytest.skip(f"rewrote {path.name}: review its diff; this run compared nothing")
    assert path.exists(), f"no snapshot {path}; write it with JAXCONV_UPDATE_SNAPSHOTS=1"
    assert source == path.read_text(), (
        f"the generated source of {name} changed; if intended, rewrite the snapshot with "
        "JAXCONV_UPDATE_SNAPSHOTS=1")


def test_resnet50_has_one_bottleneck_class():
    source = (HERE / "resnet50.py.txt").read_text()
    assert source.count("\nclass ") == 2
    assert source.count("class Bottleneck(nn.Module)") == 1
