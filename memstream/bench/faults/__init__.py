"""`memstream bench faults`: broker faults under a steady stream, and what each did to it.

On a local 3-node Apache Kafka cluster (KRaft, replication factor 3,
`min.insync.replicas=2`) with one `memstream worker`, memories are published at a steady
rate by the SDK's `Client` with an idempotent `acks=all` producer; each send is either
acknowledged (its future resolved) or failed. Mid-stream, the fault:

- `kill`: SIGKILL node A (the worker's group coordinator), wait, restart it from its own
  directory and ports, wait until every partition's ISR is whole again, then SIGKILL node
  B (another node, leading partitions of the input topic) and restart it the same way;
- `pause`: SIGSTOP node A for longer than the broker session (9 s, after which the
  controller fences it and moves its leaderships and ISR places) and the worker's
  consumer session, SIGCONT, wait for a whole ISR, then the same on node B.

The worker is supervised as `memstream up` would: one that exits is restarted (and the
result says so). Once the worker has indexed all it will, `memstream.indexed` is read from
the beginning and counted by memory id, and the worker's store is opened after the worker
stopped. Reported: published, acknowledged, failed, indexed (acknowledged ids found on
`indexed`), duplicated (ids found there more than once: at-least-once may re-emit after a
retry or re-read), lost (acknowledged ids never indexed), and from the store its points,
duplicates (points beyond distinct ids: the store is keyed by memory id) and missing ids.
"""

from __future__ import annotations

from memstream.bench.faults.counts import FAULTS, pick_nodes, tally
from memstream.bench.faults.run import run_broker_faults, run_broker_faults_async

__all__ = [
    "FAULTS",
    "pick_nodes",
    "run_broker_faults",
    "run_broker_faults_async",
    "tally",
]
