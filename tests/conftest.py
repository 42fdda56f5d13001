import jax
import pytest

# The exactness checks compare float32 results with closed forms to about 1e-5. GPUs whose
# default float32 matrix products run in TF32 (about three digits) fail them for precision, not
# for a bug (three such failures on an H200); the CPU computes in full float32 either way.
jax.config.update("jax_default_matmul_precision", "highest")
# Implicit rank promotion (an (N,) array silently broadcast against (N, 1)) hides shape bugs;
# the package broadcasts explicitly, and the tests hold it to that.
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def key():
    return jax.random.key(20260)
