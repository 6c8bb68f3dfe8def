"""Test settings: float64 available for finite differences, implicit rank promotion an error.

Matmuls run at full float32 precision: on GPUs JAX's default lets float32 matmuls use TF32
(about 3 significant digits), which is a speed choice, not a correctness property under test.
"""

import jax

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", "highest")
