// The client's wire handling against a scripted local server (no memstream stack needed):
// SSE parsing and reconnection with Last-Event-ID, error classes, query strings.

import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer } from "node:http";
import test from "node:test";

import {
  Forbidden,
  InvalidRequest,
  MemstreamClient,
  MemstreamError,
  NotFound,
  PayloadTooLarge,
  RateLimited,
  SseParser,
  Unauthorized,
  readLines,
} from "../index.js";

/** A local server answering with `handler`; resolves to {url, close, requests}. */
async function serve(handler) {
  const requests = [];
  const server = createServer((req, res) => {
    requests.push({ method: req.method, url: req.url, headers: req.headers });
    handler(req, res, requests.length);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(resolve));
    },
  };
}

function delivery(memoryId, extra = {}) {
  return {
    event_id: `ev-${memoryId}`,
    kind: "delivery",
    tenant: "t",
    agent_id: "bob",
    ts: "2026-01-01T00:00:00Z",
    payload: {
      subscription_id: "sub-1",
      recipient: "bob",
      memory_id: memoryId,
      text: `text of ${memoryId}`,
      score: 0.8,
      source_agent: "ada",
      memory_scope: "tenant",
      tags: ["x"],
      topic: null,
      redacted: false,
      ...extra,
    },
  };
}

function sseEvent(cursor, data) {
  return `id: ${cursor}\nevent: delivery\ndata: ${JSON.stringify(data)}\n\n`;
}

test(
  "stream parses events, skips heartbeats and resumes with Last-Event-ID after a drop",
  { timeout: 20_000 },
  async () => {
    const srv = await serve((req, res, n) => {
      res.writeHead(200, { "Content-Type": "text/event-stream" });
      if (n === 1) {
        res.write(": connected\n\n");
        res.write(": heartbeat\n\n");
        res.write(sseEvent("0:4", delivery("m1")));
        setTimeout(() => res.socket.destroy(), 50); // dropped mid-stream
      } else {
        // CRLF line ends, an event split across chunks, data over two lines
        res.write(": connected\r\n\r\n");
        const text = `id: 0:5\r\nevent: delivery\r\ndata: ${JSON.stringify(delivery("m2"))}\r\n\r\n`;
        res.write(text.slice(0, 17));
        setTimeout(() => res.write(text.slice(17)), 20);
        // no id: line, the cursor inside ({cursor, delivery}, as /v1/ws sends), on two data: lines
        const json = JSON.stringify({ delivery: delivery("m3"), cursor: "0:6" });
        const cut = json.indexOf(',"cursor"') + 1;
        setTimeout(
          () => res.write(`data: ${json.slice(0, cut)}\ndata: ${json.slice(cut)}\n\n`),
          40,
        );
      }
    });
    const ms = new MemstreamClient(srv.url, "tok");
    const got = [];
    const connects = [];
    try {
      for await (const d of ms.stream("0:3", {
        retryDelayMs: 20,
        onConnect: (c) => connects.push(c),
      })) {
        got.push(d);
        if (got.length === 3) break;
      }
    } finally {
      await srv.close();
    }
    assert.deepEqual(
      got.map((d) => [d.cursor, d.memory_id]),
      [
        ["0:4", "m1"],
        ["0:5", "m2"],
        ["0:6", "m3"],
      ],
    );
    assert.deepEqual(connects, ["0:3", "0:4"]);
    assert.equal(srv.requests[0].headers["last-event-id"], "0:3");
    assert.equal(srv.requests[1].headers["last-event-id"], "0:4");
    assert.equal(srv.requests[0].headers.authorization, "Bearer tok");
    assert.equal(srv.requests[0].headers.accept, "text/event-stream");
    assert.deepEqual(got[0], {
      cursor: "0:4",
      event_id: "ev-m1",
      ts: "2026-01-01T00:00:00Z",
      subscription_id: "sub-1",
      memory_id: "m1",
      text: "text of m1",
      score: 0.8,
      source_agent: "ada",
      memory_scope: "tenant",
      tags: ["x"],
      topic: null,
      redacted: false,
      expires_at: null,
    });
  },
);

test(
  "stream without a cursor sends no Last-Event-ID, and reconnects on a 5xx and on silence",
  { timeout: 20_000 },
  async () => {
    const srv = await serve((req, res, n) => {
      if (n === 1) {
        res.writeHead(503, { "Content-Type": "application/json" });
        res.end('{"error": "starting"}');
      } else if (n === 2) {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(": connected\n\n"); // then nothing, not even a heartbeat
      } else {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(sseEvent("1:0", delivery("m1")));
      }
    });
    const ms = new MemstreamClient(srv.url, "tok");
    try {
      const stream = ms.stream(null, { retryDelayMs: 10, idleTimeoutMs: 300 });
      const first = await stream.next();
      await stream.return(undefined);
      assert.equal(first.value.memory_id, "m1");
    } finally {
      await srv.close();
    }
    assert.equal(srv.requests.length, 3);
    for (const r of srv.requests) assert.equal(r.headers["last-event-id"], undefined);
  },
);

test(
  "stream rejects on a 4xx, and on a drop when reconnect is false",
  { timeout: 20_000 },
  async () => {
    const srv = await serve((req, res, n) => {
      if (n === 1) {
        res.writeHead(401, { "Content-Type": "application/json" });
        res.end('{"error": "unknown token"}');
      } else {
        res.writeHead(200, { "Content-Type": "text/event-stream" });
        res.write(": connected\n\n");
        setTimeout(() => res.socket.destroy(), 20);
      }
    });
    const ms = new MemstreamClient(srv.url, "tok");
    try {
      await assert.rejects(ms.stream().next(), (err) => {
        assert.ok(err instanceof Unauthorized);
        assert.equal(err.message, "unknown token");
        return true;
      });
      await assert.rejects(ms.stream(null, { reconnect: false }).next());
    } finally {
      await srv.close();
    }
    assert.equal(srv.requests.length, 2);
  },
);

test("stream stops when its signal aborts", { timeout: 20_000 }, async () => {
  const srv = await serve((req, res) => {
    res.writeHead(200, { "Content-Type": "text/event-stream" });
    res.write(": connected\n\n");
  });
  const ms = new MemstreamClient(srv.url, "tok");
  const controller = new AbortController();
  try {
    const pending = ms.stream(null, { signal: controller.signal }).next();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(pending, { name: "AbortError" });
  } finally {
    await srv.close();
  }
});

test("HTTP statuses map to error classes", { timeout: 20_000 }, async () => {
  const answers = {
    "/400": [400, { error: "bad cursor" }],
    "/401": [401, { error: "no token" }],
    "/403": [403, { error: "not yours" }],
    "/404": [404, { error: "no memory" }],
    "/413": [413, { error: "too big" }],
    "/422": [422, { error: "invalid request", fields: [{ field: "body.text", message: "short" }] }],
    "/429": [429, { error: "slow down" }, { "Retry-After": "7" }],
    "/500": [500, "<html>oops</html>"],
  };
  const srv = await serve((req, res) => {
    const [status, body, headers = {}] = answers[req.url.replace("/v1/memories", "")];
    const json = typeof body !== "string";
    res.writeHead(status, { "Content-Type": json ? "application/json" : "text/html", ...headers });
    res.end(json ? JSON.stringify(body) : body);
  });
  const ms = new MemstreamClient(srv.url, "tok");
  const expected = {
    400: InvalidRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    413: PayloadTooLarge,
    422: InvalidRequest,
    429: RateLimited,
    500: MemstreamError,
  };
  try {
    for (const [status, Kind] of Object.entries(expected)) {
      const err = await ms.get(status).catch((e) => e);
      assert.ok(err instanceof Kind, `${status}: ${err}`);
      assert.ok(err instanceof MemstreamError);
      assert.equal(err.status, Number(status));
      assert.equal(err.name, Kind.name);
    }
    const invalid = await ms.get("422").catch((e) => e);
    assert.equal(invalid.message, "invalid request");
    assert.deepEqual(invalid.fields, [{ field: "body.text", message: "short" }]);
    const limited = await ms.get("429").catch((e) => e);
    assert.equal(limited.retryAfter, 7);
    const broken = await ms.get("500").catch((e) => e);
    assert.equal(broken.message, "<html>oops</html>");
    assert.deepEqual(broken.fields, []);
  } finally {
    await srv.close();
  }
});

test("requests: query strings, bodies and headers", { timeout: 20_000 }, async () => {
  const bodies = [];
  const srv = await serve((req, res) => {
    let text = "";
    req.on("data", (c) => (text += c));
    req.on("end", () => {
      bodies.push(text ? JSON.parse(text) : null);
      res.writeHead(200, { "Content-Type": "application/json" });
      if (req.url.startsWith("/v1/search")) res.end('{"results": []}');
      else if (req.url.startsWith("/v1/memories?"))
        res.end('{"memories": [], "next_cursor": null}');
      else if (req.method === "POST") res.end('{"event_id": "e1", "subscription_id": "sub-1"}');
      else res.end("{}");
    });
  });
  const ms = new MemstreamClient(`${srv.url}/`, "tok");
  try {
    await ms.search("a b&c", { k: 3, topics: ["t1", "t2"], tags: ["x"] });
    await ms.list({ since: new Date("2026-01-02T03:04:05Z"), tags: ["a", "b"], limit: 5 });
    assert.equal(await ms.add("hello", { ttl: 60, supersedes: ["m0"], topic: "ops" }), "e1");
    await ms.feedback("m1", "helped", { score: 0.5 });
    assert.equal(await ms.subscribe("q", { includeOwn: true, filters: { tags: ["x"] } }), "sub-1");
  } finally {
    await srv.close();
  }
  const urls = srv.requests.map((r) => `${r.method} ${r.url}`);
  assert.deepEqual(urls, [
    "GET /v1/search?q=a+b%26c&k=3&topic=t1&topic=t2&tag=x",
    "GET /v1/memories?tag=a&tag=b&since=2026-01-02T03%3A04%3A05.000Z&limit=5",
    "POST /v1/memories",
    "POST /v1/feedback",
    "POST /v1/subscriptions",
  ]);
  assert.deepEqual(bodies.slice(2), [
    { text: "hello", scope: "tenant", tags: [], topic: "ops", supersedes: ["m0"], ttl: 60 },
    { memory_id: "m1", outcome: "helped", score: 0.5 },
    { query: "q", min_score: 0.5, include_own: true, filters: { tags: ["x"] } },
  ]);
  assert.equal(srv.requests[2].headers["content-type"], "application/json");
  assert.equal(srv.requests[0].headers.authorization, "Bearer tok");
});

test("SseParser and readLines follow the SSE line rules", { timeout: 20_000 }, async () => {
  const parser = new SseParser();
  const events = [];
  for (const line of [
    ": comment",
    "id: 0:1",
    "event: delivery",
    "data: a",
    "data:b",
    "",
    "",
    "data: c",
    "",
  ]) {
    const ev = parser.feed(line);
    if (ev) events.push(ev);
  }
  assert.deepEqual(events, [
    { id: "0:1", event: "delivery", data: "a\nb" },
    { id: null, event: null, data: "c" },
  ]);
  const chunks = ["one\r", "\ntwo\rthr", "ee\n\nfour"];
  const body = new ReadableStream({
    start(c) {
      for (const chunk of chunks) c.enqueue(new TextEncoder().encode(chunk));
      c.close();
    },
  });
  const lines = [];
  for await (const line of readLines(body)) lines.push(line);
  assert.deepEqual(lines, ["one", "two", "three", "", "four"]);
});
