import pytest

from tests.container.shop import shop_columns


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory, ratings):
    """A small NeuMF trained on the synthetic ratings, saved as a model folder (no SavedModel: not needed)."""
    from ncf import artifacts
    from ncf.data import Interactions
    from ncf.dataset import prepare
    from ncf.training import TrainConfig, fit, to_artifact

    data = prepare(Interactions(ratings.userId.to_numpy(), ratings.movieId.to_numpy(), None,
                                ratings.timestamp.to_numpy()))
    config = TrainConfig(model="neumf", factors=8, mlp_layers=(16, 8), epochs=2, batch_size=256)
    result = fit(data, config, on_epoch=lambda e: None)
    path = tmp_path_factory.mktemp("opt_ml") / "model"
    artifacts.save(path, to_artifact(result, data, extra={"threshold": 0.5}))
    return path


@pytest.fixture(scope="session")
def recommender(model_dir):
    from ncf.recommender import Recommender

    return Recommender.load(model_dir)



@pytest.fixture(scope="session")
def shop_dir(tmp_path_factory, model_dir):
    """The session's model with item metadata (`shop_columns`), as a training job with an items channel saves
    it."""
    import dataclasses

    import numpy as np

    from ncf import artifacts
    from ncf.metadata import ItemMetadata

    artifact = artifacts.load(model_dir)
    n = len(artifact.items)
    ids = [str(i) for i in artifact.items.decode(np.arange(n))]
    metadata = ItemMetadata.from_table(np.arange(n), ids, shop_columns(n), n)
    path = tmp_path_factory.mktemp("opt_ml") / "model"
    artifacts.save(path, dataclasses.replace(artifact, item_metadata=metadata))
    return path


@pytest.fixture(scope="session")
def shop(shop_dir):
    from ncf.recommender import Recommender

    return Recommender.load(shop_dir)
