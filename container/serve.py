"""`serve`: SageMaker's hosting contract. Replaces itself with gunicorn (exec), so SIGTERM reaches gunicorn
directly and it drains in-flight requests before exiting."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ncf.errors import ConfigError

from .serve_config import ServeConfig

CONFIG_FILE = Path(__file__).with_name("gunicorn.conf.py")


def main() -> None:
    try:
        ServeConfig.from_env(os.environ)  # fail fast, with the variable's name, before gunicorn starts
    except ConfigError as e:
        print(f"serve: {e}", file=sys.stderr)
        sys.exit(2)
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "-c", str(CONFIG_FILE)])
