"""`--local`: the same launch script runs the training job and the endpoint on the local docker engine through
the SDK's own local mode (docker compose), with the image under test, and sends nothing to SageMaker or S3."""

import json
import os
import shutil
import subprocess
import tarfile

import pytest

from tests.scripts.aws import ROLE, body, workflow


@pytest.fixture(scope="module")
def compose(docker_engine):
    if shutil.which("docker-compose") is None and \
            subprocess.run(["docker", "compose", "version"], capture_output=True).returncode != 0:
        if os.environ.get("NCF_REQUIRE_DOCKER") == "1":
            pytest.fail("NCF_REQUIRE_DOCKER=1 but neither docker-compose nor 'docker compose' is installed")
        pytest.skip("SDK local mode needs docker compose (Debian: apt-get install docker-compose)")


def ok(out):
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout


def test_local_mode_trains_with_model_trainer_and_serves_through_local_session(compose, image, moto, tmp_path,
                                                                              ratings):
    data = tmp_path / "data"
    data.mkdir()
    ratings.to_csv(data / "ratings.csv", index=False)
    root = tmp_path / "local"
    printed = ok(workflow(moto, "train", "--local", "--image", image, "--role", ROLE, "--train", str(data),
                          "--set", "model=mf", "--set", "epochs=2", "--local-root", str(root), timeout=600))
    model = root / "compressed_artifacts" / "model.tar.gz"
    assert printed.strip().splitlines()[-1] == f"model: {model}"
    with tarfile.open(model) as archive:
        names = archive.getnames()
    assert "metadata.json" in names and any(n.startswith("saved_model") for n in names)

    user = int(ratings.userId.iloc[0])
    items = [int(i) for i in ratings.movieId.unique()[:3]]
    # the plain path train --local prints, as given (the script makes it the file:// URL local mode reads)
    printed = ok(workflow(moto, "deploy", "--local", "--image", image, "--role", ROLE, "--model-data",
                          str(model), "--user", str(user), "--items", json.dumps(items), timeout=600))
    answers = {}
    lines = printed.splitlines()
    for kind in ("score pairs", "recommend", "similar items"):
        answer = next(lines[i + 1] for i, line in enumerate(lines) if line.startswith(f"{kind}: "))
        answers[kind] = json.loads(answer.split("-> ", 1)[1])
    assert [p["score"] > 0 for p in answers["score pairs"]["predictions"]] == [True] * 3
    assert len(answers["recommend"]["itemList"]) == 5 and answers["recommend"]["user"] == user
    assert len(answers["similar items"]["itemList"]) == 5
    assert "deleted" in printed
    # The SDK looks up the caller's identity (free, and tolerated when it fails); no SageMaker or S3 request.
    assert {body(r) for r in moto.requests()} <= {b"Action=GetCallerIdentity&Version=2011-06-15"}
