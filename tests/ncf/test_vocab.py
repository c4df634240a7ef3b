import numpy as np
import pytest

from ncf.errors import UnknownIdError
from ncf.vocab import Vocabulary


def test_every_raw_id_gets_its_own_contiguous_index_however_large():
    raw = np.array([193609, 1, 193609, 5, 100000])
    vocab = Vocabulary.fit(raw)
    assert len(vocab) == 4
    index = vocab.encode(raw)
    assert sorted(set(index.tolist())) == [0, 1, 2, 3]
    assert vocab.decode(index) == raw.tolist()


def test_index_order_is_raw_id_order():
    vocab = Vocabulary.fit(np.array([30, 2, 11]))
    assert vocab.encode(np.array([2, 11, 30])).tolist() == [0, 1, 2]


def test_unknown_ids_are_minus_one_in_lookup_and_an_error_in_encode():
    vocab = Vocabulary.fit(np.array([1, 2, 3]))
    assert vocab.lookup_array(np.array([2, 9, 0])).tolist() == [1, -1, -1]
    with pytest.raises(UnknownIdError, match="unknown id: 9"):
        vocab.encode(np.array([1, 9]))


def test_an_integer_vocabulary_accepts_ids_as_json_numbers_or_text():
    vocab = Vocabulary.fit(np.array([31, 1029]))
    assert vocab.lookup([31, "31", " 1029 ", "031", "x", 3.5, True, None]).tolist() == [0, 0, 1, -1, -1, -1, -1, -1]


def test_a_string_vocabulary_matches_integers_by_their_text():
    vocab = Vocabulary.fit(np.array(["10", "abc"]))
    assert vocab.lookup([10, "abc", "ABC", None]).tolist() == [0, 1, -1, -1]


def test_decoded_ids_are_plain_python_values_for_json():
    assert type(Vocabulary.fit(np.array([5])).decode(np.array([0]))[0]) is int
    assert type(Vocabulary.fit(np.array(["a"])).decode(np.array([0]))[0]) is str


def test_object_arrays_are_refused_so_nothing_needs_pickle():
    with pytest.raises(TypeError, match="int64 or unicode"):
        Vocabulary(np.array([1, "a"], dtype=object))
