"""The 6 MB a real-time answer may carry, counted in the bytes sent: what an answer echoes from its request
(an unknown user's id, ignored fold-in items, an error's message) as JSON writes it, `\\u00e9` for `é` and
`\\ud83d\\ude00` for an emoji. A request whose answer would not fit is a 413; a 200 is never over 6 MB."""

import json

import pytest

from benchmarks.fake_model import fake_model
from container.app import create_app
from container.serve_config import REALTIME_RESPONSE_BYTES, ServeConfig
from ncf.recommender import Recommender
from ncf.vocab import MAX_ID_CHARS

EMOJI = "\U0001f600"  # 4 bytes of UTF-8 in a request, 12 of JSON in an answer


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("opt_ml") / "model"
    fake_model(folder, "mf", users=50, items=12, interactions=200, seed=0)
    return folder, Recommender.load(folder)


@pytest.fixture(scope="module")
def real_time(model):
    folder, recommender = model
    return create_app(recommender, ServeConfig(model_dir=folder, max_payload_mb=6)).test_client()


def post_lines(client, records: list[dict]):
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    assert len(body) <= 6 * 1024 * 1024
    response = client.post("/invocations", data=body, content_type="application/jsonlines")
    response.get_data()  # a streamed answer holds the worker's turn until read
    return response


def assert_refused_or_within_6_mb(response):
    if response.status_code == 200:
        assert len(response.get_data()) <= REALTIME_RESPONSE_BYTES
    else:
        assert response.status_code == 413 and response.json["limit_bytes"] == REALTIME_RESPONSE_BYTES


def test_unknown_users_whose_ids_json_writes_12_bytes_a_character_are_counted(real_time):
    # 2,000 records of 1 kB each echo 3 kB of user id each: 6.1 MB of answer
    response = post_lines(real_time, [{"user": EMOJI * MAX_ID_CHARS, "k": 1}] * 2000)
    assert response.status_code == 413 and "6 MB a real-time response may carry" in response.json["error"]
    assert_refused_or_within_6_mb(response)


def test_ignored_fold_in_items_are_counted_as_json_writes_them(real_time):
    # 5 records of 1,000 unknown items of 256 'é' (512 kB each) echo 1.5 MB each under "ignored"
    response = post_lines(real_time, [{"items": ["\u00e9" * MAX_ID_CHARS] * 1000, "k": 1}] * 5)
    assert response.status_code == 413
    assert_refused_or_within_6_mb(response)


def test_error_lines_that_echo_a_value_are_counted_as_json_writes_them(real_time):
    # 30 lines whose k is 100,000 'é': each error quotes it, 600 kB of JSON per line
    response = post_lines(real_time, [{"user": 1, "k": "\u00e9" * 100_000}] * 30)
    assert response.status_code == 413
    assert_refused_or_within_6_mb(response)


def test_answers_that_echo_little_still_fit(real_time):
    response = post_lines(real_time, [{"user": EMOJI * 8, "k": 1}] * 2000 + [{"items": ["\u00e9"] * 1000}] * 5
                          + [{"user": 1, "k": "\u00e9" * 100}] * 30)
    lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and len(lines) == 2035
    assert json.loads(lines[0])["user"] == EMOJI * 8 and json.loads(lines[2000])["ignored"] == ["\u00e9"] * 1000
    assert "k must be an integer" in json.loads(lines[-1])["error"]
