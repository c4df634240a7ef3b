import re
from dataclasses import replace

import numpy as np
import pytest

from ncf.errors import ConfigError
from ncf.evaluation import draw_candidates, evaluate_candidates, popularity_scorer, sample_users
from ncf.training import EpochLog, TrainConfig, fit, keras_scorer


def test_a_trained_neumf_ranks_held_out_items_better_than_popularity(dataset):
    result = fit(dataset, TrainConfig(model="neumf", factors=16, mlp_layers=(32, 16, 8), epochs=8, batch_size=256,
                                      learning_rate=0.005),
                 on_epoch=lambda e: None)
    test = draw_candidates(dataset.test, dataset.seen, 99, seed=0)
    model = evaluate_candidates(keras_scorer(result.model), test)
    popular = evaluate_candidates(popularity_scorer(dataset.popularity), test, probabilities=False)
    assert model["hr@10"] > popular["hr@10"] + 0.15, (model, popular)


@pytest.mark.parametrize("whole_up_to", ["none", "users"], ids=["every table row by row", "users whole"])
def test_a_job_ends_with_the_same_weights_whichever_tables_lazy_adam_updates_whole(dataset, monkeypatch,
                                                                                   whole_up_to):
    # at batch 256 the test data's tables (fewer than 512 rows) are updated whole; the compiled steps that
    # update them row by row, or the users whole and the items row by row, must end in the same place
    from ncf.optimizers import LazyAdam

    assert dataset.n_users < dataset.n_items <= 2 * 256
    config = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=2, batch_size=256, refit=False,
                         pretrain="none")
    whole = fit(dataset, config, on_epoch=lambda e: None).model.get_weights()
    limit = {"none": 0, "users": dataset.n_users}[whole_up_to]
    monkeypatch.setattr(LazyAdam, "row_wise", lambda self, variable: variable.shape[0] > limit)
    other = fit(dataset, config, on_epoch=lambda e: None).model.get_weights()
    assert len(other) == len(whole)
    for a, b in zip(whole, other):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_the_same_seed_gives_the_same_weights(dataset):
    config = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=2, batch_size=512, dropout=0.2,
                         seed=5, pretrain="none")
    a = fit(dataset, config, on_epoch=lambda e: None).model.get_weights()
    b = fit(dataset, config, on_epoch=lambda e: None).model.get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_the_chunk_of_steps_per_graph_call_changes_nothing_but_speed(dataset, monkeypatch):
    from ncf import loop

    config = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=2, batch_size=256, dropout=0.2, seed=2,
                         refit=False, pretrain="none")
    whole_epochs = fit(dataset, config, on_epoch=lambda e: None)
    monkeypatch.setattr(loop, "STEP_CALL_EXAMPLES", 3 * 256)  # several calls per epoch, the last one short
    assert len(dataset.train) * 5 > 4 * loop.STEP_CALL_EXAMPLES
    chunked = fit(dataset, config, on_epoch=lambda e: None)
    # the same steps in the same order; only the float order of the epoch's loss sum differs
    assert [e.loss for e in chunked.history] == pytest.approx([e.loss for e in whole_epochs.history], rel=1e-6)
    assert all(np.array_equal(a, b) for a, b in zip(chunked.model.get_weights(), whole_epochs.model.get_weights()))


def test_each_epoch_reports_one_regex_friendly_line(dataset):
    lines = []
    fit(dataset, TrainConfig(model="mf", factors=4, epochs=2, batch_size=512, refit=False), on_epoch=lines.append)
    assert [e.epoch for e in lines] == [1, 2]
    text = lines[-1].line()
    assert re.search(r"epoch=2/2 train:loss=([0-9.]+) validation:hr@10=([0-9.]+) validation:ndcg@10=([0-9.]+)", text)
    assert re.search(r"samples_per_s=\d+ ", text)
    assert lines[0].samples == len(dataset.train) * (1 + TrainConfig().negatives)


def test_early_stopping_stops_and_keeps_the_best_epochs_weights(dataset):
    seen = []
    result = fit(dataset, TrainConfig(model="mf", factors=4, epochs=30, patience=1, learning_rate=0.05,
                                      batch_size=256, refit=False), on_epoch=seen.append)
    assert len(seen) < 30
    best = max(seen, key=lambda e: (e.validation["hr@10"], e.validation["ndcg@10"]))
    assert result.best_epoch == best.epoch
    validation = draw_candidates(dataset.validation, dataset.seen, 99, seed=0)
    again = evaluate_candidates(keras_scorer(result.model), validation)
    assert again["hr@10"] == pytest.approx(best.validation["hr@10"])


def test_the_optimiser_state_kept_is_the_one_of_the_best_epochs_weights(dataset):
    from ncf.export import optimizer_state

    seen = []
    config = TrainConfig(model="mf", factors=4, epochs=30, patience=2, learning_rate=0.05, batch_size=256,
                         refit=False)
    result = fit(dataset, config, on_epoch=seen.append)
    assert result.best_epoch < len(seen)  # epochs ran after the best one: their steps must not ship
    examples = len(dataset.train) * (1 + config.negatives)  # one chunk an epoch at this size
    assert examples < 1 << 20
    steps_per_epoch = -(-examples // config.batch_size)
    state = optimizer_state(result.model, result.optimizer)
    assert int(state["iterations"]) == result.best_epoch * steps_per_epoch


def test_a_refit_trains_afresh_on_training_plus_validation_for_the_chosen_epochs(dataset):
    seen = []
    config = TrainConfig(model="mf", factors=4, epochs=30, patience=1, learning_rate=0.05, batch_size=256)
    result = fit(dataset, config, on_epoch=seen.append)
    chosen = [e for e in seen if e.stage == "mf"]
    refit = [e for e in seen if e.stage == "refit"]
    assert [e.stage for e in seen] == ["mf"] * len(chosen) + ["refit"] * result.best_epoch
    assert [e.epoch for e in refit] == list(range(1, result.best_epoch + 1))
    each = 1 + config.negatives
    assert all(e.samples == (len(dataset.train) + len(dataset.validation)) * each and not e.validation for e in refit)
    assert result.best_validation == max((e.validation for e in chosen), key=lambda v: (v["hr@10"], v["ndcg@10"]))
    assert result.history == seen
    # the refit model is not the early-stopped one: it learned the validation pairs as positives
    alone = fit(dataset, replace(config, refit=False), on_epoch=lambda e: None)
    differs = [not np.allclose(a, b) for a, b in zip(result.model.get_weights(), alone.model.get_weights())]
    assert any(differs)


def test_a_dataset_folds_validation_into_training_once_per_pair(dataset):
    merged = dataset.with_validation_in_train()
    assert merged.validation is None and merged.test == dataset.test and merged.seen is dataset.seen
    assert len(merged.train) == len(dataset.train) + len(dataset.validation)  # the splits are disjoint
    pairs = set(zip(merged.train.user.tolist(), merged.train.item.tolist()))
    assert pairs == set(zip(dataset.train.user.tolist(), dataset.train.item.tolist())) | set(
        zip(dataset.validation.user.tolist(), dataset.validation.item.tolist()))
    assert merged.train_seen.contains(dataset.validation.user, dataset.validation.item).all()
    assert merged.popularity.sum() == len(merged.train)


def test_pretraining_trains_gmf_then_mlp_then_neumf(dataset):
    stages = []
    config = TrainConfig(model="neumf", pretrain=True, factors=4, mlp_layers=(8, 4), epochs=1, batch_size=512)
    result = fit(dataset, config, on_epoch=lambda e: stages.append(e.stage))
    assert stages == ["gmf", "mlp", "neumf"] and result.config.model == "neumf"


def test_pretraining_from_mf_trains_mf_then_neumf_slower_then_refits_both_for_their_chosen_epochs(dataset):
    seen = []
    config = TrainConfig(model="neumf", pretrain="mf", factors=4, mlp_layers=(8, 4), epochs=3, patience=0,
                         batch_size=512, learning_rate=0.01, finetune_rate=0.2)
    result = fit(dataset, config, on_epoch=seen.append)
    mf_best = result.pretrained["mf"]
    assert [e.stage for e in seen] == ["mf"] * 3 + ["neumf"] * 3 + ["refit-mf"] * mf_best + ["refit"] * result.best_epoch
    merged = (len(dataset.train) + len(dataset.validation)) * (1 + config.negatives)
    assert all(e.samples == merged and not e.validation for e in seen[6:])
    assert float(result.optimizer.learning_rate) == pytest.approx(0.002)  # NeuMF after MF: finetune_rate x
    assert result.config == config and result.throughput() > 0  # the job's rate, and NeuMF's own epochs timed


def test_pretrain_is_spelled_as_a_mode_and_true_still_means_the_papers_towers():
    assert TrainConfig(pretrain=True).pretrain == "towers" and TrainConfig(pretrain=False).pretrain == "none"
    assert TrainConfig(pretrain=" MF ").pretrain == "mf" and TrainConfig().pretrain == "auto"
    assert TrainConfig(model="mf").pretrain == "auto"  # auto applies to every kind: it pretrains NeuMF only


@pytest.mark.parametrize("spelling, flag", [(True, True), (1, True), (" Yes ", True), ("y", True), ("ON", True),
                                            (np.True_, True), (False, False), (0, False), ("no", False),
                                            ("N", False), ("off", False), (np.int64(0), False)])
def test_pretrain_and_refit_read_a_boolean_by_the_same_rule(spelling, flag):
    config = TrainConfig(pretrain=spelling, refit=spelling)
    assert (config.pretrain, config.refit) == (("towers", "true") if flag else ("none", "false"))


def test_auto_pretrains_neumf_from_mf_when_every_user_is_validated_or_users_are_sparse(dataset, monkeypatch,
                                                                                        caplog):
    from ncf import stages

    config = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=1, patience=0, batch_size=512,
                         refit=False)
    everyone = fit(dataset, config, on_epoch=lambda e: None)
    assert [e.stage for e in everyone.history] == ["mf", "neumf"] and everyone.config.pretrain == "mf"
    assert "pretrain=auto: mf (validation held out every user)" in caplog.text
    unvalidated = fit(replace(dataset, validation=None), config, on_epoch=lambda e: None)  # nothing to stop an MF
    assert [e.stage for e in unvalidated.history] == ["neumf"] and unvalidated.config.pretrain == "none"
    assert re.search(r"pretrain=auto: none \([0-9.]+ training interactions per item, under 20, but no validation "
                     r"to stop an MF stage\)", caplog.text)
    warm = fit(dataset, config, on_epoch=lambda e: None, initial=lambda model, optimizer: None)
    assert [e.stage for e in warm.history] == ["neumf"] and warm.config.pretrain == "none"
    with pytest.raises(ConfigError, match="pretrain would replace the weights a warm start gives"):
        fit(dataset, replace(config, pretrain="mf"), initial=lambda model, optimizer: None)
    monkeypatch.setattr(stages, "VALIDATION_USERS", 30)
    monkeypatch.setattr(stages, "SPARSE_USER_PAIRS", 1)  # no user or item of this data is a sparse one
    monkeypatch.setattr(stages, "SPARSE_ITEM_PAIRS", 1)
    sample = fit(dataset, config, on_epoch=lambda e: None)
    assert [e.stage for e in sample.history] == ["neumf"] and sample.config.pretrain == "none"
    assert re.search(r"pretrain=auto: none \(validation held out a sample of users, or none, and there are "
                     r"[0-9.]+ training interactions per user and [0-9.]+ per item, at least 1 and 1\)", caplog.text)
    for bound in ("SPARSE_USER_PAIRS", "SPARSE_ITEM_PAIRS"):  # every user, then every item, is now a sparse one
        with monkeypatch.context() as sparse_rows:
            sparse_rows.setattr(stages, bound, 1000)
            sparse = fit(dataset, config, on_epoch=lambda e: None)
        assert [e.stage for e in sparse.history] == ["mf", "neumf"] and sparse.config.pretrain == "mf"
    assert re.search(r"pretrain=auto: mf \([0-9.]+ training interactions per user, under 1000\)", caplog.text)
    assert re.search(r"pretrain=auto: mf \([0-9.]+ training interactions per item, under 1000\)", caplog.text)
    mf = fit(dataset, replace(config, model="mf"), on_epoch=lambda e: None)
    assert [e.stage for e in mf.history] == ["mf"] and mf.config.pretrain == "none"


@pytest.mark.parametrize("change, message", [
    (dict(model="bpr"), "model must be one of"),
    (dict(optimizer="sgd"), "optimizer must be one of"),
    (dict(learning_rate=0), "learning_rate must be > 0"),
    (dict(negatives=0), "negatives must be >= 1"),
    (dict(mlp_layers=(5, 2)), "mlp_layers must be an even"),
    (dict(pretrain=True, model="mf"), "pretrain applies to model 'neumf' only"),
    (dict(refit="sometimes"), "refit must be one of"),
    (dict(refit=2), "refit must be one of"),  # not a boolean's spelling: only 0 and 1 are
    (dict(pretrain="gmf"), "pretrain must be one of"),
    (dict(pretrain="mf", model="mf"), "pretrain applies to model 'neumf' only"),
    (dict(finetune_rate=0), "finetune_rate must be in"),
    (dict(finetune_rate=1.5), "finetune_rate must be in"),
    (dict(validate_every=-1), "validate_every must be >= 0"),
])
def test_bad_hyperparameters_are_refused_with_their_name(change, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig(**change)


def test_epoch_log_computes_throughput():
    e = EpochLog("neumf", 1, 3, 0.5, 1000, 0.5, {}, 1.0)
    assert e.samples_per_second == 2000


def test_an_epoch_logs_its_progress_with_rate_and_time_left(dataset, monkeypatch, caplog):
    from ncf import loop, sampling

    monkeypatch.setattr(loop, "PROGRESS_SECONDS", 0.0)  # a line after every chunk of examples
    monkeypatch.setattr(sampling, "CHUNK_EXAMPLES", 9 * 300)
    total = len(dataset.train) * 9
    fit(dataset, TrainConfig(model="mf", factors=4, epochs=1, batch_size=256, refit=False), on_epoch=lambda e: None)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("progress ")]
    assert len(lines) == -(-len(dataset.train) // 256)
    assert re.fullmatch(rf"progress stage=mf epoch=1/1 examples=2304/{total} \(\d+%\) samples_per_s=\d+ "
                        rf"epoch_eta_s=\d+", lines[0]), lines[0]
    assert lines[-1].startswith(f"progress stage=mf epoch=1/1 examples={total}/{total} (100%)")


def test_a_stop_request_logs_where_the_epoch_stood_and_raises(dataset, caplog):
    from ncf.errors import Interrupted

    with pytest.raises(Interrupted, match="during epoch 1 of mf"):
        fit(dataset, TrainConfig(model="mf", factors=4, epochs=3, batch_size=256), on_epoch=lambda e: None,
            should_stop=lambda: True)
    assert any(r.getMessage().startswith("progress stage=mf epoch=1/3 examples=0/") for r in caplog.records)


def test_validation_ranks_a_fixed_sample_of_users_when_there_are_many(dataset, monkeypatch, caplog):
    from ncf import stages

    monkeypatch.setattr(stages, "VALIDATION_USERS", 30)
    config = TrainConfig(model="mf", factors=4, epochs=1, batch_size=256, refit=False)
    result = fit(dataset, config, on_epoch=lambda e: None)
    assert f"validation: 30 of {len(np.unique(dataset.validation.user))} users" in caplog.text
    sampled = draw_candidates(sample_users(dataset.validation, 30, config.seed), dataset.seen, 99, config.seed)
    assert len(sampled) == 30
    assert result.best_validation["hr@10"] == pytest.approx(
        evaluate_candidates(keras_scorer(result.model), sampled)["hr@10"])


def test_adam_and_lazy_adam_both_train_and_differ(dataset):
    config = TrainConfig(model="neumf", factors=4, mlp_layers=(8, 4), epochs=2, batch_size=256, refit=False)
    lazy = fit(dataset, config, on_epoch=lambda e: None)
    dense = fit(dataset, replace(config, optimizer="adam"), on_epoch=lambda e: None)
    assert lazy.history[-1].loss < lazy.history[0].loss and dense.history[-1].loss < dense.history[0].loss
    assert any(not np.allclose(a, b) for a, b in zip(lazy.model.get_weights(), dense.model.get_weights()))


@pytest.mark.parametrize("given, mode", [(True, "true"), (False, "false"), ("False", "false"), ("0", "false"),
                                         ("yes", "true"), (" AUTO ", "auto")])
def test_refit_is_auto_true_or_false_however_it_is_spelt(given, mode):
    assert TrainConfig(refit=given).refit == mode
    assert TrainConfig().refit == "auto"


def test_a_long_epoch_validates_in_equal_rounds_of_whole_chunks(dataset, monkeypatch):
    from ncf import sampling

    monkeypatch.setattr(sampling, "CHUNK_EXAMPLES", 256 * 9)  # one batch of positives per chunk
    each = 1 + TrainConfig().negatives
    total = len(dataset.train) * each
    seen = []
    fit(dataset, TrainConfig(model="mf", factors=4, epochs=2, batch_size=256, refit=False, patience=0,
                             validate_every=total // 3 + 1), on_epoch=seen.append)
    assert [(e.epoch, e.round, e.rounds) for e in seen] == [(1, 1, 3), (1, 2, 3), (1, 3, 3), (2, 1, 3), (2, 2, 3),
                                                            (2, 3, 3)]
    assert sum(e.samples for e in seen if e.epoch == 1) == total
    assert all(e.validation for e in seen)
    assert "epoch=1/2 round=2/3 train:loss=" in seen[1].line()
    chunks = -(-len(dataset.train) // 256)
    assert abs(seen[0].samples - seen[1].samples) <= 256 * each and seen[0].samples >= chunks // 3 * 256 * each - 256


def test_patience_counts_validation_rounds_and_can_stop_inside_an_epoch(dataset, monkeypatch, tmp_path):
    from ncf import sampling
    from ncf.checkpoint import Checkpointer

    monkeypatch.setattr(sampling, "CHUNK_EXAMPLES", 256 * 9)
    seen = []
    checkpoint = Checkpointer(tmp_path)
    result = fit(dataset, TrainConfig(model="mf", factors=4, epochs=30, patience=2, learning_rate=0.05,
                                      batch_size=256, refit=False, validate_every=256 * 9 * 2, min_delta=0.0),
                 on_epoch=seen.append, checkpoint=checkpoint)
    best = max(range(len(seen)), key=lambda i: (seen[i].validation["hr@10"], seen[i].validation["ndcg@10"], -i))
    assert len(seen) == best + 1 + 2  # stopped two rounds after the best one, not two epochs
    assert seen[0].rounds > 3 and seen[-1].round < seen[-1].rounds  # inside an epoch (seeded: always here)
    assert result.best_epoch == seen[best].epoch and result.best_validation == seen[best].validation
    state = checkpoint.load()  # written at the stop, finished: a restart trains nothing more
    assert state.finished and state.epoch == seen[-1].epoch and state.history == seen
    again = []
    fit(dataset, TrainConfig(model="mf", factors=4, epochs=30, patience=2, learning_rate=0.05, batch_size=256,
                             refit=False, validate_every=256 * 9 * 2, min_delta=0.0), on_epoch=again.append,
        checkpoint=checkpoint)
    assert again == []


def test_only_the_sampled_validation_users_give_up_an_interaction(dataset):
    users = np.unique(dataset.validation.user)
    sampled = dataset.with_validation_users(30, seed=4)
    assert len(np.unique(sampled.validation.user)) == 30
    assert set(sampled.validation.user.tolist()) <= set(users.tolist())
    others = ~np.isin(dataset.validation.user, sampled.validation.user)
    assert sampled.train_seen.contains(dataset.validation.user[others], dataset.validation.item[others]).all()
    assert not sampled.train_seen.contains(sampled.validation.user, sampled.validation.item).any()
    assert len(sampled.train) + len(sampled.validation) == len(dataset.train) + len(dataset.validation)
    assert sampled.test == dataset.test and sampled.seen is dataset.seen
    assert dataset.with_validation_users(len(users), seed=4) is dataset


def test_auto_refit_runs_when_every_user_is_validated_and_not_for_a_sample(dataset, monkeypatch, caplog):
    from ncf import stages

    config = TrainConfig(model="mf", factors=4, epochs=2, patience=0, batch_size=512)
    everyone = fit(dataset, config, on_epoch=lambda e: None)
    assert [e.stage for e in everyone.history] == ["mf", "mf", "refit", "refit"]
    monkeypatch.setattr(stages, "VALIDATION_USERS", 30)
    sample = fit(dataset, config, on_epoch=lambda e: None)
    assert [e.stage for e in sample.history] == ["mf", "mf"]
    assert "refit skipped (refit=auto)" in caplog.text
    forced = fit(dataset, replace(config, refit=True), on_epoch=lambda e: None)
    assert [e.stage for e in forced.history] == ["mf", "mf", "refit", "refit"]


def test_full_ranking_excludes_training_and_validation_items_but_never_the_test_item(dataset):
    known = dataset.seen_before_test()
    assert known.contains(dataset.train.user, dataset.train.item).all()
    assert known.contains(dataset.validation.user, dataset.validation.item).all()
    assert not known.contains(dataset.test.user, dataset.test.item).any()


def test_a_rise_of_validation_hr_smaller_than_min_delta_is_not_an_improvement():
    from ncf.history import TrainResult
    from ncf.loop import EarlyStopping

    search = EarlyStopping(patience=2, result=TrainResult(model=None, config=TrainConfig()), min_delta=0.001,
                           best_key=(0.8, 0.5))
    assert not search.better(0.8005, 0.9)       # 10 more hits of 20,000 users: noise, whatever the NDCG
    assert search.better(0.8010, 0.1)           # 20 more
    assert search.better(0.8, 0.5001)           # the same hits, ranked higher
    assert not search.better(0.7999, 0.9)
    assert EarlyStopping(2, search.result, best_key=(0.8, 0.5)).better(0.80005, 0.1)  # min_delta 0: any rise
    assert search.better(0.8 + 1 / 610, 0.4)    # one more hit of ml-latest-small's 610 users counts


@pytest.mark.parametrize("batch_size, says", [
    (65536, r"an epoch makes only 1 optimiser steps \(batch_size=65536\): set a smaller batch_size, or leave it "
            r"at auto"),
    (256, r"an epoch makes only 36 optimiser steps even at batch_size=256, the smallest auto chooses: the data set "
          r"is very small; try more epochs and patience, or a higher learning_rate"),
    (128, r"an epoch makes only 71 optimiser steps even at batch_size=128: the data set is very small"),
])
def test_too_few_steps_an_epoch_is_named_and_auto_is_suggested_only_where_it_would_change_the_batch(
        batch_size, says, caplog):
    from ncf.history import TrainResult
    from ncf.stages import _warn_unless_learned

    verdict = {"beats_popularity": False, "hr@10": 0.1, "popularity_hr@10": 0.12, "margin": -0.02,
               "margin_se": 0.01, "rows": 100}
    config = TrainConfig(batch_size=batch_size)
    _warn_unless_learned(verdict, TrainResult(model=None, config=config), config, 1000, 100)  # 9,000 examples
    assert re.search(says, caplog.text)
