"""ncf.items: an items table in any form the interactions come in, its ids by the interactions' rule, and every
broken rule a DataError naming the file and the line."""

import gzip
import logging
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ncf.errors import DataError
from ncf.items import MAX_COLUMNS, MAX_VALUE_CHARS, item_rows, read_item_metadata, read_items
from ncf.vocab import MAX_ID_CHARS, Vocabulary

MOVIES = (
    "movieId,title,genres\n"
    "1,Toy Story (1995),Adventure|Animation|Children\n"
    '2,"Jumanji, The (1995)",Adventure|Fantasy\n'
    "31,Dangerous Minds (1995),Drama\n"
)


def write(tmp_path, text, name="movies.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def test_a_movies_csv_keeps_every_column_but_the_id_with_its_name_as_written(tmp_path):
    table = read_items(write(tmp_path, MOVIES))
    assert table.ids.tolist() == ["1", "2", "31"]
    assert table.columns == {"title": ["Toy Story (1995)", "Jumanji, The (1995)", "Dangerous Minds (1995)"],
                             "genres": ["Adventure|Animation|Children", "Adventure|Fantasy", "Drama"]}


@pytest.mark.parametrize("form", ["bom", "gzip", "tab", "semicolon", "blank lines", "crlf"])
def test_every_text_form_of_the_interactions_reads_the_same(tmp_path, form):
    text = MOVIES.replace('"Jumanji, The (1995)"', "Jumanji The (1995)")
    data = {"bom": b"\xef\xbb\xbf" + text.encode(), "gzip": gzip.compress(text.encode()),
            "tab": text.replace(",", "\t").encode(), "semicolon": text.replace(",", ";").encode(),
            "blank lines": ("\n\n" + text.replace("\n1,", "\n\n1,")).encode(),
            "crlf": text.replace("\n", "\r\n").encode()}[form]
    table = read_items(write(tmp_path, data, "items"))  # no extension: recognised by content
    assert list(table.columns) == ["title", "genres"] and table.ids.tolist() == ["1", "2", "31"]
    assert table.columns["title"][1] == "Jumanji The (1995)"


def test_parquet_reads_numbers_booleans_and_lists_as_text_and_null_as_missing(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"ITEM_ID": ["a", "b"], "PRICE": [9.5, None], "IN_STOCK": [True, False],
                             "GENRES": pa.array([["Comedy", "Drama"], []], pa.list_(pa.string()))}), path)
    table = read_items(path)
    assert table.ids.tolist() == ["a", "b"]
    assert table.columns == {"PRICE": ["9.5", ""], "IN_STOCK": ["true", "false"], "GENRES": ["Comedy|Drama", ""]}
    metadata = table.metadata(Vocabulary(np.array(["a", "b"])))
    assert {c.name: c.kind for c in metadata.columns} == {"PRICE": "numeric", "IN_STOCK": "boolean",
                                                          "GENRES": "categorical"}


def test_a_folder_of_parts_reads_as_one_table_whatever_each_parts_column_order(tmp_path):
    (tmp_path / "items").mkdir()
    write(tmp_path, "movieId,title,genres\n1,A,x\n", "items/part-0.csv")
    write(tmp_path, "genres,movieId,title\ny,2,B\n", "items/part-1.csv")
    write(tmp_path, "", "items/part-2.csv")  # empty parts are skipped
    write(tmp_path, "junk", "items/.hidden")
    table = read_items(tmp_path / "items")
    assert table.ids.tolist() == ["1", "2"] and table.columns == {"title": ["A", "B"], "genres": ["x", "y"]}


def test_ids_follow_the_interactions_rule_so_text_31_is_item_31(tmp_path):
    integer = Vocabulary(np.array([1, 2, 31, 40]))
    assert item_rows(np.array(["31", "031", "1", "x"]), integer).tolist() == [2, -1, 0, -1]
    text = Vocabulary(np.array(["007", "31", "a"]))
    assert item_rows(np.array(["31", "007", "7", "a" * 300]), text).tolist() == [1, 0, -1, -1]


def test_metadata_aligns_with_the_vocabulary_and_the_log_counts_metadata_only_and_undescribed(tmp_path, caplog):
    path = write(tmp_path, MOVIES + "99,Only Metadata (2000),Drama\n")
    with caplog.at_level(logging.INFO, logger="ncf.items"):
        metadata = read_item_metadata(path, Vocabulary(np.array([1, 2, 5, 31])))
    assert metadata.n_items == 4 and metadata.extra_ids == ["99"]
    assert metadata.texts("TITLE", [0, 2, 3]) == ["Toy Story (1995)", None, "Dangerous Minds (1995)"]
    assert metadata.find("genres").isin(["Drama"]).tolist() == [False, False, False, True]
    [line] = [r.getMessage() for r in caplog.records if r.name == "ncf.items"]
    assert line == (f"items: 4 rows from {path}; columns title: text, genres: categorical (text: mostly distinct "
                    "values, most holding a space; each kept whole, never split at |); 1 metadata-only "
                    "(ids not in the interactions: kept, not scored); 1 of 4 trained items have no row")


def test_a_column_a_filter_cannot_name_is_kept_and_named_in_a_warning(tmp_path, caplog):
    path = write(tmp_path, "itemId,in stock,price-usd,GENRES,2nd\n1,true,3.5,Drama,x\n2,false,4,Comedy,y\n")
    with caplog.at_level(logging.INFO, logger="ncf.items"):
        metadata = read_item_metadata(path, Vocabulary(np.array([1, 2])))
    assert metadata.names == ["in stock", "price-usd", "GENRES", "2nd"]
    assert metadata.texts("in stock", [0, 1]) == ["true", "false"]  # still answered by metadataColumns
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "'in stock', 'price-usd', '2nd' cannot be named in a filter expression" in warning
    assert "GENRES" not in warning and "returned (metadataColumns)" in warning


def test_a_parquet_list_column_stays_multi_valued_however_distinct_its_values(tmp_path):
    path = tmp_path / "items.parquet"
    cast = [[f"Actor {2 * n}", f"Actor {2 * n + 1}"] for n in range(4)]  # every name distinct, with a space
    pq.write_table(pa.table({"ITEM_ID": ["a", "b", "c", "d"], "CAST": pa.array(cast, pa.list_(pa.string())),
                             "JOINED": ["|".join(c) for c in cast]}), path)
    metadata = read_items(path).metadata(Vocabulary(np.array(["a", "b", "c", "d"])))
    assert metadata.find("CAST").kind == "categorical" and metadata.find("JOINED").kind == "text"
    assert metadata.find("CAST").isin(["Actor 3"]).tolist() == [False, True, False, False]
    assert metadata.find("JOINED").isin(["Actor 3"]).tolist() == [False] * 4


BROKEN = [
    ("movieId,title\n1,A\n2,B\n1,C\n", r"movies.csv: line 2 and .*movies.csv: line 4: item id '1' appears twice"),
    ("movieId,title,genres\n1,A,x\n2,B\n", r"movies.csv: line 3: 2 fields, the header has 3"),
    ("movieId,title\n1,A\n ,B\n", r"movies.csv: line 3: item id is empty"),
    (f"movieId,title\n1,A\n{'7' * (MAX_ID_CHARS + 1)},B\n", rf"line 3: item id is longer than {MAX_ID_CHARS}"),
    ("title,genres\nA,x\n", r"no item id column: the file has columns \['title', 'genres'\]; name it one of "
                            r"\['movieId', 'movie_id', 'itemId', 'item_id'"),
    ("movieId,Genre,GENRE\n1,a,b\n", r"columns 'Genre' and 'GENRE' have the same name in another case"),
    ("movieId," + ",".join(f"c{n}" for n in range(MAX_COLUMNS + 1)) + "\n1" + ",x" * (MAX_COLUMNS + 1) + "\n",
     rf"{MAX_COLUMNS + 1} metadata columns besides the id; at most {MAX_COLUMNS}"),
    (f"movieId,title\n1,A\n2,{'x' * (MAX_VALUE_CHARS + 1)}\n",
     rf"movies.csv: line 3: title holds {MAX_VALUE_CHARS + 1:,} characters; a value holds at most"),
    (b"movieId,title\n1,A\n2,\xff\xfe\n", r"movies.csv: line 3: not UTF-8 text"),
    ("movieId,title\n", r"has no rows \(only a header\)"),
    ("", r"movies.csv: file is empty"),
]


@pytest.mark.parametrize("text, message", BROKEN, ids=[m[:40] for _, m in BROKEN])
def test_a_broken_table_is_a_data_error_naming_the_file_and_line(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_items(write(tmp_path, text))


def test_a_row_after_a_quoted_value_across_lines_is_named_by_its_own_line(tmp_path):
    text = 'movieId,title\n1,"two\nlines"\n1,B\n'
    with pytest.raises(DataError, match=r"line 2 and .*line 4: item id '1' appears twice"):
        read_items(write(tmp_path, text))


def test_a_repeated_id_across_parts_names_both_files(tmp_path):
    (tmp_path / "items").mkdir()
    first = write(tmp_path, "movieId,title\n1,A\n2,B\n", "items/a.csv")
    second = write(tmp_path, "movieId,title\n3,C\n2,D\n", "items/b.csv")
    with pytest.raises(DataError, match=re.escape(f"{first}: line 3 and {second}: line 3: item id '2' appears twice")):
        read_items(tmp_path / "items")


def test_parts_with_other_columns_are_refused_naming_the_part(tmp_path):
    (tmp_path / "items").mkdir()
    write(tmp_path, "movieId,title\n1,A\n", "items/a.csv")
    other = write(tmp_path, "movieId,name\n2,B\n", "items/b.csv")
    with pytest.raises(DataError, match=re.escape(f"{other}: columns ['name'] besides the id are not")):
        read_items(tmp_path / "items")


def test_a_parquet_problem_is_named_by_its_row(tmp_path):
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"item_id": ["a", None, "c"], "x": ["1", "2", "3"]}), path)
    with pytest.raises(DataError, match=re.escape(f"{path}: row 2: item id is empty")):
        read_items(path)


def test_a_missing_source_is_named(tmp_path):
    with pytest.raises(DataError, match="nowhere.csv: no such file or folder"):
        read_items(tmp_path / "nowhere.csv")


# MovieLens' movies as an items table (`ncf.movielens.items_file`), from the cache alone: never a download.

def test_movielens_movies_become_items_csv_from_the_archive_in_the_cache_with_a_year(tmp_path):
    import zipfile

    from ncf import movielens

    with zipfile.ZipFile(tmp_path / "ml-latest-small.zip", "w") as z:
        z.writestr("ml-latest-small/movies.csv", 'movieId,title,genres\n1,"American President, The (1995)",'
                   "Comedy|Drama\n2,Babylon 5,Sci-Fi\n3,Cosmos (1980) ,(no genres listed)\n")
    path = movielens.items_file("ml-latest-small", tmp_path)
    assert path == tmp_path / "ml-latest-small" / "items.csv"
    table = read_items(path)
    assert table.ids.tolist() == ["1", "2", "3"]
    assert table.columns == {"title": ["American President, The (1995)", "Babylon 5", "Cosmos (1980)"],
                             "genres": ["Comedy|Drama", "Sci-Fi", "(no genres listed)"], "year": ["1995", "", "1980"]}
    (tmp_path / "ml-latest-small.zip").unlink()
    assert movielens.items_file("ml-latest-small", tmp_path) == path  # written once, then read from the cache


def test_the_older_sets_movies_dat_and_u_item_give_the_same_columns():
    from ncf.movielens import movies_table

    dat = movies_table("2571::Matrix, The (1999)::Action|Sci-Fi|Thriller\n".encode("latin-1"), "ml-1m/movies.dat")
    assert dat.to_pylist() == [{"movieId": "2571", "title": "Matrix, The (1999)", "genres": "Action|Sci-Fi|Thriller",
                                "year": "1999"}]
    flags = ["0"] * 19
    flags[1], flags[4] = "1", "1"  # Action, Children's
    item = "|".join(["1", "Toy Story (1995)", "01-Jan-1995", "", "http://us.imdb.com/"] + flags) + "\n"
    assert movies_table(item.encode("latin-1"), "ml-100k/u.item").to_pylist() == [
        {"movieId": "1", "title": "Toy Story (1995)", "genres": "Action|Children's", "year": "1995"}]


def test_a_cache_without_the_movies_gives_no_items_table(tmp_path, caplog):
    from ncf import movielens

    (tmp_path / "ml-100k").mkdir()
    (tmp_path / "ml-100k" / "u.data").write_text("1\t2\t3\t4\n")  # a local copy of the ratings alone
    assert movielens.items_file("ml-100k", tmp_path) is None
    assert "no ml-100k/u.item in" in caplog.text
