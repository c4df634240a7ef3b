import numpy as np
import pytest

from ncf.errors import DataError
from ncf.sampling import NegativeSampler, epoch_chunks
from ncf.seen import SeenItems


@pytest.fixture
def seen():
    rng = np.random.default_rng(3)
    users = np.repeat(np.arange(50), 30)
    items = np.concatenate([rng.choice(100, 30, replace=False) for _ in range(50)])
    return SeenItems.from_pairs(users, items, 50, 100)


def test_negatives_are_never_items_the_user_has_seen(seen):
    users = np.repeat(np.arange(50), 10)
    negatives = NegativeSampler(seen).sample(users, 8, np.random.default_rng(0))
    assert negatives.shape == (500, 8)
    assert not seen.contains(np.repeat(users, 8), negatives.ravel()).any()
    assert negatives.min() >= 0 and negatives.max() < 100


def test_negatives_are_uniform_over_unseen_items():
    seen = SeenItems.from_pairs(np.zeros(3, int), np.array([0, 5, 9]), 1, 10)
    draws = NegativeSampler(seen).sample(np.zeros(70_000, int), 1, np.random.default_rng(1)).ravel()
    counts = np.bincount(draws, minlength=10)
    assert counts[[0, 5, 9]].sum() == 0
    unseen = counts[[1, 2, 3, 4, 6, 7, 8]]
    assert np.all(np.abs(unseen - 10_000) < 500)  # ~5 standard deviations


def test_the_same_seed_draws_the_same_negatives_and_another_seed_does_not(seen):
    sampler = NegativeSampler(seen)
    a = sampler.sample(np.arange(50), 4, np.random.default_rng(7))
    b = sampler.sample(np.arange(50), 4, np.random.default_rng(7))
    c = sampler.sample(np.arange(50), 4, np.random.default_rng(8))
    assert (a == b).all() and not (a == c).all()


def test_candidates_are_distinct_within_a_row(seen):
    candidates = NegativeSampler(seen).sample_distinct(np.arange(50), 69, np.random.default_rng(0))
    assert all(len(set(row)) == 69 for row in candidates.tolist())
    assert not seen.contains(np.repeat(np.arange(50), 69), candidates.ravel()).any()


def test_asking_for_more_distinct_negatives_than_exist_is_a_clear_error(seen):
    with pytest.raises(DataError, match="only 70 unseen items, fewer than the 71"):
        NegativeSampler(seen).sample_distinct(np.array([0]), 71, np.random.default_rng(0))


def test_a_user_who_has_seen_everything_cannot_get_negatives():
    seen = SeenItems.from_pairs(np.zeros(2, int), np.array([0, 1]), 1, 2)
    with pytest.raises(DataError, match="0 unseen items"):
        NegativeSampler(seen).sample(np.array([0]), 1, np.random.default_rng(0))


def epoch(users, items, sampler, n_neg, rng, chunk_examples):
    parts = list(epoch_chunks(users, items, sampler, n_neg, rng, chunk_examples))
    return parts, *(np.concatenate(column) for column in zip(*parts))


def test_an_epoch_has_every_positive_and_n_negatives_each_shuffled(seen):
    users = np.array([0, 0, 1])
    items = seen.indices[[0, 1, seen.indptr[1]]].astype(np.int64)
    _, u, i, y = epoch(users, items, NegativeSampler(seen), 4, np.random.default_rng(0), chunk_examples=1 << 20)
    assert len(u) == 15 and y.sum() == 3
    assert sorted(zip(u[y == 1].tolist(), i[y == 1].tolist())) == sorted(zip(users.tolist(), items.tolist()))
    assert not seen.contains(u[y == 0], i[y == 0]).any()
    assert y.tolist() != sorted(y.tolist(), reverse=True)  # positives are not all first


def test_an_epoch_comes_in_chunks_of_bounded_size_that_together_hold_every_positive_once():
    rng = np.random.default_rng(0)
    users, items = rng.integers(0, 50, 1000), rng.integers(0, 400, 1000)
    sampler = NegativeSampler(SeenItems.from_pairs(users, items, 50, 400))
    parts, u, i, y = epoch(users, items, sampler, 4, rng, chunk_examples=500)
    assert len(parts) == 10 and all(len(p[0]) == 500 for p in parts)  # 100 positives and their 400 negatives
    for part_users, _, part_labels in parts:  # each positive's negatives are in its own chunk
        positives = part_users[part_labels == 1]
        assert sorted(part_users[part_labels == 0].tolist()) == sorted(np.repeat(positives, 4).tolist())
    assert sorted(zip(u[y == 1].tolist(), i[y == 1].tolist())) == sorted(zip(users.tolist(), items.tolist()))
    assert not sampler.seen.contains(u[y == 0], i[y == 0]).any()


def test_a_chunk_holds_whole_batches_so_only_the_epochs_last_batch_is_short():
    rng = np.random.default_rng(1)
    users, items = rng.integers(0, 50, 1000), rng.integers(0, 400, 1000)
    sampler = NegativeSampler(SeenItems.from_pairs(users, items, 50, 400))
    sizes = [len(p[0]) for p in epoch_chunks(users, items, sampler, 4, rng, chunk_examples=500, batch_size=30)]
    assert sizes == [450] * 11 + [50]  # 90 positives (3 batches of 30) and their negatives a chunk; 10 left
    huge = [len(p[0]) for p in epoch_chunks(users, items, sampler, 4, rng, chunk_examples=500, batch_size=400)]
    assert huge == [2000, 2000, 1000]  # a batch larger than a chunk still comes whole
