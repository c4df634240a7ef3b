"""MovieLens from GroupLens, downloaded once into a local cache, checked, and read.

The licence of MovieLens forbids redistributing it, so this project never ships it: users fetch it from
GroupLens themselves. Archives are checked against the MD5 sums GroupLens publishes: pinned here for the
frozen data sets, and read from GroupLens' `.md5` file for ml-latest-small, which GroupLens re-releases.
A download goes to a `.part` file and is renamed only once its checksum matches, so the cache never holds
a truncated or altered archive.

Each set's movies become an items table (`items_file`): `items.csv` beside its ratings, with `movieId`, `title`,
`genres` (`|` between genres, as Personalize writes multi-valued fields) and a numeric `year` taken from the
title's trailing "(1995)" (missing when a title has none). It is the docs' worked example of item metadata, and
a file that can be uploaded as a job's `items` channel as it is.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from .data import Interactions, read_interactions
from .errors import DataError

log = logging.getLogger(__name__)

GROUPLENS_URL = "https://files.grouplens.org/datasets/movielens"


@dataclass(frozen=True)
class MovieLensSet:
    name: str
    ratings: str          # member of the archive holding the ratings
    md5: str | None       # None: read GroupLens' published .md5 file
    movies: str = ""      # member holding the movies: movies.csv, or the older sets' movies.dat and u.item


DATASETS = {
    s.name: s for s in (
        MovieLensSet("ml-latest-small", "ml-latest-small/ratings.csv", None, "ml-latest-small/movies.csv"),
        MovieLensSet("ml-100k", "ml-100k/u.data", "0e33842e24a9c977be4e0107933c0723", "ml-100k/u.item"),
        MovieLensSet("ml-1m", "ml-1m/ratings.dat", "c4d9eecfca2ab87c1945afe126590906", "ml-1m/movies.dat"),
        MovieLensSet("ml-25m", "ml-25m/ratings.csv", "6b51fb2759a8657d3bfcbfc42b592ada", "ml-25m/movies.csv"),
    )
}


def default_cache() -> Path:
    return Path.home() / ".cache" / "ncf" / "movielens"


def download(
    name: str = "ml-latest-small", cache_dir: str | Path | None = None, *, base_url: str = GROUPLENS_URL,
    md5: str | None = None, progress: bool = True, timeout: float = 60.0,
) -> Path:
    """Path of the ratings file of `name`, downloading and extracting it on first use.

    Args:
        md5: expected MD5 of the archive, overriding the pinned or published one.
        progress: show a progress bar on stderr while downloading.
    """
    if name not in DATASETS:
        raise DataError(f"unknown MovieLens data set {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    ratings = cache / spec.ratings
    if ratings.is_file():
        return ratings
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / f"{name}.zip"
    url = f"{base_url.rstrip('/')}/{name}.zip"
    if not archive.is_file():
        expected = (md5 or spec.md5 or _published_md5(url, timeout)).lower()
        _fetch(url, archive, expected, progress, timeout)
    _extract(archive, spec.ratings, ratings)
    return ratings


#: The items table written beside a set's ratings.
ITEMS = "items.csv"
#: ml-100k's u.item gives genres as 19 flags, in this order (its u.genre); "unknown" is left missing.
ML100K_GENRES = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                 "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                 "War", "Western")


def items_file(name: str = "ml-latest-small", cache_dir: str | Path | None = None) -> Path | None:
    """Path of the items table of `name` (module docstring), written into the cache on first use from the
    movies file the cache holds (unpacked, or in the archive `download` kept). None, logged, when the cache
    holds neither (a local copy of the ratings alone) or cannot be written: the movies are optional, so this
    never downloads."""
    if name not in DATASETS:
        raise DataError(f"unknown MovieLens data set {name!r}; choose one of {sorted(DATASETS)}")
    spec = DATASETS[name]
    cache = Path(cache_dir) if cache_dir is not None else default_cache()
    target = cache / name / ITEMS
    if target.is_file():
        return target
    raw = _movies_bytes(cache, spec)
    if raw is None:
        log.info("no %s in %s (nor its archive): no item metadata for %s", spec.movies, cache, name)
        return None
    try:
        table = movies_table(raw, spec.movies)
    except (pa.ArrowException, KeyError) as e:
        raise DataError(f"{spec.movies} of {cache} is not the movies file GroupLens publishes ({e})") from e
    part = target.with_name(target.name + ".part")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pacsv.write_csv(table, part)
        part.replace(target)
    except OSError as e:
        log.warning("cannot write %s (%s): no item metadata for %s", target, e.strerror or e, name)
        part.unlink(missing_ok=True)
        return None
    return target


def movies_table(raw: bytes, member: str) -> "pa.Table":
    """`movieId`, `title`, `genres`, `year` (text, "" where missing) from a movies file's bytes: movies.csv
    (UTF-8, a header), movies.dat (Latin-1, `::`) or u.item (Latin-1, `|`, genres as flags)."""
    if member.endswith(".csv"):
        parsed = pacsv.read_csv(pa.BufferReader(raw), convert_options=pacsv.ConvertOptions(
            column_types={n: pa.string() for n in ("movieId", "title", "genres")}, include_columns=[
                "movieId", "title", "genres"], null_values=[], strings_can_be_null=False))
        ids, titles, genres = (parsed.column(n) for n in ("movieId", "title", "genres"))
    else:
        lines = pa.array([line for line in raw.decode("latin-1").splitlines() if line.strip()], pa.string())
        if member.endswith(".dat"):
            fields = pc.split_pattern(lines, "::", max_splits=2)
            ids, titles, genres = (pc.list_element(fields, n) for n in range(3))
        else:
            fields = pc.split_pattern(lines, "|")
            ids, titles = pc.list_element(fields, 0), pc.list_element(fields, 1)
            genres = pa.array([""] * len(lines), pa.string())
            for n, genre in enumerate(ML100K_GENRES[1:], start=6):  # one pass per genre, not per movie
                flag = pc.equal(pc.list_element(fields, n), "1")
                genres = pc.if_else(flag, pc.binary_join_element_wise(genres, genre, "|"), genres)
            genres = pc.utf8_ltrim(genres, characters="|")
    titles = pc.utf8_trim_whitespace(titles)
    year = pc.struct_field(pc.extract_regex(titles, r"\((?P<year>[0-9]{4})\)\s*$"), "year")
    return pa.table({"movieId": ids, "title": titles, "genres": genres, "year": pc.fill_null(year, "")})


def _movies_bytes(cache: Path, spec: MovieLensSet) -> bytes | None:
    unpacked, archive = cache / spec.movies, cache / f"{spec.name}.zip"
    try:
        if unpacked.is_file():
            return unpacked.read_bytes()
        if archive.is_file():
            with zipfile.ZipFile(archive) as z:
                return z.read(spec.movies)
    except (KeyError, zipfile.BadZipFile, OSError) as e:
        log.warning("cannot read %s from %s (%s)", spec.movies, archive, e)
    return None


def load(name: str = "ml-latest-small", cache_dir: str | Path | None = None, **kwargs) -> Interactions:
    """Download (once) and read a MovieLens data set."""
    return read_interactions(download(name, cache_dir, **kwargs))


def _published_md5(url: str, timeout: float) -> str:
    try:
        with urllib.request.urlopen(f"{url}.md5", timeout=timeout) as response:
            text = response.read(4096).decode("ascii", errors="replace")
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot fetch the checksum {url}.md5 ({e})") from e
    found = re.search(r"\b[0-9a-fA-F]{32}\b", text)
    if not found:
        raise DataError(f"{url}.md5 holds no MD5 sum ({text[:80]!r})")
    return found.group(0)


def _fetch(url: str, archive: Path, expected_md5: str, progress: bool, timeout: float) -> None:
    from tqdm import tqdm

    part = archive.with_name(archive.name + ".part")
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=archive.name, disable=not progress) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as e:
        part.unlink(missing_ok=True)
        raise DataError(f"cannot download {url} ({e})") from e
    if digest.hexdigest() != expected_md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: checksum mismatch (MD5 {digest.hexdigest()}, expected {expected_md5}); not kept")
    part.replace(archive)
    log.info("downloaded %s to %s", url, archive)


def _extract(archive: Path, member: str, target: Path) -> None:
    """Extract one known member by name (never a path taken from the archive, so no zip-slip)."""
    try:
        with zipfile.ZipFile(archive) as z, z.open(member) as src:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".part")
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
    except KeyError as e:
        raise DataError(f"{archive} has no {member}: not the expected MovieLens archive") from e
    except zipfile.BadZipFile as e:
        archive.unlink(missing_ok=True)
        raise DataError(f"{archive} is not a valid zip archive ({e}); removed, download again") from e
