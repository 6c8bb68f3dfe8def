"""jaxrnn: recurrent sequence models as pure step functions lifted over time by ``lax.scan``."""

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
from jaxrnn.scan import unroll

__all__ = [
    "Cell",
    "GRUParams",
    "InputError",
    "LSTMParams",
    "LSTMState",
    "RNNParams",
    "gru",
    "hidden_size",
    "input_size",
    "lstm",
    "rnn",
    "simplified_gru",
    "unroll",
]
