"""Defaults that follow the data: what `auto` becomes, and that a value the job sets is kept."""

import pytest

from ncf.defaults import BATCH_SIZES, MIN_STEPS_PER_EPOCH, auto_batch_size, resolved
from ncf.errors import ConfigError
from ncf.config import TrainConfig


def test_movielens_sized_data_keeps_the_batch_its_defaults_were_chosen_with():
    assert auto_batch_size(90_000 * 9) == 4096  # ml-latest-small: ~90k training pairs, 8 negatives each


def test_a_pilots_data_gets_a_batch_that_makes_enough_steps_an_epoch():
    batch = auto_batch_size(7_200 * 9)
    assert batch == 512 and -(-7_200 * 9 // batch) >= MIN_STEPS_PER_EPOCH


def test_the_batch_never_falls_below_the_smallest_nor_rises_above_the_largest():
    assert auto_batch_size(10) == BATCH_SIZES[0] and auto_batch_size(10**10) == BATCH_SIZES[1]


@pytest.mark.parametrize("examples", [1_000, 25_600, 25_601, 51_199, 200_000, 409_599, 409_600, 10**7])
def test_the_chosen_batch_is_the_largest_power_of_two_that_still_makes_the_steps(examples):
    batch = auto_batch_size(examples)
    assert batch & (batch - 1) == 0
    if BATCH_SIZES[0] < batch:
        assert examples // batch >= MIN_STEPS_PER_EPOCH
    if batch < BATCH_SIZES[1]:
        assert examples // (2 * batch) < MIN_STEPS_PER_EPOCH


def test_a_batch_the_job_sets_is_kept_whatever_the_data():
    config, reasons = resolved(TrainConfig(batch_size=4096), 100)
    assert config.batch_size == 4096 and reasons == {}


def test_auto_is_resolved_with_a_reason_that_names_the_steps():
    config, reasons = resolved(TrainConfig(negatives=4), 1_000)
    assert config.batch_size == 256 and "5,000 examples an epoch (1,000 pairs x 5)" in reasons["batch_size"]


@pytest.mark.parametrize("bad", [0, -3, "big", 1.5])
def test_a_batch_size_that_is_neither_auto_nor_a_positive_integer_is_refused(bad):
    with pytest.raises(ConfigError, match="batch_size must be auto or an integer"):
        TrainConfig(batch_size=bad)


def test_auto_is_spelled_in_any_case():
    assert TrainConfig(batch_size=" AUTO ").batch_size == "auto"
