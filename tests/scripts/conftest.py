import pytest

from tests.scripts.aws import start_moto


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    """moto as a real server on loopback, recording every request; one per test module."""
    server = start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.process.terminate()
    server.process.wait(timeout=10)


@pytest.fixture
def aws(moto):
    """The server with its state and recording emptied before the test."""
    moto.reset()
    return moto
