"""A model's large arrays written once and mapped by every worker (`container/shared_arrays.py`): the model
answers exactly as before, from read-only maps of the files, and a model of another shape is refused whole."""

import json

import numpy as np
import pytest

from benchmarks.fake_model import fake_model
from container import shared_arrays
from container.app import create_app
from container.serve_config import ServeConfig
from ncf.recommender import Recommender


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """A NeuMF whose item side is past `MIN_BYTES` (4,000 items x 64 factors), with item metadata."""
    return fake_model(tmp_path_factory.mktemp("wide") / "model", users=600, items=4_000, interactions=40_000,
                      metadata=True)


def answers(recommender, folder) -> list:
    """Every kind of request through the app's own path (the rules over metadata included)."""
    client = create_app(recommender, ServeConfig(model_dir=folder)).test_client()
    users, items = [1, 2, 3], [1, 2, 3, 4]
    bodies = [{"user": 1, "k": 5}, {"user": "someone new", "k": 3}, {"item": 2, "k": 4}, {"items": items, "k": 4},
              {"user": 2, "inputList": items}, {"instances": [{"user": u, "item": i} for u, i in zip(users, items)]},
              {"user": 3, "k": 5, "filter": 'INCLUDE ItemID WHERE Items.GENRES IN ("Comedy")',
               "metadataColumns": ["TITLE", "GENRES"]},
              {"user": 1, "k": 6, "diversity": {"column": "GENRES", "maxPerValue": 1}}]
    out = []
    for body in bodies:
        response = client.post("/invocations", data=json.dumps(body), content_type="application/json")
        assert response.status_code == 200, (body, response.json)
        out.append(response.json)
    return out


def test_a_model_answers_the_same_from_maps_of_its_arrays_and_every_large_array_is_one(wide, tmp_path):
    model = Recommender.load(wide)
    before = answers(model, wide)
    files, shared, private = shared_arrays.save(model, tmp_path)
    assert shared > 4_000 * 64 * 4 and private < shared / 10
    other = Recommender.load(wide)  # another worker's build of the same folder, its lazy caches not yet filled
    assert shared_arrays.attach(model, tmp_path, files) == shared
    assert shared > shared_arrays.attach(other, tmp_path, files) > 0.9 * shared
    for built in (model, other):
        large = [(path, a) for path, a in shared_arrays.arrays(built) if a.nbytes >= shared_arrays.MIN_BYTES]
        assert large and all(not a.flags.writeable and isinstance(a.base, np.memmap) for _, a in large), \
            [path for path, a in large if a.flags.writeable]
        assert answers(built, wide) == before
    mapped = {str(a.base.filename) for built in (model, other) for _, a in shared_arrays.arrays(built)
              if isinstance(a.base, np.memmap)}
    assert mapped == {str(tmp_path / name) for name in files}  # both map the same files: one copy between them


def test_the_arrays_of_another_model_are_refused_and_nothing_is_swapped(wide, tmp_path):
    smaller = fake_model(tmp_path / "smaller", users=600, items=3_000, interactions=30_000)
    files, _, _ = shared_arrays.save(Recommender.load(smaller), tmp_path)
    model = Recommender.load(wide)
    with pytest.raises(shared_arrays.Mismatch, match=r"float32\[4000, 64\] here, float32\[3000, 64\] saved"):
        shared_arrays.attach(model, tmp_path, files)
    assert not any(isinstance(a.base, np.memmap) for _, a in shared_arrays.arrays(model))
