"""`train` drops TensorFlow's native start-up lines and nothing else written to file descriptor 2."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

NATIVE_WRITES = """
import os, sys
from container.quiet import START_UP_CHATTER, _native_stderr_filtered
with _native_stderr_filtered(START_UP_CHATTER):
    os.write(2, b"I0000 port.cc:153] oneDNN custom operations are on. You may see slightly different numbers\\n")
    os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n")
    os.write(2, b"E0000 cuda_dnn.cc] Could not load library libcudnn.so.9\\n")
print("after", file=sys.stderr)
"""


def native(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", **env})


def test_start_up_chatter_is_dropped_and_every_other_native_line_still_reaches_the_log():
    out = native(NATIVE_WRITES)
    assert out.returncode == 0, out.stderr
    assert "oneDNN" not in out.stderr and "InitializeLog" not in out.stderr
    assert "Could not load library libcudnn.so.9" in out.stderr
    assert out.stderr.index("libcudnn") < out.stderr.index("after")  # written back before the job goes on


def test_a_user_who_sets_the_tensorflow_log_level_to_0_gets_everything():
    from container.quiet import quiet_by_default

    assert quiet_by_default({}) and quiet_by_default({"TF_CPP_MIN_LOG_LEVEL": "2"})
    assert not quiet_by_default({"TF_CPP_MIN_LOG_LEVEL": "0"})
    out = native("from container.quiet import import_tensorflow; import_tensorflow({'TF_CPP_MIN_LOG_LEVEL': '0'})",
                 TF_CPP_MIN_LOG_LEVEL="0")
    assert out.returncode == 0, out.stderr
    # what TensorFlow says at import depends on the CPU (oneDNN's line on Intel, the instructions line on AMD):
    # whichever it said, the lines the quiet default drops reach the log
    from container.quiet import START_UP_CHATTER

    assert START_UP_CHATTER.search(out.stderr), out.stderr
