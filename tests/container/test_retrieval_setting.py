"""NCF_RETRIEVAL (#34): the endpoint's way to force exact or two-stage top-k, read once with the other settings,
and the start-up log line that says which path answers and why."""

import logging

import pytest

from container.serve_config import ServeConfig
from ncf.errors import ConfigError


def serve_from(tmp_path, monkeypatch, kind: str, retrieval: str | None):
    from benchmarks.fake_model import fake_model
    from container.app import from_environment

    fake_model(tmp_path / "model", kind, users=30, items=300, interactions=600, factors=4, mlp_layers=(8, 4))
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    if retrieval is not None:
        monkeypatch.setenv("NCF_RETRIEVAL", retrieval)
    return from_environment().test_client()


@pytest.mark.parametrize("value, expected", [(None, "auto"), ("exact", "exact"), (" Two-Stage ", "two-stage")])
def test_ncf_retrieval_is_read_once_with_the_other_settings(tmp_path, value, expected):
    environ = {"SAGEMAKER_BASE_DIR": str(tmp_path)} | ({"NCF_RETRIEVAL": value} if value is not None else {})
    assert ServeConfig.from_env(environ).retrieval == expected


def test_an_unknown_retrieval_stops_serve_naming_the_variable_and_the_choices(tmp_path):
    with pytest.raises(ConfigError, match="NCF_RETRIEVAL='fast' is not one of auto, exact, two-stage"):
        ServeConfig.from_env({"SAGEMAKER_BASE_DIR": str(tmp_path), "NCF_RETRIEVAL": "fast"})


def test_forced_two_stage_serves_and_the_start_up_log_says_which_path_and_why(tmp_path, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="ncf.recommender"):
        client = serve_from(tmp_path, monkeypatch, "neumf", "two-stage")
    assert client.get("/ping").status_code == 200
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith("top-k: ")]
    assert said and said[0].startswith("top-k: two-stage: as asked (retrieval=two-stage); candidates from an exact "
                                       "dot product over 300 items")
    answer = client.post("/invocations", json={"user": "1", "k": 5})
    assert answer.status_code == 200 and len(answer.get_json()["itemList"]) == 5


def test_two_stage_forced_on_a_model_without_a_dot_product_is_a_503_saying_why(tmp_path, monkeypatch):
    ping = serve_from(tmp_path, monkeypatch, "mlp", "two-stage").get("/ping")
    assert ping.status_code == 503
    assert "retrieval=two-stage is impossible: a model of kind 'mlp' has no dot-product part" in ping.get_json()["error"]
