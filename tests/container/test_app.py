"""The HTTP contract of /ping, /execution-parameters and /invocations, through the application factory."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.app import create_app
from container.serve_config import ServeConfig


@pytest.fixture(scope="module")
def client(recommender, model_dir):
    app = create_app(recommender, ServeConfig(model_dir=model_dir, max_payload_mb=1, max_concurrent_transforms=3))
    return app.test_client()


@pytest.fixture(scope="module")
def ids(recommender):
    """Users as the training data had them; items as every answer gives them, strings (requests take both)."""
    users = recommender.users.decode(range(len(recommender.users)))
    items = [str(i) for i in recommender.items.decode(range(len(recommender.items)))]
    return users, items


def post(client, body, content_type="application/json", accept=None, headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post("/invocations", data=data, content_type=content_type,
                       headers={**({"Accept": accept} if accept else {}), **(headers or {})})


def test_ping_is_200_when_the_model_is_loaded(client):
    response = client.get("/ping")
    assert response.status_code == 200 and response.json == {"status": "ok"}


def test_ping_is_503_with_the_reason_when_no_model_is_loaded(model_dir):
    app = create_app(None, ServeConfig(model_dir=model_dir), problem="model not loaded from /x: missing")
    client = app.test_client()
    assert client.get("/ping").status_code == 503
    assert "missing" in client.get("/ping").json["error"]
    assert post(client, {"user": 1}).status_code == 503


def test_execution_parameters_announce_multi_record_batches(client):
    assert client.get("/execution-parameters").json == {
        "MaxConcurrentTransforms": 3, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 1}


def test_pairs_are_scored_in_the_tf_serving_row_format(client, ids, recommender):
    users, items = ids
    response = post(client, {"instances": [{"user": users[0], "item": items[0]}, {"user": str(users[1]), "item": items[1]}]})
    assert response.status_code == 200
    predictions = response.json["predictions"]
    expected = recommender.score(users[:2], items[:2])
    assert [p["score"] for p in predictions] == pytest.approx(expected, abs=1e-6)
    assert [p["like"] for p in predictions] == [bool(s >= 0.5) for s in expected]


def test_pairs_are_scored_in_the_columnar_format_with_a_per_request_threshold(client, ids):
    users, items = ids
    response = post(client, {"inputs": {"user": users[:3], "item": items[:3]}, "threshold": 0.0})
    assert response.json["outputs"]["like"] == [True, True, True] and len(response.json["outputs"]["score"]) == 3


def test_custom_attributes_carry_request_options(client, ids):
    users, items = ids
    response = post(client, {"inputs": {"user": users[:2], "item": items[:2]}},
                    headers={"X-Amzn-SageMaker-Custom-Attributes": "threshold=1.0,trace=abc"})
    assert response.json["outputs"]["like"] == [False, False]
    got = post(client, {"user": users[0]}, headers={"X-Amzn-SageMaker-Custom-Attributes": "k=3"})
    assert len(got.json["itemList"]) == 3


def test_recommendations_look_like_personalize_and_exclude_seen_items(client, ids, recommender):
    users, _ = ids
    response = post(client, {"user": users[0], "k": 5})
    body = response.json
    assert body["fallback"] is False and body["user"] == users[0] and len(body["itemList"]) == 5
    assert set(body["itemList"][0]) == {"itemId", "score"}
    seen = set(map(str, recommender.items.decode(recommender.artifact.seen.row(0))))
    assert not seen & {entry["itemId"] for entry in body["itemList"]}
    excluded = post(client, {"user": users[0], "k": 5, "exclude": [body["itemList"][0]["itemId"]]}).json
    assert [e["itemId"] for e in excluded["itemList"]][:4] == [e["itemId"] for e in body["itemList"]][1:]
    kept = post(client, {"user": users[0], "k": 500, "exclude_seen": False}).json
    assert seen & {entry["itemId"] for entry in kept["itemList"]}


@pytest.mark.parametrize("spelled, excluded", [("no", False), ("off", False), (0, False), ("N", False),
                                               ("yes", True), (" On ", True), (1, True), ("TRUE", True)])
def test_exclude_seen_reads_every_spelling_of_a_boolean_in_the_body_and_in_custom_attributes(client, ids,
                                                                                          recommender, spelled,
                                                                                          excluded):
    user = ids[0][0]
    seen = set(map(str, recommender.items.decode(recommender.artifact.seen.row(0))))
    body = post(client, {"user": user, "k": 500, "exclude_seen": spelled})
    header = post(client, {"user": user, "k": 500},
                  headers={"X-Amzn-SageMaker-Custom-Attributes": f"exclude_seen={str(spelled).strip()}"})
    for response in (body, header):
        assert response.status_code == 200, response.json
        assert bool(seen & {e["itemId"] for e in response.json["itemList"]}) is not excluded


@pytest.mark.parametrize("spelled", ["maybe", 2, 1.0, None, ["yes"]])
def test_exclude_seen_that_spells_no_boolean_is_400_naming_the_field(client, ids, spelled):
    response = post(client, {"user": ids[0][0], "exclude_seen": spelled})
    assert response.status_code == 400
    assert response.json["error"] == (f"exclude_seen: exclude_seen must be a boolean (true/false, 1/0, yes/no, y/n, "
                                      f"on/off), got {spelled!r}")
    header = post(client, {"user": ids[0][0]}, headers={"X-Amzn-SageMaker-Custom-Attributes": "exclude_seen=maybe"})
    assert header.status_code == 400
    assert header.json["error"].startswith("X-Amzn-SageMaker-Custom-Attributes: exclude_seen must be a boolean")


def test_an_unknown_user_gets_popular_items_flagged(client):
    body = post(client, {"user": "someone-new", "k": 4}).json
    assert body["fallback"] is True and len(body["itemList"]) == 4


def test_similar_items_never_include_the_item_itself(client, ids):
    _, items = ids
    body = post(client, {"item": items[3], "k": 6}).json
    assert body["item"] == items[3] and len(body["itemList"]) == 6
    assert items[3] not in [e["itemId"] for e in body["itemList"]]


def test_json_lines_answer_one_line_per_record_in_order_with_errors_in_place(client, ids):
    users, items = ids
    lines = [json.dumps({"user": users[0], "k": 2}), "{not json", json.dumps({"item": items[0], "k": 2}),
             json.dumps({"user": users[1], "k": 2}), json.dumps({"item": "no-such-item"})]
    response = post(client, "\n".join(lines) + "\n", content_type="application/jsonlines")
    assert response.status_code == 200 and response.mimetype == "application/jsonlines"
    out = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(out) == 5
    assert out[0]["user"] == users[0] and out[3]["user"] == users[1] and out[2]["item"] == items[0]
    assert "line 2: not valid JSON" in out[1]["error"]
    assert out[4] == {"error": "unknown item id: 'no-such-item'"}


def test_a_batch_of_many_users_matches_one_by_one_answers(client, ids):
    users, _ = ids
    body = "".join(json.dumps({"user": u, "k": 3}) + "\n" for u in users[:40])
    batch = [json.loads(line) for line in post(client, body, "application/jsonlines").get_data(as_text=True).splitlines()]
    alone = post(client, {"user": users[7], "k": 3}).json
    # the same items; scores up to float32 rounding (a block of users is one matrix product, a user alone not)
    assert [e["itemId"] for e in batch[7]["itemList"]] == [e["itemId"] for e in alone["itemList"]]
    assert [e["score"] for e in batch[7]["itemList"]] == pytest.approx([e["score"] for e in alone["itemList"]],
                                                                      rel=1e-6)
    assert {k: v for k, v in batch[7].items() if k != "itemList"} == {k: v for k, v in alone.items() if k != "itemList"}


def test_csv_rows_of_pairs_get_one_score_per_line(client, ids, recommender):
    users, items = ids
    body = f"user,item\n{users[0]},{items[0]}\n{users[1]},{items[1]}\n"
    response = post(client, body, content_type="text/csv")
    assert response.mimetype == "text/csv"
    scores = [float(line) for line in response.get_data(as_text=True).splitlines()]
    assert scores == pytest.approx(recommender.score(users[:2], items[:2]), abs=1e-6)
    as_json = post(client, body, content_type="text/csv", accept="application/json")
    assert len(as_json.json["outputs"]["score"]) == 2


@pytest.mark.parametrize("accept, expected", [
    ("*/*", "application/json"), (None, "application/json"), ("application/jsonlines", "application/jsonlines"),
    ("text/html;q=0.9, text/csv", "text/csv"), ("application/*", "application/json"),
])
def test_accept_picks_the_response_type(client, ids, accept, expected):
    assert post(client, {"user": ids[0][0]}, accept=accept).mimetype == expected


def test_an_unsupported_accept_is_406_and_content_type_415(client, ids):
    response = post(client, {"user": ids[0][0]}, accept="image/png")
    assert response.status_code == 406 and "image/png" in response.json["error"]
    response = post(client, "<user/>", content_type="application/xml")
    assert response.status_code == 415 and "application/xml" in response.json["error"]


def test_a_body_over_the_limit_is_413_before_parsing(client):
    response = post(client, b"x" * (1024 * 1024 + 1))
    assert response.status_code == 413 and "1 MB" in response.json["error"]


@pytest.mark.parametrize("body, message", [
    ("{", "not valid JSON"),
    ('{"user": NaN}', "NaN is not valid JSON"),
    ('{"user": 1, "user": 2}', "duplicate key 'user'"),
    ("[" * 100_000 + "]" * 100_000, "not valid JSON|nested too deeply"),
    ("[1, 2]", "expected a JSON object"),
    ({"user": 1, "k": 0}, "k must be an integer from 1 to 1000"),
    ({"user": 1, "k": 10**9}, "k must be an integer from 1 to 1000"),
    ({"user": 1, "k": "ten"}, "k must be an integer"),
    ({"user": [1]}, "user must be a string or an integer"),
    ({"user": True}, "user must be a string or an integer"),
    ({"user": 1, "kk": 3}, r"unknown field\(s\) \['kk'\]"),
    ({"user": 1, "item": 2}, "not 'item' with 'user' or 'items'"),
    ({}, "a request needs"),
    ({"instances": []}, "non-empty list"),
    ({"instances": [{"user": 1}]}, r"instances\[0\] must be an object with exactly 'user' and 'item'"),
    ({"inputs": {"user": [1, 2], "item": [1]}}, "same length"),
    ({"instances": [{"user": 1, "item": 2}], "threshold": 2}, "threshold must be a number from 0 to 1"),
    ({"user": 1, "exclude": "abc"}, "'exclude' must be a list"),
])
def test_bad_requests_are_400_with_a_json_message(client, body, message):
    import re

    response = post(client, body)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert re.search(message, response.json["error"])


def test_unknown_ids_in_pairs_are_400_naming_them(client, ids):
    response = post(client, {"instances": [{"user": ids[0][0], "item": "nope"}]})
    assert response.status_code == 400 and response.json["error"] == "unknown item id: 'nope'"


def test_a_csv_body_that_is_not_text_or_holds_no_row_is_400(client):
    assert post(client, b"\xff\xfe", content_type="text/csv").status_code == 400
    assert post(client, "user,item\n", content_type="text/csv").status_code == 400


def test_csv_answers_a_line_per_row_in_order_with_errors_in_place_like_json_lines(client, ids, recommender):
    users, items = ids
    body = (f"user,item\n{users[0]},{items[0]}\n\n1,2,3\nuser,item\n{users[1]},nope\n"
            f"\"{users[1]}\",\"{items[1]}\"\n")
    response = post(client, body, content_type="text/csv")
    lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and len(lines) == 6  # six rows after the header, six answers
    assert float(lines[0]) == pytest.approx(recommender.score(users[:1], items[:1])[0], abs=1e-6)
    assert lines[1:5] == ["error: line 3: empty row", "error: line 4: expected 2 fields (user,item), got 3",
                          "error: line 5: unknown user id: 'user'", "error: line 6: unknown item id: 'nope'"]
    assert float(lines[5]) == pytest.approx(recommender.score(users[1:2], items[1:2])[0], abs=1e-6)
    as_json = post(client, body, content_type="text/csv", accept="application/json").json
    assert as_json["outputs"]["score"][1:5] == [None] * 4 and as_json["outputs"]["like"][1] is None


def test_csv_errors_in_json_are_keyed_by_the_1_based_line_their_message_names(client, ids):
    users, items = ids
    body = f"user,item\n{users[0]},{items[0]}\n\n1,2,3\n\"{users[1]}\",nope\n"
    as_json = post(client, body, content_type="text/csv", accept="application/json").json
    assert as_json["errors"] == {"3": "line 3: empty row", "4": "line 4: expected 2 fields (user,item), got 3",
                                 "5": "line 5: unknown item id: 'nope'"}
    assert as_json["error_count"] == 3 and as_json["outputs"]["score"][1:] == [None] * 3


def test_unknown_routes_and_methods_answer_json(client):
    assert client.get("/nope").status_code == 404 and "error" in client.get("/nope").json
    assert client.get("/invocations").status_code == 405


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
requests_like = st.fixed_dictionaries({}, optional={
    "user": json_values, "item": json_values, "k": json_values, "exclude": json_values, "threshold": json_values,
    "exclude_seen": json_values, "instances": json_values, "inputs": json_values})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(requests_like, json_values), content_type=st.sampled_from(
    ["application/json", "application/jsonlines", "text/csv"]))
def test_no_request_body_causes_a_server_error(client, body, content_type):
    data = json.dumps(body) if content_type != "text/csv" else str(body)
    response = post(client, data, content_type=content_type)
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    assert response.status_code == 200 or "error" in response.json


@pytest.mark.parametrize("body", [b"\r\x00", b'"unterminated\n1,2', b"1,2\x00\n"])
def test_csv_rows_of_control_characters_or_open_quotes_are_error_lines_not_500(client, body):
    response = post(client, body, content_type="text/csv")
    lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and lines and all(line.startswith("error: line ") for line in lines)


def test_the_app_never_runs_in_debug_mode_even_when_the_environment_asks(recommender, model_dir, monkeypatch):
    monkeypatch.setenv("FLASK_DEBUG", "1")  # Flask reads it when an app is created
    app = create_app(recommender, ServeConfig(model_dir=model_dir))
    assert app.debug is False and app.testing is False

    class Broken:
        metadata = recommender.metadata

        def __getattr__(self, name):
            raise RuntimeError("secret detail")

    from container.costs import Costs
    from container.limits import Limits
    from container.rules import RuleBook

    limits = Limits.derive(Costs.measure(recommender), ServeConfig(model_dir=model_dir))
    book = RuleBook(None, len(recommender.items))
    broken = create_app(Broken(), ServeConfig(model_dir=model_dir), limits=limits, book=book)
    response = post(broken.test_client(), {"user": 1})
    assert response.status_code == 500 and response.json == {"error": "internal error; see the endpoint's log"}


# ---------------------------------------------------------------------------------------------- limits

def _costs(user_s=0.0, entry_s=0.0, pair_s=0.0, n_items=200, entry_bytes=50, record_bytes=50):
    """Costs as if measured: round binary fractions, so that the sums below are exact."""
    from container.costs import Costs

    return Costs(line_s=0.0, user_s=user_s, similar_s=user_s, entry_s=entry_s, pair_s=pair_s, n_items=n_items,
                 record_bytes=record_bytes, entry_bytes=entry_bytes)


def _app(recommender, model_dir, costs=None, **settings):
    from container.limits import Limits

    config = ServeConfig(model_dir=model_dir, **settings)
    return create_app(recommender, config, limits=Limits.derive(costs, config) if costs else None).test_client()


def _lines(users, n, k=None):
    return "".join(json.dumps({"user": users[m % len(users)], **({"k": k} if k else {})}) + "\n" for m in range(n))


def test_a_request_of_more_work_than_half_the_timeout_is_413_saying_how_many_records_fit(recommender, model_dir,
                                                                                           ids):
    # 1/64 s per user, 4 s timeout: 2 s of work may be asked, that is 128 users.
    client = _app(recommender, model_dir, _costs(user_s=1 / 64), timeout=4)
    refused = post(client, _lines(ids[0], 129), "application/jsonlines")
    assert refused.status_code == 413
    assert refused.json["limit_s"] == 2.0 and refused.json["max_records"] == 128
    assert "2 s of work one request may take (50% of the 4 s" in refused.json["error"]
    answered = post(client, _lines(ids[0], 128), "application/jsonlines")
    assert answered.status_code == 200 and len(answered.get_data(as_text=True).splitlines()) == 128


def test_too_many_pairs_in_one_request_is_413_saying_how_many_fit(recommender, model_dir, ids):
    users, items = ids
    client = _app(recommender, model_dir, _costs(pair_s=1 / 1024), timeout=4)  # 2 s: 2,048 pairs
    body = {"inputs": {"user": [users[0]] * 2049, "item": [items[0]] * 2049}}
    refused = post(client, body)
    assert refused.status_code == 413 and refused.json["max_pairs"] == 2048
    assert post(client, {"inputs": {"user": [users[0]] * 2048, "item": [items[0]] * 2048}}).status_code == 200


def test_a_real_time_answer_over_6_mb_is_413_saying_how_many_entries_fit(recommender, model_dir, ids):
    # 100 bytes per entry, 1,000 records of 50 bytes each and the user id each echoes:
    # (6 MB - 1,000 x (50 + echo)) / 100 entries fit, 62,404 for a user id of one digit.
    client = _app(recommender, model_dir, _costs(entry_bytes=100), timeout=60)
    user = ids[0][:1]
    refused = post(client, _lines(user, 1000, k=63), "application/jsonlines")
    assert refused.status_code == 413 and refused.json["limit_bytes"] == 6 * 1024 * 1024
    assert refused.json["max_entries"] == (6 * 1024 * 1024 - 1000 * (50 + len(json.dumps(user[0])))) // 100
    assert "6 MB a real-time response may carry" in refused.json["error"]
    assert post(client, _lines(user, 1000, k=62), "application/jsonlines").status_code == 200


def test_a_batch_answer_has_no_6_mb_limit(recommender, model_dir, ids):
    client = _app(recommender, model_dir, _costs(entry_bytes=100), timeout=60, batch=True)
    assert post(client, _lines(ids[0], 1000, k=63), "application/jsonlines").status_code == 200


@pytest.mark.parametrize("worst_s, settings, advertised", [
    # 95,325 records of {"user":1} per MB. 1 ms each: 95.3 s per MB; 3600 s timeout: 1,800 s of work: 18 MB.
    (1e-3, dict(timeout=3600, max_payload_mb=100, max_concurrent_transforms=1), 18),
    (1e-3, dict(timeout=600, max_payload_mb=100, max_concurrent_transforms=1), 3),
    (1e-3, dict(timeout=3600, max_payload_mb=6, max_concurrent_transforms=1), 6),  # never above the body limit
    (1e-3, dict(timeout=3600, max_payload_mb=100, max_concurrent_transforms=8), 12),  # 8 x 12 <= 100
    (1e-1, dict(timeout=3600, max_payload_mb=100, max_concurrent_transforms=1), 1),  # the API's smallest
])
def test_batch_mode_advertises_the_payload_whose_worst_case_fits_half_the_timeout(recommender, model_dir, worst_s,
                                                                                   settings, advertised):
    # worst case: every record a known user asking for the most items (k=1000; the model has 200)
    client = _app(recommender, model_dir, _costs(user_s=worst_s / 2, entry_s=worst_s / 2 / 200), batch=True,
                  **settings)
    assert client.get("/execution-parameters").json["MaxPayloadInMB"] == advertised


def test_batch_mode_advertises_the_payload_the_models_costs_allow(recommender, model_dir):
    from container.costs import Costs

    # costs as an idle machine measures them (tests/container/test_costs.py checks the measuring): a loaded
    # one measures a fold-in up to 3x slower, and 1 MB of one-item fold-ins then no longer fits an hour
    costs = Costs(line_s=2e-6, user_s=1e-3, similar_s=1e-3, entry_s=2e-6, pair_s=1e-6, n_items=len(recommender.items),
                  record_bytes=64, entry_bytes=40, fold_in_s=5e-3, fold_in_item_s=1e-4, exclude_s=3e-6)
    quick = _app(recommender, model_dir, costs, batch=True, timeout=3600, max_payload_mb=100)
    slow = _app(recommender, model_dir, costs, batch=True, timeout=2, max_payload_mb=100)
    assert quick.get("/execution-parameters").json["MaxPayloadInMB"] > 1
    assert slow.get("/execution-parameters").json["MaxPayloadInMB"] == 1
    # 1 MB of the costliest records cannot finish in 2 s: one record a request is what still succeeds
    assert quick.get("/execution-parameters").json["BatchStrategy"] == "MULTI_RECORD"
    assert slow.get("/execution-parameters").json["BatchStrategy"] == "SINGLE_RECORD"


def test_json_lines_answers_stream_in_order_across_chunks_with_errors_in_place(recommender, model_dir, ids):
    users, items = ids
    client = _app(recommender, model_dir, batch=True)
    lines = []
    for n in range(900):  # k=500 is 200 entries a record here: ~330 records a chunk, so 3 chunks
        lines.append(json.dumps({"user": users[n % len(users)], "k": 500}) if n % 97 else "{oops")
    response = post(client, "\n".join(lines) + "\n", "application/jsonlines")
    # streamed: sent chunk by chunk as it is made, so no length is known up front
    assert response.status_code == 200 and "Content-Length" not in response.headers
    out = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert len(out) == 900
    for n, answer in enumerate(out):
        if n % 97:
            assert answer["user"] == users[n % len(users)] and answer["itemList"]
        else:
            assert answer == {"error": f"line {n + 1}: not valid JSON (Expecting property name enclosed in double "
                                       f"quotes: line 1 column 2 (char 1))"}


def test_json_lines_answered_as_json_or_csv_stream_the_same_answers(client, ids):
    users, _ = ids
    body = _lines(users, 5, k=3)
    as_lines = [json.loads(line) for line in post(client, body, "application/jsonlines").get_data(as_text=True)
                .splitlines()]
    assert post(client, body, "application/jsonlines", accept="application/json").json == {"responses": as_lines}
    csv_lines = post(client, body, "application/jsonlines", accept="text/csv").get_data(as_text=True).splitlines()
    assert csv_lines == [",".join(str(e["itemId"]) for e in r["itemList"]) for r in as_lines]


def test_a_model_that_loads_but_cannot_score_pings_503_with_the_reason(tmp_path, monkeypatch):
    """Weights of the wrong shape pass the folder's checks; the first scoring (timing the model at startup)
    fails, and the endpoint says so on /ping instead of the server dying."""
    import numpy as np

    from benchmarks.fake_model import fake_model
    from container.app import from_environment
    from ncf import artifacts

    folder = fake_model(tmp_path / "model", "neumf", users=30, items=40, interactions=300, factors=4,
                        mlp_layers=(8, 4, 2))
    broken = artifacts.load(folder)
    broken.weights["mlp/dense_1/kernel"] = np.zeros((3, 2), np.float32)  # the layer before it has 4 units
    artifacts.save(folder, broken)
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    response = from_environment().test_client().get("/ping")
    assert response.status_code == 503 and "model not loaded" in response.get_json()["error"]


@pytest.mark.parametrize("user", [18446744073709551616, "9999999999999999999", "\u00b2", "--1", "\uff11"])
def test_a_user_id_past_int64_or_not_in_ascii_digits_is_an_unknown_user_not_a_500(client, user):
    response = post(client, {"user": user, "k": 3})
    assert response.status_code == 200 and response.json["fallback"] is True and response.json["user"] == user


@pytest.mark.parametrize("body", [{"instances": [{"user": "\uff11", "item": "\u0663\u0661"}]},
                                  {"inputs": {"user": [18446744073709551616], "item": [1]}}])
def test_pairs_with_such_ids_are_400_unknown_never_scored_as_another_id(client, body):
    response = post(client, body)
    assert response.status_code == 400 and response.json["error"].startswith("unknown user id")


def test_such_ids_in_csv_are_an_error_line_in_place_not_a_500(client, ids):
    response = post(client, f"{ids[0][0]},9999999999999999999\n{ids[0][0]},{ids[1][0]}\n", content_type="text/csv")
    lines = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and lines[0] == "error: line 1: unknown item id: '9999999999999999999'"
    assert 0.0 <= float(lines[1]) <= 1.0


@pytest.mark.parametrize("k", ["\u00b2", "--1", "\uff13"])
def test_k_spelt_in_other_digits_is_400_in_the_body_and_in_custom_attributes(client, ids, k):
    response = post(client, {"user": ids[0][0], "k": k})
    assert response.status_code == 400 and "k must be an integer" in response.json["error"]
    header = post(client, {"user": ids[0][0]}, headers={"X-Amzn-SageMaker-Custom-Attributes": f"k={k}"})
    assert header.status_code == 400 and "X-Amzn-SageMaker-Custom-Attributes" in header.json["error"]


def test_one_hostile_line_in_json_lines_is_an_error_line_in_its_place(client, ids):
    lines = [{"user": ids[0][0], "k": 2}, {"user": 18446744073709551616, "k": 2}, {"user": ids[0][1], "k": "\u00b2"},
             {"user": ids[0][1], "k": 2}]
    response = post(client, "".join(json.dumps(line) + "\n" for line in lines), "application/jsonlines")
    out = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert response.status_code == 200 and len(out) == 4
    assert out[1]["fallback"] is True and "k must be an integer" in out[2]["error"]
    assert len(out[0]["itemList"]) == len(out[3]["itemList"]) == 2


def test_an_id_longer_than_any_id_may_be_is_400_saying_the_limit(client):
    from ncf.vocab import MAX_ID_CHARS

    response = post(client, {"user": "x" * 100_000})
    assert response.status_code == 400
    assert response.json["error"] == f"user is 100,000 characters long; ids have at most {MAX_ID_CHARS}"
    assert post(client, {"user": "x" * MAX_ID_CHARS}).json["fallback"] is True


@pytest.mark.parametrize("accept, answered", [
    ("application/json;q=0, */*", "application/jsonlines"),   # q=0 refuses JSON; */* takes the next type
    ("text/csv;Q=0.5, application/json;q=0.4", "text/csv"),    # parameter names are case-insensitive
    ("application/json;q=-1, text/csv", "text/csv"),           # an invalid quality drops its entry
    ("application/json;q=nan, text/csv;q=0.1", "text/csv"),
    ("application/*;q=0.2, text/csv;q=0.1", "application/json"),
])
def test_accept_is_negotiated_by_quality_as_http_defines_it(client, ids, accept, answered):
    response = post(client, {"user": ids[0][0], "k": 2}, accept=accept)
    assert response.status_code == 200 and response.mimetype == answered


@pytest.mark.parametrize("accept", ["application/json;q=0", "application/json;q=nan", "image/png"])
def test_an_accept_that_refuses_every_supported_type_is_406(client, ids, accept):
    response = post(client, {"user": ids[0][0]}, accept=accept)
    assert response.status_code == 406 and "names no supported type" in response.json["error"]


def test_a_fold_in_answers_like_the_library_and_says_which_items_it_ignored(client, ids, recommender):
    users, items = ids
    response = post(client, {"user": users[0], "items": [items[3], items[5], "unknown"], "k": 5})
    expected = recommender.recommend_from_items([items[3], items[5], "unknown"], 5, user=users[0])
    assert response.status_code == 200
    assert [e["itemId"] for e in response.json["itemList"]] == [str(i) for i in expected.items]
    assert response.json["ignored"] == ["unknown"] and response.json["user"] == users[0]


@pytest.mark.parametrize("body, message", [
    ({"items": "31"}, "'items' must be a list of at most 1000 item ids"),
    ({"items": ["1"] * 1001}, "'items' must be a list of at most 1000 item ids"),
    ({"items": [["1"]]}, "items[0] must be a string or an integer"),
    ({"items": ["1"], "item": "2"}, "not 'item' with 'user' or 'items'"),
    ({"items": ["1"], "since": 3}, "unknown field(s) ['since']"),
])
def test_a_bad_fold_in_request_is_a_400_that_names_the_field(client, body, message):
    response = post(client, body)
    assert response.status_code == 400 and message in response.json["error"]
