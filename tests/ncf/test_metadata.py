"""ncf.metadata: kinds inferred as Personalize would declare them, masks over the model's items, missing values
matching nothing, and the pickle-free file with its checks."""

import json

import numpy as np
import pytest

from ncf.errors import ArtifactError, ConfigError
from ncf.metadata import ItemMetadata

# Four model items (index 0-3) and a metadata-only id "x9"; item 2 has no row at all.
INDEX = np.array([0, 1, 3, -1])
IDS = ["10", "11", "13", "x9"]
COLUMNS = {
    "GENRES": ["Comedy|Drama", "Drama", "", "Horror"],
    "price": ["9.5", "25", "3", "1"],
    "in_stock": ["true", "FALSE", "True", ""],
    "year": ["1995", "n/a", "2001", "1999"],
}


@pytest.fixture
def metadata():
    return ItemMetadata.from_table(INDEX, IDS, COLUMNS, n_items=4)


def test_kinds_are_inferred_from_every_value_given(metadata):
    kinds = {c.name: c.kind for c in metadata.columns}
    # "n/a" is no number: year stays categorical, as one stray value would make a Personalize schema string
    assert kinds == {"GENRES": "categorical", "price": "numeric", "in_stock": "boolean", "year": "categorical"}
    assert metadata.describe() == "GENRES: categorical, price: numeric, in_stock: boolean, year: categorical"


def test_names_match_in_any_case_and_an_unknown_one_is_named_with_the_columns(metadata):
    assert metadata.find("genres") is metadata.find("Genres") is metadata.find("GENRES")
    assert metadata.find("colour") is None
    with pytest.raises(ConfigError, match=r"no item metadata column 'colour'; the columns are \['GENRES', 'price'"):
        metadata.texts("colour", [0])


def test_a_multi_valued_category_matches_any_of_its_values_and_missing_matches_nothing(metadata):
    genres = metadata.find("genres")
    assert genres.isin(["Drama"]).tolist() == [True, True, False, False]
    assert genres.isin(["Comedy", "Horror"]).tolist() == [True, False, False, False]  # Horror: metadata-only
    assert genres.present().tolist() == [True, True, False, False]  # item 2 has no row; item 3 no genres


def test_numbers_compare_and_booleans_read_true_or_false_in_any_case(metadata):
    price, stock = metadata.find("PRICE"), metadata.find("in_stock")
    assert price.compare(">", 5).tolist() == [True, True, False, False]
    assert price.compare("<=", 3).tolist() == [False, False, False, True]
    assert price.isin(["25.0"]).tolist() == [False, True, False, False]
    assert stock.isin(["TRUE"]).tolist() == [True, False, False, True]
    with pytest.raises(ConfigError, match="in_stock is a boolean column: 'maybe' is neither true nor false"):
        stock.isin(["maybe"])
    with pytest.raises(ConfigError, match="GENRES is a categorical column: compare it with IN or NOT IN, not >"):
        metadata.find("genres").compare(">", 1)


def test_texts_are_the_values_as_given_and_none_where_missing(metadata):
    assert metadata.texts("genres", [0, 2, 3]) == ["Comedy|Drama", None, None]
    assert metadata.extra_ids == ["x9"]


def test_the_file_round_trips_every_column_and_the_metadata_only_rows(metadata, tmp_path):
    metadata.save(tmp_path / "items.npz")
    loaded = ItemMetadata.load(tmp_path / "items.npz", n_items=4)
    assert loaded.names == metadata.names and loaded.extra_ids == ["x9"]
    for name in metadata.names:
        assert loaded.texts(name, range(4)) == metadata.texts(name, range(4))
    assert loaded.find("genres").isin(["Drama"]).tolist() == [True, True, False, False]
    assert loaded.find("price").compare(">", 5).tolist() == [True, True, False, False]
    with np.load(tmp_path / "items.npz", allow_pickle=False) as z:
        assert all(z[k].dtype != object for k in z.files)


def test_a_file_for_another_model_or_a_damaged_one_is_an_artifact_error(metadata, tmp_path):
    metadata.save(tmp_path / "items.npz")
    with pytest.raises(ArtifactError, match="item metadata for 4 items, the model has 5"):
        ItemMetadata.load(tmp_path / "items.npz", n_items=5)
    with np.load(tmp_path / "items.npz") as z:
        arrays = {k: z[k] for k in z.files}
    bad = dict(arrays)
    bad["0/codes"] = arrays["0/codes"] + 100  # a category that does not exist
    np.savez(tmp_path / "codes.npz", **bad)
    with pytest.raises(ArtifactError, match="column 'GENRES'.s categories do not fit its rows"):
        ItemMetadata.load(tmp_path / "codes.npz", n_items=4)
    bad = dict(arrays)
    bad["0/text/offsets"] = arrays["0/text/offsets"][::-1].copy()  # would slice backwards at request time
    np.savez(tmp_path / "offsets.npz", **bad)
    with pytest.raises(ArtifactError, match="0/text is not text with its offsets"):
        ItemMetadata.load(tmp_path / "offsets.npz", n_items=4)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "items.npz").read_bytes()[:200])
    with pytest.raises(ArtifactError, match="cut.npz: item metadata is damaged"):
        ItemMetadata.load(tmp_path / "cut.npz", n_items=4)


def test_an_offset_inside_a_character_is_refused_before_any_request_decodes_it(tmp_path):
    metadata = ItemMetadata.from_table(np.array([0, 1]), ["1", "2"], {"title": ["Amélie", "Léon"]}, n_items=2)
    metadata.save(tmp_path / "items.npz")
    with np.load(tmp_path / "items.npz") as z:
        arrays = {k: z[k] for k in z.files}
    arrays["0/text/offsets"] = np.array([0, 3, len(arrays["0/text/data"])])  # "Am" + half of "é"
    np.savez(tmp_path / "split.npz", **arrays)
    with pytest.raises(ArtifactError, match="an offset inside a character"):
        ItemMetadata.load(tmp_path / "split.npz", n_items=2)


def test_rows_give_back_every_row_that_holds_a_value_with_its_id(metadata):
    ids, columns = metadata.rows(["10", "11", "12", "13"])
    assert ids == ["10", "11", "13", "x9"]  # item 12 had no row, and gets none
    assert columns["GENRES"] == ["Comedy|Drama", "Drama", "", "Horror"]
    assert columns["price"] == ["9.5", "25", "3", "1"]


# Text: free text is one value, never categories split at `|`

TITLES = [f"Film {n} — «ça|va» 🎬" for n in range(6)]


def test_free_text_is_kept_whole_while_lists_of_categories_are_split():
    columns = {
        "TITLE": TITLES,  # distinct, with spaces: text, though every value holds a |
        "TAGS": ["war drama|comedy", "comedy|film noir", "film noir|war drama", "comedy", "war drama",
                 "comedy|war drama|film noir"],  # distinct combinations of three categories: categorical
        "SKU": [f"SKU-{n}|X" for n in range(6)],  # distinct short codes, no space: categorical
    }
    metadata = ItemMetadata.from_table(np.arange(6), [str(n) for n in range(6)], columns, n_items=6)
    assert metadata.describe() == "TITLE: text, TAGS: categorical, SKU: categorical"
    title = metadata.find("title")
    assert title.isin(["va» 🎬"]).tolist() == [False] * 6  # a fragment after | is no value of its own
    assert title.isin([TITLES[2]]).tolist() == [n == 2 for n in range(6)]
    assert metadata.find("tags").isin(["film noir"]).tolist() == [False, True, True, False, False, True]
    with pytest.raises(ConfigError, match="TITLE is a text column: compare it with IN or NOT IN, not <"):
        title.compare("<", 1)


def test_a_text_column_round_trips_and_a_folder_written_before_text_keeps_its_kinds(tmp_path):
    metadata = ItemMetadata.from_table(np.arange(6), [str(n) for n in range(6)], {"TITLE": TITLES}, n_items=6)
    metadata.save(tmp_path / "items.npz")
    loaded = ItemMetadata.load(tmp_path / "items.npz", n_items=6)
    assert loaded.find("TITLE").kind == "text" and loaded.find("TITLE").isin([TITLES[0]]).tolist()[0]
    with np.load(tmp_path / "items.npz") as z:  # as a library without `text` wrote the same column
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays["header"].tobytes())
    header["columns"][0]["kind"] = "categorical"
    parts = sorted({p for t in TITLES for p in t.split("|")})
    split = [p for t in TITLES for p in t.split("|")]
    codes = np.array([parts.index(p) for p in split], dtype=np.int32)
    arrays.update({"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
                   "0/categories/data": np.frombuffer("".join(parts).encode(), dtype=np.uint8),
                   "0/categories/offsets": np.cumsum([0] + [len(p.encode()) for p in parts]),
                   "0/indptr": np.arange(0, 13, 2), "0/codes": codes})
    np.savez(tmp_path / "before.npz", **arrays)
    before = ItemMetadata.load(tmp_path / "before.npz", n_items=6)
    assert before.find("TITLE").kind == "categorical"
    assert before.find("TITLE").isin(["va» 🎬"]).all()  # its old meaning, read from its header


@pytest.mark.parametrize("value", ["nan", "1e309", "1_0", "١٢", "inf", "0x10", "12 5"])
def test_a_numeric_column_takes_only_what_the_filter_grammar_calls_a_number(metadata, value):
    with pytest.raises(ConfigError, match=f"price is a numeric column: {value!r} is not a number"):
        metadata.find("price").isin(["25", value])
    assert metadata.find("price").isin([" 25 ", "+9.5e0"]).tolist() == [True, True, False, False]


def test_a_column_of_what_python_reads_as_numbers_but_filters_do_not_is_categorical():
    columns = {"A": ["1_0", "2"], "B": ["١٢", "3"], "C": ["1e3", ".5"]}
    metadata = ItemMetadata.from_table(np.arange(2), ["1", "2"], columns, n_items=2)
    assert metadata.describe() == "A: categorical, B: categorical, C: numeric"
