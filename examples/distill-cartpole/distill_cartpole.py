"""Teachers publish experience; the worker distils a student; a new agent starts from it.

Run against a stack whose `distill_teams` holds `<tenant>/<team>` (README.md beside this file).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time

from memstream import Client
from memstream.eval.distill import HIDDEN, learn, reward_threshold
from memstream.models.policy import SoftmaxPolicy
from memstream.sdk import HttpClient
from memstream.sdk.http import NotFound


async def publish_teachers(args: argparse.Namespace, threshold: float) -> int:
    """Each teacher learns from scratch and publishes every step; returns the steps sent."""
    sent = 0
    for t in range(args.teachers):
        steps: list[dict] = []

        def record(episode, step, observation, action, reward, done, distribution, steps=steps):  # type: ignore[no-untyped-def]
            steps.append(
                {
                    "episode": episode,
                    "step": step,
                    "observation": observation.tolist(),
                    "action": action,
                    "reward": reward,
                    "done": done,
                    "distribution": distribution.tolist(),
                }
            )

        seed = 1000 * args.seed + t + 1
        run = learn(
            SoftmaxPolicy.initial(4, 2, HIDDEN, seed=seed),
            seed,
            threshold=threshold,
            max_steps=args.max_steps,
            on_step=record,
        )
        print(f"teacher-{t}: {run['steps'] or args.max_steps} steps, {run['episodes']} episodes")
        async with Client(tenant=args.tenant, agent_id=f"teacher-{t}") as client:
            for start in range(0, len(steps), 500):  # 500 in flight: the producer batches them
                await asyncio.gather(
                    *(
                        client.publish_experience(**step, scope=f"team:{args.team}")
                        for step in steps[start : start + 500]
                    )
                )
        sent += len(steps)
    return sent


async def topic_end() -> dict[str, int]:
    """The experience topic's end offsets now: a student covers our steps once its
    lineage reaches them."""
    from memstream.client import default_bootstrap
    from memstream.streams.admin import topic_end_offsets

    ends = await topic_end_offsets(default_bootstrap(), "memstream.experience")
    return {str(partition): offset for partition, offset in ends.items()}


def fetch_student(api: HttpClient, model: str, end: dict[str, int], timeout: float):  # type: ignore[no-untyped-def]
    """The first student version whose lineage covers the topic up to `end` (the worker
    distils once the experience pauses for `distill_idle_s`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = api.model(model)
            covered = found.lineage["offsets"]
            if all(covered.get(p, 0) >= o for p, o in end.items()):
                return found
        except NotFound:
            pass
        time.sleep(1.0)
    raise SystemExit(f"no student {model} covering the teachers' steps after {timeout:.0f} s")


def token_for(tenant: str, team: str) -> tuple[str, str]:
    from memstream.services.auth import TokenStore
    from memstream.services.stack import find_stack
    from memstream.settings import Settings

    state = find_stack(Settings())
    if state is None or not state.api_url:
        raise SystemExit("no running stack: start one with `memstream up` (README.md)")
    token = TokenStore(state.data_dir / "tokens.db").create(tenant, "newcomer", [team], [])
    return state.api_url, token


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--team", default="pilots")
    parser.add_argument("--teachers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-steps", type=int, default=200_000)
    parser.add_argument("--url", help="the API; default: the running stack's")
    parser.add_argument("--token", help="a token of a member of --team")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()

    threshold = reward_threshold()
    url, token = (
        (args.url, args.token) if args.url and args.token else token_for(args.tenant, args.team)
    )
    api = HttpClient(url, token)
    sent = asyncio.run(publish_teachers(args, threshold))
    end = asyncio.run(topic_end())
    print(f"{sent} steps published; waiting for the student")
    student = fetch_student(api, f"policy-{args.team}", end, args.timeout)
    print(
        f"student v{student.version}: {student.lineage['pairs']} pairs, teachers {student.lineage['teachers']}"
    )
    policy = SoftmaxPolicy.from_onnx(base64.b64decode(student.onnx_b64 or ""))
    from_student = learn(policy, args.seed, threshold=threshold, max_steps=args.max_steps)
    from_scratch = learn(
        SoftmaxPolicy.initial(4, 2, HIDDEN, seed=args.seed),
        args.seed,
        threshold=threshold,
        max_steps=args.max_steps,
    )
    a = from_student["steps"] or args.max_steps
    b = from_scratch["steps"] or args.max_steps
    print(
        json.dumps(
            {
                "steps_from_student": a,
                "steps_from_scratch": b,
                "reduction": round(1 - a / b, 4),
                "student_version": student.version,
            }
        )
    )


if __name__ == "__main__":
    main()
