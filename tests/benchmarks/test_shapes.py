import argparse
import json

import pytest

from benchmarks import ab, results, shapes
from ncf.errors import ConfigError


def row(name: str, hr: float) -> dict:
    peer = {"hr@10": 0.5, "ndcg@10": 0.3}
    default = {"hr@10": hr, "ndcg@10": 0.3, "full_recall@10": 0.1}
    return {"shape": name, "default": default, "peers": {"popularity": peer, "iALS": peer},
            "verdict": shapes.verdict(default, {"popularity": peer, "iALS": peer}),
            "resolved": {"batch_size": 512}, "seconds": {"train": 10.0, "evaluate": 1.0}, "peak_rss_mb": 100.0}


def test_a_rerun_row_replaces_its_shape_in_place_with_its_own_stamp_and_the_table_names_it(tmp_path):
    path = tmp_path / "shapes.json"
    first = {"stamp": {**results.stamp(), "commit": "abc1234"}, "command": "python -m benchmarks.shapes",
             "rows": [row("a", 0.1), row("b", 0.2), row("c", 0.3)]}
    path.write_text(json.dumps(first))
    command = "python -m benchmarks.shapes --only b,d --replace"
    result = shapes.replaced(path, [row("b", 0.9), row("d", 0.4)], command)
    assert [(r["shape"], r["default"]["hr@10"]) for r in result["rows"]] == [("a", 0.1), ("b", 0.9), ("c", 0.3),
                                                                             ("d", 0.4)]
    assert result["stamp"] == first["stamp"] and result["command"] == first["command"]
    assert [r["shape"] for r in result["rows"] if "stamp" in r] == ["b", "d"]
    assert all(r["command"] == command for r in result["rows"] if "stamp" in r)
    assert json.loads(path.read_text()) == result
    table = shapes.markdown(result)
    assert f"Row b rerun: `{command}` at commit " in table and "Row a rerun" not in table
    assert "| b | 0.900 / 0.300 / 0.100 |" in table


def test_an_ab_run_on_a_shape_reads_the_matrix_s_own_data_and_refuses_a_shape_it_does_not_have():
    sets = ab.data_sets(argparse.Namespace(movielens="", shape="pilot-clustered,flat-popularity"))
    assert list(sets) == ["pilot-clustered", "flat-popularity"]
    for name, read in sets.items():  # each name reads its own shape
        expected = shapes.synthetic(next(s for s in shapes.SHAPES if s.name == name))
        got = read()
        assert len(got) == len(expected) and (got.users == expected.users).all() and (got.items == expected.items).all()
    with pytest.raises(ConfigError, match="'ml-100k' is not a synthetic shape"):
        ab.data_sets(argparse.Namespace(movielens="", shape="ml-100k"))
    with pytest.raises(ConfigError, match="no data"):
        ab.data_sets(argparse.Namespace(movielens="", shape=""))


def test_rows_that_replace_every_row_make_a_file_of_their_own_run(tmp_path):
    path = tmp_path / "shapes-large.json"
    path.write_text(json.dumps({"stamp": {**results.stamp(), "commit": "abc1234"}, "command": "old",
                                "rows": [row("a", 0.1)]}))
    result = shapes.replaced(path, [row("a", 0.5)], "python -m benchmarks.shapes --only a --replace")
    assert result["command"] == "python -m benchmarks.shapes --only a --replace"
    assert result["stamp"]["commit"] != "abc1234" and "stamp" not in result["rows"][0]
    assert "rerun" not in shapes.markdown(result) and "| a | 0.500 / 0.300 / 0.100 |" in shapes.markdown(result)
    fresh = shapes.replaced(tmp_path / "new.json", [row("b", 0.5)], "python -m benchmarks.shapes --replace")
    assert [r["shape"] for r in fresh["rows"]] == ["b"] and (tmp_path / "new.json").is_file()
