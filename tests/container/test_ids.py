"""One rule for when an id is an integer (`ncf.vocab`): training reads a column of ids as integers exactly
when the server reads each of them as that integer, so an id means one thing on both sides."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncf import arrowread
from ncf.data import read_interactions
from ncf.vocab import INT64_DIGITS, Vocabulary, integer_ids, integer_text

#: 19 digits within int64: integers by the one rule, in training's readers as in serving.
NINETEEN = ["1234567890123456789", "9223372036854775807", "-9223372036854775808"]
IDS = ["7", "-3", "0", "123456789012345678", "-123456789012345678",  # integers, up to 18 digits
       "007", "-0", "+7", "7.0", "1e3", "\uff11", "\u0663\u0661", "\u00b2", "--1", "7a",  # text
       "9223372036854775808", "-9223372036854775809", "12345678901234567890"]  # past int64: text


def _declined(*args, **kwargs):
    return None


def read_users(tmp_path, monkeypatch, ids: list[str], reader: str) -> np.ndarray:
    """The user ids training reads from a CSV of `ids`, by pyarrow's reader or pandas'."""
    path = tmp_path / "ratings.csv"
    path.write_text("user,item\n" + "".join(f"{i},1\n" for i in ids))
    with monkeypatch.context() as m:
        if reader == "pandas":
            m.setattr(arrowread, "read_csv", _declined)
        return read_interactions(path).users


@pytest.mark.parametrize("reader", ["pyarrow", "pandas"])
@pytest.mark.parametrize("text", IDS + NINETEEN)
def test_training_reads_an_id_as_an_integer_exactly_when_serving_does(tmp_path, monkeypatch, reader, text):
    users = read_users(tmp_path, monkeypatch, [text, "5"], reader)
    served = integer_text(text)
    if served is None:
        assert users.dtype.kind == "U" and users.tolist() == [text, "5"]
    else:
        assert users.dtype == np.int64 and users.tolist() == [served, 5]


@pytest.mark.parametrize("reader", ["pyarrow", "pandas"])
@pytest.mark.parametrize("text", IDS + NINETEEN)
def test_serving_finds_an_id_training_read_whichever_way_a_client_writes_it(tmp_path, monkeypatch, reader, text):
    vocabulary = Vocabulary.fit(read_users(tmp_path, monkeypatch, [text], reader))
    assert vocabulary.lookup([text]).tolist() == [0]  # as CSV and JSON strings send it
    if integer_text(text) is not None:
        assert vocabulary.lookup([integer_text(text)]).tolist() == [0]  # as a JSON integer


@pytest.mark.parametrize("text", IDS + NINETEEN)
def test_a_column_of_ids_is_integers_by_the_rule_for_one_id(text):
    one = integer_ids(np.array([text]))
    assert (None if one is None else one.tolist()) == (None if integer_text(text) is None else [integer_text(text)])
    column = integer_ids(np.array(["5", text, "-6"]))
    assert (column is None) == (integer_text(text) is None)
    assert column is None or (column.dtype == np.int64 and column.tolist() == [5, integer_text(text), -6])


@given(st.lists(st.text(alphabet="0123456789-+ a\u0661\uff11\x00", min_size=1, max_size=INT64_DIGITS + 2)
                .filter(lambda t: not t.endswith("\x00")),  # numpy drops a trailing NUL: no reader gives one
                min_size=1, max_size=4))
def test_integer_ids_agree_with_integer_text_on_any_column(texts):
    column = integer_ids(np.array(texts))
    expected = [integer_text(t) for t in texts]
    assert (column is None) == (None in expected)
    assert column is None or column.tolist() == expected
