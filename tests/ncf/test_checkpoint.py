import numpy as np
import pytest

from ncf.checkpoint import Checkpointer
from ncf.errors import Interrupted
from ncf.training import TrainConfig, fit

CONFIG = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=4, patience=0, batch_size=512, dropout=0.1,
                     seed=3, refit=False, pretrain="none")


def quiet(e):
    pass


def stop_in_second_epoch_of(stage, dataset, config, checkpoint) -> list[str]:
    """Trains until `stage`'s second epoch starts, then stops it by request; the stages of the epochs run."""
    stages = []
    with pytest.raises(Interrupted, match=f"during epoch 2 of {stage}"):
        fit(dataset, config, lambda e: stages.append(e.stage), checkpoint=checkpoint,
            should_stop=lambda: stages.count(stage) == 1)
    return stages


def test_a_run_stopped_mid_training_resumes_and_ends_like_an_uninterrupted_one(dataset, tmp_path):
    uninterrupted = fit(dataset, CONFIG, quiet)
    whole = uninterrupted.model.get_weights()

    checkpoint = Checkpointer(tmp_path)
    epochs_seen = []

    def stop_in_third_epoch():
        return len(epochs_seen) == 2

    with pytest.raises(Interrupted, match="during epoch 3"):
        fit(dataset, CONFIG, epochs_seen.append, checkpoint=checkpoint, should_stop=stop_in_third_epoch)
    assert checkpoint.load().epoch == 2

    resumed_epochs = []
    resumed = fit(dataset, CONFIG, resumed_epochs.append, checkpoint=checkpoint)
    assert [e.epoch for e in resumed_epochs] == [3, 4]
    assert [e.epoch for e in resumed.history] == [1, 2, 3, 4]
    for a, b in zip(resumed.model.get_weights(), whole):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # the best epoch's optimiser state survives the checkpoint too
    for a, b in zip(resumed.optimizer.variables, uninterrupted.optimizer.variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_a_run_stopped_during_its_refit_resumes_the_refit_alone(dataset, tmp_path):
    config = TrainConfig(**{**CONFIG.to_dict(), "refit": True})
    uninterrupted = fit(dataset, config, quiet)
    whole, refit_epochs = uninterrupted.model.get_weights(), uninterrupted.best_epoch
    assert refit_epochs >= 2, "the refit must last two epochs or more for this test to stop in its second"

    checkpoint = Checkpointer(tmp_path)
    stop_in_second_epoch_of("refit", dataset, config, checkpoint)
    assert checkpoint.load().finished and checkpoint.stage("refit").load().epoch == 1

    resumed_epochs = []
    resumed = fit(dataset, config, resumed_epochs.append, checkpoint=checkpoint)
    assert [(e.stage, e.epoch) for e in resumed_epochs] == [("refit", k) for k in range(2, refit_epochs + 1)]
    for a, b in zip(resumed.model.get_weights(), whole):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_run_pretrained_from_mf_resumes_its_neumf_stage_without_training_the_mf_again(dataset, tmp_path):
    config = TrainConfig(**{**CONFIG.to_dict(), "pretrain": "mf", "refit": True, "epochs": 3})
    uninterrupted = fit(dataset, config, quiet)

    checkpoint = Checkpointer(tmp_path)
    stages = stop_in_second_epoch_of("neumf", dataset, config, checkpoint)
    assert stages == ["mf"] * 3 + ["neumf"] and checkpoint.stage("mf").load().finished

    resumed_epochs = []
    resumed = fit(dataset, config, resumed_epochs.append, checkpoint=checkpoint)
    mf_epochs = uninterrupted.pretrained["mf"]
    assert resumed.pretrained == {"mf": mf_epochs}  # known from the MF's checkpoint, for its refit
    assert [(e.stage, e.epoch) for e in resumed_epochs] == [("neumf", 2), ("neumf", 3)] + [
        ("refit-mf", k) for k in range(1, mf_epochs + 1)] + [("refit", k) for k in range(1, 4)]
    for a, b in zip(resumed.model.get_weights(), uninterrupted.model.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_a_finished_run_resumes_to_the_same_model_without_training(dataset, tmp_path):
    checkpoint = Checkpointer(tmp_path)
    first = fit(dataset, CONFIG, quiet, checkpoint=checkpoint)
    epochs = []
    again = fit(dataset, CONFIG, epochs.append, checkpoint=checkpoint)
    assert epochs == [] and again.best_epoch == first.best_epoch
    for a, b in zip(again.model.get_weights(), first.model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_a_checkpoint_of_other_hyperparameters_is_not_resumed(dataset, tmp_path):
    checkpoint = Checkpointer(tmp_path)
    fit(dataset, CONFIG, quiet, checkpoint=checkpoint)
    epochs = []
    fit(dataset, TrainConfig(**{**CONFIG.to_dict(), "epochs": 2}), epochs.append, checkpoint=checkpoint)
    assert [e.epoch for e in epochs] == [1, 2]


def test_a_half_written_checkpoint_is_never_loaded(dataset, tmp_path):
    checkpoint = Checkpointer(tmp_path)
    fit(dataset, TrainConfig(**{**CONFIG.to_dict(), "epochs": 1}), quiet, checkpoint=checkpoint)
    good = checkpoint.path.read_bytes()
    checkpoint.path.write_bytes(good[: len(good) // 2])
    assert checkpoint.load() is None
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_write_killed_before_its_rename_leaves_the_previous_checkpoint_loadable(dataset, tmp_path):
    checkpoint = Checkpointer(tmp_path)
    fit(dataset, TrainConfig(**{**CONFIG.to_dict(), "epochs": 1}), quiet, checkpoint=checkpoint)
    # what a kill during np.savez leaves behind: a partial temporary file beside the real one
    (tmp_path / f".{checkpoint.path.name}.tmp").write_bytes(b"PK\x03\x04 partial")
    state = checkpoint.load()
    assert state is not None and state.epoch == 1


def test_a_checkpoint_of_other_data_is_not_resumed_and_the_log_says_so(dataset, tmp_path, caplog):
    checkpoint = Checkpointer(tmp_path)
    config = TrainConfig(**{**CONFIG.to_dict(), "epochs": 2})
    fit(dataset, config, quiet, checkpoint=checkpoint)
    assert checkpoint.load().finished
    other = dataset.with_validation_users(30, seed=1)  # the same users and items, other training pairs
    epochs = []
    fit(other, config, epochs.append, checkpoint=checkpoint)
    assert [e.epoch for e in epochs] == [1, 2]
    assert "was written for other data" in caplog.text
    again = []
    fit(other, config, again.append, checkpoint=checkpoint)  # its own checkpoint, finished: nothing to train
    assert again == []
