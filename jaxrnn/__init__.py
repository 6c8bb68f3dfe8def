"""jaxrnn: recurrent sequence models as pure step functions lifted over time by ``lax.scan``."""

from jaxrnn import checkpoint, lm, lm_train, ngram, text
from jaxrnn._checks import InputError
from jaxrnn.cells import (
    Cell,
    GRUParams,
    LSTMParams,
    LSTMState,
    RNNParams,
    gru,
    hidden_size,
    input_size,
    lstm,
    rnn,
    simplified_gru,
)
from jaxrnn.interop import (
    gru_params_from_torch,
    lstm_params_from_torch,
    params_to_torch,
    rnn_params_from_torch,
)
from jaxrnn.layers import DenseParams, dense, dense_init
from jaxrnn.losses import sequence_mask, sigmoid_cross_entropy, softmax_cross_entropy
from jaxrnn.scan import unroll
from jaxrnn.train import (
    StepMetrics,
    clip_by_global_norm,
    clip_elementwise,
    make_optimizer,
    make_train_step,
)

__all__ = [
    "checkpoint",
    "lm",
    "lm_train",
    "ngram",
    "text",
    "Cell",
    "DenseParams",
    "GRUParams",
    "InputError",
    "LSTMParams",
    "LSTMState",
    "RNNParams",
    "StepMetrics",
    "clip_by_global_norm",
    "clip_elementwise",
    "dense",
    "dense_init",
    "gru",
    "gru_params_from_torch",
    "hidden_size",
    "input_size",
    "lstm",
    "lstm_params_from_torch",
    "make_optimizer",
    "make_train_step",
    "params_to_torch",
    "rnn",
    "rnn_params_from_torch",
    "sequence_mask",
    "sigmoid_cross_entropy",
    "simplified_gru",
    "softmax_cross_entropy",
    "unroll",
]
