import math

from benchmarks.aws_reference import later_rate


def epochs(stage, *rates):
    return [{"stage": stage, "epoch": n, "samples_per_s": rate} for n, rate in enumerate(rates, 1)]


def test_the_rate_is_the_final_models_own_after_its_first_epoch():
    # a pretraining stage (MF before NeuMF) counts in the curve's seconds, not in the model's rate
    assert later_rate(epochs("mf", 100.0, 900.0) + epochs("neumf", 10.0, 30.0, 50.0)) == 40.0


def test_a_curve_without_stages_counts_its_epochs_after_the_first():
    # the reference's curve: one model, no stage
    curve = [{"epoch": n, "samples_per_s": rate} for n, rate in enumerate((1.0, 20.0, 40.0), 1)]
    assert later_rate(curve) == 30.0


def test_a_single_epoch_counts_as_it_is():
    assert later_rate(epochs("neumf", 7.0)) == 7.0


def test_no_epoch_has_no_rate():
    assert math.isnan(later_rate([]))
