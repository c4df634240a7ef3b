"""docs/serving.md's request/response table is what the server does: each request in it, sent to a real app
over a trained model (its example ids swapped for the model's own), is answered 200 with exactly the top-level
fields the table shows. A field added to or dropped from an answer without the page fails here."""

import json
import re
from pathlib import Path

import pytest

from container.app import create_app
from container.serve_config import ServeConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


def table_rows() -> list[tuple[str, str]]:
    """(request, response) of every JSON row of the request/response table, as the page writes them."""
    rows = []
    for line in PAGE.read_text().splitlines():
        match = re.match(r"\| `(\{.*?\})`.*?\| `(\{.*?\})`", line)
        if match and line.startswith("| `{"):
            rows.append((match.group(1), match.group(2)))
    return rows


def top_level_keys(text: str) -> set[str]:
    """The keys of the outermost object of an example that may hold `...` and words where values go."""
    keys, depth = set(), 0
    for match in re.finditer(r'[{}\[\]]|"([A-Za-z_]+)"\s*:', text):
        token = match.group(0)
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
        elif depth == 1:
            keys.add(match.group(1))
    return keys


def test_the_table_has_every_json_request_kind():
    requests = [json.loads(r.replace(", ...", "")) for r, _ in table_rows()]
    kinds = {next(k for k in ("instances", "inputs", "inputList", "items", "item", "user") if k in r)
             for r in requests}
    assert kinds == {"instances", "inputs", "inputList", "items", "item", "user"}


@pytest.mark.parametrize("request_text, response_text", table_rows(), ids=lambda t: t[:40])
def test_each_example_request_is_answered_with_the_fields_the_table_shows(request_text, response_text, shop,
                                                                           shop_dir):
    user = str(shop.users.decode([0])[0])
    items = [str(i) for i in shop.items.decode([0, 1, 2])]
    body = request_text.replace(", ...", "")
    for example, real in {'"1"': user, '"31"': items[0], '"1029"': items[1], '"2571"': items[2]}.items():
        body = body.replace(example, json.dumps(real))
    client = create_app(shop, ServeConfig(model_dir=shop_dir)).test_client()
    answer = client.post("/invocations", data=body, content_type="application/json")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert set(answer.get_json()) == top_level_keys(response_text), (body, answer.get_json())
