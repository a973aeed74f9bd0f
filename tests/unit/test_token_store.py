"""The token store's expiry, scopes and migration of a store made before them (issue 16)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from memstream.services.auth import InvalidIdentity, InvalidToken, TokenStore


def test_expiry_scopes_and_listing(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "tokens.db")
    short = store.create("acme", "ada", ttl_s=0.5)
    reader = store.create("acme", "bob", scopes=["read"])
    admin = store.create("acme", "ops", clearance=["admin"])
    assert store.verify(short).scopes == {"read", "write", "subscribe"}
    assert store.verify(reader).scopes == {"read"}
    assert "admin" in store.verify(admin).scopes
    time.sleep(0.6)
    with pytest.raises(InvalidToken, match="expired"):
        store.verify(short)
    rows = {r["agent_id"]: r for r in store.listing("acme")}
    assert rows["ada"]["expires_at"] and rows["bob"]["scopes"] == ["read"]
    with pytest.raises(InvalidIdentity, match="scope"):
        store.create("acme", "x", scopes=["delete-everything"])
    with pytest.raises(InvalidIdentity, match="ttl"):
        store.create("acme", "x", ttl_s=-1)


def test_a_store_made_before_expiry_and_scopes_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    old = TokenStore(path)
    token = old.create("acme", "ada")
    old._db.close()
    db = sqlite3.connect(path)  # drop the new columns: the first release's table
    db.executescript(
        "create table t as select id, secret_sha256, tenant, agent_id, teams, clearance, "
        "created_at, revoked from tokens; drop table tokens; alter table t rename to tokens;"
    )
    db.close()
    caller = TokenStore(path).verify(token)
    assert caller.agent_id == "ada" and "read" in caller.scopes
