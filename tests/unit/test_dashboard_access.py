"""The dashboard's access rules, without a broker: an admin token is required for every page,
and a search "as" an agent can take no clearance the admin's own token lacks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from fastapi.testclient import TestClient

from memstream.services.api import create_api
from memstream.services.auth import TokenStore
from memstream.services.dashboard import COOKIE


def _client(tmp_path: Path) -> tuple[TestClient, TokenStore, list[object]]:
    searched: list[object] = []

    async def search(caller: object, query: str, k: int) -> list[object]:
        searched.append(caller)
        return []

    async def stats(caller: object) -> dict[str, object]:
        return {"memories_indexed": 0}

    backend = SimpleNamespace(search=search, stats=stats, bootstrap="127.0.0.1:1")
    tokens = TokenStore(tmp_path / "tokens.db")
    return TestClient(create_api(backend, tokens)), tokens, searched  # type: ignore[arg-type]


def test_every_page_wants_an_admin_token(tmp_path: Path) -> None:
    client, tokens, searched = _client(tmp_path)
    page = client.get("/")
    assert page.status_code == 200 and "log in" in page.text and "Consumer lag" not in page.text
    for path in (
        "/dashboard/search?agent=a&q=x",
        "/dashboard/dead-letters",
        "/dashboard/dead-letters/0:1",
    ):
        assert client.get(path).status_code == 401, path
    assert client.post("/dashboard/dead-letters/0:1/redrive").status_code == 401
    reader = tokens.create("t1", "reader")
    client.cookies.set(COOKIE, reader)  # a valid token without the admin scope
    assert client.get("/dashboard/search?agent=a&q=x").status_code == 401
    assert client.post("/dashboard/login", data={"token": reader}).status_code == 403
    assert client.post("/dashboard/login", data={"token": "nonsense"}).status_code == 401
    assert not searched


def test_login_sets_an_http_only_strict_cookie_and_search_keeps_the_tenant(tmp_path: Path) -> None:
    client, tokens, searched = _client(tmp_path)
    admin = tokens.create("t1", "ops", clearance=["admin"])
    response = client.post("/dashboard/login", data={"token": admin}, follow_redirects=False)
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert "Consumer lag" in client.get("/").text
    page = client.get("/dashboard/search", params={"agent": "bob", "teams": "red", "q": "x"})
    assert page.status_code == 200
    (who,) = searched
    assert (who.tenant, who.agent_id, who.teams, who.clearance) == (
        "t1",
        "bob",
        frozenset({"red"}),
        frozenset(),
    )
    refused = client.get("/dashboard/search", params={"agent": "bob", "q": "x", "clearance": "pii"})
    assert refused.status_code == 403 and "does not hold clearance pii" in refused.text
    assert len(searched) == 1
