import logging
import os
import shutil
import subprocess
from pathlib import Path

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


@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine, or a skip saying why; with NCF_REQUIRE_DOCKER=1 (CI) a missing engine fails instead."""
    problem = None
    if shutil.which("docker") is None:
        problem = "docker is not installed"
    elif subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode != 0:
        problem = "no Docker engine is running"
    if problem:
        if os.environ.get("NCF_REQUIRE_DOCKER") == "1":
            pytest.fail(f"NCF_REQUIRE_DOCKER=1 but {problem}")
        pytest.skip(f"needs Docker: {problem}")


@pytest.fixture(scope="session")
def image(docker_engine):
    """The image under test: NCF_IMAGE (CI builds it first), or one built here by scripts/build_image.sh."""
    root = Path(__file__).parents[1]
    tag = os.environ.get("NCF_IMAGE")
    if tag is None:
        tag = "ncf-sagemaker:test"
        built = subprocess.run([str(root / "scripts" / "build_image.sh"), tag], capture_output=True, text=True,
                               timeout=3600)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    inspect = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30)
    assert inspect.returncode == 0, f"image {tag} does not exist"
    return tag


@pytest.fixture(scope="session")
def serve_image(docker_engine):
    """The serve-only image (the Dockerfile's `serve` target): NCF_SERVE_IMAGE (CI builds it first), or one built
    here by scripts/build_image.sh."""
    root = Path(__file__).parents[1]
    tag = os.environ.get("NCF_SERVE_IMAGE")
    if tag is None:
        tag = "ncf-sagemaker:test-serve"
        built = subprocess.run([str(root / "scripts" / "build_image.sh"), tag, "--target", "serve"],
                               capture_output=True, text=True, timeout=3600)
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    inspect = subprocess.run(["docker", "image", "inspect", tag], capture_output=True, timeout=30)
    assert inspect.returncode == 0, f"image {tag} does not exist"
    return tag
