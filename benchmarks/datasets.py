"""Where a benchmark's ratings come from: `--movielens NAME` through `ncf.movielens` (downloaded once, checked,
cached), or `--ratings FILE` for any other file.

The cache is `--movielens-dir DIR`, else the environment variable `NCF_MOVIELENS_DIR`, else the library's
default (`~/.cache/ncf/movielens`). Its layout is GroupLens' archives unpacked (`ml-latest-small/ratings.csv`,
`ml-100k/u.data`), so pointing it at a folder that already holds them reads them without a download: that is
how CI and machines without internet access use a local copy.

Item metadata comes along the same way: `items_path` is the set's movies as `ncf.movielens.items_file` writes
them into the cache (`movieId`, `title`, `genres`, `year`), or `--items FILE` for any other table.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ENV_DIR = "NCF_MOVIELENS_DIR"


def add_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """`--ratings FILE` or `--movielens NAME` (one of them when `required`), and `--movielens-dir DIR`."""
    from ncf.movielens import DATASETS

    source = parser.add_mutually_exclusive_group(required=required)
    source.add_argument("--ratings", type=Path, help="a ratings file (CSV, Parquet, JSON Lines, MovieLens .dat)")
    source.add_argument("--movielens", choices=sorted(DATASETS), help="a MovieLens set, fetched into the cache")
    parser.add_argument("--items", type=Path, default=None,
                        help="an items table (CSV or Parquet) for the ratings; --movielens brings its movies along")
    add_cache_argument(parser)


def add_cache_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--movielens-dir", type=Path, default=None,
                        help=f"MovieLens cache (default: ${ENV_DIR}, else ~/.cache/ncf/movielens); a folder that "
                             "already holds ml-latest-small/ratings.csv etc. is read as it is")


def cache_dir(args: argparse.Namespace) -> Path | None:
    """The flag, else the environment variable, else None (the library's default)."""
    if getattr(args, "movielens_dir", None) is not None:
        return args.movielens_dir
    return Path(os.environ[ENV_DIR]) if os.environ.get(ENV_DIR) else None


def movielens(name: str, args: argparse.Namespace) -> Path:
    """The ratings file of MovieLens set `name`, downloaded into the cache on first use."""
    from ncf.movielens import download

    return download(name, cache_dir(args), progress=False)


def ratings_path(args: argparse.Namespace) -> Path:
    """The file `--ratings` names, or the MovieLens set `--movielens` names."""
    return args.ratings if args.ratings is not None else movielens(args.movielens, args)


def label(args: argparse.Namespace) -> str:
    """How tables name the data: the MovieLens set, or the ratings file's folder and name."""
    return args.movielens or f"{args.ratings.parent.name}/{args.ratings.name}"


def items_path(args: argparse.Namespace) -> Path | None:
    """The items table `--items` names, else the MovieLens set's movies (None where the cache holds none)."""
    if getattr(args, "items", None) is not None:
        return args.items
    if getattr(args, "movielens", None) is None:
        return None
    from ncf.movielens import items_file

    return items_file(args.movielens, cache_dir(args))
