"""The `deploy` steps: create a model, its endpoint config and endpoint, invoke it, then delete all three.

For one model, or for the many models of a multi-model endpoint; one request of each kind is sent (to each
model), and `--keep` leaves the three in place.

Both share one endpoint lifetime (`live_endpoint`), so that a failed wait or request still deletes what was
created, and the clean-up says the same thing either way.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

from scripts.sm_common import WorkflowError, unique, wait_until
from scripts.sm_hosting import Hosting, invoke_async
from scripts.sm_requests import endpoint_request, model_request, multi_model_request


def local_model_data(model_data: str) -> str:
    """`deploy --local`'s model.tar.gz as the SDK's local mode reads it, which takes only s3:// and file:// URLs:
    those as given, a plain path (what `train --local` prints) as the absolute file:// URL of a file that exists."""
    if model_data.startswith(("s3://", "file://")):
        return model_data
    path = Path(model_data).expanduser()
    if not path.is_file():
        raise WorkflowError(f"--model-data {model_data}: no such file (with --local: a model.tar.gz's path, a "
                            "file:// URL or an s3:// URI)")
    return f"file://{path.resolve()}"


def demo_requests(user, items: list) -> dict[str, dict]:
    """One request of each kind `/invocations` answers (README, "HTTP API")."""
    return {"score pairs": {"instances": [{"user": user, "item": item} for item in items[:3]]},
            "recommend": {"user": user, "k": 5},
            "similar items": {"item": items[0], "k": 5}}


def invoke(runtime, endpoint: str, body: dict, target: str | None = None) -> Any:
    """The endpoint's JSON answer; a 4xx from the container (ModelError) comes back as {"error": ...}.
    `target`: the model of a multi-model endpoint to invoke (its first invocation waits for SageMaker to
    load it)."""
    from botocore.exceptions import ClientError

    try:
        response = runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json",
                                           Accept="application/json", Body=json.dumps(body),
                                           **({"TargetModel": target} if target is not None else {}))
    except ClientError as e:
        return {"error": e.response.get("Error", {}).get("Message", str(e))}
    payload = response["Body"].read()
    try:
        return json.loads(payload)
    except ValueError:
        return {"error": f"not JSON: {payload[:200]!r}"}


@contextmanager
def live_endpoint(sm, name: str, model: dict, config: dict, keep: bool, timeout: float) -> Iterator[None]:
    """Creates the model (CreateModel `model`), endpoint config (`config`) and endpoint `name`, waits until it
    is InService, and deletes all three when the block ends, however it ends, unless `keep`."""
    sm.create_model(**model)
    sm.create_endpoint_config(**config)
    sm.create_endpoint(**endpoint_request(name, name))
    try:
        state = wait_until(sm, "endpoint_in_service", lambda: sm.describe_endpoint(EndpointName=name),
                           "EndpointStatus", timeout, f"endpoint {name}", EndpointName=name)
        if state["EndpointStatus"] != "InService":
            raise WorkflowError(f"endpoint {name} is {state['EndpointStatus']}: "
                                f"{state.get('FailureReason', 'no reason given')}")
        yield
    finally:
        if keep:
            print(f"endpoint {name} kept; delete it with: aws sagemaker delete-endpoint --endpoint-name {name}")
        else:
            sm.delete_endpoint(EndpointName=name)
            sm.delete_endpoint_config(EndpointConfigName=name)
            sm.delete_model(ModelName=name)
            print(f"endpoint {name}, its config and model deleted", flush=True)


def deploy(sm, runtime, image: str, role: str, model_data: str, instance_type: str, user, items: list,
           keep: bool = False, timeout: float = 1800, hosting: Hosting | None = None, s3=None) -> dict[str, dict]:
    """Creates model, endpoint config and endpoint; invokes it once per request kind; deletes all three.
    `hosting`: serverless, async or with data capture (`Hosting`); async invocations go through `s3`."""
    hosting = hosting or Hosting(instance_type=instance_type, image=image)
    name = unique("ncf")
    answers = {}
    with live_endpoint(sm, name, model_request(name, image, model_data, role, hosting.environment()),
                       hosting.endpoint_config(name, name), keep, timeout):
        for kind, body in demo_requests(user, items).items():
            if hosting.async_output:
                where = f"{hosting.async_output.rstrip('/')}/inputs/{name}/{kind.replace(' ', '-')}.json"
                answers[kind] = invoke_async(runtime, s3, name, body, where, hosting.timeout_s)
            else:
                answers[kind] = invoke(runtime, name, body)
            print(f"{kind}: {json.dumps(body)}\n  -> {json.dumps(answers[kind])[:400]}", flush=True)
    return answers


def target_models(targets: Sequence[str]) -> list[str]:
    """The TargetModels to invoke: keys relative to the prefix (`tenant-a/model.tar.gz`), as InvokeEndpoint
    takes them (1 to 1024 characters, no leading '/')."""
    if not targets:
        raise WorkflowError("--multi-model needs at least one --target-model: a model.tar.gz's key below --model-data")
    for target in targets:
        if not 1 <= len(target) <= 1024 or target.startswith("/") or not target.strip():
            raise WorkflowError(f"--target-model {target!r}: a key relative to --model-data, such as "
                                "tenant-a/model.tar.gz (1 to 1024 characters, no leading '/')")
    return list(targets)


def deploy_multi_model(sm, runtime, image: str, role: str, prefix: str, targets: Sequence[str], user, items: list,
                       hosting: Hosting, keep: bool = False, timeout: float = 1800) -> dict[str, dict[str, dict]]:
    """A multi-model endpoint over the models under `prefix`: creates model, endpoint config and endpoint,
    invokes each of `targets` once per request kind, deletes all three. Returns `{target: {kind: answer}}`."""
    targets = target_models(targets)
    name = unique("ncf-mme")
    request = multi_model_request(name, image, prefix, role, hosting.environment())  # fails before any request
    answers: dict[str, dict[str, dict]] = {}
    with live_endpoint(sm, name, request, hosting.endpoint_config(name, name), keep, timeout):
        for target in targets:
            answers[target] = {}
            for kind, body in demo_requests(user, items).items():
                answers[target][kind] = invoke(runtime, name, body, target=target)
                print(f"{target}, {kind}: {json.dumps(body)}\n  -> {json.dumps(answers[target][kind])[:400]}",
                      flush=True)
    return answers
