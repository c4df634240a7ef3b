import gzip

import numpy as np
import pandas as pd
import pytest

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


def test_reading_a_hundred_thousand_rows_is_fast_enough_to_not_matter(tmp_path):
    """Guards against a per-row Python path slipping in: 100k rows must parse well under a few seconds
    (measured ~0.2 s); the bound is loose because this machine is shared."""
    import time

    frame = pd.DataFrame({"userId": np.arange(100_000) % 600, "movieId": np.arange(100_000) % 9000,
                          "rating": 4.0, "timestamp": np.arange(100_000)})
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    start = time.perf_counter()
    assert len(read_interactions(path)) == 100_000
    assert time.perf_counter() - start < 10
