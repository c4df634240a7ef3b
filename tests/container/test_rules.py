"""Business rules over item metadata through `/invocations` (issue #32), in Amazon Personalize's names: a
filter inline or by name with its values, promotions, diversity, metadata in answers, ranking a given list,
item ids as strings. Each answer is checked against what the shop's metadata says (`tests/container/shop.py`)
and against the model's own unfiltered ranking."""

import json
import shutil

import pytest

from container.app import create_app
from container.serve_config import ServeConfig
from tests.container.shop import GENRES, Catalogue

COMEDY = 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")'
IN_STOCK = 'EXCLUDE ItemID WHERE Items.IN_STOCK IN ("false")'


@pytest.fixture(scope="module")
def client(shop, shop_dir):
    return create_app(shop, ServeConfig(model_dir=shop_dir)).test_client()


@pytest.fixture(scope="module")
def catalogue(shop):
    return Catalogue(shop)


@pytest.fixture(scope="module")
def users(shop):
    return shop.users.decode(range(len(shop.users)))


def post(client, body, content_type="application/json"):
    data = body if isinstance(body, str) else json.dumps(body)
    return client.post("/invocations", data=data, content_type=content_type)


def ids(answer: dict, key: str = "itemList") -> list[str]:
    return [entry["itemId"] for entry in answer[key]]


def ranking(client, user) -> list[str]:
    """The user's whole unfiltered ranking, seen items excluded: what a filter chooses from."""
    return ids(post(client, {"user": user, "k": 1000}).json)


def test_a_filter_answers_the_top_k_of_the_items_it_lets_through(client, catalogue, users):
    expression = 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy", "Drama") AND Items.PRICE < 50'
    for user in users[:5]:
        response = post(client, {"user": user, "k": 7, "filter": expression})
        passing = [i for i in ranking(client, user) if catalogue.genres[i] & {"Comedy", "Drama"}
                   and catalogue.price[i] is not None and catalogue.price[i] < 50]
        assert response.status_code == 200 and len(passing) >= 7
        assert ids(response.json) == passing[:7]  # applied before top-k: k items whenever k pass


def test_every_kind_of_request_takes_a_filter(client, catalogue, users, shop):
    items = ids(post(client, {"user": users[0], "k": 3}).json)
    answers = {
        "recommend": post(client, {"user": users[0], "k": 5, "filter": IN_STOCK}),
        "cold start": post(client, {"user": "someone new", "k": 5, "filter": IN_STOCK}),
        "fold-in": post(client, {"items": items, "k": 5, "filter": IN_STOCK}),
        "fold-in, known user": post(client, {"user": users[1], "items": items, "k": 5, "filter": IN_STOCK}),
        "similar items": post(client, {"item": items[0], "k": 5, "filter": IN_STOCK}),
    }
    for kind, response in answers.items():
        assert response.status_code == 200, (kind, response.json)
        assert len(ids(response.json)) == 5 and all(catalogue.in_stock[i] for i in ids(response.json)), kind
    popular = ids(post(client, {"user": "someone new", "k": 100}).json)
    assert answers["cold start"].json["fallback"] is True
    assert ids(answers["cold start"].json) == [i for i in popular if catalogue.in_stock[i]][:5]


def test_filter_values_fill_placeholders_given_in_personalizes_form(client, catalogue, users):
    body = {"user": users[2], "k": 6, "filter": "INCLUDE ItemID WHERE Items.GENRES IN ($GENRE) AND Items.PRICE >= $MIN",
            "filterValues": {"GENRE": '"Drama","Horror"', "MIN": "40"}}
    response = post(client, body)
    passing = [i for i in ranking(client, users[2]) if catalogue.genres[i] & {"Drama", "Horror"}
               and (catalogue.price[i] or 0) >= 40]
    assert response.status_code == 200 and ids(response.json) == passing[:6]


def test_an_exclude_filter_over_interactions_removes_what_the_user_has_seen(client, shop, users):
    seen = set(map(str, shop.items.decode(shop.artifact.seen.row(0))))
    kept = post(client, {"user": users[0], "k": 1000, "exclude_seen": False}).json
    assert seen & set(ids(kept))
    removed = post(client, {"user": users[0], "k": 1000, "exclude_seen": False,
                            "filter": 'EXCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'}).json
    assert not seen & set(ids(removed)) and len(ids(removed)) == len(ids(kept)) - len(seen)


SEEN = 'INCLUDE ItemID WHERE Interactions.EVENT_TYPE IN ("*")'


def test_an_include_filter_over_interactions_recommends_among_the_seen_items_unless_told_otherwise(client, shop,
                                                                                                  users):
    """The filter's INCLUDE of the seen items wins over the default exclude_seen (which would leave it
    nothing); a request that itself asks to exclude them contradicts it."""
    seen = set(map(str, shop.items.decode(shop.artifact.seen.row(0))))
    among = post(client, {"user": users[0], "k": 5, "filter": SEEN})
    told = post(client, {"user": users[0], "k": 5, "filter": SEEN, "exclude_seen": False})
    assert among.status_code == 200 and len(ids(among.json)) == 5 and set(ids(among.json)) <= seen
    assert ids(among.json) == ids(told.json)
    folded = post(client, {"user": users[0], "items": ids(among.json)[:2], "k": 5, "filter": SEEN})
    assert folded.status_code == 200 and len(ids(folded.json)) == 5 and set(ids(folded.json)) <= seen
    lines = post(client, json.dumps({"user": users[0], "k": 5, "filter": SEEN}) + "\n", "application/jsonlines")
    assert ids(json.loads(lines.get_data(as_text=True))) == ids(among.json)
    for contradiction in ({"exclude_seen": True}, {"exclude_seen": "true", "items": [ids(among.json)[0]]}):
        response = post(client, {"user": users[0], "k": 5, "filter": SEEN, **contradiction})
        assert response.status_code == 400 and response.json["error"].startswith(
            "exclude_seen is true and the filter INCLUDEs the user's interactions"), response.json
    attribute = client.post("/invocations", data=json.dumps({"user": users[0], "k": 5, "filter": SEEN}),
                            content_type="application/json",
                            headers={"X-Amzn-SageMaker-Custom-Attributes": "exclude_seen=true"})
    assert attribute.status_code == 400 and "contradict" in attribute.json["error"]


def test_filter_names_come_from_the_environment_and_the_model_folders_filters_json(tmp_path, shop_dir, catalogue,
                                                                                     users):
    from ncf.recommender import Recommender

    folder = tmp_path / "model"
    shutil.copytree(shop_dir, folder)
    (folder / "filters.json").write_text(json.dumps({"in-stock": IN_STOCK, "genre": COMEDY}))
    environment = json.dumps({"genre": 'INCLUDE ItemID WHERE Items.GENRES IN ("Horror")'})  # wins over the file
    client = create_app(Recommender.load(folder), ServeConfig(model_dir=folder, filters=environment)).test_client()
    stocked = post(client, {"user": users[0], "k": 8, "filterName": "in-stock"})
    horror = post(client, {"user": users[0], "k": 8, "filterName": "genre"})
    assert stocked.status_code == horror.status_code == 200
    assert all(catalogue.in_stock[i] for i in ids(stocked.json))
    assert all("Horror" in catalogue.genres[i] for i in ids(horror.json)) and len(ids(horror.json)) == 8


def test_promotions_take_their_share_of_the_slots_and_are_marked_with_their_name(client, catalogue, users):
    body = {"user": users[3], "k": 10, "promotions": [
        {"name": "clearance", "percentPromotedItems": 30, "filterExpression": 'INCLUDE ItemID WHERE Items.PRICE < $P',
         "filterValues": {"P": "20"}}]}
    answer = post(client, body).json
    promoted = [e["itemId"] for e in answer["itemList"] if e.get("promotionName") == "clearance"]
    others = [e["itemId"] for e in answer["itemList"] if "promotionName" not in e]
    assert len(answer["itemList"]) == 10 and len(promoted) == 3  # 30% of 10
    assert all(catalogue.price[i] is not None and catalogue.price[i] < 20 for i in promoted)
    whole = ranking(client, users[3])
    assert promoted == [i for i in whole if catalogue.price[i] is not None and catalogue.price[i] < 20][:3]
    assert others == [i for i in whole if i not in promoted][:7]  # the rest keep the model's order
    assert post(client, body).json == answer  # positions drawn from the request: the same request, the same answer


def test_the_requests_filter_binds_the_rest_and_a_promotions_own_filter_its_items(client, catalogue, users):
    answer = post(client, {"user": users[4], "k": 10, "filter": COMEDY, "promotions": [
        {"name": "dramas", "percentPromotedItems": 20,
         "filterExpression": 'INCLUDE ItemID WHERE Items.GENRES IN ("Drama")'}]}).json
    for entry in answer["itemList"]:
        wanted = "Drama" if entry.get("promotionName") == "dramas" else "Comedy"
        assert wanted in catalogue.genres[entry["itemId"]]
    assert sum("promotionName" in e for e in answer["itemList"]) == 2


def test_diversity_caps_the_items_of_each_value_greedily_in_the_models_order(client, catalogue, users):
    for user, cap in [(users[5], 3), (users[6], 1)]:
        answer = post(client, {"user": user, "k": 10, "diversity": {"column": "GENRES", "maxPerValue": cap}}).json
        chosen, counts = [], {g: 0 for g in GENRES}
        for item in ranking(client, user):  # the reference: an item enters while none of its genres is full
            if len(chosen) < 10 and all(counts[g] < cap for g in catalogue.genres[item]):
                chosen.append(item)
                for g in catalogue.genres[item]:
                    counts[g] += 1
        assert ids(answer) == chosen and max(counts.values()) <= cap
    assert len(chosen) < 10  # one item a genre: shorter than k once the caps let no more in


def test_metadata_columns_come_back_per_item_in_lower_case_as_personalize_returns_them(client, catalogue, users):
    for columns in (["TITLE", "genres", "PRICE"], {"ITEMS": ["TITLE", "genres", "PRICE"]}):
        answer = post(client, {"user": users[6], "k": 20, "metadataColumns": columns}).json
        assert ids(answer) == ids(post(client, {"user": users[6], "k": 20}).json)
        for entry in answer["itemList"]:
            item = entry["itemId"]
            expected = {"title": catalogue.title[item], "genres": "|".join(
                g for g in GENRES if g in catalogue.genres[item])}
            if catalogue.price[item] is not None:  # a missing value is left out
                expected["price"] = f"{catalogue.price[item]}"
            assert set(entry["metadata"]) == set(expected) and entry["metadata"]["title"] == expected["title"]
            assert set(entry["metadata"]["genres"].split("|")) == catalogue.genres[item]
            assert entry["metadata"].get("price") == expected.get("price")
        assert any("price" not in e["metadata"] for e in post(client, {"user": users[6], "k": 200, "metadataColumns":
                                                                      ["PRICE"]}).json["itemList"])


def test_a_given_list_is_ranked_in_personalizes_shape_with_unknown_items_listed(client, catalogue, shop, users):
    given = catalogue.ids[:12]
    body = {"user": users[7], "inputList": given + ["no such item", given[0]], "filter": IN_STOCK,
            "metadataColumns": ["IN_STOCK"]}
    answer = post(client, body).json
    ranked = ids(answer, "personalizedRanking")
    assert ranked == sorted(ranked, key=lambda i: -shop.score([users[7]], [i])[0])  # best first
    assert set(ranked) == {i for i in given if catalogue.in_stock[i]}
    assert answer["unknown"] == ["no such item"] and answer["filtered"] == sum(not catalogue.in_stock[i] for i in given)
    assert answer["user"] == users[7] and answer["fallback"] is False
    assert all(e["metadata"] == {"in_stock": "true"} for e in answer["personalizedRanking"])
    scores = [e["score"] for e in answer["personalizedRanking"]]
    assert scores == pytest.approx(shop.score([users[7]] * len(ranked), ranked), abs=1e-6)
    stranger = post(client, {"user": "someone new", "inputList": given}).json
    assert stranger["fallback"] is True and sorted(ids(stranger, "personalizedRanking")) == sorted(given)


def test_a_ranking_appends_the_items_the_model_never_trained_on_scored_0_as_personalize_does(shop, users):
    """Personalize: "If an item was not included in the training dataset, the item is appended to the end of the
    reranked list" with a score of 0. Their metadata comes from their metadata-only rows; a filter, whose masks
    cover the trained items only, cannot vouch for them, so a filtered ranking leaves them out."""
    import numpy as np

    from container.answers import answer
    from container.requests import Options
    from container.rules import RuleBook
    from ncf.metadata import ItemMetadata

    n = len(shop.items)
    known = [str(i) for i in shop.items.decode(range(n))]
    metadata = ItemMetadata.from_table(np.append(np.arange(n), -1), known + ["coming-soon"],
                                       {"TITLE": [f"Film {i}" for i in range(n)] + ["Soon, a film"]}, n)
    book = RuleBook(metadata, n)
    given = [known[3], "coming-soon", known[1], "nowhere", "coming-soon"]
    [plain, filtered] = answer(shop, [
        {"user": users[0], "inputList": given, "metadataColumns": ["TITLE"]},
        {"user": users[0], "inputList": given, "filter": 'EXCLUDE ItemID WHERE Items.TITLE IN ("x")'}], Options(), book)
    ranking = plain["personalizedRanking"]
    assert sorted(ids(plain, "personalizedRanking")[:2]) == sorted([known[3], known[1]])
    assert ranking[2:] == [{"itemId": "coming-soon", "score": 0.0, "metadata": {"title": "Soon, a film"}},
                           {"itemId": "nowhere", "score": 0.0, "metadata": {}}]
    assert plain["unknown"] == ["coming-soon", "nowhere"]
    assert sorted(ids(filtered, "personalizedRanking")) == sorted([known[3], known[1]])
    assert filtered["unknown"] == ["coming-soon", "nowhere"]


def test_json_lines_records_with_different_filters_are_each_answered_by_their_own(client, users):
    records = []
    for n, user in enumerate(users[:30]):
        rule = [{}, {"filter": COMEDY}, {"filter": IN_STOCK},
                {"filter": "INCLUDE ItemID WHERE Items.GENRES IN ($G)", "filterValues": {"G": f'"{GENRES[n % 5]}"'}}]
        records.append({"user": user, "k": 4, **rule[n % 4]})
    response = post(client, "".join(json.dumps(r) + "\n" for r in records), "application/jsonlines")
    batch = [json.loads(line) for line in response.get_data(as_text=True).splitlines()]
    assert response.status_code == 200 and len(batch) == 30
    for record, answer in zip(records, batch):
        assert ids(answer) == ids(post(client, record).json)  # grouped by filter, as if alone


def test_item_ids_are_strings_in_every_answer(client, shop, users):
    """The training data's ids are integers; Personalize returns ids as strings, and so does every answer."""
    item = shop.items.decode([0])[0]
    assert isinstance(item, int)
    answers = [post(client, {"user": users[0], "k": 3}).json, post(client, {"user": "new", "k": 3}).json,
               post(client, {"items": [item, 424242], "k": 3}).json, post(client, {"item": item, "k": 3}).json]
    assert all(isinstance(i, str) for a in answers for i in ids(a))
    assert answers[2]["ignored"] == ["424242"] and answers[3]["item"] == str(item)
    ranked = post(client, {"user": users[0], "inputList": [item, 424242]}).json
    assert ids(ranked, "personalizedRanking") == [str(item), "424242"] and ranked["unknown"] == ["424242"]


def test_rankings_and_rule_answers_have_a_csv_form(client, users, catalogue):
    body = json.dumps({"user": users[0], "inputList": catalogue.ids[:5]}) + "\n" + json.dumps(
        {"user": users[0], "k": 3, "filter": COMEDY}) + "\n"
    response = client.post("/invocations", data=body, content_type="application/jsonlines",
                           headers={"Accept": "text/csv"})
    ranked, recommended = response.get_data(as_text=True).splitlines()
    assert response.status_code == 200 and sorted(ranked.split(",")) == sorted(catalogue.ids[:5])
    assert all("Comedy" in catalogue.genres[i] for i in recommended.split(",")) and len(recommended.split(",")) == 3


def test_ten_thousand_records_sharing_one_valid_filter_fit_a_real_time_answer(client, users):
    """The answer-size check compiles a shared filter once and counts no error echo for it (counted as a
    worst-case error message per record, 10,000 such lines were refused with 413)."""
    line = json.dumps({"user": users[0], "k": 1, "filter": COMEDY}) + "\n"
    answer = client.post("/invocations", data=line * 10_000, content_type="application/jsonlines")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.get_data(as_text=True).count("\n") == 10_000
