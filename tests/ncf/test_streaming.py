import gzip
import io
import os
import resource
import signal

import numpy as np
import pandas as pd
import pytest

from ncf.data import Columns, read_interactions
from ncf.errors import DataError
from ncf.streaming import read_interactions_stream

SMALL_PARTS = 200  # bytes: every test stream below is cut into many parts


def stream_of(payload: bytes, **kwargs):
    return read_interactions_stream(io.BytesIO(payload), "pipe/train_0", part_bytes=kwargs.pop("part_bytes",
                                                                                               SMALL_PARTS), **kwargs)


def assert_same(got, expected):
    for name in ("users", "items", "ratings", "timestamps"):
        a, b = getattr(got, name), getattr(expected, name)
        assert (a is None) == (b is None), name
        if a is not None:
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)


def layouts(ratings):
    headed = ratings.to_csv(index=False).encode()
    tabbed = ratings.to_csv(index=False, header=False, sep="\t").encode()
    colons = ratings.to_csv(index=False, header=False, sep=":").replace(":", "::").encode()
    return {"csv with header": headed, "u.data": tabbed, "ratings.dat": colons, "gzipped csv": gzip.compress(headed),
            "crlf csv": headed.replace(b"\n", b"\r\n")}


@pytest.mark.parametrize("layout", ["csv with header", "u.data", "ratings.dat", "gzipped csv", "crlf csv"])
def test_a_stream_cut_into_parts_reads_exactly_as_the_whole_file(tmp_path, ratings, layout):
    payload = layouts(ratings)[layout]
    path = tmp_path / "ratings"
    path.write_bytes(payload)
    assert_same(stream_of(payload), read_interactions(path))


def test_one_text_id_in_a_late_part_makes_every_id_text_as_in_the_whole_file(tmp_path):
    text = "user,item\n" + "".join(f"{u},{u % 7}\n" for u in range(300)) + "007,1\n"
    path = tmp_path / "r.csv"
    path.write_text(text)
    got = stream_of(text.encode())
    assert got.users.dtype.kind == "U" and got.users[7] == "7" and got.users[-1] == "007"
    assert_same(got, read_interactions(path))


def test_a_problem_is_named_by_the_streams_own_line_number():
    lines = ["user,item,rating"] + [f"{u},{u + 1},4" for u in range(200)]
    lines[156] = "155,,4"  # line 157 of the stream, several parts in
    with pytest.raises(DataError, match=r"pipe/train_0: line 157: item id is empty"):
        stream_of(("\n".join(lines) + "\n").encode())


def test_a_headerless_stream_names_lines_by_the_stream_too():
    lines = [f"{u}\t{u + 1}\t4" for u in range(200)]
    lines[120] = "120\t121\tfour"
    with pytest.raises(DataError, match=r"pipe/train_0: line 121: rating 'four' is not a finite number"):
        stream_of(("\n".join(lines) + "\n").encode())


def test_files_concatenated_each_with_its_header_are_read_as_one_with_line_numbers_kept(ratings):
    first, second = ratings.iloc[:40], ratings.iloc[40:80]
    payload = (first.to_csv(index=False) + second.to_csv(index=False) + second.to_csv(index=False)).encode()
    got = stream_of(payload)
    expected = pd.concat([first, second, second])
    assert got.users.tolist() == expected.userId.tolist() and got.items.tolist() == expected.movieId.tolist()
    broken = payload.decode().splitlines()
    broken[100] = broken[100].split(",", 1)[0] + ",,4.0,1"  # after two repeated headers, line 101
    with pytest.raises(DataError, match=r"line 101: item id is empty"):
        stream_of(("\n".join(broken) + "\n").encode())


def test_concatenated_files_with_crlf_and_lf_line_ends_skip_both_headers():
    payload = b"user,item\r\n1,2\r\n3,4\r\n" + b"user,item\n5,6\n" + b"user,item\r\n7,8\r\n"
    got = stream_of(payload, part_bytes=16)
    assert got.users.tolist() == [1, 3, 5, 7] and got.items.tolist() == [2, 4, 6, 8]


def test_a_headerless_stream_keeps_a_row_that_looks_like_a_header_at_a_part_start():
    rows = [f"u{n}\ti{n}" for n in range(60)]
    rows[40] = "user\titem"  # text ids that happen to be column names, far from the stream's first line
    got = stream_of(("\n".join(rows) + "\n").encode(), part_bytes=64)
    assert len(got) == 60 and "user" in got.users.tolist() and "item" in got.items.tolist()


def test_a_parquet_stream_is_read(tmp_path, ratings):
    path = tmp_path / "r.parquet"
    ratings.to_parquet(path, index=False)
    assert_same(stream_of(path.read_bytes()), read_interactions(path))


def test_the_disk_never_holds_more_than_one_part(tmp_path, ratings, monkeypatch):
    from ncf import streaming

    payload = ratings.to_csv(index=False).encode()
    work = tmp_path / "work"
    work.mkdir()
    held, read = [], streaming.data.read_file

    def watched(*args, **kwargs):  # as each part is read: what the temporary folder holds then
        held.append(sum(f.stat().st_size for f in work.rglob("*") if f.is_file()))
        return read(*args, **kwargs)

    monkeypatch.setattr(streaming.data, "read_file", watched)
    read_interactions_stream(io.BytesIO(payload), "s", part_bytes=4096, workdir=work)
    longest_line = max(map(len, payload.splitlines())) + 1
    assert len(held) > 20 and max(held) <= 4096 + 2 * longest_line  # a part and its header


def test_a_stream_larger_than_the_free_disk_is_read(tmp_path):
    payload = b"user,item\n" + b"1,2\n3,4\n" * (1 << 19)  # 4 MiB
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, hard))  # a volume with 1 MiB free, as far as writes go
    try:
        got = stream_of(payload, part_bytes=256 << 10, workdir=tmp_path)
        with pytest.raises(DataError, match=r"a 2 MiB part could not be written .*that much free disk"):
            stream_of(payload, part_bytes=2 << 20, workdir=tmp_path)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)
    assert len(got) == 1 << 20 and set(got.users.tolist()) == {1, 3}
    assert not os.listdir(tmp_path)  # the temporary part is gone


@pytest.mark.parametrize("payload, reason", [
    (b"", "pipe/train_0: file is empty"),
    (b"user,item\n\n", r"pipe/train_0: has no rows \(only a header\)"),
    (b"\x00\x01" * 1000, r"no line end in [0-9,]+ bytes: not delimited text"),
    (gzip.compress(b"user,item\n1,2\n" * 100)[:-30], "cannot be decompressed"),
], ids=["empty", "a header alone", "binary", "truncated gzip"])
def test_a_stream_that_holds_no_rows_says_why(payload, reason):
    with pytest.raises(DataError, match=reason):
        stream_of(payload)


def test_configured_column_names_apply_to_every_part():
    text = "who,what\n" + "".join(f"{u},{u + 1}\n" for u in range(100))
    got = stream_of(text.encode(), columns=Columns(user="who", item="what"))
    assert got.users.tolist() == list(range(100)) and got.items.tolist() == list(range(1, 101))
