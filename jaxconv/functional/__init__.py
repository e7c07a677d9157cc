"""Pure functions with ``torch.nn.functional``'s names, signatures and semantics."""
from ._args import conv_output_size, conv_transpose_output_size, pool_output_size
from .conv import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d,
                   conv_transpose3d)
from .padding import pad
