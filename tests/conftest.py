import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

jax.config.update('jax_numpy_dtype_promotion', 'strict')
