import os
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')
sys.path.insert(0, os.path.dirname(__file__))

import jax  # noqa: E402

jax.config.update('jax_numpy_dtype_promotion', 'strict')

# Something in the jax stack raises the recursion limit to 3000 on first use; doing it up front keeps hypothesis
# from warning that it changed during a test (warnings are errors here).
sys.setrecursionlimit(max(sys.getrecursionlimit(), 3000))
