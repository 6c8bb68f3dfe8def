"""Every cell variant the tests run over, by a short name used in test ids."""

import jaxrnn

CELLS = {
    "rnn_tanh": jaxrnn.rnn(),
    "rnn_relu": jaxrnn.rnn("relu"),
    "simplified_gru": jaxrnn.simplified_gru(),
    "gru_before": jaxrnn.gru(),
    "gru_after": jaxrnn.gru("after"),
    "lstm": jaxrnn.lstm(),
    "lstm_peephole": jaxrnn.lstm(peephole=True),
}
NAMES = list(CELLS)
