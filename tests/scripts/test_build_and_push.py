"""scripts/build_and_push.sh: shellcheck clean, its dry run's printed commands, its refusals, and (with
Docker) a real run against moto's ECR up to the registry login, which only real ECR can answer."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.aws import ACCOUNT, AWS_VENV, REGION, ROOT

SCRIPT = ROOT / "scripts" / "build_and_push.sh"
REGISTRY = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"




def revision():
    """The tag a run pushes: the commit, or a pattern of it with the time when the tree has changes."""
    rev = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode != 0
    return re.escape(rev) + (r"-dirty-\d{8}T\d{6}" if dirty else "") + "-cpu"


def push(env, *args, timeout=120):
    return subprocess.run([str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def repositories(aws):
    return [r["repositoryName"] for r in aws.aws("ecr", "describe-repositories").get("repositories", [])]


def path_without(tmp_path, *missing):
    """A PATH holding the tools the script uses, less `missing`."""
    folder = tmp_path / "bin"
    folder.mkdir()
    tools = ["bash", "dirname", "git", "sed", "mktemp", "rm", "tr", "grep", "cat", "date", "mkdir", "docker", "aws"]
    for tool in tools:
        if tool in missing:
            continue
        found = str(AWS_VENV / "bin" / "aws") if tool == "aws" else subprocess.run(
            ["bash", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (folder / tool).symlink_to(found)
    return str(folder)


def test_every_shell_script_is_shellcheck_clean():
    scripts = sorted(str(p) for p in (ROOT / "scripts").glob("*.sh")) + [str(ROOT / ".ci" / "run")]
    out = subprocess.run([str(Path(sys.executable).parent / "shellcheck"), *scripts], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stdout


def test_a_dry_run_prints_every_command_that_would_create_build_and_push(aws):
    out = push(aws.env(), "--dry-run")
    assert out.returncode == 0, out.stderr
    image = re.escape(f"{REGISTRY}/ncf-sagemaker")
    rev = revision()
    expected = [
        re.escape(f"+ aws ecr create-repository --repository-name ncf-sagemaker --region {REGION} "
                  "--image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true "
                  "--output text --query repository.repositoryUri"),
        re.escape(f"+ aws ecr get-login-password --region {REGION} | docker login --username AWS "
                  f"--password-stdin {REGISTRY}"),
        rf"\+ scripts/build_image.sh {image}:{rev} --build-arg VARIANT=cpu",
        rf"\+ docker run --rm {image}:{rev} cat /opt/program/sbom.cdx.json > sbom/ncf-sagemaker-{rev}\.cdx\.json",
        rf"\+ docker push {image}:{rev}",
        rf"{image}:{rev}",
    ]
    lines = out.stdout.splitlines()
    assert len(lines) == len(expected) and all(re.fullmatch(e, line) for e, line in zip(expected, lines)), lines
    assert "digest" in out.stderr and repositories(aws) == []  # a dry run changes nothing


def test_an_existing_repository_is_not_created_and_its_mutable_unscanned_settings_are_named(aws):
    aws.aws("ecr", "create-repository", "--repository-name", "recs")
    out = push(aws.env(), "--dry-run", "--repository", "recs", "--variant", "gpu")
    assert out.returncode == 0, out.stderr
    assert "ECR repository recs exists" in out.stderr
    assert "put-image-tag-mutability --repository-name recs --image-tag-mutability IMMUTABLE" in out.stderr
    assert "put-image-scanning-configuration --repository-name recs" in out.stderr
    assert not any("create-repository" in line for line in out.stdout.splitlines())
    assert "--build-arg VARIANT=gpu" in out.stdout


def test_an_immutable_scanned_repository_gets_no_notes(aws):
    aws.aws("ecr", "create-repository", "--repository-name", "locked", "--image-tag-mutability", "IMMUTABLE",
            "--image-scanning-configuration", "scanOnPush=true")
    out = push(aws.env(), "--dry-run", "--repository", "locked")
    assert out.returncode == 0 and "note:" not in out.stderr, out.stderr


def test_a_tag_already_pushed_is_not_built_again_and_its_digest_is_the_answer(aws, tmp_path):
    """Tags are immutable: what a tag names was pushed once; a rerun at the same commit answers its digest."""
    import json
    import shutil

    # The script in a committed tree of its own, so that its tag is the commit, whatever state this one is in.
    (tmp_path / "scripts").mkdir()
    shutil.copy(SCRIPT, tmp_path / "scripts" / SCRIPT.name)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    tag = subprocess.run(["git", "-C", str(tmp_path), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                         text=True, check=True).stdout.strip() + "-cpu"
    aws.aws("ecr", "create-repository", "--repository-name", "team/recs", "--image-tag-mutability", "IMMUTABLE")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 2,
                                      "digest": "sha256:" + "0" * 64}, "layers": []})
    pushed = aws.aws("ecr", "put-image", "--repository-name", "team/recs", "--image-tag", tag,
                     "--image-manifest", manifest)["image"]["imageId"]["imageDigest"]
    out = subprocess.run([str(tmp_path / "scripts" / SCRIPT.name), "--dry-run", "--repository", "team/recs"],
                         cwd=tmp_path, env=aws.env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"{REGISTRY}/team/recs@{pushed}"]
    assert "already in the repository" in out.stderr


def test_a_moving_tag_is_refused_with_why():
    out = subprocess.run([str(SCRIPT), "--moving-tag", "latest"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "tags are immutable" in out.stderr


@pytest.mark.parametrize("missing, message", [
    ("aws", "the AWS CLI is not installed"),
    ("docker", "docker is not installed"),
])
def test_a_missing_tool_is_named(aws, tmp_path, missing, message):
    out = push(aws.env(PATH=path_without(tmp_path, missing)), "--dry-run")
    assert out.returncode == 1 and message in out.stderr, out.stderr


def test_missing_credentials_and_region_are_said_plainly(aws):
    no_keys = {k: v for k, v in aws.env().items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    out = subprocess.run([str(SCRIPT), "--dry-run"], cwd=ROOT, env=no_keys, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "no usable AWS credentials" in out.stderr, out.stderr
    no_region = {k: v for k, v in aws.env().items() if k != "AWS_DEFAULT_REGION"}
    out = subprocess.run([str(SCRIPT), "--dry-run"], cwd=ROOT, env=no_region, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 1 and "no AWS region" in out.stderr, out.stderr


def test_unknown_arguments_are_refused():
    out = subprocess.run([str(SCRIPT), "--push-everything"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 2 and "unknown argument '--push-everything'" in out.stderr


def test_a_real_run_creates_the_repository_then_stops_at_the_login_only_real_ecr_answers(aws, docker_engine):
    out = push(aws.env(), "--repository", "ncf-ci")
    assert "ncf-ci" in repositories(aws)
    assert out.returncode == 1 and f"docker login to {REGISTRY} failed" in out.stderr, out.stderr
