"""Bearer tokens that carry an identity (tenant, agent, teams, clearance).

A token is `ms_<id>_<secret>`: the id finds the row, the secret is checked against its
SHA-256 with `hmac.compare_digest` (constant time). Only the hash is stored, so a stolen
token file yields no usable token. Secrets are 256 random bits, so a plain hash suffices
(no password stretching needed).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pydantic import TypeAdapter, ValidationError

from memstream.schemas.events import Slug
from memstream.store.base import Caller
from memstream.store.sqlite_file import SqliteFile

_SCHEMA = """
create table if not exists tokens (
    id text primary key,
    secret_sha256 text not null,
    tenant text not null,
    agent_id text not null,
    teams text not null,
    clearance text not null,
    created_at text not null,
    revoked integer not null default 0
)
"""

_MIGRATIONS = (
    "alter table tokens add column expires_at text",
    "alter table tokens add column scopes text",
)
"""Columns added after the first release; a token store made before them gets them."""


_slug = TypeAdapter(Slug)


KNOWN_CLEARANCES = ("pii", "admin")
"""`pii`: may read sealed personal values; `admin`: may erase subjects of its tenant."""

KNOWN_SCOPES = ("read", "write", "subscribe", "admin")
"""What a token may do: `read` (search, get, list, history, export, aggregates, stats),
`write` (add, observe, feedback, delete, import), `subscribe` (subscriptions, streams,
deliveries), `admin` (tokens, erasures; with the admin clearance)."""
DEFAULT_SCOPES = ("read", "write", "subscribe")


def token_id(token: str | None) -> str:
    """The id part of `ms_<id>_<secret>` ("" for anything else): what `listing` shows,
    `revoke_id` takes and rate limits count against."""
    return (token or "").split("_", 2)[1] if (token or "").count("_") >= 2 else ""


class InvalidToken(Exception):
    """Missing, malformed, unknown, revoked or wrong token: all answered the same way."""


class InvalidIdentity(ValueError):
    """A token cannot be made for this identity; the message names the value and why."""


class TokenStore(SqliteFile):
    def __init__(self, path: Path) -> None:
        super().__init__(path, [_SCHEMA])
        columns = {row[1] for row in self._db.execute("pragma table_info(tokens)")}
        with self._write() as db:
            for statement in _MIGRATIONS:
                if statement.split()[-2] not in columns:
                    db.execute(statement)

    def create(
        self,
        tenant: str,
        agent_id: str,
        teams: list[str] | None = None,
        clearance: list[str] | None = None,
        *,
        ttl_s: float | None = None,
        scopes: list[str] | None = None,
    ) -> str:
        """A new token for this identity; the only time its secret exists in clear. Ids
        follow the events' rules (`Slug`), so a token can name only what an event can;
        clearances are KNOWN_CLEARANCES only and scopes KNOWN_SCOPES only (InvalidIdentity
        otherwise). `ttl_s`: seconds until it expires (None: never). `scopes` default to
        DEFAULT_SCOPES, plus `admin` for a token with the admin clearance."""
        for what, value in (
            ("tenant", tenant),
            ("agent", agent_id),
            *(("team", t) for t in teams or []),
        ):
            try:
                _slug.validate_python(value)
            except ValidationError:
                raise InvalidIdentity(
                    f"{what} {value!r} is not a valid id: 1-128 letters, digits or _.:@-, "
                    "starting with a letter or digit"
                ) from None
        unknown = sorted(set(clearance or []) - set(KNOWN_CLEARANCES))
        if unknown:
            raise InvalidIdentity(
                f"unknown clearance {', '.join(unknown)}: choose from {', '.join(KNOWN_CLEARANCES)}"
            )
        if scopes is None:
            scopes = [*DEFAULT_SCOPES, *(["admin"] if "admin" in (clearance or []) else [])]
        unknown = sorted(set(scopes) - set(KNOWN_SCOPES))
        if unknown or not scopes:
            raise InvalidIdentity(
                f"unknown scope {', '.join(unknown) or '(none given)'}: choose from "
                f"{', '.join(KNOWN_SCOPES)}"
            )
        if ttl_s is not None and not 0 < ttl_s <= 10 * 365 * 86400:
            raise InvalidIdentity(f"ttl {ttl_s} s: give 1 s to 10 years")
        now = datetime.now(UTC)
        expires = (now + timedelta(seconds=ttl_s)).isoformat() if ttl_s is not None else None
        token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        with self._write() as db:
            db.execute(
                "insert into tokens (id, secret_sha256, tenant, agent_id, teams, clearance, "
                "created_at, revoked, expires_at, scopes) values (?, ?, ?, ?, ?, ?, ?, 0, ?, ?)",
                (
                    token_id,
                    hashlib.sha256(secret.encode()).hexdigest(),
                    tenant,
                    agent_id,
                    json.dumps(sorted(set(teams or []))),
                    json.dumps(sorted(set(clearance or []))),
                    now.isoformat(),
                    expires,
                    json.dumps(sorted(set(scopes))),
                ),
            )
        return f"ms_{token_id}_{secret}"

    def verify(self, token: str | None) -> Caller:
        """The caller a token stands for, or InvalidToken."""
        if not token or not token.startswith("ms_") or token.count("_") < 2:
            raise InvalidToken("a bearer token is required")
        _, token_id, secret = token.split("_", 2)
        with self._lock:
            row = self._db.execute(
                "select secret_sha256, tenant, agent_id, teams, clearance, revoked, expires_at, "
                "scopes from tokens where id = ?",
                (token_id,),
            ).fetchone()
        expected = row[0] if row else "0" * 64
        ok = hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), expected)
        if row is None or not ok or row[5]:
            raise InvalidToken("invalid token")
        if row[6] is not None and datetime.fromisoformat(row[6]) <= datetime.now(UTC):
            raise InvalidToken("token expired")
        scopes = json.loads(row[7]) if row[7] else [*DEFAULT_SCOPES, "admin"]
        return Caller(
            row[1],
            row[2],
            frozenset(json.loads(row[3])),
            frozenset(json.loads(row[4])),
            frozenset(scopes),
        )

    def listing(self, tenant: str | None = None) -> list[dict[str, object]]:
        """Every token (of `tenant`, when given) without its secret: id, identity, when made,
        whether revoked."""
        query = (
            "select id, tenant, agent_id, teams, clearance, created_at, revoked, expires_at, "
            "scopes from tokens"
        )
        args: tuple[str, ...] = ()
        if tenant is not None:
            query, args = query + " where tenant = ?", (tenant,)
        with self._lock:
            rows = self._db.execute(query + " order by created_at", args).fetchall()
        return [
            {
                "token_id": r[0],
                "tenant": r[1],
                "agent_id": r[2],
                "teams": json.loads(r[3]),
                "clearance": json.loads(r[4]),
                "created_at": r[5],
                "revoked": bool(r[6]),
                "expires_at": r[7],
                "scopes": json.loads(r[8]) if r[8] else [*DEFAULT_SCOPES, "admin"],
            }
            for r in rows
        ]

    def revoke_id(self, token_id: str, tenant: str | None = None) -> bool:
        """Revoke by id (what `listing` shows), only within `tenant` when given; False when no
        such token."""
        query, args = "update tokens set revoked = 1 where id = ?", (token_id,)
        if tenant is not None:
            query, args = query + " and tenant = ?", (token_id, tenant)
        with self._write() as db:
            return db.execute(query, args).rowcount > 0

    def revoke(self, token: str) -> bool:
        return self.revoke_id(token_id(token))
