import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from ncf.data import read_interactions
from ncf.dataset import prepare
from ncf.errors import ConfigError
from ncf.evaluation import draw_candidates, evaluate_candidates, popularity_scorer
from ncf.synthetic import SyntheticSpec, generate, main

ROOT = Path(__file__).resolve().parents[2]
SMALL = SyntheticSpec(interactions=100_000, users=2_000, items=1_000, seed=3)


@pytest.fixture(scope="module")
def small():
    return generate(SMALL)


def columns(data):
    return {name: getattr(data, name) for name in ("user", "item", "rating", "timestamp", "user_ids", "item_ids")}


def test_the_same_seed_gives_identical_data(small):
    again = generate(SMALL)
    for name, array in columns(small).items():
        np.testing.assert_array_equal(columns(again)[name], array, err_msg=name)


def test_a_different_seed_gives_different_data(small):
    other = generate(replace(SMALL, seed=4))
    assert not np.array_equal(other.user_ids, small.user_ids)
    assert not np.array_equal(other.item[:1000], small.item[:1000])
    assert not np.array_equal(np.bincount(other.user), np.bincount(small.user))


def test_the_requested_shape_is_met(small):
    assert len(small) == SMALL.interactions
    assert len(np.unique(small.user)) == SMALL.users
    assert len(np.unique(small.item)) >= 0.98 * SMALL.items
    assert len(small.user_ids) == SMALL.users and len(small.item_ids) == SMALL.items


def test_each_user_item_pair_occurs_once(small):
    keys = small.user.astype(np.int64) * SMALL.items + small.item
    assert len(np.unique(keys)) == len(keys)


def test_user_activity_is_heavy_tailed_with_a_floor(small):
    per_user = np.bincount(small.user)
    assert per_user.min() >= SMALL.min_per_user
    assert per_user.max() <= SMALL.max_per_user
    assert per_user.max() > 10 * np.median(per_user)
    assert per_user.mean() > 1.5 * np.median(per_user)  # lognormal: the mean sits well above the median


def test_item_popularity_follows_a_power_law(small):
    per_item = np.sort(np.bincount(small.item, minlength=SMALL.items))[::-1]
    top_percent = per_item[: SMALL.items // 100].sum() / len(small)
    top_tenth = per_item[: SMALL.items // 10].sum() / len(small)
    assert top_percent > 0.05  # five times their share of the catalogue
    assert top_tenth > 0.3


def test_timestamps_strictly_increase_within_each_user(small):
    order = np.lexsort((small.timestamp, small.user))
    same_user = np.diff(small.user[order]) == 0
    assert (np.diff(small.timestamp[order])[same_user] > 0).all()


def test_rows_are_grouped_by_user_in_time_order(small):
    starts = np.flatnonzero(np.r_[True, small.user[1:] != small.user[:-1]])
    assert len(starts) == SMALL.users  # each user's rows are contiguous
    same_user = small.user[1:] == small.user[:-1]
    assert (np.diff(small.timestamp)[same_user] > 0).all()


def test_raw_ids_are_distinct_sparse_and_not_indices(small):
    for ids, n in ((small.user_ids, SMALL.users), (small.item_ids, SMALL.items)):
        assert ids.dtype == np.int64
        assert len(np.unique(ids)) == n
        assert ids.min() >= 1 and ids.max() > 2 * n
        assert not (np.diff(ids) > 0).all()  # index order is not id order


def test_string_ids_are_text_and_distinct():
    data = generate(replace(SMALL, interactions=20_000, users=500, items=300, string_ids=True))
    got = data.interactions()
    assert got.users.dtype.kind == "U" and got.items.dtype.kind == "U"
    assert got.users[0].startswith("u") and got.items[0].startswith("m")
    assert len(np.unique(data.user_ids)) == 500 and len(np.unique(data.item_ids)) == 300


def test_ratings_are_half_stars_from_half_to_five(small):
    assert set(np.unique(small.rating).tolist()) <= {v / 2 for v in range(1, 11)}
    assert len(np.unique(small.rating)) >= 8
    assert 3.0 < small.rating.mean() < 4.0


def test_interactions_carry_the_raw_ids(small):
    got = small.interactions()
    np.testing.assert_array_equal(got.users, small.user_ids[small.user])
    np.testing.assert_array_equal(got.items, small.item_ids[small.item])
    np.testing.assert_array_equal(got.timestamps, small.timestamp)


@pytest.mark.parametrize("name", ["r.csv", "r.csv.gz", "r.parquet"])
@pytest.mark.parametrize("string_ids", [False, True])
def test_written_files_are_read_back_to_the_same_arrays(tmp_path, name, string_ids):
    data = generate(replace(SMALL, interactions=20_000, users=500, items=300, string_ids=string_ids))
    path = data.write(tmp_path / name)
    got, want = read_interactions(path), data.interactions()
    np.testing.assert_array_equal(got.users, want.users)
    np.testing.assert_array_equal(got.items, want.items)
    np.testing.assert_array_equal(got.ratings, want.ratings)
    np.testing.assert_array_equal(got.timestamps, want.timestamps)


def test_the_csv_has_movielens_header_and_unquoted_rows(tmp_path):
    path = generate(replace(SMALL, interactions=2_000, users=100, items=200)).write(tmp_path / "r.csv")
    header, first = path.read_text().splitlines()[:2]
    assert header == "userId,movieId,rating,timestamp"
    assert '"' not in first and len(first.split(",")) == 4


def test_an_unknown_file_ending_is_a_config_error(tmp_path, small):
    with pytest.raises(ConfigError, match="csv"):
        small.write(tmp_path / "r.json")


@pytest.mark.parametrize("interactions", [4_999, 100_001])
def test_counts_that_cannot_be_spread_over_the_users_are_a_config_error(interactions):
    with pytest.raises(ConfigError, match="cannot be spread"):
        SyntheticSpec(interactions=interactions, users=1_000, items=200)  # 5 to 100 per user


def test_every_user_can_have_every_item():
    data = generate(SyntheticSpec(interactions=20_000, users=100, items=200, max_user_share=1.0, topics=1))
    assert (np.bincount(data.user) == 200).all()


def svd_scorer(dataset, factors, iterations=10):
    """PureSVD on the training matrix: a user's row projected on the span of the top item factors, found by
    subspace iteration (orthonormalised by Cholesky QR: LAPACK's QR is slow on small matrices when the
    cores are busy)."""
    x = np.zeros((dataset.n_users, dataset.n_items))
    x[dataset.train.user, dataset.train.item] = 1.0
    basis = np.random.default_rng(0).standard_normal((dataset.n_items, factors))
    for _ in range(iterations):
        basis = x.T @ (x @ basis)
        basis = basis @ np.linalg.inv(np.linalg.cholesky(basis.T @ basis)).T
    users = x @ basis
    return lambda u, i: np.einsum("nk,nk->n", users[u], basis[i])


def hit_rates(spec):
    dataset = prepare(generate(spec).interactions(), test_k=1, validation_k=0)
    candidates = draw_candidates(dataset.test, dataset.seen, n_neg=99, seed=0)
    svd = svd_scorer(dataset, spec.resolved_topics)
    return (evaluate_candidates(svd, candidates, probabilities=False)["hr@10"],
            evaluate_candidates(popularity_scorer(dataset.popularity), candidates, probabilities=False)["hr@10"])


def test_the_planted_topics_let_a_collaborative_model_beat_popularity():
    svd, popularity = hit_rates(SMALL)  # measured: 0.65 against 0.52
    assert svd > popularity + 0.08


def test_without_planted_topics_the_same_model_does_not_beat_popularity():
    svd, popularity = hit_rates(replace(SMALL, noise=1.0))  # every draw from global popularity
    assert svd < popularity


def test_the_command_line_writes_the_file_and_says_what(tmp_path):
    out = tmp_path / "r.parquet"
    done = subprocess.run(
        [sys.executable, "-m", "ncf.synthetic", "--interactions", "5000", "--users", "200", "--items", "300",
         "--seed", "1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "5,000 interactions" in done.stdout and str(out) in done.stdout
    assert len(read_interactions(out)) == 5_000


def test_the_command_line_refuses_an_impossible_shape_with_exit_code_2(tmp_path, capsys):
    code = main(["--interactions", "10", "--users", "200", "--out", str(tmp_path / "r.csv")])
    assert code == 2
    assert "cannot be spread" in capsys.readouterr().err
    assert not (tmp_path / "r.csv").exists()


def test_the_command_line_refuses_an_unknown_file_ending_with_exit_code_2(tmp_path, capsys):
    assert main(["--out", str(tmp_path / "r.json")]) == 2
    assert ".parquet" in capsys.readouterr().err
