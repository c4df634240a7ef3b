"""`costs.Costs`: the cost model a request is estimated by, measured on the model at start-up, and what
it admits at the extremes of a request's shape (1,000 fold-in items, k=1000, 10,000 excluded ids)."""

import json

import pytest

from benchmarks.fake_model import fake_model
from container import codecs
from container.answers import CHUNK_ENTRIES, answer_chunks
from container.costs import Costs
from container.requests import MAX_EXCLUDE, MAX_FOLD_IN, MAX_K, Options, parse
from ncf.recommender import Recommender
from ncf.vocab import MAX_ID_CHARS


@pytest.fixture(scope="module")
def neumf(tmp_path_factory):
    """A NeuMF of the default widths with more items than a fold-in may give: per item, its MLP dominates."""
    folder = tmp_path_factory.mktemp("opt_ml") / "model"
    fake_model(folder, "neumf", users=300, items=MAX_FOLD_IN + 200, interactions=20_000, seed=0)
    return Recommender.load(folder)


@pytest.fixture(scope="module")
def costs(neumf):
    return Costs.measure(neumf)


def fold_in(items: int, k: int = 1, exclude: int = 0) -> dict:
    return {"user": 7, "items": list(range(1, items + 1)), "k": k, "exclude": list(range(1, exclude + 1))}


def test_a_fold_in_costs_something_per_item_however_the_timing_falls(costs):
    # Before: a 1-item and a 32-item solve were timed once each, cold, and the per-item cost clamped to 0
    assert costs.fold_in_item_s > 0
    # the floor: the largest fold-in is never costed below twice the smallest
    assert costs.fold_in_item_s * MAX_FOLD_IN >= costs.fold_in_s + costs.fold_in_user_s


def test_the_estimate_grows_with_every_dimension_of_a_request(costs):
    def seconds(record):
        return costs.seconds(parse(record, Options()))

    assert seconds(fold_in(MAX_FOLD_IN)) >= 2 * seconds(fold_in(1))
    assert seconds(fold_in(1, k=MAX_K)) > seconds(fold_in(1))
    assert seconds(fold_in(1, exclude=MAX_EXCLUDE)) > seconds(fold_in(1))
    assert seconds({"user": 7, "exclude": list(range(1, MAX_EXCLUDE + 1))}) > seconds({"user": 7})


def test_the_costliest_payload_per_byte_counts_the_largest_fold_in_too(costs):
    per_byte, record = costs.worst_per_byte
    for candidate in (fold_in(1), fold_in(MAX_FOLD_IN), {"items": [1] * MAX_FOLD_IN, "k": MAX_K}):
        line = json.dumps(candidate, separators=(",", ":")).encode() + b"\n"
        assert costs.seconds(parse(candidate, Options(k=MAX_K))) / len(line) <= per_byte * 1.000001, candidate


def test_a_batch_answer_is_cut_into_chunks_counting_what_it_echoes(neumf):
    # 41 fold-in lines of 1,000 unknown long ids: each answer lists them all as ignored. Before, the echo was not
    # counted, so all 41 answers (10.6 MB of JSON here, 61.9 MB with non-ASCII ids) were one chunk, built whole.
    ids = [f"{n:0{MAX_ID_CHARS}d}" for n in range(MAX_FOLD_IN)]
    body = "".join(json.dumps({"items": ids, "k": 1}) + "\n" for _ in range(41)).encode()
    chunks = [codecs.ENCODERS[codecs.JSONLINES]([chunk], len(chunk)) for chunk in
              answer_chunks(neumf, codecs.decode_jsonlines(body), Options())]
    sizes = [sum(len(piece) for piece in pieces) for pieces in map(list, chunks)]
    assert sum(sizes) > 41 * MAX_FOLD_IN * MAX_ID_CHARS  # every line answered, its ids echoed
    assert max(sizes) <= CHUNK_ENTRIES * 64 + 2 * MAX_FOLD_IN * (MAX_ID_CHARS + 4), sizes
