import jax
import jax.numpy as jnp
import pytest

from lvm_tutorial.exercises import Feedback, compare


def reference(x):
    return jnp.cumsum(x)


CASES = [(jnp.arange(4.0),), (jnp.ones(3),)]


def test_a_correct_function_passes():
    assert compare(reference, reference, CASES) == Feedback(True, "matches the reference.")


def test_a_wrong_function_gets_the_targeted_hint():
    hint = lambda got, want, args: "did you sum instead of accumulating?"
    result = compare(lambda x: jnp.full_like(x, x.sum()), reference, CASES, diagnose=hint)
    assert not result.passed and result.message == "did you sum instead of accumulating?"
    assert str(result).startswith("Not yet: ")


def test_shape_errors_and_exceptions_become_feedback():
    assert "shape" in compare(lambda x: x.sum(), reference, CASES).message

    def broken(x):
        raise NotImplementedError("your code here")

    result = compare(broken, reference, CASES)
    assert not result.passed and "NotImplementedError" in result.message


def test_a_readers_implicit_rank_promotion_is_allowed_whatever_the_config():
    """The package is held to jax_numpy_rank_promotion="raise"; a reader's code is not:
    compare runs the reader's function under "allow"."""
    matrix_cases = [(jnp.arange(6.0).reshape(2, 3),)]
    centred = lambda x: x - jnp.mean(x, axis=0, keepdims=True)
    implicit = lambda x: x - jnp.mean(x, axis=0)               # (2, 3) - (3,): rank promotion
    with jax.numpy_rank_promotion("raise"):
        assert compare(implicit, centred, matrix_cases).passed
        # negative control: outside compare the same function raises under that config
        with pytest.raises(ValueError, match="rank_promotion"):
            implicit(*matrix_cases[0])
