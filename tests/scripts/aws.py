"""The AWS side's tests talk to moto running as a real server on loopback, started from `.venv-aws` (the SDK's
environment, made by scripts/setup.sh), with moto's request recorder on: every request a script makes is read
back from the recording, so tests check the exact API calls, not a mock's idea of them."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
AWS_VENV = ROOT / ".venv-aws"
ACCOUNT = "123456789012"  # moto's account
REGION = "us-east-1"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/SageMakerRole"


def require_aws_venv() -> None:
    assert (AWS_VENV / "bin" / "python").exists(), \
        f"{AWS_VENV} is missing: scripts/setup.sh makes it (the SageMaker SDK needs its own environment)"


@dataclass
class Moto:
    url: str
    recording: Path
    process: subprocess.Popen

    def env(self, **extra) -> dict[str, str]:
        """A client environment that reaches only this server (and never a real account)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update({
            "AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": REGION, "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": "/nonexistent", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
            # The SDK checks the role with iam:SimulatePrincipalPolicy, which moto does not implement (HTTP
            # 500); this is the SDK's own switch for skipping that check.
            "SAGEMAKER_VALIDATE_ROLE": "false",
            "PATH": f"{AWS_VENV / 'bin'}:{os.environ['PATH']}",
        })
        env.update(extra)
        return env

    def api(self, path: str, payload: dict | None = None) -> bytes:
        data = None if payload is None else json.dumps(payload).encode()
        request = urllib.request.Request(f"{self.url}/moto-api/{path}", data=data, method="POST" if data else "GET")
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read()

    def reset(self) -> None:
        self.api("reset", {})
        self.recording.write_text("")

    def requests(self) -> list[dict]:
        """Every AWS API request received, in order (the tests' own /moto-api/ calls left out)."""
        entries = [json.loads(line) for line in self.recording.read_text().splitlines() if line.strip()]
        return [e for e in entries if "/moto-api/" not in e["url"]]

    def calls(self, action: str) -> list[dict]:
        """The JSON bodies of every `SageMaker.<action>` (or another JSON-protocol target) request."""
        found = []
        for entry in self.requests():
            target = entry.get("headers", {}).get("X-Amz-Target", "")
            if target.split(".")[-1] == action:
                found.append(json.loads(body(entry) or b"{}"))
        return found

    def aws(self, *args: str) -> dict:
        out = subprocess.run([str(AWS_VENV / "bin" / "aws"), *args, "--output", "json"], env=self.env(),
                             capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout or "{}")


def body(entry: dict) -> bytes:
    """A recorded request's body (the recorder base64-encodes bodies that are not plain text)."""
    raw = entry.get("body") or ""
    return base64.b64decode(raw) if entry.get("body_encoded") else raw.encode()


def start_moto(folder: Path) -> Moto:
    require_aws_venv()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    recording = folder / "recording.jsonl"
    recording.write_text("")
    process = subprocess.Popen(
        [str(AWS_VENV / "bin" / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        env={**os.environ, "MOTO_ENABLE_RECORDING": "1", "MOTO_RECORDER_FILEPATH": str(recording)},
        stdout=subprocess.DEVNULL, stderr=(folder / "moto.log").open("w"))
    moto = Moto(f"http://127.0.0.1:{port}", recording, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            moto.api("data.json")
            return moto
        except OSError:
            assert process.poll() is None, (folder / "moto.log").read_text()[-2000:]
            assert time.monotonic() < deadline, "moto_server did not answer within 60 s"
            time.sleep(0.2)


def workflow(moto: Moto, *args: str, cwd: Path = ROOT, timeout: float = 300, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(AWS_VENV / "bin" / "python"), str(ROOT / "scripts" / "sagemaker_workflow.py"), *args],
                          cwd=cwd, env=moto.env(**env), capture_output=True, text=True, timeout=timeout)
