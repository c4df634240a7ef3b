"""Business rules that cannot be answered (issue #32): every bad field, unknown column, type mismatch, missing
placeholder value, over-long expression and unknown filter name is a 400 naming the field and, in an
expression, the column where it is; never a 500, never an answer the rule did not filter. A deploy-time
filter that cannot be compiled makes `/ping` answer 503 saying why, as a broken model does."""

import json
import re
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from container.app import create_app, from_environment
from container.serve_config import ServeConfig
from tests.container.test_serve import Server, request


@pytest.fixture(scope="module")
def client(shop, shop_dir):
    return create_app(shop, ServeConfig(model_dir=shop_dir, filters=json.dumps({
        "cheap": "INCLUDE ItemID WHERE Items.PRICE < $MAX"}))).test_client()


@pytest.fixture(scope="module")
def plain(recommender, model_dir):
    """The same model trained without an items channel."""
    return create_app(recommender, ServeConfig(model_dir=model_dir)).test_client()


@pytest.fixture(scope="module")
def user(shop):
    return shop.users.decode([0])[0]


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/invocations", data=data, content_type=content_type)


def promotion(**fields):
    return {"name": "p", "percentPromotedItems": 20, "filterExpression": 'INCLUDE ItemID WHERE Items.IN_STOCK IN ("true")',
            **fields}


@pytest.mark.parametrize("rules, message", [
    # the expression's faults, at their column
    ({"filter": 'INCLUDE ItemID WHERE Items.GENRE IN ("Comedy")'},
     r"^filter: filter expression, column 28: unknown column Items.GENRE; the columns are GENRES, PRICE"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES > 3"}, r"^filter: .*column 35: GENRES is a categorical column"),
    ({"filter": 'INCLUDE ItemID WHERE Items.PRICE IN ("cheap")'}, r"^filter: .*column 38: PRICE is a numeric column"),
    ({"filter": 'INCLUDE ItemID WHERE Items.IN_STOCK IN ("maybe")'}, r"^filter: .*IN_STOCK is a boolean column"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES IN ($G)"}, r"^filter: .*column 39: .*filterValues has no G"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES IN ($G)", "filterValues": {"G": "Comedy"}},
     r"^filter: filterValues\['G'\]"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES IN ($G)", "filterValues": {"H": '"x"'}}, r"^filter: .*gives H"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES IN " + '("x"' + ', "x"' * 600 + ")"},
     r"^filter: the filter expression is 3,\d\d\d characters long; the limit is 2,500"),
    ({"filter": "INCLUDE ItemID WHERE Items.GENRES IN"}, r"^filter: filter expression, column 37: expected \(, found the end"),
    ({"filter": 17}, r"'filter' must be a filter expression \(a string\), got int"),
    ({"filterName": "cheap"}, r"^filterName 'cheap': .*column 36: .*filterValues has no MAX"),
    ({"filterName": "dear"}, r"^filterName 'dear': no filter of that name was given at deploy time; there are 'cheap'"),
    ({"filterName": "cheap", "filter": "INCLUDE ItemID WHERE Items.PRICE < 3"},
     "give either 'filter' or 'filterName', not both"),
    ({"filterValues": {"MAX": "3"}}, "'filterValues' is given without a filter to fill in"),
    # null is no way to say "no filter": answered unfiltered, it would hide the sender's mistake
    ({"filter": None}, "^'filter' is null: leave the field out for no filter"),
    ({"filterName": None}, "^'filterName' is null: leave the field out for no filter"),
    ({"filterName": "cheap", "filterValues": None}, "^'filterValues' is null: leave the field out when no placeholder"),
    ({"filterName": "cheap", "filterValues": {"MAX": 3}}, "'filterValues' must be an object of placeholder names"),
    # promotions
    ({"promotions": promotion()}, "'promotions' must be a list of 1 to 4 promotions"),
    ({"promotions": [promotion(name=n) for n in "abcde"]}, "'promotions' must be a list of 1 to 4 promotions"),
    ({"promotions": [promotion(name="")]}, r"'promotions\[0\].name' must be 1 to 63 letters, digits, - and _"),
    *[({"promotions": [promotion(name=name)]}, r"'promotions\[0\].name' must be 1 to 63 .* \(Personalize's rule\)")
      for name in ("new arrivals", "-sale", "sale\n", "\U0001f3ac", "caf\u00e9", "x" * 64)],
    ({"promotions": [promotion(), promotion()]}, r"'promotions\[1\].name' 'p' is the name of an earlier promotion"),
    ({"promotions": [promotion(percentPromotedItems=0)]}, r"'promotions\[0\].percentPromotedItems' must be an integer"),
    ({"promotions": [promotion(percentPromotedItems="50")]}, r"percentPromotedItems' must be an integer from 1 to 100"),
    ({"promotions": [{"name": "p", "percentPromotedItems": 20}]},
     r"'promotions\[0\]' needs 'filterExpression' or 'filterName'"),
    ({"promotions": [promotion(filterExpression=None)]}, r"^'promotions\[0\].filterExpression' is null"),
    ({"promotions": [promotion(filterArn="arn")]}, r"unknown field\(s\) \['filterArn'\] in 'promotions\[0\]'"),
    ({"promotions": [promotion(filterExpression='INCLUDE ItemID WHERE Items.COLOUR IN ("red")')]},
     r"^promotions\[0\].filterExpression: filter expression, column 28: unknown column Items.COLOUR"),
    ({"promotions": [{"name": "p", "percentPromotedItems": 20, "filterName": "dear"}]}, r"^promotions\[0\].filterName 'dear'"),
    # diversity and metadata columns
    ({"diversity": {"column": "PRICE", "maxPerValue": 2}}, r"^diversity: .*a numeric column cannot be capped"),
    ({"diversity": {"column": "COLOUR", "maxPerValue": 2}}, r"^diversity: .*no such item metadata column"),
    ({"diversity": {"column": "GENRES", "maxPerValue": 0}}, r"'diversity.maxPerValue' must be an integer >= 1"),
    ({"diversity": {"column": "GENRES"}}, "'diversity' must be an object with exactly 'column'"),
    ({"metadataColumns": ["TITLE", "COLOUR"]}, r"^metadataColumns\[1\]: no item metadata column 'COLOUR'"),
    ({"metadataColumns": ["A"] * 11}, "'metadataColumns' must be a list of 1 to 10"),
    ({"metadataColumns": {"USERS": ["AGE"]}}, r"as an object has one key, ITEMS"),
    ({"metadataColumns": "TITLE"}, "'metadataColumns' must be a list"),
])
def test_a_rule_that_cannot_be_answered_is_a_400_naming_its_field(client, user, rules, message):
    for body in ({"user": user, **rules}, {"items": [user], **rules}):
        response = post(client, body)
        assert response.status_code == 400, response.get_data(as_text=True)
        assert re.search(message, response.json["error"]), response.json["error"]


@pytest.mark.parametrize("body, message", [
    ({"inputList": ["1"]}, "a ranking request \\('inputList'\\) needs 'user'"),
    ({"user": "1", "inputList": []}, "'inputList' must be a list of 1 to 500 item ids"),
    ({"user": "1", "inputList": ["1"] * 501}, "'inputList' must be a list of 1 to 500 item ids, got 501 ids"),
    ({"user": "1", "inputList": [["1"]]}, r"inputList\[0\] must be a string or an integer"),
    ({"user": "1", "inputList": ["1"], "k": 3}, r"unknown field\(s\) \['k'\] in a ranking request"),
    ({"user": "1", "inputList": ["1"], "promotions": [promotion()]}, r"unknown field\(s\) \['promotions'\]"),
    ({"user": "1", "inputList": ["1"], "filter": "EXCLUDE ItemID WHERE Items.X IN (\"y\")"}, "^filter: .*column 28"),
    ({"item": "1", "filter": "EXCLUDE ItemID WHERE Items.X IN (\"y\")"}, "^filter: .*column 28"),
])
def test_a_bad_ranking_or_similar_items_rule_is_a_400_naming_its_field(client, body, message):
    response = post(client, body)
    assert response.status_code == 400 and re.search(message, response.json["error"]), response.json


def test_a_model_without_item_metadata_says_so_for_every_rule_over_items(plain, recommender):
    user = recommender.users.decode([0])[0]
    for rules, message in [
            ({"filter": 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")'},
             "filter: filter expression, column 22: this model was trained without an items channel"),
            ({"promotions": [promotion()]}, "promotions[0].filterExpression: filter expression, column 22: this "
                                            "model was trained without an items channel"),
            ({"diversity": {"column": "GENRES", "maxPerValue": 1}}, "diversity: diversity over 'GENRES': this model "
                                                                    "has no item metadata"),
            ({"metadataColumns": ["TITLE"]}, "metadataColumns: this model was trained without an items channel")]:
        response = post(plain, {"user": user, **rules})
        assert response.status_code == 400 and response.json["error"].startswith(message), response.json
    # a rule over the user's interactions needs no metadata
    seen = post(plain, {"user": user, "k": 3, "filter": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'})
    assert seen.status_code == 200 and len(seen.json["itemList"]) == 3


def test_in_json_lines_a_bad_rule_is_an_error_line_in_its_place(client, user):
    lines = [{"user": user, "k": 2}, {"user": user, "k": 2, "filterName": "dear"},
             {"user": user, "k": 2, "filterName": "cheap", "filterValues": {"MAX": "30"}},
             {"user": user, "k": 2, "filterName": "dear"}, {"user": user, "k": 2, "metadataColumns": ["COLOUR"]}]
    response = post(client, "".join(json.dumps(line) + "\n" for line in lines), "application/jsonlines")
    out = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert response.status_code == 200 and len(out) == 5
    assert len(out[0]["itemList"]) == len(out[2]["itemList"]) == 2
    assert out[1] == out[3] == {"error": "filterName 'dear': no filter of that name was given at deploy time; there "
                                         "are 'cheap'"}
    assert out[4]["error"].startswith("metadataColumns[0]: no item metadata column 'COLOUR'")


rule_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 2000) | st.text(max_size=12) | st.sampled_from(
        ["GENRES", "PRICE", "IN_STOCK", "TITLE", "cheap", 'INCLUDE ItemID WHERE Items.GENRES IN ($G)', '"Comedy"',
         'EXCLUDE ItemID WHERE Items.PRICE > 3', 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")']),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["name", "percentPromotedItems", "filterExpression", "filterName", "filterValues", "G",
                         "column", "maxPerValue", "ITEMS"]), children, max_size=4),
    max_leaves=12)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rules=st.fixed_dictionaries({}, optional={
    "filter": rule_values, "filterName": rule_values, "filterValues": rule_values, "promotions": rule_values,
    "diversity": rule_values, "metadataColumns": rule_values, "inputList": rule_values}))
def test_no_rule_causes_a_server_error(client, user, rules):
    response = post(client, {"user": user, **rules})
    assert response.status_code in (200, 400), response.get_data(as_text=True)
    assert response.status_code == 200 or response.json["error"]


@pytest.fixture
def opt_ml(tmp_path, shop_dir):
    shutil.copytree(shop_dir, tmp_path / "model")
    return tmp_path


@pytest.mark.parametrize("environment, file, reason", [
    ('{"comedies": ', None, "NCF_FILTERS is not valid JSON"),
    ('["INCLUDE ItemID WHERE Items.GENRES IN (\\"Comedy\\")"]', None, "NCF_FILTERS must be a JSON object"),
    ('{"comedies": "INCLUDE ItemID WHERE Items.GENRE IN (\\"Comedy\\")"}', None,
     "deploy-time filter 'comedies': filter expression, column 28: unknown column Items.GENRE"),
    (None, '{"cheap": "INCLUDE ItemID WHERE Items.PRICE <"}', "deploy-time filter 'cheap': filter expression, column 35"),
    (None, "not json", "filters.json is not valid JSON"),
    ('{"x": "INCLUDE ItemID WHERE Items.PRICE > 3", "x": "INCLUDE ItemID WHERE Items.GENRES IN (\\"Horror\\")"}',
     None, "NCF_FILTERS: filter 'x' is given twice"),
    (None, '{"x": "EXCLUDE ItemID WHERE Items.PRICE > 3", "y": "EXCLUDE ItemID WHERE Items.PRICE > 9", '
           '"x": "EXCLUDE ItemID WHERE Items.PRICE > 3"}', "filters.json: filter 'x' is given twice"),
    ('{"": "INCLUDE ItemID WHERE Items.PRICE > 3"}', None, 'NCF_FILTERS: a filter has an empty name ("")'),
])
def test_a_broken_deploy_time_filter_makes_ping_503_saying_why(opt_ml, monkeypatch, environment, file, reason):
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(opt_ml))
    if environment is not None:
        monkeypatch.setenv("NCF_FILTERS", environment)
    if file is not None:
        (opt_ml / "model" / "filters.json").write_text(file)
    client = from_environment().test_client()
    response = client.get("/ping")
    assert response.status_code == 503 and reason in response.json["error"], response.json
    assert response.json["error"].startswith("deploy-time filters not loaded (NCF_FILTERS, ")
    assert post(client, {"user": 1}).status_code == 503


def test_a_filters_json_that_is_not_a_regular_file_is_refused_not_read(opt_ml, monkeypatch):
    import os

    os.mkfifo(opt_ml / "model" / "filters.json")  # reading it would wait for a writer forever
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(opt_ml))
    response = from_environment().test_client().get("/ping")
    assert response.status_code == 503 and "filters.json is not a regular file" in response.json["error"]


def test_serve_answers_rules_with_the_deploy_time_filters_of_its_environment(opt_ml, shop):
    """The real gunicorn: NCF_FILTERS read by `serve`, filters.json from the model folder, a JSON Lines batch
    mixing them with promotions, diversity and metadata."""
    (opt_ml / "model" / "filters.json").write_text(json.dumps({"stocked": 'INCLUDE ItemID WHERE Items.IN_STOCK IN ("true")'}))
    server = Server(opt_ml, NCF_FILTERS=json.dumps({"genre": "INCLUDE ItemID WHERE Items.GENRES IN ($G)"}))
    try:
        server.wait_until_ready()
        assert request(server.port, "GET", "/ping")[0] == 200
        user = shop.users.decode([0])[0]
        lines = [{"user": user, "k": 4, "filterName": "genre", "filterValues": {"G": '"Drama"'},
                  "metadataColumns": ["GENRES"]},
                 {"user": user, "k": 5, "filterName": "stocked", "diversity": {"column": "GENRES", "maxPerValue": 2},
                  "promotions": [{"name": "dramas", "percentPromotedItems": 40, "filterName": "genre",
                                  "filterValues": {"G": '"Drama"'}}], "metadataColumns": ["IN_STOCK", "GENRES"]},
                 {"user": user, "k": 2, "filterName": "genre"}]
        status, kind, body = request(server.port, "POST", "/invocations", "".join(json.dumps(x) + "\n" for x in lines),
                                     {"Content-Type": "application/jsonlines"})
        dramas, stocked, missing = [json.loads(line) for line in body.decode().splitlines()]
        assert status == 200 and len(dramas["itemList"]) == 4
        assert all("Drama" in e["metadata"]["genres"].split("|") for e in dramas["itemList"])
        assert all(e["metadata"]["in_stock"] == "true" for e in stocked["itemList"])
        assert [e.get("promotionName") for e in stocked["itemList"]].count("dramas") == 2
        assert missing["error"].startswith("filterName 'genre': filter expression, column")
    finally:
        server.stop()
