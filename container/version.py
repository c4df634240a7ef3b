"""`ncf-version`: what a running image contains, so a team can prove what an endpoint serves.

`docker run IMAGE ncf-version` (or `ncf-version` inside a container) prints JSON: this project's version, the
git revision the image was built from, the Python release, the SHA-256 of the lock file the runtime was
installed from (the same value as the image's `ncf.lock.sha256` label, which the build checked against the
file), and every installed distribution with its version. The image's CycloneDX SBOM
(`/opt/program/sbom.cdx.json`) says the same for scanners.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Mapping


def report(environ: Mapping[str, str]) -> dict:
    """Set in the image by the Dockerfile: `NCF_REVISION` and `NCF_LOCK_FILE`; elsewhere they are null."""
    lock = environ.get("NCF_LOCK_FILE")
    lock_path = Path(lock) if lock else None
    return {
        "ncf-sagemaker": metadata.version("ncf-sagemaker"),
        "revision": environ.get("NCF_REVISION"),
        "python": platform.python_version(),
        "lock": None if lock_path is None else {
            "file": str(lock_path),
            "sha256": hashlib.sha256(lock_path.read_bytes()).hexdigest() if lock_path.is_file() else None,
        },
        "packages": dict(sorted((_normalised(d.metadata["Name"]), d.version) for d in metadata.distributions())),
    }


def _normalised(name: str) -> str:
    """PEP 503's form, as lock files write names: `tensorflow_cpu` and `TensorFlow-CPU` are `tensorflow-cpu`."""
    return re.sub(r"[-_.]+", "-", name).lower()


def main() -> None:
    json.dump(report(os.environ), sys.stdout, indent=2)
    print()
