"""Flax NNX modules with torch's constructor signatures, parameter names and layouts."""
from . import init
from .conv import (Conv1d, Conv2d, Conv3d, ConvTranspose1d, ConvTranspose2d,
                   ConvTranspose3d)
from .container import ModuleDict, ModuleList, Sequential
from .module import Module, named_children, named_modules
