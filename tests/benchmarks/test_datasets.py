"""Benchmarks read MovieLens through `ncf.movielens`'s cache, which a flag or NCF_MOVIELENS_DIR can point at a
local copy: no download, no path into anyone's checkout in a command."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RESOLVE = """
import argparse, sys
from benchmarks.datasets import add_arguments, label, ratings_path
p = argparse.ArgumentParser()
add_arguments(p)
args = p.parse_args(sys.argv[1:])
print(ratings_path(args), label(args))
"""


def resolve(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", RESOLVE, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "HOME": env.pop("HOME", "/nonexistent"), **env})


def copy_of_ml_100k(folder: Path) -> Path:
    ratings = folder / "ml-100k" / "u.data"
    ratings.parent.mkdir(parents=True)
    ratings.write_text("1\t31\t4\t1\n2\t1029\t5\t2\n")
    return ratings


def test_the_environment_variable_points_the_cache_at_a_local_copy_that_is_read_as_it_is(tmp_path):
    ratings = copy_of_ml_100k(tmp_path / "copy")
    out = resolve("--movielens", "ml-100k", NCF_MOVIELENS_DIR=str(tmp_path / "copy"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(ratings), "ml-100k"]


def test_the_flag_wins_over_the_environment_variable(tmp_path):
    ratings = copy_of_ml_100k(tmp_path / "flag")
    out = resolve("--movielens", "ml-100k", "--movielens-dir", str(tmp_path / "flag"),
                  NCF_MOVIELENS_DIR=str(tmp_path / "elsewhere"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == str(ratings)


def test_a_ratings_file_is_taken_as_given_and_an_unknown_set_is_refused_with_the_choices(tmp_path):
    own = tmp_path / "mine.csv"
    own.write_text("user,item\n1,2\n")
    assert resolve("--ratings", str(own)).stdout.split() == [str(own), f"{tmp_path.name}/mine.csv"]
    out = resolve("--movielens", "ml-20m")
    assert out.returncode == 2 and "ml-latest-small" in out.stderr
    out = resolve()
    assert out.returncode == 2 and "--ratings" in out.stderr and "--movielens" in out.stderr


def test_ci_reads_the_real_ml_latest_small_through_the_cache_it_is_pointed_at():
    """CI points NCF_MOVIELENS_DIR at a local copy (`.ci/run`); elsewhere there is nothing to read offline."""
    import os

    import pytest

    if not os.environ.get("NCF_MOVIELENS_DIR"):
        pytest.skip("NCF_MOVIELENS_DIR is not set (.ci/run sets it where a local MovieLens copy exists)")
    from ncf.data import read_interactions

    out = resolve("--movielens", "ml-latest-small", NCF_MOVIELENS_DIR=os.environ["NCF_MOVIELENS_DIR"])
    assert out.returncode == 0, out.stderr
    data = read_interactions(out.stdout.split()[0])
    assert (len(data.users), len(set(data.users)), len(set(data.items))) == (100_836, 610, 9_724)
