import gzip

import numpy as np
import pandas as pd
import pytest

from ncf import arrowread
from ncf.data import Columns, Interactions, read_interactions
from ncf.errors import DataError


def write(path, text):
    path.write_text(text)
    return path


def test_movielens_csv_with_header_is_read_with_its_column_names(tmp_path, ratings):
    path = tmp_path / "ratings.csv"
    ratings.to_csv(path, index=False)
    got = read_interactions(path)
    assert len(got) == len(ratings)
    np.testing.assert_array_equal(got.users, ratings.userId.to_numpy())
    np.testing.assert_array_equal(got.items, ratings.movieId.to_numpy())
    np.testing.assert_allclose(got.ratings, ratings.rating.to_numpy())
    np.testing.assert_array_equal(got.timestamps, ratings.timestamp.to_numpy())
    assert got.users.dtype == np.int64


def test_u_data_tab_separated_without_header_is_read_by_position(tmp_path):
    path = write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n")
    got = read_interactions(path)
    assert got.users.tolist() == [196, 186] and got.items.tolist() == [242, 302]
    assert got.ratings.tolist() == [3.0, 3.0] and got.timestamps.tolist() == [881250949, 891717742]


def test_ratings_dat_with_double_colons_is_read(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    got = read_interactions(path)
    assert got.users.tolist() == [1, 1] and got.items.tolist() == [1193, 661]
    assert got.timestamps.tolist() == [978300760, 978302109]


def test_whitespace_separated_file_is_read(tmp_path):
    got = read_interactions(write(tmp_path / "x.txt", "1 10  4.5 100\n2   20 3 200\n"))
    assert got.items.tolist() == [10, 20] and got.ratings.tolist() == [4.5, 3.0]


def test_two_column_file_has_no_rating_and_no_timestamp(tmp_path):
    got = read_interactions(write(tmp_path / "pairs.csv", "user_id,item_id\na,b\nc,d\n"))
    assert got.ratings is None and got.timestamps is None
    assert got.users.tolist() == ["a", "c"]


def test_gzip_is_recognised_by_its_bytes_not_its_name(tmp_path, ratings):
    path = tmp_path / "part-0000"  # no extension, as in a SageMaker channel
    with gzip.open(path, "wt") as f:
        ratings.head(50).to_csv(f, index=False)
    assert len(read_interactions(path)) == 50


def test_parquet_is_read(tmp_path, ratings):
    path = tmp_path / "data"
    ratings.head(30).to_parquet(path)
    got = read_interactions(path)
    assert got.items.tolist() == ratings.movieId.head(30).tolist()


def test_folder_of_files_is_read_in_name_order_skipping_hidden_and_empty_files(tmp_path, ratings):
    ratings.iloc[:10].to_csv(tmp_path / "b.csv", index=False)
    ratings.iloc[10:25].to_parquet(tmp_path / "a.parquet")
    (tmp_path / "c.csv").write_text("")
    (tmp_path / ".hidden").write_text("junk that would fail")
    got = read_interactions(tmp_path)
    assert got.items.tolist() == ratings.movieId.iloc[10:25].tolist() + ratings.movieId.iloc[:10].tolist()


def test_string_ids_keep_leading_zeros(tmp_path):
    got = read_interactions(write(tmp_path / "r.csv", "user,item\n007,01\n7,1\n"))
    assert got.users.tolist() == ["007", "7"] and got.items.tolist() == ["01", "1"]


def test_mixed_id_kinds_across_files_become_text(tmp_path):
    write(tmp_path / "a.csv", "user,item\n1,2\n")
    write(tmp_path / "b.csv", "user,item\nx,y\n")
    got = read_interactions(tmp_path)
    assert got.users.tolist() == ["1", "x"]


def test_configured_column_names_are_used(tmp_path):
    path = write(tmp_path / "e.csv", "who,what,when,stars\n1,2,30,4\n")
    got = read_interactions(path, Columns(user="who", item="what", timestamp="when", rating="stars"))
    assert got.timestamps.tolist() == [30] and got.ratings.tolist() == [4.0]


def test_missing_configured_column_names_it_and_the_file(tmp_path):
    path = write(tmp_path / "e.csv", "user,item\n1,2\n")
    with pytest.raises(DataError, match=r"e\.csv.*missing timestamp column 'when'.*\['user', 'item'\]"):
        read_interactions(path, Columns(timestamp="when"))


def test_file_without_an_item_column_says_which_names_are_recognised(tmp_path):
    with pytest.raises(DataError, match=r"no item column.*movieId"):
        read_interactions(write(tmp_path / "r.csv", "userId,thing\n1,2\n"))


def test_empty_file_is_an_error_naming_it(tmp_path):
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        read_interactions(write(tmp_path / "empty.csv", ""))


def test_header_only_file_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"has no rows \(only a header\)"):
        read_interactions(write(tmp_path / "h.csv", "userId,movieId,rating,timestamp\n"))


def test_folder_whose_files_are_all_empty_is_an_error(tmp_path):
    write(tmp_path / "a.csv", "")
    with pytest.raises(DataError, match="none of its 1 files holds a row"):
        read_interactions(tmp_path)


def test_empty_id_names_the_line(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId\n1,2\n\n3,\n")
    with pytest.raises(DataError, match=r"r\.csv: line 4: item id is empty"):
        read_interactions(path)


def test_nan_rating_names_the_line_and_the_value(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating\n1,2,4\n1,3,NaN\n")
    with pytest.raises(DataError, match=r"line 3: rating 'NaN' is not a finite number"):
        read_interactions(path)


def test_non_numeric_timestamp_names_the_line(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,4,100\n1,3,4,yesterday\n")
    with pytest.raises(DataError, match=r"line 3: timestamp 'yesterday' is not a finite number"):
        read_interactions(path)


def test_negative_timestamp_is_refused(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,4,-5\n")
    with pytest.raises(DataError, match=r"line 2: timestamp is negative \(-5\)"):
        read_interactions(path)


@pytest.mark.parametrize("stamp", ["1e30", "9223372036854775808.0", "1.5e19"])
def test_a_timestamp_too_large_for_int64_is_refused_naming_its_line(tmp_path, stamp):
    path = write(tmp_path / "r.csv", f"userId,movieId,rating,timestamp\n1,2,4,100\n1,3,4,{stamp}\n")
    with pytest.raises(DataError, match=r"line 3: timestamp is too large"):
        read_interactions(path)


def test_a_nanosecond_timestamp_of_today_still_reads(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId,rating,timestamp\n1,2,4,1796601600000000000.0\n")
    assert read_interactions(path).timestamps.tolist() == [1796601600000000000]


def test_many_bad_rows_are_summarised(tmp_path):
    body = "".join(f"{n},,4\n" for n in range(10))
    with pytest.raises(DataError, match=r"and 7 more rows like it"):
        read_interactions(write(tmp_path / "r.csv", "userId,movieId,rating\n" + body))


def test_ragged_row_is_a_data_error_not_a_pandas_traceback(tmp_path):
    path = write(tmp_path / "r.csv", "userId,movieId\n1,2\n1,2,3,4,5\n")
    with pytest.raises(DataError, match=r"r\.csv: not readable as delimited text.*line 3"):
        read_interactions(path)


def test_truncated_gzip_is_a_data_error(tmp_path, ratings):
    whole = gzip.compress(ratings.to_csv(index=False).encode())
    path = tmp_path / "r.csv.gz"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DataError, match=r"r\.csv\.gz"):
        read_interactions(path)


def test_damaged_parquet_is_a_data_error(tmp_path):
    path = tmp_path / "r.parquet"
    path.write_bytes(b"PAR1" + b"\x00" * 20)
    with pytest.raises(DataError, match=r"not a readable Parquet file"):
        read_interactions(path)


def test_missing_path_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        read_interactions(tmp_path / "nope.csv")


def test_min_rating_keeps_only_positives():
    x = Interactions(np.array([1, 1, 2]), np.array([1, 2, 3]), np.array([1.0, 4.0, 5.0], np.float32))
    assert x.with_min_rating(4.0).items.tolist() == [2, 3]
    with pytest.raises(DataError, match="no rating column"):
        Interactions(np.array([1]), np.array([1])).with_min_rating(3.0)


def _decline(*args, **kwargs):
    return None


def read_with_both_readers(path, monkeypatch, columns=Columns()):
    """(pyarrow's reading, pandas' reading) of one file; fails if pyarrow declined a file it should read."""
    answers = []

    def spy(reader):
        def read(*args, **kwargs):
            answers.append(reader(*args, **kwargs))
            return answers[-1]
        return read

    with monkeypatch.context() as m:
        m.setattr(arrowread, "read_csv", spy(arrowread.read_csv))
        m.setattr(arrowread, "read_parquet", spy(arrowread.read_parquet))
        fast = read_interactions(path, columns)
    assert len(answers) == 1 and answers[0] is not None, "pyarrow declined the file"
    with monkeypatch.context() as m:
        m.setattr(arrowread, "read_csv", _decline)
        m.setattr(arrowread, "read_parquet", _decline)
        slow = read_interactions(path, columns)
    return fast, slow


def assert_same(a, b):
    for field in ("users", "items", "ratings", "timestamps"):
        x, y = getattr(a, field), getattr(b, field)
        assert (x is None) == (y is None), field
        if x is not None:
            assert x.dtype == y.dtype, (field, x.dtype, y.dtype)
            np.testing.assert_array_equal(x, y, err_msg=field)


def mixed_frame(n, seed=0):
    """n rows with large sparse ids, half-star ratings and whole-second timestamps, like ml-25m's."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"userId": rng.integers(0, 162_000, n), "movieId": rng.integers(0, 210_000, n) * 7,
                         "rating": rng.integers(1, 11, n) / 2,
                         "timestamp": rng.integers(789_652_009, 1_637_000_000, n)})


def write_csv(frame, path):
    frame.to_csv(path, index=False)
    return path


def write_gzip(frame, path):
    with gzip.open(path, "wt") as f:
        frame.to_csv(f, index=False)
    return path


def write_dat(frame, path):  # MovieLens 1M/10M: '::' and no header
    path.write_text("".join("::".join(map(str, row)) + "\n" for row in frame.itertuples(index=False)))
    return path


def write_tsv_without_header(frame, path):
    frame.to_csv(path, sep="\t", header=False, index=False)
    return path


def write_parquet(frame, path):
    frame.to_parquet(path)
    return path


@pytest.mark.parametrize("write", [write_csv, write_gzip, write_dat, write_tsv_without_header, write_parquet])
def test_pyarrow_and_pandas_read_the_same_interactions(tmp_path, monkeypatch, write):
    frame = mixed_frame(3_000)
    fast, slow = read_with_both_readers(write(frame, tmp_path / "data"), monkeypatch)
    assert_same(fast, slow)
    np.testing.assert_array_equal(fast.users, frame.userId.to_numpy())
    assert fast.users.dtype == np.int64 and fast.timestamps.dtype == np.int64 and fast.ratings.dtype == np.float32


def test_pyarrow_and_pandas_agree_on_text_ids_spaces_and_fractional_timestamps(tmp_path, monkeypatch):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\n"
                 "u1, 007 ,4,10.5\nü2,7, 3.5 ,11\n u1,x y,5,12\n")
    fast, slow = read_with_both_readers(path, monkeypatch)
    assert_same(fast, slow)
    assert fast.users.tolist() == ["u1", "ü2", "u1"] and fast.items.tolist() == ["007", "7", "x y"]
    assert fast.timestamps.dtype == np.float64


def test_pyarrow_and_pandas_agree_on_parquet_text_ids_and_integer_types(tmp_path, monkeypatch):
    frame = pd.DataFrame({"user": ["007", "7", "a"], "item": pd.array([3, 1, 2], dtype="int32"),
                          "rating": np.array([1, 2, 3], np.float32), "timestamp": pd.array([5, 6, 7], dtype="uint16")})
    fast, slow = read_with_both_readers(write_parquet(frame, tmp_path / "p"), monkeypatch)
    assert_same(fast, slow)
    assert fast.users.tolist() == ["007", "7", "a"] and fast.items.dtype == np.int64


def big_csv(tmp_path, n=300_000, bad_row=None, bad_line="{u},,4.0\n"):
    """A ~5 MB CSV, larger than one of pyarrow's 4 MB parse blocks; `bad_row` replaced by `bad_line`."""
    lines = [f"{u},{i},4.0\n" for u, i in zip(range(n), range(n, 2 * n))]
    if bad_row is not None:
        lines[bad_row] = bad_line.format(u=bad_row)
    path = tmp_path / "big.csv"
    path.write_text("userId,movieId,rating\n" + "".join(lines))
    return path


def test_an_empty_id_deep_in_a_large_file_names_its_line(tmp_path):
    with pytest.raises(DataError, match=r"big\.csv: line 280002: item id is empty$"):
        read_interactions(big_csv(tmp_path, bad_row=280_000))


def test_a_word_for_a_rating_deep_in_a_large_file_names_its_line_and_value(tmp_path):
    path = big_csv(tmp_path, bad_row=250_000, bad_line="{u},5,four\n")
    with pytest.raises(DataError, match=r"line 250002: rating 'four' is not a finite number$"):
        read_interactions(path)


def test_a_leading_zero_in_the_last_block_makes_every_id_of_the_column_text(tmp_path):
    path = big_csv(tmp_path, bad_row=299_999, bad_line="0299999,1,4.0\n")
    got = read_interactions(path)
    assert got.users.dtype.kind == "U" and got.users[[0, 1, -1]].tolist() == ["0", "1", "0299999"]
    assert got.items.dtype == np.int64


def test_text_ids_across_many_blocks_are_read_exactly(tmp_path, monkeypatch):
    n = 300_000
    frame = pd.DataFrame({"user_id": [f"user-{u}" for u in range(n)], "item_id": [f"i{u % 977:04d}" for u in range(n)]})
    fast, slow = read_with_both_readers(write_csv(frame, tmp_path / "ids.csv"), monkeypatch)
    assert_same(fast, slow)
    assert fast.users.tolist() == frame.user_id.tolist() and fast.items.dtype == np.dtype("<U5")


def test_ids_with_quoted_newlines_are_read_by_pyarrow_across_block_edges(tmp_path, monkeypatch):
    n = 300_000
    path = tmp_path / "q.csv"
    path.write_text("user_id,movieId\n" + "".join(f'"line\n{u}",{u % 5}\n' for u in range(n)))
    fast, slow = read_with_both_readers(path, monkeypatch)
    assert_same(fast, slow)
    assert fast.users[-1] == f"line\n{n - 1}"


def test_a_gap_in_a_nullable_integer_parquet_id_is_a_data_error_naming_the_row(tmp_path):
    frame = pd.DataFrame({"userId": pd.array([1, None, 3], dtype="Int64"), "movieId": [1, 2, 3]})
    with pytest.raises(DataError, match=r"p: row 2: user id is empty"):
        read_interactions(write_parquet(frame, tmp_path / "p"))


def test_a_file_pyarrow_cannot_read_is_read_by_pandas_and_the_log_says_why(tmp_path, caplog):
    got = read_interactions(write(tmp_path / "r.csv", 'user,item\n1, "a"\n'))  # pandas skips the space
    assert got.items.tolist() == ["a"]
    assert any("reading with pandas, not pyarrow" in r.getMessage() for r in caplog.records)


def test_a_missing_text_id_in_parquet_names_its_row(tmp_path):
    frame = pd.DataFrame({"userId": ["a", None, "c"], "movieId": [1, 2, 3]})
    with pytest.raises(DataError, match=r"p: row 2: user id is empty"):
        read_interactions(write_parquet(frame, tmp_path / "p"))


def test_a_parquet_files_stored_pandas_index_is_not_one_of_its_columns(tmp_path):
    frame = pd.DataFrame({"userId": [5, 1, 2], "movieId": [3, 4, 5]}).set_index("userId")  # not a range: a column
    with pytest.raises(DataError, match=r"no user column: the file has columns \['movieId'\]"):
        read_interactions(write_parquet(frame, tmp_path / "p"))


def test_an_id_longer_than_ids_may_be_names_its_line_and_the_limit(tmp_path):
    from ncf.vocab import MAX_ID_CHARS

    path = tmp_path / "r.csv"
    path.write_text("user,item\n1,a\n2," + "b" * (MAX_ID_CHARS + 1) + "\n3," + "c" * MAX_ID_CHARS + "\n")
    with pytest.raises(DataError, match=rf"line 3: item id is {MAX_ID_CHARS + 1} characters long \(at most "
                                        rf"{MAX_ID_CHARS}\)"):
        read_interactions(path)


def test_ids_that_differ_only_in_bytes_that_are_not_utf8_are_refused_not_merged(tmp_path):
    path = tmp_path / "r.csv"
    path.write_bytes(b"user,item\njos\xe9,1\njos\xe8,2\nann,3\n")
    with pytest.raises(DataError, match=r"line 2: user id is not UTF-8 text"):
        read_interactions(path)


def test_a_parquet_id_column_of_lists_is_refused_naming_the_row(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"user": [[1, 2], [3]], "item": [1, 2]}).to_parquet(path)
    with pytest.raises(DataError, match=r"row 1: user id is a (list|ndarray), not one value"):
        read_interactions(path)


def test_minus_zero_is_not_zero_so_such_a_column_stays_text(tmp_path):
    got = read_interactions(write(tmp_path / "r.csv", "user,item\n-0,1\n0,2\n"))
    assert got.users.tolist() == ["-0", "0"] and got.items.tolist() == [1, 2]
