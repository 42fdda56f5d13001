"""The printing rules: an estimate to its SE's leading digit, rounding errors as bounds."""
import math

import numpy as np
import pytest

from lvm_tutorial import report


@pytest.mark.parametrize("se, decimals", [
    (0.21, 1), (0.15, 2), (0.0019, 4), (0.006, 3), (0.0096, 3), (0.0196, 2), (0.1, 2), (0.0995, 2),
    (3.0, 0), (12.0, 0), (36895.88, -4), (1.94, 1), (1.96, 0), (2.04, 0)])
def test_se_decimals(se, decimals):
    assert report.se_decimals(se) == decimals


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_se_decimals_rejects_no_uncertainty(bad):
    with pytest.raises(ValueError):
        report.se_decimals(bad)


@pytest.mark.parametrize("value, se, sign, text", [
    (-18.239, 0.21, False, "-18.2 ± 0.2"),
    (0.642, 0.057, True, "+0.64 ± 0.06"),
    (0.0038, 0.0019, True, "+0.0038 ± 0.0019"),
    (-0.0061, 0.0019, True, "-0.0061 ± 0.0019"),
    (-0.00004, 0.002, True, "0.000 ± 0.002"),        # no signed zero
    (37019.91, 36895.88, False, "(4 ± 4)e+04"),
    (10538.0, 131.0, False, "(1.054 ± 0.013)e+04"),
    (1.96e8, 2.1e6, True, "(+1.96 ± 0.02)e+08"),
    (12.0, 40.0, False, "(1 ± 4)e+01"),
    (123.4, 12.0, False, "123 ± 12"),
])
def test_format_estimate(value, se, sign, text):
    assert report.format_estimate(value, se, sign=sign) == text


def test_format_mean_uses_the_standard_error_of_the_mean():
    x = np.array([0.0, 1.0])
    assert report.format_mean(x) == "0.5 ± 0.5"                                 # s = 0.707
    assert report.format_estimate(0.5, x.std() / np.sqrt(2)) == "0.5 ± 0.4"    # ddof=0: wrong


def test_format_bound_hides_the_value_and_shows_a_failure():
    assert report.format_bound(2.9e-6, 1e-5) == report.format_bound(-9.5e-7, 1e-5) == "< 1e-05"
    assert report.format_bound(3e-5, 1e-5) == "3.0e-05 NOT below 1e-05"


def test_quantile_se_matches_the_asymptotic_se_of_the_median(key):
    """Median of N(0,1): SE = sqrt(pi/2)/sqrt(n) = 1.2533/sqrt(n). Over 200 samples of size 2000
    the order-statistic SE's average is within 10 % of it (its own scatter is about 1 % here,
    so a false alarm is below 1e-6); the naive s/sqrt(n) (negative control) is 20 % off."""
    rng = np.random.default_rng(0)
    n = 2000
    ses = [report.quantile_with_se(rng.standard_normal(n), 0.5)[1] for _ in range(200)]
    exact = math.sqrt(math.pi / 2) / math.sqrt(n)
    assert abs(np.mean(ses) / exact - 1) < 0.1
    assert abs((1 / math.sqrt(n)) / exact - 1) > 0.2


def test_quantile_se_is_finite_for_a_cauchy_sample():
    """A heavy tail (no mean, no variance) still has a median with a small SE: ~pi/2/sqrt(n)."""
    x = np.random.default_rng(1).standard_cauchy(10_000)
    median, se = report.quantile_with_se(x, 0.5)
    assert abs(median) < 4 * se and 0.5 * np.pi / 2 / 100 < se < 2 * np.pi / 2 / 100


def test_format_quantiles_rounds_each_to_its_own_se():
    x = np.random.default_rng(2).standard_normal(10_000)
    text = report.format_quantiles(x, (0.1, 0.5, 0.9))
    assert text.startswith("median ") and ", 10% " in text and ", 90% " in text
    median = text.split(",")[0].split()[1]
    assert len(median.split(".")[1]) == report.se_decimals(report.quantile_with_se(x, 0.5)[1])
    assert report.format_quantiles(np.ones(100), (0.5,)) == "median 1"


def test_format_clipped_mean_states_the_clip():
    x = np.array([-1.0, 0.0, 1.0, 100.0])
    text = report.format_clipped_mean(x, -2, 2)
    assert text.endswith("(clipped to [-2, 2]; 1 of 4 draws clipped)")
    assert text.startswith(report.format_mean(np.array([-1.0, 0.0, 1.0, 2.0])))
