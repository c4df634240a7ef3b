import numpy as np
import pytest

from ncf.arrays import unique


@pytest.mark.parametrize("values", [
    np.array([3, 1, 3, 2, -7]), np.array(["b", "a", "b", "007", "7"]), np.array([], np.int64), np.array([5]),
])
def test_unique_is_numpys_sorted_distinct_values_of_the_same_dtype(values):
    expected = np.unique(values)
    got = unique(values)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
