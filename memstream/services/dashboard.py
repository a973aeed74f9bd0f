"""The operator's dashboard at `/`: consumer lag and counters, search as a chosen identity,
the dead letters with re-drive. Server-rendered HTML, no script and no CDN (works offline).

An admin token is required (`memstream token create ... --clearance admin`); it is pasted
once into the login form and kept in an HttpOnly, SameSite=Strict cookie, so another site
cannot make the browser act with it. Everything is of the token's tenant: the dead letters
listed and re-driven are that tenant's, and a search "as" an agent is a `Caller` of that
tenant with the agent, teams and clearance chosen in the form, so the store's own access
filter decides what it sees, as it would for that agent. The clearance chosen can only be
one the admin's token holds (an admin without `pii` cannot read sealed values that way).
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from prometheus_client import REGISTRY

from memstream.services.auth import InvalidToken
from memstream.store.base import Caller

COOKIE = "memstream_admin"
_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:18px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header b{margin-right:12px}
main{padding:16px 20px;max-width:1200px}
table{border-collapse:collapse;background:#fff;margin:8px 0 18px}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}.num{text-align:right}.err{color:#b00020}.ok{color:#146c2e}
form.inline{display:inline}input,select,button{font:inherit;padding:3px 6px}
pre{background:#fff;border:1px solid #dde1e7;padding:8px;white-space:pre-wrap;max-width:1100px}
"""


def _page(title: str, body: str, *, nav: bool = True, refresh_s: int | None = None) -> str:
    links = (
        '<a href="/">overview</a><a href="/dashboard/search">search as</a>'
        '<a href="/dashboard/dead-letters">dead letters</a>'
        '<form class="inline" method="post" action="/dashboard/logout">'
        '<button type="submit">log out</button></form>'
        if nav
        else ""
    )
    meta = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">{meta}'
        f"<title>{html.escape(title)} · memstream</title><style>{_STYLE}</style></head>"
        f"<body><header><b>memstream</b>{links}</header><main><h1>{html.escape(title)}</h1>"
        f"{body}</main></body></html>"
    )


def _table(head: list[str], rows: list[list[str]], empty: str) -> str:
    """Cells are HTML already (escape what comes from data before)."""
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    top = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{top}</tr>{body}</table>"


def _samples(name: str) -> list[tuple[dict[str, str], float]]:
    """The current samples of one metric of this process."""
    return [
        (dict(s.labels), s.value)
        for family in REGISTRY.collect()
        for s in family.samples
        if s.name == name
    ]


def _bar(value: float | None) -> str:
    """A value in [0, 1] as a number and a small inline bar (no script, no image)."""
    if value is None:
        return "-"
    width = round(60 * max(0.0, min(1.0, value)))
    return (
        f'{value:.2f} <span style="display:inline-block;width:{width}px;height:8px;'
        'background:#5b8def"></span>'
    )


def _csv(value: str | None) -> frozenset[str]:
    return frozenset(v.strip() for v in (value or "").split(",") if v.strip())


def mount_dashboard(api: FastAPI, backend: Any) -> None:
    """The dashboard's routes on the API (`/` and `/dashboard/...`)."""

    def admin_of(request: Request) -> Caller | None:
        token = request.cookies.get(COOKIE)
        if not token:
            return None
        try:
            caller: Caller = request.app.state.tokens.verify(token)
        except InvalidToken:
            return None
        return caller if "admin" in caller.scopes else None

    def login_page(error: str | None = None, status: int = 200) -> HTMLResponse:
        note = f'<p class="err">{html.escape(error)}</p>' if error else ""
        body = (
            f"{note}<p>Paste an admin token of your tenant (<code>memstream token create "
            "--tenant T --agent ops --clearance admin</code>).</p>"
            '<form method="post" action="/dashboard/login">'
            '<input name="token" type="password" size="60" autocomplete="off" id="token" '
            'placeholder="admin token" required> <button type="submit">log in</button></form>'
        )
        return HTMLResponse(_page("log in", body, nav=False), status_code=status)

    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def overview(request: Request) -> Response:
        admin = admin_of(request)
        if admin is None:
            return login_page()
        lag_rows = [
            [
                html.escape(labels["group"]),
                html.escape(labels["topic"]),
                f'<span class="num">{html.escape(labels["partition"])}</span>',
                f'<span class="num">{int(value)}</span>',
            ]
            for labels, value in sorted(
                _samples("memstream_consumer_lag_records"),
                key=lambda s: (s[0]["group"], s[0]["topic"], int(s[0]["partition"])),
            )
        ]
        letters = [
            [html.escape(labels.get("reason", "")), f'<span class="num">{int(value)}</span>']
            for labels, value in _samples("memstream_dead_letters_total")
        ]
        stage_rows = []
        counts = {lb["stage"]: v for lb, v in _samples("memstream_stage_seconds_count")}
        sums = {lb["stage"]: v for lb, v in _samples("memstream_stage_seconds_sum")}
        outcomes: dict[str, dict[str, float]] = {}
        for labels, value in _samples("memstream_stage_events_total"):
            outcomes.setdefault(labels["stage"], {})[labels["outcome"]] = value
        for name in ("validate", "privacy", "model", "sink", "match"):
            batches = counts.get(name, 0.0)
            mean_ms = 1000 * sums.get(name, 0.0) / batches if batches else 0.0
            out = outcomes.get(name, {})
            dropped = ", ".join(f"{k} {int(v)}" for k, v in sorted(out.items()) if k != "ok")
            stage_rows.append(
                [
                    html.escape(name),
                    f'<span class="num">{int(batches)}</span>',
                    f'<span class="num">{mean_ms:.1f}</span>',
                    f'<span class="num">{int(out.get("ok", 0))}</span>',
                    html.escape(dropped or "-"),
                ]
            )
        privacy_rows = [
            [
                html.escape(lb["category"]),
                html.escape(lb["action"]),
                f'<span class="num">{int(v)}</span>',
            ]
            for lb, v in sorted(
                _samples("memstream_privacy_actions_total"), key=lambda s: (-s[1], s[0]["category"])
            )
        ]
        delivered = sum(v for _, v in _samples("memstream_deliveries_total"))
        stats = await backend.stats(admin)
        stat_rows = [
            [html.escape(str(k)), html.escape(str(v))]
            for k, v in stats.items()
            if not isinstance(v, dict | list)
        ]
        body = (
            f"<p>Tenant <b>{html.escape(admin.tenant)}</b>, as "
            f"<b>{html.escape(admin.agent_id)}</b>. This page reloads every 5 s.</p>"
            "<h2>Consumer lag (records not yet committed)</h2>"
            + _table(
                ["group", "topic", "partition", "lag"],
                lag_rows,
                "no lag read yet (read every MEMSTREAM_LAG_INTERVAL_S; not on Tansu)",
            )
            + "<h2>Pipeline stages (this worker, since it started)</h2>"
            + _table(
                ["stage", "batches", "mean ms per batch", "events passed on", "dropped"],
                stage_rows,
                "no batches yet",
            )
            + f"<p>Deliveries pushed by this worker: {int(delivered)}</p>"
            + "<h2>Privacy actions by category (this worker)</h2>"
            + _table(["category", "action", "events"], privacy_rows, "none yet")
            + "<h2>Dead letters by reason (this worker, since it started)</h2>"
            + _table(["reason", "count"], letters, "none")
            + "<h2>This tenant</h2>"
            + _table(["", ""], stat_rows, "no statistics")
        )
        return HTMLResponse(_page("overview", body, refresh_s=5))

    @api.post("/dashboard/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        try:
            token = str((await request.form()).get("token", "")).strip()
        except Exception:  # not a form (a bad multipart body, a wrong content type)
            return login_page("send the token from the form", 400)
        try:
            caller = request.app.state.tokens.verify(token)
        except InvalidToken:
            return login_page("that token is not valid", 401)
        if "admin" not in caller.scopes:
            return login_page("that token has no admin scope", 403)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return response

    @api.post("/dashboard/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    @api.get("/dashboard/search", response_class=HTMLResponse, include_in_schema=False)
    async def search_as(
        request: Request,
        agent: str = "",
        teams: str = "",
        clearance: str = "",
        q: str = "",
        k: int = 10,
    ) -> Response:
        admin = admin_of(request)
        if admin is None:
            return login_page("log in first", 401)
        form = (
            '<form method="get" action="/dashboard/search">'
            f'agent <input name="agent" value="{html.escape(agent)}" required> '
            f'teams <input name="teams" value="{html.escape(teams)}" placeholder="a,b"> '
            f'clearance <input name="clearance" value="{html.escape(clearance)}" '
            'placeholder="pii"> '
            f'query <input name="q" value="{html.escape(q)}" size="40" required> '
            '<button type="submit" id="search">search</button></form>'
        )
        result = ""
        if agent and q:
            wanted = _csv(clearance)
            if not wanted <= admin.clearance:
                extra = ", ".join(sorted(wanted - admin.clearance))
                body = form + f'<p class="err">your token does not hold clearance {extra}</p>'
                return HTMLResponse(_page("search as an agent", body), status_code=403)
            who = Caller(admin.tenant, agent, _csv(teams), wanted, frozenset({"read"}))
            hits = await backend.search(who, q, max(1, min(k, 50)))
            standing = {}
            if hasattr(backend, "standing"):
                for author in {h.memory.agent_id for h in hits}:
                    standing[author] = (await backend.standing(who, author)).reputation
            rows = [
                [
                    f'<span class="num">{h.score:.3f}</span>',
                    html.escape(h.memory.agent_id),
                    f'<span class="num">{_bar(standing.get(h.memory.agent_id))}</span>',
                    f'<span class="num">{_bar(h.memory.usefulness)}</span>',
                    html.escape(h.memory.scope),
                    html.escape(backend.visible_text(h.memory, who)),
                ]
                for h in hits
            ]
            subscriptions = [
                [
                    html.escape(str(sub.get("subscription_id", ""))),
                    html.escape(str(sub.get("query", ""))),
                    html.escape(str(sub.get("min_score", ""))),
                ]
                for sub in (
                    backend.subscriptions_of(who) if hasattr(backend, "subscriptions_of") else []
                )
            ]
            teams_text = ", ".join(sorted(who.teams)) or "none"
            result = (
                f"<p>What <b>{html.escape(agent)}</b> (teams {html.escape(teams_text)}; "
                f"clearance {html.escape(', '.join(sorted(wanted)) or 'none')}) sees:</p>"
                + _table(
                    ["score", "author", "author's reputation", "usefulness", "scope", "text"],
                    rows,
                    "nothing visible",
                )
                + f"<h2>Subscriptions of {html.escape(agent)}</h2>"
                + _table(["id", "query", "min score"], subscriptions, "none")
            )
        return HTMLResponse(_page("search as an agent", form + result))

    async def letters_of(admin: Caller) -> list[tuple[Any, dict[str, Any]]]:
        from memstream.log.dead_letters import parse_row, read_dead_letters

        messages = await read_dead_letters(backend.bootstrap, idle_s=1.0)
        rows = [(m, parse_row(m)) for m in messages]
        return [(m, r) for m, r in rows if r.get("tenant") == admin.tenant]

    @api.get("/dashboard/dead-letters", response_class=HTMLResponse, include_in_schema=False)
    async def dead_letters(request: Request) -> Response:
        admin = admin_of(request)
        if admin is None:
            return login_page("log in first", 401)
        rows = [
            [
                f'<a href="/dashboard/dead-letters/{quote(r["id"])}">{html.escape(r["id"])}</a>',
                html.escape(str(r.get("reason"))),
                html.escape(str(r.get("stage"))),
                html.escape(str(r.get("origin_topic"))),
                html.escape(str(r.get("detail") or "")[:160]),
            ]
            for _, r in reversed(await letters_of(admin))
        ]
        body = _table(["id", "reason", "stage", "from topic", "detail"], rows, "no dead letters")
        return HTMLResponse(_page("dead letters", body))

    @api.get(
        "/dashboard/dead-letters/{letter}", response_class=HTMLResponse, include_in_schema=False
    )
    async def dead_letter(request: Request, letter: str, redriven: int | None = None) -> Response:
        admin = admin_of(request)
        if admin is None:
            return login_page("log in first", 401)
        from memstream.log.dead_letters import original_of

        found = [(m, r) for m, r in await letters_of(admin) if r["id"] == letter]
        if not found:
            return HTMLResponse(
                _page("dead letter", f"<p>no dead letter {html.escape(letter)}</p>"), 404
            )
        message, row = found[0]
        original = original_of(message)
        shown = original[2].decode("utf-8", "replace")[:20_000] if original else "(not kept whole)"
        note = (
            f'<p class="ok">re-driven: {redriven} record sent to its topic again</p>'
            if redriven is not None
            else ""
        )
        facts = [[html.escape(k), html.escape(str(v))] for k, v in row.items()]
        action = (
            f'<form method="post" action="/dashboard/dead-letters/{quote(letter)}/redrive">'
            '<button type="submit" id="redrive">re-drive</button> '
            "(publish the original bytes to the topic it came from)</form>"
            if original
            else "<p>Its original bytes were not kept whole: it cannot be re-driven.</p>"
        )
        body = (
            note
            + _table(["", ""], facts, "")
            + action
            + f"<h2>Original</h2><pre>{html.escape(shown)}</pre>"
        )
        return HTMLResponse(_page(f"dead letter {letter}", body))

    @api.post("/dashboard/dead-letters/{letter}/redrive", include_in_schema=False)
    async def redrive(request: Request, letter: str) -> Response:
        admin = admin_of(request)
        if admin is None:
            return login_page("log in first", 401)
        from memstream.log.dead_letters import replay_dead_letters_async

        if not any(r["id"] == letter for _, r in await letters_of(admin)):
            return HTMLResponse(
                _page("dead letter", f"<p>no dead letter {html.escape(letter)}</p>"), 404
            )
        sent = await replay_dead_letters_async(backend.bootstrap, [letter], idle_s=1.0)
        target = f"/dashboard/dead-letters/{quote(letter)}?{urlencode({'redriven': sent})}"
        return RedirectResponse(target, status_code=303)
