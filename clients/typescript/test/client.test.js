// The client against a running memstream stack. It needs, in the environment:
//   MEMSTREAM_URL          the API, e.g. http://127.0.0.1:8000
//   MEMSTREAM_TOKEN_A      a token of agent A
//   MEMSTREAM_TOKEN_B      a token of another agent B of the same tenant
//   MEMSTREAM_TOKEN_OTHER  a token of an agent of another tenant
// Best run on a fresh tenant (tests/integration/test_typescript_client.py makes one).
// Without MEMSTREAM_URL this file fails: it never skips silently.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import test from "node:test";

import {
  Forbidden,
  InvalidRequest,
  MemstreamClient,
  MemstreamError,
  NotFound,
  Unauthorized,
} from "../index.js";

const env = process.env;
const missing = [
  "MEMSTREAM_URL",
  "MEMSTREAM_TOKEN_A",
  "MEMSTREAM_TOKEN_B",
  "MEMSTREAM_TOKEN_OTHER",
].filter((name) => !env[name]);
if (missing.length) {
  throw new Error(
    `${missing.join(", ")} not set: these tests need a running memstream stack ` +
      "(MEMSTREAM_URL) and three tokens: A and B of one tenant, OTHER of another. " +
      "Run them with `.venv/bin/pytest tests/integration/test_typescript_client.py`, " +
      "or see clients/typescript/README.md.",
  );
}

const ada = new MemstreamClient(env.MEMSTREAM_URL, env.MEMSTREAM_TOKEN_A);
const bob = new MemstreamClient(env.MEMSTREAM_URL, env.MEMSTREAM_TOKEN_B);
const other = new MemstreamClient(env.MEMSTREAM_URL, env.MEMSTREAM_TOKEN_OTHER);
const run = randomUUID().slice(0, 8); // keeps topics and tags apart across reruns
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const SLOW = { timeout: 120_000 };

/** Poll `check` until it returns something truthy; fail after `timeoutMs`. */
async function until(check, { timeoutMs = 30_000, everyMs = 200, what = "condition" } = {}) {
  const deadline = Date.now() + timeoutMs;
  while (true) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) assert.fail(`${what} never held within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, everyMs));
  }
}

test("add, waitFor and get", SLOW, async () => {
  const id = await ada.add("The staging database moved to the eu-west-2 region last night.", {
    tags: ["infra"],
    topic: `ops-${run}`,
    metadata: { ticket: "OPS-12" },
  });
  assert.match(id, UUID_RE);
  const record = await ada.waitFor(id);
  assert.equal(record.memory_id, id);
  assert.ok(record.text.startsWith("The staging database"));
  assert.deepEqual(record.tags, ["infra"]);
  assert.equal(record.topic, `ops-${run}`);
  assert.deepEqual(record.metadata, { ticket: "OPS-12" });
  assert.equal(record.agent_id, "ada");
  assert.equal(record.scope, "tenant");
  assert.deepEqual(record.supersedes, []);
  assert.ok(!Number.isNaN(Date.parse(record.ts)));
  const seen = await bob.get(id); // same tenant, another agent
  assert.equal(seen.text, record.text);
});

test("search", SLOW, async () => {
  const id = await ada.add("The payroll service runs on the blue Kubernetes cluster.", {
    tags: [`search-${run}`],
    topic: `search-${run}`,
  });
  await ada.waitFor(id);
  const hits = await until(
    async () => {
      const found = await bob.search("which cluster runs the payroll service?", { k: 3 });
      return found.some((h) => h.memory_id === id) && found;
    },
    { what: "the memory is searchable" },
  );
  const hit = hits.find((h) => h.memory_id === id);
  assert.equal(hits[0].memory_id, id);
  assert.equal(hit.agent_id, "ada");
  assert.equal(hit.scope, "tenant");
  assert.deepEqual(hit.tags, [`search-${run}`]);
  assert.equal(typeof hit.score, "number");
  const narrowed = await bob.search("payroll service cluster", {
    topics: [`search-${run}`],
    tags: [`search-${run}`],
  });
  assert.deepEqual(
    narrowed.map((h) => h.memory_id),
    [id],
  );
  assert.deepEqual(
    await bob.search("payroll service cluster", { topics: [`elsewhere-${run}`] }),
    [],
  );
});

test("list with paging, iterate, topics and export", SLOW, async () => {
  const topic = `notes-${run}`;
  const texts = [0, 1, 2].map((i) => `Release note ${i}: the build cache is shared now.`);
  for (const text of texts) await ada.waitFor(await ada.add(text, { topic }));

  const page = await bob.list({ topic, limit: 2 });
  assert.equal(page.memories.length, 2);
  assert.ok(page.next_cursor, "a first page of two out of three has a next cursor");
  const rest = await bob.list({ topic, limit: 2, cursor: page.next_cursor });
  assert.equal(rest.memories.length, 1);
  assert.equal(rest.next_cursor, null);
  assert.deepEqual(
    [...page.memories, ...rest.memories].map((m) => m.text),
    texts,
  );

  const all = [];
  for await (const memory of bob.iterate({ topic, limit: 1 })) all.push(memory.text);
  assert.deepEqual(all, texts);
  assert.equal((await bob.list({ topic, agent: "ada" })).memories.length, 3);
  assert.equal((await bob.list({ topic, agent: "bob" })).memories.length, 0);
  assert.equal(
    (await bob.list({ topic, since: new Date(Date.now() + 3_600_000) })).memories.length,
    0,
  );

  assert.equal((await bob.topics())[topic], 3);
  const rows = [];
  for await (const row of bob.export({ topic })) rows.push(row);
  assert.equal(rows.length, 3);
  assert.deepEqual(rows.map((r) => r.text).sort(), [...texts].sort());
});

test("history of a superseded memory", SLOW, async () => {
  const topic = `hist-${run}`;
  // texts unlike the other tests' (a near-duplicate of an older memory is merged into it)
  const first = await ada.add("The artifact registry is hosted in Frankfurt.", { topic });
  await ada.waitFor(first);
  const second = await ada.add("The artifact registry moved from Frankfurt to Dublin.", {
    topic,
    supersedes: [first],
  });
  const record = await ada.waitFor(second);
  assert.deepEqual(record.supersedes, [first]);
  const versions = await until(
    async () => {
      const v = await ada.history(first);
      return v.length === 2 && v[0].valid_to && v;
    },
    { what: "the first version is closed" },
  );
  assert.deepEqual(
    versions.map((v) => v.memory_id),
    [first, second],
  );
  assert.notEqual(versions[0].valid_to, null);
  assert.equal(versions[1].valid_to, null);
  assert.deepEqual(
    (await bob.history(second)).map((v) => v.memory_id),
    [first, second],
  );
});

test("feedback", SLOW, async () => {
  const id = await ada.add("Deploys freeze on Fridays after 3pm.", { tags: ["process"] });
  await ada.waitFor(id);
  assert.match(await bob.feedback(id, "helped", { score: 0.9, note: "saved a rollback" }), UUID_RE);
  assert.match(await ada.feedback(id, "used"), UUID_RE);
  await assert.rejects(other.feedback(id, "helped"), NotFound);
  await assert.rejects(bob.feedback(id, /** @type {any} */ ("loved")), InvalidRequest);
  await assert.rejects(bob.feedback(id, "helped", { score: 2 }), InvalidRequest);
});

test("result cache and reputation", SLOW, async () => {
  const task = `Rotate the ${run} API keys on web-3 in eu-west-2`;
  const stored = await ada.cacheResult(task, "rotated", { verification: "verified" });
  assert.equal(stored.agent_id, "ada");
  const hit = await bob.lookup(task);
  assert.equal(hit.outcome, "hit");
  assert.equal(hit.result?.result, "rotated");
  const near = await bob.lookup(task.replace("web-3", "web-4"));
  assert.equal(near.outcome, "rejected");
  assert.equal(near.result, null);
  assert.equal((await other.lookup(task)).outcome, "miss");
  await assert.rejects(ada.cacheResult("", "x"), InvalidRequest);
  const rep = await bob.reputation("ada");
  assert.equal(rep.agent_id, "ada");
  assert.ok(rep.reputation >= 0 && rep.reputation <= 1);
});

test("knowledge mode, as-of search and the pooled state's access rule", SLOW, async () => {
  const before = new Date();
  const id = await ada.add(`The ${run} cache cluster was resized to six nodes.`);
  await ada.waitFor(id);
  const facts = await ada.search(`${run} cache cluster size`, { k: 2, mode: "knowledge" });
  assert.equal(facts[0].kind, "fact");
  assert.ok(facts[0].provenance.includes(id));
  const then = await ada.search(`${run} cache cluster size`, { k: 5, asOf: before });
  assert.ok(then.every((hit) => hit.memory_id !== id));
  await assert.rejects(ada.pooledState("infra"), Forbidden);
  await assert.rejects(ada.model("policy-nobody"), NotFound);
});

test("subscribe, then deliveries and stream get what the other agent published", SLOW, async () => {
  const tag = `pay-${run}`;
  const sub = await bob.subscribe("incidents with the payment gateway", {
    minScore: 0.3,
    filters: { tags: [tag] },
  });
  assert.match(sub, /^sub-/);
  const listed = await until(
    async () => {
      const subs = await bob.subscriptions();
      return subs.some((s) => s.subscription_id === sub) && subs;
    },
    { what: "the subscription is active" },
  );
  const info = listed.find((s) => s.subscription_id === sub);
  assert.equal(info.query, "incidents with the payment gateway");
  assert.equal(info.min_score, 0.3);
  assert.equal(info.include_own, false);

  const { deliveries: none, cursor: start } = await bob.deliveries(null, { waitMs: 0 });
  assert.deepEqual(none, []);
  assert.match(start, /^\d+:-?\d+$/);

  // long polling
  const published = await ada.add("The payment gateway returned 502 errors for ten minutes.", {
    tags: [tag],
  });
  const polled = await until(
    async () => {
      const page = await bob.deliveries(start, { waitMs: 2000 });
      return page.deliveries.length > 0 && page;
    },
    { timeoutMs: 60_000, what: "a delivery arrives" },
  );
  const delivery = polled.deliveries.find((d) => d.memory_id === published);
  assert.ok(delivery, `no delivery of ${published} in ${JSON.stringify(polled.deliveries)}`);
  assert.equal(delivery.subscription_id, sub);
  assert.equal(delivery.source_agent, "ada");
  assert.equal(delivery.memory_scope, "tenant");
  assert.equal(delivery.text, "The payment gateway returned 502 errors for ten minutes.");
  assert.deepEqual(delivery.tags, [tag]);
  assert.ok(delivery.score >= 0.3, `score ${delivery.score}`);
  assert.match(delivery.cursor, /^\d+:\d+$/);
  const after = await bob.deliveries(polled.cursor, { waitMs: 200 });
  assert.ok(
    !after.deliveries.some((d) => d.memory_id === published),
    "nothing twice from its cursor",
  );

  // server-sent events: from the cursor before it (a replay), then live
  const controller = new AbortController();
  const timer = setTimeout(
    () => controller.abort(new Error("stream: no delivery in 60 s")),
    60_000,
  );
  const connected = [];
  const stream = bob.stream(start, {
    signal: controller.signal,
    onConnect: (cursor) => connected.push(cursor),
  });
  try {
    const replayed = await stream.next();
    assert.equal(replayed.done, false);
    assert.equal(replayed.value.memory_id, published);
    assert.equal(replayed.value.cursor, delivery.cursor);
    assert.deepEqual(connected, [start]);

    const live = await ada.add("The payment gateway timed out on card payments again.", {
      tags: [tag],
    });
    let next;
    do {
      next = await stream.next();
      assert.equal(next.done, false);
    } while (next.value.memory_id !== live);
    assert.equal(next.value.source_agent, "ada");
    assert.equal(next.value.subscription_id, sub);
  } finally {
    clearTimeout(timer);
    await stream.return(undefined); // closes the connection
  }

  await bob.unsubscribe(sub);
  await until(async () => !(await bob.subscriptions()).some((s) => s.subscription_id === sub), {
    what: "the subscription is gone",
  });
  await assert.rejects(ada.unsubscribe(sub), NotFound);
});

test("delete, then NotFound", SLOW, async () => {
  const id = await ada.add("The old VPN endpoint is vpn1.internal.example.", {
    topic: `del-${run}`,
  });
  await ada.waitFor(id);
  await assert.rejects(bob.delete(id), Forbidden); // only the author (or an admin)
  assert.match(await ada.delete(id), UUID_RE);
  await ada.waitGone(id);
  await assert.rejects(ada.get(id), NotFound);
  await assert.rejects(bob.get(id), NotFound);
  await assert.rejects(ada.delete(id), NotFound);
  assert.deepEqual((await bob.list({ topic: `del-${run}` })).memories, []);
});

test("another tenant sees nothing", SLOW, async () => {
  const topic = `secret-${run}`;
  const id = await ada.add("The launch code name is Bluebird.", { topic, tags: ["launch"] });
  await ada.waitFor(id);
  await assert.rejects(other.get(id), NotFound);
  await assert.rejects(other.history(id), NotFound);
  await assert.rejects(other.delete(id), NotFound);
  await assert.rejects(other.feedback(id, "used"), NotFound);
  assert.deepEqual(await other.search("launch code name", { k: 10 }), []);
  assert.deepEqual((await other.list()).memories, []);
  assert.deepEqual((await other.list({ topic })).memories, []);
  assert.equal((await other.topics())[topic], undefined);
  const rows = [];
  for await (const row of other.export()) rows.push(row);
  assert.deepEqual(rows, []);
  assert.equal((await ada.get(id)).memory_id, id); // still there for its own tenant
});

test("errors map to classes", SLOW, async () => {
  const stranger = new MemstreamClient(env.MEMSTREAM_URL, "ms_nope_nope");
  const unauthorized = await stranger.search("x").catch((err) => err);
  assert.ok(unauthorized instanceof Unauthorized, String(unauthorized));
  assert.ok(unauthorized instanceof MemstreamError);
  assert.ok(unauthorized instanceof Error);
  assert.equal(unauthorized.status, 401);
  assert.equal(unauthorized.name, "Unauthorized");
  assert.ok(unauthorized.message.length > 0);

  const empty = await ada.add("").catch((err) => err);
  assert.ok(empty instanceof InvalidRequest, String(empty));
  assert.equal(empty.status, 422);
  assert.ok(empty.fields.length > 0);
  assert.ok(
    empty.fields.some((f) => f.field.endsWith("text")),
    JSON.stringify(empty.fields),
  );

  const badCursor = await ada.list({ cursor: "not-a-cursor" }).catch((err) => err);
  assert.ok(badCursor instanceof InvalidRequest);
  assert.equal(badCursor.status, 400);
  await assert.rejects(ada.deliveries("nonsense", { waitMs: 0 }), InvalidRequest);
  await assert.rejects(ada.subscribe("anything", { minScore: 5 }), InvalidRequest);
  await assert.rejects(ada.get(randomUUID()), NotFound);
  await assert.rejects(ada.add("scoped to a team I am not in", { scope: "team:nope" }), Forbidden);
  await assert.rejects(stranger.stream().next(), Unauthorized);
});
