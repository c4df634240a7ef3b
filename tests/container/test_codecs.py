"""What `/invocations` reads from a body before any request is parsed: byte-order marks, CSV bodies of
millions of rows that are not pairs, and Content-Encoding, through the application factory."""

import gzip

import pytest

from benchmarks.fake_model import fake_model
from container.app import create_app
from container.codecs import MAX_ROW_ERRORS, content_encoding, decompressed
from container.errors import BadRequest, TooLarge, UnsupportedMediaType
from container.serve_config import ServeConfig
from ncf.recommender import Recommender

BOM = "\ufeff"


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """A model of 50 users x 12 items with ids 1...: a request's cost is the server's own, not the model's."""
    folder = tmp_path_factory.mktemp("opt_ml") / "model"
    fake_model(folder, "mf", users=50, items=12, interactions=200, seed=0)
    return folder, Recommender.load(folder)


def client(model, **settings):
    folder, recommender = model
    return create_app(recommender, ServeConfig(model_dir=folder, **settings)).test_client()


@pytest.fixture(scope="module")
def real_time(model):
    return client(model)


@pytest.fixture(scope="module")
def batch(model):
    return client(model, batch=True, timeout=3600, max_payload_mb=20)


def post(client, body, content_type, accept=None):
    """The response, read whole: a streamed answer holds its worker's turn until read."""
    response = client.post("/invocations", data=body, content_type=content_type,
                           headers={"Accept": accept} if accept else {})
    response.get_data()
    response.close()
    return response


# ---------------------------------------------------------------------------------------------- byte-order marks

def test_a_csv_header_after_a_byte_order_mark_is_the_header_not_a_row(real_time):
    plain = post(real_time, "user,item\n1,3\n", "text/csv").get_data(as_text=True)
    marked = post(real_time, (BOM + "user,item\n1,3\n").encode(), "text/csv")
    assert marked.status_code == 200 and marked.get_data(as_text=True) == plain
    assert float(plain) > 0 and len(plain.splitlines()) == 1


def test_a_csv_first_id_after_a_byte_order_mark_is_that_id(real_time):
    plain = post(real_time, "1,3\n2,4\n", "text/csv").get_data(as_text=True)
    marked = post(real_time, (BOM + "1,3\n2,4\n").encode(), "text/csv")
    assert marked.status_code == 200 and marked.get_data(as_text=True) == plain
    assert not any(line.startswith("error") for line in plain.splitlines())


@pytest.mark.parametrize("content_type, body", [
    ("application/json", '{"user": 1, "k": 3}'),
    ("application/jsonlines", '{"user": 1, "k": 3}\n{"item": 2, "k": 3}\n'),
])
def test_json_after_a_byte_order_mark_is_read_as_without_it(real_time, content_type, body):
    plain = post(real_time, body, content_type)
    marked = post(real_time, (BOM + body).encode(), content_type)
    assert marked.status_code == plain.status_code == 200 and marked.get_data() == plain.get_data()


def test_a_byte_order_mark_anywhere_but_first_stays_in_the_id(real_time):
    response = post(real_time, f"1,3\n{BOM}2,4\n".encode(), "text/csv")
    assert response.get_data(as_text=True).splitlines()[1] == "error: line 2: unknown user id: '\\ufeff2'"


def test_a_body_not_in_utf_8_after_a_byte_order_mark_names_the_bodys_own_byte(real_time):
    response = post(real_time, BOM.encode() + b"1,\xff\n", "text/csv")
    assert response.status_code == 400 and response.json == {"error": "body is not UTF-8 (byte 5)"}


# ---------------------------------------------------------------------------------------------- rows in error

ROWS = 1 << 20  # blank lines: past 16 slices of 65,536 rows


def blank_body(unknown: int = 150) -> bytes:
    """`unknown` pairs of an unknown user, then blank lines, then one pair the model knows, `ROWS` rows."""
    return b"999,1\n" * unknown + b"\n" * (ROWS - unknown - 1) + b"1,3\n"


def test_a_csv_body_of_a_million_blank_lines_answers_each_in_place_but_describes_only_the_first(batch):
    response = post(batch, blank_body(), "text/csv")
    lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and len(lines) == ROWS
    assert lines[0] == "error: line 1: unknown user id: '999'"
    assert lines[MAX_ROW_ERRORS - 1] == f"error: line {MAX_ROW_ERRORS}: unknown user id: '999'"
    assert set(lines[MAX_ROW_ERRORS:-1]) == {"error"} and 0 < float(lines[-1]) < 1


def test_its_json_answer_counts_every_row_in_error_and_keeps_the_first_reasons_by_line(batch):
    response = post(batch, blank_body(), "text/csv", accept="application/json")
    answer = response.json
    assert response.status_code == 200 and answer["error_count"] == ROWS - 1
    assert list(answer["errors"]) == [str(line) for line in range(1, MAX_ROW_ERRORS + 1)]
    assert answer["errors"]["1"] == "line 1: unknown user id: '999'"
    assert answer["outputs"]["score"][:-1] == [None] * (ROWS - 1) and answer["outputs"]["score"][-1] > 0
    # a null score and a null like per row, and a bounded list of reasons: ~12 bytes a row
    assert len(response.get_data()) < 12 * ROWS + 100 * MAX_ROW_ERRORS


def test_blank_lines_are_described_in_line_order_after_other_rows_in_error(batch):
    answer = post(batch, blank_body(unknown=3), "text/csv", accept="application/json").json
    assert list(answer["errors"].values())[2:4] == ["line 3: unknown user id: '999'", "line 4: empty row"]
    assert len(answer["errors"]) == MAX_ROW_ERRORS and answer["error_count"] == ROWS - 1


def test_a_real_time_csv_body_of_blank_lines_is_413_in_a_few_bytes(real_time):
    response = post(real_time, b"\n" * (6 * 1024 * 1024 - 1), "text/csv")
    assert response.status_code == 413 and len(response.get_data()) < 1000 and "6,291,455" in response.json["error"]


# ---------------------------------------------------------------------------------------------- Content-Encoding


@pytest.mark.parametrize("header, coding", [(None, "identity"), ("", "identity"), ("identity", "identity"),
                                            ("gzip", "gzip"), (" GZIP ", "gzip"), ("x-gzip", "gzip"),
                                            ("identity, gzip", "gzip")])
def test_a_body_may_arrive_as_is_or_gzipped(header, coding):
    assert content_encoding(header) == coding


@pytest.mark.parametrize("header", ["br", "deflate", "compress", "gzip, gzip", "zstd, gzip"])
def test_any_other_content_encoding_is_415_naming_it(header):
    with pytest.raises(UnsupportedMediaType, match=f"Content-Encoding '{header}' is not supported; send the body "
                                                   "as is or with Content-Encoding: gzip"):
        content_encoding(header)


def test_a_gzipped_body_is_the_text_it_holds_members_and_all():
    text = b"1,3\n2,4\n" * 1000
    assert decompressed(gzip.compress(text), "gzip", len(text)) == text
    assert decompressed(gzip.compress(text[:8]) + gzip.compress(text[8:]), "gzip", len(text)) == text
    assert decompressed(text, "identity", 1) == text  # the limit on a plain body was checked as it was read


def test_a_gzipped_body_over_the_limit_once_decompressed_is_413_before_it_is_all_inflated():
    bomb = gzip.compress(b"\n" * (64 * 1024 * 1024))  # 64 MB in 65 kB
    with pytest.raises(TooLarge, match="body is over the 1 MB limit once decompressed"):
        decompressed(bomb, "gzip", 1024 * 1024)
    assert decompressed(gzip.compress(b"\n" * 1024 * 1024), "gzip", 1024 * 1024) == b"\n" * 1024 * 1024


@pytest.mark.parametrize("body, why", [(gzip.compress(b"1,3\n")[:-6], "the stream is cut short"),
                                      (b"1,3\n", "Error -3 while decompressing data: incorrect header check"),
                                      (gzip.compress(b"1,3\n") + b"junk", "incorrect header check")])
def test_a_corrupt_or_truncated_gzip_body_is_400_saying_so(body, why):
    with pytest.raises(BadRequest, match=f"body is not valid gzip \\(.*{why}"):
        decompressed(body, "gzip", 1024 * 1024)


def test_a_gzipped_csv_body_is_answered_as_the_plain_one(real_time):
    plain = post(real_time, b"1,3\n2,4\n", "text/csv")
    zipped = real_time.post("/invocations", data=gzip.compress(b"1,3\n2,4\n"), content_type="text/csv",
                            headers={"Content-Encoding": "gzip"})
    assert zipped.status_code == 200 and zipped.get_data() == plain.get_data()


def test_another_content_encoding_is_415_through_the_app(real_time):
    response = real_time.post("/invocations", data=b"1,3\n", content_type="text/csv",
                              headers={"Content-Encoding": "br"})
    assert response.status_code == 415 and "Content-Encoding 'br'" in response.json["error"]


def test_a_gzip_bomb_is_413_through_the_app(real_time):
    response = real_time.post("/invocations", data=gzip.compress(b"\n" * (7 * 1024 * 1024)), content_type="text/csv",
                              headers={"Content-Encoding": "gzip"})
    assert response.status_code == 413 and "once decompressed" in response.json["error"]
