import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest

from tests.synthetic import ratings_frame


@pytest.fixture(scope="session")
def ratings():
    """A synthetic MovieLens-shaped ratings frame (userId, movieId, rating, timestamp)."""
    return ratings_frame()


@pytest.fixture(scope="session")
def ratings_csv(tmp_path_factory, ratings):
    path = tmp_path_factory.mktemp("data") / "ratings.csv"
    ratings.to_csv(path, index=False)
    return path


@pytest.fixture(autouse=True)
def _quiet_logs(caplog):
    caplog.set_level(logging.INFO)
