"""What business rules cost when served (issue #32's targets), as a stamped result and a Markdown table.

    .venv/bin/python -m benchmarks.filters                 # ml-25m-sized NeuMF, ~3 min; writes results/filters.json

An ml-25m-sized NeuMF with random weights (`benchmarks/fake_model.py`: 161,916 users x 59,000 items, 23M
seen pairs, the default widths) with synthetic item metadata shaped like MovieLens' movies.csv plus a price
(20 genres, 1 to 3 an item; 62,423 rows, as ml-25m's movies.csv has, 3,423 of them items nobody rated), served
by the real `serve` (2 workers, one connection, keep-alive):

- top-10 latency, p50 and p99, unfiltered against a filter keeping ~10% of the items (the genre whose share
  is closest to 10%), inline and by `filterName`, and with the other rules (a 20% promotion, a cap of 2 items a
  genre, two metadata columns in the answer): the target is the filter within 1.25x of unfiltered;
- that filter's compile: parse and mask from a cold cache, and the mask alone from the parsed expression
  (target: <= 1 ms for 59k items), one core;
- the model folder's metadata loading (`items.npz`: target <= 1 s for ml-25m's 62k movies);
- what the server measures at start (`container.costs.Costs`: each rule's cost, and how long measuring took)
  and the batch payload it would advertise with and without the records with rules (`rule_lines`).

Rounds alternate the request kinds (each kind's requests spread over the run), so that a machine's drift
weighs on all of them alike.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import results
from benchmarks.fake_model import GENRES, ML25M, fake_model
from benchmarks.server import Server

#: Rows of ml-25m's movies.csv: the metadata's rows, the model's items first.
MOVIES = 62_423
NAMED = "ten-percent"


def request_ms(connection: http.client.HTTPConnection, body: dict) -> float:
    start = time.perf_counter()
    connection.request("POST", "/invocations", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    answer = response.read()
    took = (time.perf_counter() - start) * 1000
    if response.status != 200:
        raise RuntimeError(f"{body} answered {response.status}: {answer[:300]!r}")
    return took


def latencies(port: int, kinds: dict[str, dict], users: list, requests: int, rounds: int = 6) -> dict:
    """p50 and p99 ms of each kind of top-10 request, `requests` each, in `rounds` interleaved rounds."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: dict[str, list[float]] = {name: [] for name in kinds}
    per_round = requests // rounds
    for r in range(rounds):
        for name, rules in kinds.items():
            for n in range(per_round):
                user = users[(r * per_round + n) % len(users)]
                times[name].append(request_ms(connection, {"user": user, "k": 10, **rules}))
    connection.close()
    out = {}
    for name, values in times.items():
        values.sort()
        out[name] = {"p50_ms": values[len(values) // 2], "p99_ms": values[int(len(values) * 0.99) - 1],
                     "requests": len(values)}
    return out


def compile_ms(metadata, n_items: int, expression: str, repeats: int = 50) -> dict[str, float]:
    """Median ms of one core: parse and mask from an empty `FilterCache`, and the mask alone."""
    from threadpoolctl import threadpool_limits

    from ncf.filters import FilterCache, compile, parse

    cold, mask = [], []
    parsed = parse(expression)
    with threadpool_limits(1):
        for _ in range(repeats):
            start = time.perf_counter()
            FilterCache(metadata, n_items).get(expression)
            cold.append(time.perf_counter() - start)
            start = time.perf_counter()
            compile(parsed, metadata, n_items)
            mask.append(time.perf_counter() - start)
    return {"cold_cache_ms": float(np.median(cold)) * 1000, "mask_ms": float(np.median(mask)) * 1000}


def load_s(folder: Path, n_items: int, repeats: int = 5) -> float:
    """Median seconds to read and check the model folder's item metadata (`items.npz`)."""
    from ncf.artifacts import ITEMS
    from ncf.metadata import ItemMetadata

    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        ItemMetadata.load(folder / ITEMS, n_items)
        runs.append(time.perf_counter() - start)
    return float(np.median(runs))


def start_costs(folder: Path) -> dict:
    """The costs `serve` measures at start on this model, how long measuring takes, and the MaxPayloadInMB a
    batch transform (timeout 3600 s) would be told with and without the records with rules."""
    import dataclasses

    from container.costs import Costs
    from container.limits import Limits
    from container.serve_config import ServeConfig
    from ncf.recommender import Recommender

    recommender = Recommender.load(folder)
    start = time.perf_counter()
    costs = Costs.measure(recommender)
    took = time.perf_counter() - start
    batch = ServeConfig(model_dir=folder, batch=True, timeout=3600, max_payload_mb=100)
    advertised = {name: {"payload_mb": limits.payload_mb, "single_record": not limits.fits,
                         "worst_line": limits.costs.worst_per_byte[1][:80].decode()}
                  for name, limits in (("with rules", Limits.derive(costs, batch)),
                                       ("without", Limits.derive(dataclasses.replace(costs, rule_lines=()), batch)))}
    fields = ("user_s", "entry_s", "filter_s", "compile_char_s", "promotion_s", "diversity_entry_s",
              "diversity_all_s", "column_entry_s", "rank_s", "rank_item_s")
    return {"measure_s": took, "costs": {f: getattr(costs, f) for f in fields}, "batch": advertised}


def ten_percent(metadata) -> tuple[str, float]:
    """The genre whose share of the items is closest to 10%, and that share."""
    column = metadata.find("GENRES")
    shares = {g: float(column.isin([g]).mean()) for g in GENRES}
    genre = min(shares, key=lambda g: abs(shares[g] - 0.1))
    return genre, shares[genre]


def run(work: Path, requests: int) -> dict:
    from ncf.artifacts import load

    folder = work / "model"
    if not (folder / "items.npz").exists():
        fake_model(folder, "neumf", **ML25M, metadata=True, metadata_only=MOVIES - ML25M["items"])
    artifact = load(folder)
    metadata, n_items = artifact.item_metadata, len(artifact.items)
    users = random.Random(0).sample(artifact.users.ids.tolist(), 600)
    genre, share = ten_percent(metadata)
    expression = f'INCLUDE ItemID WHERE Items.GENRES IN ("{genre}")'
    figures = {"model": "neumf (random weights)", "users": len(artifact.users), "items": n_items,
               "metadata_rows": n_items + len(metadata.extra_ids), "filter": expression, "kept_share": share,
               "compile": compile_ms(metadata, n_items, expression), "metadata_load_s": load_s(folder, n_items)}
    del artifact
    figures["start"] = start_costs(folder)
    print(f"compile {figures['compile']}, metadata load {figures['metadata_load_s']:.3f} s, start {figures['start']}",
          file=sys.stderr)
    kinds = {
        "unfiltered": {},
        "filter, ~10% kept": {"filter": expression},
        "filterName, ~10% kept": {"filterName": NAMED},
        "20% promotion of that filter": {"promotions": [{"name": "p", "percentPromotedItems": 20,
                                                         "filterName": NAMED}]},
        "at most 2 a genre": {"diversity": {"column": "GENRES", "maxPerValue": 2}},
        "metadataColumns TITLE, GENRES": {"metadataColumns": ["TITLE", "GENRES"]},
    }
    server = Server(work, None, 2, {"NCF_FILTERS": json.dumps({NAMED: expression})})
    try:
        latencies(server.port, kinds, users, 6 * len(kinds), rounds=1)  # both workers warm, filters compiled
        figures["first_ping_s"] = server.first_ping
        figures["latency"] = latencies(server.port, kinds, users, requests)
    finally:
        server.stop()
    base = figures["latency"]["unfiltered"]
    filtered = figures["latency"]["filter, ~10% kept"]
    figures["filtered_over_unfiltered"] = {"p50": filtered["p50_ms"] / base["p50_ms"],
                                           "p99": filtered["p99_ms"] / base["p99_ms"]}
    return figures


def markdown(result: dict) -> str:
    base = result["latency"]["unfiltered"]
    rows = [[name, f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}", f"{r['p50_ms'] / base['p50_ms']:.2f}x",
             f"{r['p99_ms'] / base['p99_ms']:.2f}x"] for name, r in result["latency"].items()]
    c = result["compile"]
    return "\n\n".join([
        f"{results.provenance(result)} {result['model']}, {result['users']:,} users x {result['items']:,} items, "
        f"2 workers, one connection, {base['requests']} requests of each kind, top-10. Filter: "
        f"`{result['filter']}` keeps {result['kept_share']:.1%} of the items.",
        results.table(["request", "p50 ms", "p99 ms", "p50 / unfiltered", "p99 / unfiltered"], rows, "lrrrr"),
        results.table(["cost", "figure", "target"], [
            ["the filter's mask, from its parsed expression (one core)", f"{c['mask_ms']:.2f} ms", "<= 1 ms"],
            ["the filter parsed and masked from a cold cache (one core)", f"{c['cold_cache_ms']:.2f} ms", ""],
            [f"item metadata loaded from the model folder ({result['metadata_rows']:,} rows)",
             f"{result['metadata_load_s']:.2f} s", "<= 1 s"],
            ["measuring what requests cost at start (rules included), one core",
             f"{result['start']['measure_s']:.1f} s", ""],
            ["a cap that can bind, its worst case (every item visited), per record",
             f"{result['start']['costs']['diversity_all_s'] * 1e3:.1f} ms", ""],
            ["filtered top-10 / unfiltered, p50 and p99",
             f"{result['filtered_over_unfiltered']['p50']:.2f}x, {result['filtered_over_unfiltered']['p99']:.2f}x",
             "<= 1.25x"]], "lrr")])


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, default=Path("/tmp/ncf-filters"),
                   help="where the model folder is written (reused when there)")
    p.add_argument("--requests", type=int, default=600, help="requests of each kind")
    results.add_argument(p, "filters")
    args = p.parse_args(argv)
    figures = run(args.work, args.requests)
    written = results.write(args.json, "filters", sys.argv[1:] if argv is None else argv, figures)
    print(markdown(written))


if __name__ == "__main__":
    main()
