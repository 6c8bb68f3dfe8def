"""Test settings: float64 available for finite differences, implicit rank promotion an error."""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
