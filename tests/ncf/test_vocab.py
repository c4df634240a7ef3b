import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

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
    assert vocab.lookup([31, "31", "1029", "031", "x", 3.5, True, None]).tolist() == [0, 0, 1, -1, -1, -1, -1, -1]


@pytest.mark.parametrize("sent", [2**64, -(2**63) - 1, "9999999999999999999", "18446744073709551616", "--1", "²",
                                  "\uff11", "\u0663\u0661", " 31", "31 ", "+31", "3_1", "", "-", "-0"])
def test_an_id_past_int64_or_not_spelt_in_ascii_digits_is_unknown_never_an_error_or_another_id(sent):
    vocab = Vocabulary.fit(np.array([-1, 1, 31, 2**63 - 1]))
    assert vocab.lookup([sent, 31]).tolist() == [-1, 2]


def test_the_extreme_int64_ids_are_found_as_numbers_and_as_text():
    vocab = Vocabulary.fit(np.array([-(2**63), 2**63 - 1]))
    assert vocab.lookup([-(2**63), str(2**63 - 1), "-9223372036854775808"]).tolist() == [0, 1, 0]


def test_an_id_longer_than_any_known_one_is_unknown_without_widening_the_lookup():
    vocab = Vocabulary.fit(np.array(["a", "bc"]))
    assert vocab.lookup(["x" * 100_000, "bc", "bcd"]).tolist() == [-1, 1, -1]


@given(st.one_of(st.text(max_size=30), st.integers(min_value=-(2**70), max_value=2**70)))
@example("a\x00")
@example("-0")
@example("")
def test_any_id_a_client_sends_finds_exactly_the_id_it_spells_or_nothing(sent):
    known = np.array([0, 1, 7, 31, -5, 2**63 - 1])
    index = Vocabulary.fit(known).lookup([sent])[0]
    spelt = str(sent)
    matches = [n for n, v in enumerate(sorted(known.tolist())) if str(v) == spelt]
    assert index == (matches[0] if matches else -1)
    strings = np.array(["0", "1", "a", "\u00e9", "31"])
    index = Vocabulary.fit(strings).lookup([sent])[0]
    matches = [n for n, v in enumerate(sorted(strings.tolist())) if v == spelt]
    assert index == (matches[0] if matches else -1)


def test_a_string_vocabulary_matches_integers_by_their_text():
    vocab = Vocabulary.fit(np.array(["10", "abc"]))
    assert vocab.lookup([10, "abc", "ABC", None]).tolist() == [0, 1, -1, -1]


def test_decoded_ids_are_plain_python_values_for_json():
    assert type(Vocabulary.fit(np.array([5])).decode(np.array([0]))[0]) is int
    assert type(Vocabulary.fit(np.array(["a"])).decode(np.array([0]))[0]) is str


def test_object_arrays_are_refused_so_nothing_needs_pickle():
    with pytest.raises(TypeError, match="int64 or unicode"):
        Vocabulary(np.array([1, "a"], dtype=object))
