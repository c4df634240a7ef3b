"""A `train` log that starts with the job, not with TensorFlow's native start-up chatter.

TensorFlow 2.21 prints, while `import tensorflow` loads its libraries, lines that no setting of
`TF_CPP_MIN_LOG_LEVEL` removes ("oneDNN custom operations are on", absl's "All log messages before
absl::InitializeLog()"), each twice; later, at INFO, its Python loggers report the SavedModel's renamed inputs
and written assets. None of it is about the user's job, and on SageMaker it is the first thing in CloudWatch.

So the entry point imports TensorFlow with the process's native stderr (file descriptor 2, where C++ writes)
captured, and writes back every captured line except the known start-up ones: anything else TensorFlow says
while loading (a missing CUDA library, a broken install) still reaches the log. A user who sets
`TF_CPP_MIN_LOG_LEVEL=0` asked for everything, and gets it unfiltered.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
from typing import Mapping

#: Native lines printed while TensorFlow loads that say nothing about the job.
START_UP_CHATTER = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|oneDNN custom operations are on"
    r"|cpu_feature_guard\.cc"
    r"|This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r"|XLA service 0x[0-9a-f]+ initialized for platform"
    r"|StreamExecutor device \(\d+\): Host"
)


def quiet_by_default(environ: Mapping[str, str]) -> bool:
    """False when the user asked for TensorFlow's INFO lines (`TF_CPP_MIN_LOG_LEVEL=0`)."""
    return environ.get("TF_CPP_MIN_LOG_LEVEL", "2").strip() not in ("0", "")


def import_tensorflow(environ: Mapping[str, str]) -> None:
    """Import TensorFlow (and Keras) once, dropping its start-up chatter unless the user asked for it."""
    if not quiet_by_default(environ):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _native_stderr_filtered(START_UP_CHATTER):
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    for name in ("absl", "tensorflow"):  # their INFO lines: the SavedModel's renamed inputs, assets written
        logging.getLogger(name).setLevel(logging.WARNING)


@contextlib.contextmanager
def _native_stderr_filtered(drop: re.Pattern):
    """File descriptor 2 goes to a temporary file inside the block; its lines come back after, less `drop`."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                captured.seek(0)
                kept = [line for line in captured.read().decode("utf-8", "replace").splitlines()
                        if not drop.search(line)]
                if kept:
                    print("\n".join(kept), file=sys.stderr, flush=True)
    finally:
        os.close(saved)
