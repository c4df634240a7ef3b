import numpy as np
import pytest

from ncf.dataset import Pairs
from ncf.evaluation import (Candidates, draw_candidates, evaluate_candidates, evaluate_full_ranking,
                            popularity_scorer, top_k_unseen)
from ncf.metrics import hit_rate, ndcg, positive_ranks, top_k_metrics
from ncf.seen import SeenItems


def test_rank_counts_strictly_higher_negatives_plus_half_the_ties():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5], [1.0, 0.0, 0.0, 0.0, 0.0]])
    assert positive_ranks(scores).tolist() == [2.0, 0.0]


def test_a_model_that_scores_everything_alike_ranks_the_positive_in_the_middle():
    assert positive_ranks(np.ones((1, 100))).tolist() == [49.5]


def test_hit_rate_and_ndcg_follow_their_definitions():
    ranks = np.array([0.0, 1.0, 9.0, 9.5, 10.0, 50.0])
    assert hit_rate(ranks, 10) == pytest.approx(4 / 6)
    expected = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11) + 1 / np.log2(11.5)) / 6
    assert ndcg(ranks, 10) == pytest.approx(expected)


def test_full_ranking_metrics_on_a_hand_worked_example():
    top = np.array([[1, 2, 3], [4, 5, 6]])
    relevant = np.array([[True, False, True], [False, False, False]])
    m = top_k_metrics(top, relevant, np.array([4, 1]))
    assert m["precision@3"] == pytest.approx((2 / 3 + 0) / 2)
    assert m["recall@3"] == pytest.approx((2 / 4 + 0) / 2)
    dcg = 1 + 1 / np.log2(4)
    idcg = 1 + 1 / np.log2(3) + 1 / np.log2(4)
    assert m["ndcg@3"] == pytest.approx(dcg / idcg / 2)
    assert m["map@3"] == pytest.approx((1 + 2 / 3) / 3 / 2)


def test_candidates_put_the_positive_first_and_are_the_same_for_the_same_seed():
    seen = SeenItems.from_pairs(np.array([0, 0, 1]), np.array([0, 1, 2]), 2, 300)
    held = Pairs(np.array([0, 1]), np.array([1, 2]))
    a, b = draw_candidates(held, seen, 99, seed=0), draw_candidates(held, seen, 99, seed=0)
    assert a.items.shape == (2, 100) and a.items[:, 0].tolist() == [1, 2]
    assert (a.items == b.items).all()
    assert not seen.contains(np.repeat(a.users, 99), a.items[:, 1:].ravel()).any()


def test_users_with_too_few_unseen_items_are_left_out_of_evaluation():
    seen = SeenItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 5)
    held = Pairs(np.array([0, 1]), np.array([0, 1]))
    assert len(draw_candidates(held, seen, n_neg=4)) == 2
    assert len(draw_candidates(held, seen, n_neg=5)) == 0


def test_an_oracle_scores_perfectly_and_popularity_is_reported_without_accuracy():
    candidates = Candidates(np.array([0, 1]), np.array([[5, 1, 2], [6, 3, 4]]))
    oracle = lambda u, i: np.isin(i, [5, 6]).astype(float)
    assert evaluate_candidates(oracle, candidates, k=1) == {"hr@1": 1.0, "ndcg@1": 1.0, "accuracy@0.5": 1.0,
                                                            "ece": 0.0}
    popular = popularity_scorer(np.array([0, 9, 9, 9, 9, 1, 1]))
    assert evaluate_candidates(popular, candidates, k=1, probabilities=False) == {"hr@1": 0.0, "ndcg@1": 0.0}


def test_accuracy_counts_negatives_too_so_always_saying_like_scores_a_half():
    candidates = Candidates(np.array([0, 1]), np.array([[5, 1, 2], [6, 3, 4]]))
    always = lambda u, i: np.ones(len(i))
    assert evaluate_candidates(always, candidates, k=1)["accuracy@0.5"] == 0.5
    never = lambda u, i: np.zeros(len(i))
    assert evaluate_candidates(never, candidates, k=1)["accuracy@0.5"] == 0.5
    backwards = lambda u, i: 1.0 - np.isin(i, [5, 6])
    assert evaluate_candidates(backwards, candidates, k=1)["accuracy@0.5"] == 0.0


def test_top_k_unseen_never_returns_seen_items():
    seen = SeenItems.from_pairs(np.array([0, 0]), np.array([3, 4]), 1, 6)
    scores = np.array([[0.0, 0.1, 0.2, 0.9, 0.8, 0.3]])
    assert top_k_unseen(scores, np.array([0]), seen, 3).tolist() == [[5, 2, 1]]


def test_full_ranking_of_an_oracle_is_perfect():
    held = Pairs(np.array([0, 1]), np.array([2, 3]))
    oracle = lambda users, k: np.array([[2, 0], [3, 0]])[users]
    m = evaluate_full_ranking(oracle, held, n_items=4, k=2)
    assert m["recall@2"] == 1.0 and m["ndcg@2"] == 1.0 and m["map@2"] == 1.0 and m["coverage"] == 0.75


def test_a_model_scoring_every_item_gets_full_ranking_metrics_under_a_prefix():
    from ncf.evaluation import scorer_top_k

    seen = SeenItems.from_pairs(np.array([0, 1]), np.array([0, 1]), 2, 4)
    scores = np.array([[9.0, 1.0, 5.0, 0.0], [0.0, 9.0, 1.0, 5.0]])  # each user's best item is already seen
    top_k = scorer_top_k(lambda users: scores[users], seen)
    assert top_k(np.array([0, 1]), 1).tolist() == [[2], [3]]
    m = evaluate_full_ranking(top_k, Pairs(np.array([0, 1]), np.array([2, 3])), n_items=4, k=1, prefix="full_")
    names = {"full_precision@1", "full_recall@1", "full_ndcg@1", "full_map@1"}
    assert m["full_recall@1"] == 1.0 and set(m) == names | {f"{n}_se" for n in names} | {"full_coverage"}


def test_a_user_sample_keeps_every_row_of_the_chosen_users_and_is_the_same_each_time():
    from ncf.evaluation import sample_users

    held = Pairs(np.array([0, 0, 1, 2, 3, 3, 4]), np.array([1, 2, 3, 4, 5, 6, 7]))
    a, b = sample_users(held, 3, seed=4), sample_users(held, 3, seed=4)
    assert len(np.unique(a.user)) == 3 and np.array_equal(a.user, b.user) and np.array_equal(a.item, b.item)
    kept = set(a.user.tolist())
    assert sorted(zip(a.user.tolist(), a.item.tolist())) == [p for p in zip(held.user.tolist(), held.item.tolist())
                                                             if p[0] in kept]
    assert sample_users(held, 5) is held


def test_a_nan_score_ranks_worst_not_first():
    scores = np.array([[np.nan, 0.1, 0.2], [0.5, np.nan, 0.1], [np.inf, 0.1, 0.2]])
    assert positive_ranks(scores).tolist() == [2.0, 0.0, 2.0]


def test_a_model_scoring_nan_everywhere_ties_every_candidate_and_hits_nothing():
    candidates = Candidates(np.array([0]), np.arange(100)[None, :])
    m = evaluate_candidates(lambda u, i: np.full(len(i), np.nan), candidates, probabilities=False)
    assert m["hr@10"] == 0.0


def test_a_user_with_fewer_unseen_items_than_k_gets_no_seen_item_in_full_ranking():
    from ncf.evaluation import scorer_top_k

    seen = SeenItems.from_pairs(np.array([0, 0, 0]), np.array([0, 1, 2]), 1, 4)
    top_k = scorer_top_k(lambda users: np.array([[9.0, 8.0, 7.0, 1.0]])[users], seen)
    assert top_k(np.array([0]), 3).tolist() == [[3, -1, -1]]
    m = evaluate_full_ranking(top_k, Pairs(np.array([0]), np.array([3])), n_items=4, k=3)
    assert m["recall@3"] == 1.0 and m["coverage"] == 0.25  # the masked items are neither hits nor covered


def test_each_mean_has_its_standard_error_over_users():
    from ncf.metrics import rank_metrics

    m = rank_metrics(np.array([0.0, 20.0, 0.0, 20.0]))
    assert m["hr@10"] == 0.5 and m["hr@10_se"] == pytest.approx(np.std([1, 0, 1, 0], ddof=1) / 2)
    assert rank_metrics(np.array([0.0])) == {"hr@10": 1.0, "ndcg@10": 1.0}  # one user: no error to state


def test_a_model_no_better_than_popularity_does_not_beat_it():
    from ncf.evaluation import against_popularity

    rng = np.random.default_rng(0)
    popular = rng.random((400, 100))
    same = against_popularity(popular.copy(), popular)
    assert same["margin"] == 0.0 and not same["beats_popularity"]
    oracle = popular.copy()
    oracle[:, 0] = 2.0  # the held-out item always first
    better = against_popularity(oracle, popular)
    assert better["beats_popularity"] and better["margin"] > 0.8 and better["margin_se"] > 0
    assert better["hr@10"] == 1.0 and better["rows"] == 400
    assert against_popularity(oracle[:1], popular[:1]) == {}  # one row says nothing of its error


def test_the_full_ranking_sample_is_bounded_in_cells_as_catalogues_grow():
    """500 users up to 200,000 items; past that the floor falls with the catalogue, never below 100, so the
    final evaluation of a catalogue of millions scores a bounded number of cells."""
    from ncf.evaluation import FULL_RANKING_FLOOR_CELLS, TestSample

    sample = TestSample()
    assert sample.full_ranking(9_724) == 5_000 and sample.full_ranking(59_000) == 847
    assert sample.full_ranking(200_000) == 500 and sample.full_ranking(1_000_000) == 100
    assert all(sample.full_ranking(n) * n <= FULL_RANKING_FLOOR_CELLS for n in (200_000, 400_000, 1_000_000))
    assert TestSample(full_ranking_users=700).full_ranking(1_000_000) == 700  # a job's own number wins
