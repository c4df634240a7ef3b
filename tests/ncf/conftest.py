import pytest

from ncf.data import Interactions
from ncf.dataset import prepare


@pytest.fixture(scope="session")
def dataset(ratings):
    x = Interactions(ratings.userId.to_numpy(), ratings.movieId.to_numpy(), ratings.rating.to_numpy(),
                     ratings.timestamp.to_numpy())
    return prepare(x, test_k=1, validation_k=1)


@pytest.fixture(scope="session")
def trained(dataset):
    """One briefly trained model of each kind, shared by the tests that only read them."""
    from ncf.training import TrainConfig, fit

    small = dict(factors=8, mlp_layers=(16, 8, 4), epochs=2, batch_size=256, seed=1)
    return {kind: fit(dataset, TrainConfig(model=kind, **small), on_epoch=lambda e: None)
            for kind in ("neumf", "gmf", "mlp", "mf")}
