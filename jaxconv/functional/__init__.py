"""Pure functions with ``torch.nn.functional``'s names, signatures and semantics."""
from ._args import conv_output_size, conv_transpose_output_size, pool_output_size
from ._lowering import lowering
from .attention import multi_head_attention_forward, scaled_dot_product_attention
from .conv import (conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d,
                   conv_transpose3d)
from .padding import pad
from .resize import interpolate
from .rearrange import channel_shuffle, fold, pixel_shuffle, pixel_unshuffle, unfold
from .pooling import (avg_pool1d, avg_pool2d, avg_pool3d, lp_pool1d, lp_pool2d, lp_pool3d,
                      max_pool1d, max_pool2d, max_pool3d)
from .adaptive_pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_avg_pool3d,
                               adaptive_max_pool1d, adaptive_max_pool2d, adaptive_max_pool3d)
from .activation import (celu, elu, gelu, hardsigmoid, hardswish, hardtanh, leaky_relu,
                         log_softmax, mish, prelu, relu, relu6, selu, sigmoid, silu, softmax,
                         softmin, softplus, tanh)
from .linear import (dropout, dropout1d, dropout2d, dropout3d, flatten, linear,
                     stochastic_depth, unflatten)
from .normalization import (batch_norm, group_norm, instance_norm, layer_norm,
                            local_response_norm, rms_norm)
from .recurrent import (gru, gru_cell, lstm, lstm_cell, rnn_relu, rnn_relu_cell, rnn_tanh,
                        rnn_tanh_cell)
from .distance import pairwise_distance
from .losses import (binary_cross_entropy, binary_cross_entropy_with_logits, cross_entropy,
                     kl_div, nll_loss)
from .regression_losses import (gaussian_nll_loss, huber_loss, l1_loss, mse_loss,
                                poisson_nll_loss, smooth_l1_loss)
from .margin_losses import (cosine_embedding_loss, hinge_embedding_loss, margin_ranking_loss,
                            multi_margin_loss, multilabel_margin_loss,
                            multilabel_soft_margin_loss, soft_margin_loss, triplet_margin_loss,
                            triplet_margin_with_distance_loss)
from .ctc import ctc_loss
