import numpy as np
import pytest

from ncf.data import Interactions
from ncf.dataset import prepare
from ncf.errors import DataError
from ncf.splits import chronological_order, leave_last_k


def interactions(rows):
    users, items, times = zip(*rows)
    return Interactions(np.array(users), np.array(items), None, np.array(times))


def test_leave_last_k_holds_out_each_users_latest_rows():
    users = np.array([0, 0, 0, 1, 1, 1, 1])
    times = np.array([5, 1, 9, 3, 2, 8, 7])
    items = np.arange(7)
    held = leave_last_k(users, chronological_order(users, items, times), 2)
    assert held.tolist() == [True, False, True, False, False, True, True]


def test_users_with_k_rows_or_fewer_keep_them_all_for_training():
    users = np.array([0, 1, 1])
    held = leave_last_k(users, chronological_order(users, np.arange(3), None), 1)
    assert held.tolist() == [False, False, True]


def test_time_ties_are_broken_by_the_larger_raw_item_id():
    data = prepare(interactions([(1, 500, 10), (1, 20, 10), (1, 7, 1)]), test_k=1, validation_k=0)
    assert data.items.decode(data.test.item) == [500]


def test_without_timestamps_row_order_is_time():
    x = Interactions(np.array([1, 1, 1]), np.array([30, 10, 20]))
    data = prepare(x, test_k=1, validation_k=1)
    assert data.items.decode(data.test.item) == [20]
    assert data.items.decode(data.validation.item) == [10]


def test_validation_is_carved_from_training_the_same_way():
    rows = [(1, i, i) for i in range(6)]
    data = prepare(interactions(rows), test_k=2, validation_k=1)
    assert sorted(data.items.decode(data.test.item)) == [4, 5]
    assert data.items.decode(data.validation.item) == [3]
    assert sorted(data.items.decode(data.train.item)) == [0, 1, 2]


def test_repeated_pairs_count_once_at_their_latest_time():
    data = prepare(interactions([(1, 9, 100), (1, 5, 50), (1, 9, 1), (1, 6, 60)]), test_k=1, validation_k=0)
    assert data.items.decode(data.test.item) == [9]
    assert sorted(data.items.decode(data.train.item)) == [5, 6]
    assert data.statistics()["interactions"] == 3


def test_seen_holds_every_split_and_train_seen_only_training(ratings):
    x = Interactions(ratings.userId.to_numpy(), ratings.movieId.to_numpy(), None, ratings.timestamp.to_numpy())
    data = prepare(x, test_k=1, validation_k=1)
    assert data.seen.contains(data.test.user, data.test.item).all()
    assert not data.train_seen.contains(data.test.user, data.test.item).any()
    assert not data.train_seen.contains(data.validation.user, data.validation.item).any()
    assert len(data.train) + len(data.validation) + len(data.test) == len(data.seen.indices)
    assert data.popularity.sum() == len(data.train)


def test_min_rating_filters_before_splitting():
    x = Interactions(np.array([1, 1, 1]), np.array([1, 2, 3]), np.array([5, 1, 5], np.float32), np.array([1, 2, 3]))
    data = prepare(x, test_k=1, validation_k=0, min_rating=4)
    assert data.n_items == 2 and data.items.decode(data.test.item) == [3]


def test_a_single_item_catalogue_is_refused():
    with pytest.raises(DataError, match="at least 2 distinct items"):
        prepare(interactions([(1, 1, 1), (2, 1, 2)]))


def test_given_validation_and_test_parts_are_used_as_they_are():
    train = interactions([(1, 10, 1), (1, 11, 2), (2, 10, 1), (2, 12, 2)])
    test = interactions([(1, 12, 3), (2, 99, 3), (3, 10, 3)])  # item 99 and user 3 are unknown
    validation = interactions([(2, 11, 3)])
    data = prepare(train, test=test, validation=validation)
    assert len(data.train) == 4
    assert data.users.decode(data.test.user) == [1] and data.items.decode(data.test.item) == [12]
    assert data.items.decode(data.validation.item) == [11]
    assert data.seen.contains(data.test.user, data.test.item).all()
    assert not data.train_seen.contains(data.test.user, data.test.item).any()


def pairs_of(data, part):
    return sorted(zip(data.users.decode(part.user), data.items.decode(part.item)))


def test_a_test_channel_pair_that_also_occurs_in_train_leaves_training(caplog):
    # repeat use: user 1 watched 10 again after the cut, user 2 bought 12 twice
    train = interactions([(1, 10, 1), (1, 11, 2), (2, 10, 1), (2, 12, 2), (2, 11, 3), (3, 12, 1)])
    test = interactions([(1, 10, 5), (2, 12, 6)])
    with caplog.at_level("INFO", logger="ncf.dataset"):
        data = prepare(train, test=test, validation_k=0)
    assert pairs_of(data, data.test) == [(1, 10), (2, 12)]
    assert pairs_of(data, data.train) == [(1, 11), (2, 10), (2, 11), (3, 12)]
    assert not data.train_seen.contains(data.test.user, data.test.item).any()
    assert data.popularity[data.items.lookup([12])[0]] == 1
    assert "2 pairs also in training leave training" in caplog.text


def test_a_validation_channel_pair_leaves_training_and_a_test_pair_leaves_validation(caplog):
    train = interactions([(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 10, 1), (2, 11, 2), (2, 12, 3), (3, 11, 1),
                          (3, 12, 1)])
    validation = interactions([(1, 11, 4), (2, 12, 4)])
    test = interactions([(2, 12, 5), (1, 12, 5)])
    with caplog.at_level("INFO", logger="ncf.dataset"):
        data = prepare(train, test=test, validation=validation)
    assert pairs_of(data, data.test) == [(1, 12), (2, 12)]
    assert pairs_of(data, data.validation) == [(1, 11)]
    assert pairs_of(data, data.train) == [(1, 10), (2, 10), (2, 11), (3, 11), (3, 12)]
    assert "test: 1 pairs also in validation leave validation" in caplog.text


def test_with_a_test_channel_validation_is_carved_from_what_is_left():
    train = interactions([(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 12, 1)])
    data = prepare(train, test=interactions([(1, 12, 9)]), validation_k=1)
    assert pairs_of(data, data.validation) == [(1, 11)]
    assert pairs_of(data, data.train) == [(1, 10), (2, 12)]


def test_a_held_out_pair_whose_user_or_item_keeps_no_training_pair_is_dropped_and_counted(caplog):
    # user 1's only training pair is also its test pair: nothing of user 1 is left to learn from
    train = interactions([(1, 10, 1), (2, 10, 1), (2, 11, 2), (3, 11, 1)])
    with caplog.at_level("INFO", logger="ncf.dataset"):
        data = prepare(train, test=interactions([(1, 10, 5), (2, 11, 6)]), validation_k=0)
    assert pairs_of(data, data.test) == [(2, 11)]
    assert "test: 1 of 2 rows dropped: their user or item has no training interaction left" in caplog.text


def test_a_test_channel_that_holds_every_training_pair_is_an_error():
    rows = [(1, 10, 1), (1, 11, 2), (2, 10, 1)]
    with pytest.raises(DataError, match="no training interaction is left"):
        prepare(interactions(rows), test=interactions(rows), validation_k=0)


def test_repeats_inside_a_held_out_channel_count_once(caplog):
    train = interactions([(1, 10, 1), (1, 11, 2), (2, 10, 1), (2, 11, 2), (3, 12, 1)])
    test = interactions([(1, 12, 3), (1, 12, 4), (1, 12, 5), (2, 12, 3)])
    with caplog.at_level("INFO", logger="ncf.dataset"):
        data = prepare(train, test=test, validation_k=0)
    assert pairs_of(data, data.test) == [(1, 12), (2, 12)]
    assert "test: 2 repeated rows of one (user, item) pair count once" in caplog.text


def test_a_validation_channel_that_the_test_channel_holds_whole_is_an_error():
    train = interactions([(1, 10, 1), (1, 11, 2), (1, 12, 3), (2, 12, 1)])
    with pytest.raises(DataError, match="every validation pair is also a test pair"):
        prepare(train, test=interactions([(1, 12, 9)]), validation=interactions([(1, 12, 8)]))


def test_a_given_test_part_with_nothing_known_is_an_error():
    with pytest.raises(DataError, match="no test interaction has a user and an item"):
        prepare(interactions([(1, 10, 1), (1, 11, 2)]), test=interactions([(5, 10, 1)]))


def test_ids_typed_differently_across_parts_still_match():
    train = Interactions(np.array([1, 1, 2]), np.array([10, 11, 10]))
    test = Interactions(np.array(["2"]), np.array(["11"]))
    data = prepare(train, test=test, validation_k=0)
    assert data.items.decode(data.test.item) == [11]


def test_the_seen_items_before_test_of_chosen_users_are_their_rows_of_everyones(ratings):
    data = prepare(Interactions(ratings.userId.to_numpy(), ratings.movieId.to_numpy()), test_k=1, validation_k=1)
    everyone = data.with_validation_in_train().train_seen  # training and validation pairs, built another way
    chosen = np.array([0, 3, data.n_users - 1])
    some = data.seen_before_test(chosen)
    assert some.n_users == everyone.n_users and some.n_items == everyone.n_items
    for user in range(data.n_users):
        expected = everyone.row(user) if user in chosen else np.array([], dtype=np.int32)
        np.testing.assert_array_equal(some.row(user), expected)
    assert all(len(everyone.row(user)) for user in chosen)  # training and validation items, not nothing
    assert not some.contains(data.test.user[np.isin(data.test.user, chosen)],
                             data.test.item[np.isin(data.test.user, chosen)]).any()  # test stays out


def test_a_warm_start_from_a_model_that_read_19_digit_ids_as_text_says_to_train_afresh_once():
    from ncf.vocab import Vocabulary

    old = Vocabulary.fit(np.array(["1234567890123456789", "7"]))  # as training read them before
    data = Interactions(np.array([1234567890123456789, 7]), np.array([1, 2]))
    with pytest.raises(DataError, match="19 digits as text, .*: train this model afresh once"):
        prepare(data, test_k=1, validation_k=0, known_users=old)
