"""What every notebook source uses: markdown and code cells, and the shared first code cell."""

from nbformat.v4 import new_code_cell, new_markdown_cell

SETUP = """\
import os

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
{numpy}
import jaxrnn

%matplotlib inline
plt.rcParams["figure.dpi"] = 80
SMALL = os.environ.get("JAXRNN_NOTEBOOK_SIZE") == "small"  # the tests run every notebook small
"""


def setup(numpy: bool = True, extra: str = "") -> str:
    return SETUP.format(numpy="import numpy as np\n" if numpy else "") + extra


def md(text: str):
    return new_markdown_cell(text.strip("\n"))


def code(text: str):
    return new_code_cell(text.strip("\n"))
