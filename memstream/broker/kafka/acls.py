"""Kafka ACLs as data: load a set from JSON, write it to a cluster with CreateAcls.

aiokafka's admin client has no ACL call, but its protocol layer has the CreateAcls request
(API key 30); `apply_acls` sends it, one binding per request, and raises on any refusal.
The example set (acls.json here, `deploy/kafka/acls.json`) separates the worker's, the
API's and an agent's principals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_ACLS = Path(__file__).resolve().parent / "acls.json"

# Kafka's wire codes (org.apache.kafka.common.resource / acl enums)
RESOURCE_TYPES = {"topic": 2, "group": 3, "cluster": 4, "transactional_id": 5}
PATTERN_TYPES = {"literal": 3, "prefixed": 4}
OPERATIONS = {
    "all": 2,
    "read": 3,
    "write": 4,
    "create": 5,
    "delete": 6,
    "alter": 7,
    "describe": 8,
    "cluster_action": 9,
    "describe_configs": 10,
    "alter_configs": 11,
    "idempotent_write": 12,
}
ALLOW = 3


@dataclass(frozen=True)
class AclBinding:
    """Allow `principal` (`User:name`) `operation` on a resource, from any host."""

    principal: str
    resource: str
    name: str
    pattern: str
    operation: str


def load_acls(path: Path = DEFAULT_ACLS) -> list[AclBinding]:
    """Every binding of an ACL file; ValueError naming the entry that is wrong."""
    data = json.loads(Path(path).read_text())
    bindings = []
    for i, entry in enumerate(data.get("acls", [])):
        where = f"{path}: acls[{i}]"
        if not str(entry.get("principal", "")).startswith("User:"):
            raise ValueError(f"{where}: principal must look like User:<name>")
        if entry.get("resource") not in RESOURCE_TYPES:
            raise ValueError(f"{where}: resource must be one of {sorted(RESOURCE_TYPES)}")
        pattern = entry.get("pattern", "literal")
        if pattern not in PATTERN_TYPES:
            raise ValueError(f"{where}: pattern must be literal or prefixed")
        for operation in entry.get("operations", []):
            if operation not in OPERATIONS:
                raise ValueError(f"{where}: unknown operation {operation!r}")
            bindings.append(
                AclBinding(entry["principal"], entry["resource"], entry["name"], pattern, operation)
            )
    return bindings


async def apply_acls(bootstrap: str, security: dict[str, Any], bindings: list[AclBinding]) -> int:
    """Create `bindings` on the cluster (idempotent: an existing ACL is not an error);
    `security` are a super user's aiokafka arguments. Returns how many were sent."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.protocol.admin import CreateAclsRequest

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000, **security)
    await admin.start()
    try:
        for binding in bindings:
            request = CreateAclsRequest(
                RESOURCE_TYPES[binding.resource],
                binding.name,
                PATTERN_TYPES[binding.pattern],
                binding.principal,
                "*",
                OPERATIONS[binding.operation],
                ALLOW,
            )
            response = await admin._send_request(request)
            for code, message in response.creation_responses:
                if code != 0:
                    raise RuntimeError(f"Kafka refused ACL {binding}: error {code} {message}")
    finally:
        await admin.close()
    return len(bindings)
