"""A classical peer is tuned on validation alone, then ranks the test candidates every config is ranked on."""

import numpy as np

from benchmarks.paired import rank_metrics
from benchmarks.peers import GRIDS, dense_scorer, matrix, tuned_peer
from ncf.data import Interactions
from ncf.dataset import prepare
from ncf.evaluation import draw_candidates, score_candidates


def test_a_tuned_peer_keeps_its_grids_best_validation_setting_and_ranks_every_test_row(ratings):
    data = prepare(Interactions(ratings.userId.to_numpy(), ratings.movieId.to_numpy(), ratings.rating.to_numpy(),
                                ratings.timestamp.to_numpy()), test_k=1, validation_k=1)
    test = draw_candidates(data.test, data.seen, 99, seed=0)
    hits, gains, setting, validation_hr = tuned_peer("EASE^R", data, test)

    peer, grid = GRIDS["EASE^R"]
    validation = draw_candidates(data.validation, data.seen, 99, seed=1)
    each = [rank_metrics(score_candidates(dense_scorer(peer(matrix(data, [data.train]), **params)), validation))[0]
            .mean() for params in grid]
    assert setting in grid and validation_hr == max(each)
    assert hits.shape == gains.shape == (len(test),)
    # the refit saw the validation interactions: it is not the model that was tuned
    tuned_only = rank_metrics(score_candidates(dense_scorer(peer(matrix(data, [data.train]), **setting)), test))
    full = matrix(data, [data.train, data.validation])
    assert full.nnz == len(data.train) + len(data.validation)
    refit = rank_metrics(score_candidates(dense_scorer(peer(full, **setting)), test))
    np.testing.assert_array_equal(refit[0], hits)
    assert not np.array_equal(tuned_only[1], gains)
