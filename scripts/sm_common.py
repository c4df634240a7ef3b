"""What every step of the AWS workflow shares: its one-line error, S3 URIs, unique names, waiting, the clients.

Kept in one place so that training, hosting and batch say their failures alike and wait alike.

Imported as `scripts.sm_common` with the repository root on `sys.path` (scripts/sagemaker_workflow.py puts it
there; pytest's `pythonpath` does for tests). boto3, botocore and the SDK are imported inside the functions
that call AWS, so the request builders load in the image's environment too, which has neither.
"""

from __future__ import annotations

import math
import time
import uuid


class WorkflowError(Exception):
    """A bad argument or a failed AWS step, said in one line."""


def split_s3(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise WorkflowError(f"expected s3://BUCKET/KEY, got {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def unique(prefix: str) -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def wait_until(sm, waiter: str, describe, status_key: str, timeout: float, what: str,
               poll_s: float | None = None, **name) -> dict:
    """Waits with boto3's own waiter (`endpoint_in_service`, `transform_job_completed_or_stopped`: their delays,
    their failure states) for at most `timeout` seconds, and returns the final description. A failure says the
    resource's FailureReason; running out of time says the status it was left in. Local mode's client has no
    waiters: its calls return once the container answers, so one description tells."""
    from botocore.exceptions import WaiterError

    if hasattr(sm, "get_waiter"):
        w = sm.get_waiter(waiter)
        delay = w.config.delay if poll_s is None else poll_s
        try:
            w.wait(**name, WaiterConfig={"Delay": delay, "MaxAttempts": max(1, math.ceil(timeout / max(delay, 1)))})
        except WaiterError as e:
            state = e.last_response or {}
            status = state.get(status_key, "unknown")
            if "Max attempts exceeded" in str(e):
                raise WorkflowError(f"{what} still {status} after {timeout:.0f} s") from None
            raise WorkflowError(f"{what} ended {status}: {state.get('FailureReason', 'no reason given')}") from None
    return describe()


def sessions(local: bool):
    """(SDK session, sagemaker client, runtime client, s3 client). Local mode needs no AWS account."""
    import boto3

    if local:
        from sagemaker.core.local import LocalSession

        session = LocalSession()
        session.config = {"local": {"local_code": True}}
        return session, session.sagemaker_client, session.sagemaker_runtime_client, None
    from sagemaker.core.helper.session_helper import Session

    boto_session = boto3.Session()
    if boto_session.region_name is None:
        raise WorkflowError("no AWS region: set AWS_REGION or run 'aws configure'")
    session = Session(boto_session=boto_session)
    return session, boto_session.client("sagemaker"), boto_session.client("sagemaker-runtime"), \
        boto_session.client("s3")
