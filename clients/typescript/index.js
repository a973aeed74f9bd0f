// @ts-check
/**
 * @memstream/client: a zero-dependency client for the memstream HTTP API.
 *
 * Plain ESM with JSDoc; the types are in `index.d.ts`. It needs only the global `fetch`
 * (Node 18+, Deno, Bun, browsers). It mirrors the Python SDK (`memstream.sdk.http`): every
 * method maps to one endpoint and a 4xx answer rejects with a `MemstreamError` subclass.
 *
 *     const ms = new MemstreamClient("http://127.0.0.1:8000", token);
 *     const id = await ms.add("the staging DB moved to eu-west-2", { tags: ["infra"] });
 *     await ms.waitFor(id);
 *     for (const hit of await ms.search("where is the staging database?", { k: 3 })) {
 *       console.log(hit.score, hit.text);
 *     }
 *
 * The token, not the client, decides tenant, agent, teams and clearance.
 */

// --- errors ------------------------------------------------------------------------------------

/** An answer the API refused: `status` is its HTTP status, `fields` the invalid ones. */
export class MemstreamError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   * @param {Array<{field: string, message: string}>} [fields]
   */
  constructor(status, message, fields) {
    super(message || `HTTP ${status}`);
    this.name = new.target.name;
    /** @type {number} */
    this.status = status;
    /** @type {Array<{field: string, message: string}>} */
    this.fields = fields ?? [];
  }
}

/** 400 or 422: the request names a bad value (see `fields`). */
export class InvalidRequest extends MemstreamError {}

/** 401: no token, or one that is unknown or revoked. */
export class Unauthorized extends MemstreamError {}

/** 403: the token's identity may not do this. */
export class Forbidden extends MemstreamError {}

/** 404: no such thing visible to this token (not found and not yours look the same). */
export class NotFound extends MemstreamError {}

/** 413: the body or event is over the size limit. */
export class PayloadTooLarge extends MemstreamError {}

/** 429: over the token's rate limit or privacy budget; retry after `retryAfter` seconds. */
export class RateLimited extends MemstreamError {
  /**
   * @param {number} status
   * @param {string} message
   * @param {Array<{field: string, message: string}>} [fields]
   * @param {number | null} [retryAfter]
   */
  constructor(status, message, fields, retryAfter = null) {
    super(status, message, fields);
    /** @type {number | null} */
    this.retryAfter = retryAfter;
  }
}

/** `waitFor` / `waitGone` ran out of time. */
export class WaitTimeout extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = "WaitTimeout";
  }
}

/** @type {Record<number, typeof MemstreamError>} */
const ERRORS = {
  400: InvalidRequest,
  401: Unauthorized,
  403: Forbidden,
  404: NotFound,
  413: PayloadTooLarge,
  422: InvalidRequest,
  429: RateLimited,
};

/**
 * The error an answer of status >= 400 stands for (its body already read as text).
 * @param {number} status
 * @param {string} text
 * @param {Headers} headers
 * @returns {MemstreamError}
 */
export function errorFor(status, text, headers) {
  /** @type {any} */
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: text.slice(0, 500) };
  }
  const isObject = body !== null && typeof body === "object" && !Array.isArray(body);
  const raw = isObject ? body.error : body;
  const message = typeof raw === "string" ? raw : raw === undefined ? "" : JSON.stringify(raw);
  const fields = isObject && Array.isArray(body.fields) ? body.fields : [];
  if (status === 429) {
    const header = headers.get("retry-after");
    const seconds = header === null ? NaN : Number(header);
    return new RateLimited(status, message, fields, Number.isFinite(seconds) ? seconds : null);
  }
  const Kind = ERRORS[status] ?? MemstreamError;
  return new Kind(status, message, fields);
}

/** @param {Response} response */
async function raiseFor(response) {
  if (response.status < 400) return;
  const text = await response.text().catch(() => "");
  throw errorFor(response.status, text, response.headers);
}

// --- helpers -----------------------------------------------------------------------------------

/**
 * Query parameters without null/undefined; arrays repeat their key; Dates as ISO 8601.
 * @param {Record<string, unknown>} params
 */
function queryString(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const item of Array.isArray(value) ? value : [value]) {
      if (item === undefined || item === null) continue;
      search.append(key, item instanceof Date ? item.toISOString() : String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** @param {number} ms @param {AbortSignal} [signal] */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const timer = setTimeout(done, ms);
    function done() {
      signal?.removeEventListener("abort", aborted);
      resolve(undefined);
    }
    function aborted() {
      clearTimeout(timer);
      reject(signal?.reason);
    }
    signal?.addEventListener("abort", aborted, { once: true });
  });
}

/** @param {Array<AbortSignal | undefined>} signals */
function anySignal(signals) {
  const present = /** @type {AbortSignal[]} */ (signals.filter(Boolean));
  if (present.length <= 1) return present[0];
  if (typeof AbortSignal.any === "function") return AbortSignal.any(present);
  const controller = new AbortController();
  for (const s of present) {
    if (s.aborted) {
      controller.abort(s.reason);
      break;
    }
    s.addEventListener("abort", () => controller.abort(s.reason), { once: true });
  }
  return controller.signal;
}

/** @param {unknown} err */
function isAbort(err) {
  return err instanceof Error && (err.name === "AbortError" || err.name === "TimeoutError");
}

/**
 * Lines of a byte stream, split on \n, \r\n or \r (SSE and JSON lines both allow them).
 * @param {ReadableStream<Uint8Array>} body
 * @returns {AsyncGenerator<string, void, undefined>}
 */
export async function* readLines(body) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  try {
    while (true) {
      const { value, done } = await reader.read();
      buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
      let start = 0;
      for (let i = 0; i < buffer.length; i++) {
        const ch = buffer[i];
        if (ch !== "\n" && ch !== "\r") continue;
        if (ch === "\r" && i + 1 === buffer.length && !done) break; // maybe \r\n split
        yield buffer.slice(start, i);
        if (ch === "\r" && buffer[i + 1] === "\n") i++;
        start = i + 1;
      }
      buffer = buffer.slice(start);
      if (done) {
        if (buffer) yield buffer;
        return;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * Server-sent events, a line at a time: `feed` returns {id, data, event} when one ends
 * (at a blank line); comments (`: heartbeat`) are skipped.
 */
export class SseParser {
  constructor() {
    /** @type {string | null} */
    this.id = null;
    /** @type {string[]} */
    this.data = [];
    /** @type {string | null} */
    this.event = null;
  }

  /**
   * @param {string} line
   * @returns {{id: string | null, event: string | null, data: string} | null}
   */
  feed(line) {
    if (line === "") {
      const done = this.data.length
        ? { id: this.id, event: this.event, data: this.data.join("\n") }
        : null;
      this.id = null;
      this.event = null;
      this.data = [];
      return done;
    }
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "id") this.id = value.trim();
    else if (field === "data") this.data.push(value);
    else if (field === "event") this.event = value;
    return null;
  }
}

/**
 * A delivery as the API returns it (`/v1/deliveries` item or SSE data), flattened.
 * @param {string} cursor
 * @param {any} data
 * @returns {import("./index.js").DeliveredMemory}
 */
export function deliveredMemory(cursor, data) {
  const p = data && typeof data === "object" && data.payload ? data.payload : (data ?? {});
  return {
    cursor,
    event_id: data?.event_id ?? null,
    ts: data?.ts ?? null,
    subscription_id: p.subscription_id,
    memory_id: p.memory_id,
    text: p.text,
    score: p.score,
    source_agent: p.source_agent,
    memory_scope: p.memory_scope,
    tags: p.tags ?? [],
    topic: p.topic ?? null,
    redacted: p.redacted ?? false,
    expires_at: p.expires_at ?? null,
  };
}

/**
 * @param {string | null} eventId
 * @param {string} data
 */
function sseDelivery(eventId, data) {
  /** @type {any} */
  let body;
  try {
    body = JSON.parse(data);
  } catch {
    return null;
  }
  if (!body || typeof body !== "object") return null;
  const cursor = eventId || body.cursor || "";
  return deliveredMemory(cursor, body.delivery ?? body);
}

// --- the client --------------------------------------------------------------------------------

/** Client for the memstream HTTP API; every method returns a promise (or an async iterator). */
export class MemstreamClient {
  /**
   * @param {string} url the API's base URL, e.g. `http://127.0.0.1:8000`
   * @param {string} token a bearer token (`memstream token create`)
   * @param {{timeoutMs?: number, userAgent?: string}} [options]
   */
  constructor(url, token, options = {}) {
    if (!url) throw new TypeError("MemstreamClient needs the API's url");
    if (!token) throw new TypeError("MemstreamClient needs a bearer token");
    /** @readonly */
    this.url = String(url).replace(/\/+$/, "");
    /** @private */
    this._token = token;
    /** @readonly */
    this.timeoutMs = options.timeoutMs ?? 30_000;
    /** @private */
    this._userAgent = options.userAgent ?? "memstream-typescript";
  }

  /**
   * @private
   * @param {Record<string, string>} [extra]
   */
  _headers(extra = {}) {
    return {
      Authorization: `Bearer ${this._token}`,
      Accept: "application/json",
      "User-Agent": this._userAgent, // a browser drops it silently
      ...extra,
    };
  }

  /**
   * One request; the parsed JSON answer (undefined for an empty one).
   * @private
   * @param {string} method
   * @param {string} path
   * @param {{params?: Record<string, unknown>, body?: unknown, signal?: AbortSignal}} [opts]
   * @returns {Promise<any>}
   */
  async _do(method, path, { params = {}, body, signal } = {}) {
    const response = await this._send(method, path, { params, body, signal });
    const text = await response.text();
    return text ? JSON.parse(text) : undefined;
  }

  /**
   * The response of one request, its status checked (body unread when it is fine).
   * @private
   * @param {string} method
   * @param {string} path
   * @param {{params?: Record<string, unknown>, body?: unknown, signal?: AbortSignal,
   *   headers?: Record<string, string>, timeoutMs?: number | null}} [opts]
   */
  async _send(method, path, { params = {}, body, signal, headers = {}, timeoutMs } = {}) {
    const limit = timeoutMs === undefined ? this.timeoutMs : timeoutMs;
    /** @type {RequestInit} */
    const init = {
      method,
      headers: this._headers(
        body === undefined ? headers : { "Content-Type": "application/json", ...headers },
      ),
      signal: anySignal([signal, limit ? AbortSignal.timeout(limit) : undefined]),
    };
    if (body !== undefined) init.body = JSON.stringify(body);
    const response = await fetch(`${this.url}${path}${queryString(params)}`, init);
    await raiseFor(response);
    return response;
  }

  /**
   * Share a memory; resolves to its id (it is readable once indexed: `waitFor`).
   * @param {string} text
   * @param {import("./index.js").AddOptions} [options]
   * @returns {Promise<string>}
   */
  async add(text, options = {}) {
    const { scope = "tenant", tags, topic, metadata, context, supersedes, ttl, signal } = options;
    /** @type {Record<string, unknown>} */
    const body = { text, scope, tags: tags ?? [] };
    if (topic !== undefined && topic !== null) body.topic = topic;
    if (metadata && Object.keys(metadata).length) body.metadata = metadata;
    if (context !== undefined && context !== null) body.context = context;
    if (supersedes && supersedes.length) body.supersedes = supersedes.map(String);
    if (ttl !== undefined && ttl !== null) body.ttl = ttl;
    return (await this._do("POST", "/v1/memories", { body, signal })).event_id;
  }

  /**
   * Hybrid search over the memories this token may see.
   * @param {string} query
   * @param {import("./index.js").SearchOptions} [options]
   * @returns {Promise<import("./index.js").SearchHit[]>}
   */
  async search(query, options = {}) {
    const { k = 10, topics, tags, asOf, mode, signal } = options;
    const params = { q: query, k, topic: topics, tag: tags, as_of: asOf, mode };
    return (await this._do("GET", "/v1/search", { params, signal })).results;
  }

  /**
   * One memory (NotFound if absent or not visible to this token).
   * @param {string} memoryId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").MemoryRecord>}
   */
  async get(memoryId, options = {}) {
    return this._do("GET", `/v1/memories/${encodeURIComponent(memoryId)}`, options);
  }

  /**
   * One page of the memories this token may see, oldest first.
   * @param {import("./index.js").ListOptions} [options]
   * @returns {Promise<import("./index.js").MemoryPage>}
   */
  async list(options = {}) {
    const { topic, agent, tags, since, limit = 100, cursor, signal } = options;
    const params = { topic, agent, tag: tags, since, limit, cursor };
    return this._do("GET", "/v1/memories", { params, signal });
  }

  /**
   * Every memory `list` would page through, page by page.
   * @param {Omit<import("./index.js").ListOptions, "cursor">} [options]
   * @returns {AsyncGenerator<import("./index.js").MemoryRecord, void, undefined>}
   */
  async *iterate(options = {}) {
    /** @type {string | null | undefined} */
    let cursor;
    while (true) {
      const page = await this.list({ ...options, cursor });
      yield* page.memories;
      if (!page.next_cursor) return;
      cursor = page.next_cursor;
    }
  }

  /**
   * Delete a memory (its author or an admin); resolves to the deletion event's id. The
   * deletion is asynchronous: `waitGone` returns once it took effect.
   * @param {string} memoryId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<string>}
   */
  async delete(memoryId, options = {}) {
    const path = `/v1/memories/${encodeURIComponent(memoryId)}`;
    return (await this._do("DELETE", path, options)).event_id;
  }

  /**
   * The supersession chain through a memory, oldest first.
   * @param {string} memoryId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").MemoryRecord[]>}
   */
  async history(memoryId, options = {}) {
    const path = `/v1/memories/${encodeURIComponent(memoryId)}/history`;
    return (await this._do("GET", path, options)).versions;
  }

  /**
   * How useful a memory was; resolves to the feedback event's id.
   * @param {string} memoryId
   * @param {import("./index.js").Outcome} outcome
   * @param {{score?: number, note?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<string>}
   */
  async feedback(memoryId, outcome, options = {}) {
    const { score, note, signal } = options;
    /** @type {Record<string, unknown>} */
    const body = { memory_id: String(memoryId), outcome };
    if (score !== undefined && score !== null) body.score = score;
    if (note !== undefined && note !== null) body.note = note;
    return (await this._do("POST", "/v1/feedback", { body, signal })).event_id;
  }

  /**
   * Publish a task's result to the semantic result cache, so that an agent about to do the
   * same task finds it with `lookup`.
   * @param {string} task
   * @param {string} result
   * @param {{verification?: "verified" | "unverified" | "failed", scope?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").CachedResult>}
   */
  async cacheResult(task, result, options = {}) {
    const { verification = "unverified", scope = "tenant", signal } = options;
    const body = { task, result, verification, scope };
    return this._do("POST", "/v1/cache", { body, signal });
  }

  /**
   * A stored result for this task (same meaning, same values: host, region, number, date,
   * identifier), or `{outcome: "miss"}` / `{outcome: "rejected", reason}`.
   * @param {string} task
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").CacheLookup>}
   */
  async lookup(task, options = {}) {
    return this._do("POST", "/v1/cache/lookup", { body: { task }, signal: options.signal });
  }

  /**
   * An agent's reputation in this token's tenant, and what it rests on.
   * @param {string} agentId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").Reputation>}
   */
  async reputation(agentId, options = {}) {
    const path = `/v1/agents/${encodeURIComponent(agentId)}/reputation`;
    return this._do("GET", path, { signal: options.signal });
  }

  /**
   * A team's pooled memory state: members, their attention influence, the vector
   * (members of the team only: Forbidden otherwise; NotFound before its first team memory).
   * @param {string} team
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").PooledState>}
   */
  async pooledState(team, options = {}) {
    const path = `/v1/teams/${encodeURIComponent(team)}/pooled`;
    return this._do("GET", path, { signal: options.signal });
  }

  /**
   * A student policy distilled from the team's experience (members of its team only):
   * version, lineage and the ONNX model as base64 (`onnx_b64`).
   * @param {string} name
   * @param {{version?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").ModelVersion>}
   */
  async model(name, options = {}) {
    const path = `/v1/models/${encodeURIComponent(name)}`;
    return this._do("GET", path, { params: { version: options.version }, signal: options.signal });
  }

  /**
   * A standing query; resolves to the subscription id. Read deliveries with `stream` or
   * `deliveries`. It takes a moment to apply: `subscriptions()` lists it once it does.
   * @param {string} query
   * @param {import("./index.js").SubscribeOptions} [options]
   * @returns {Promise<string>}
   */
  async subscribe(query, options = {}) {
    const {
      minScore = 0.5,
      filters,
      includeOwn = false,
      maxPerMinute,
      expiresAt,
      signal,
    } = options;
    /** @type {Record<string, unknown>} */
    const body = { query, min_score: minScore, include_own: includeOwn };
    if (filters && Object.keys(filters).length) body.filters = filters;
    if (maxPerMinute !== undefined && maxPerMinute !== null) body.max_per_minute = maxPerMinute;
    if (expiresAt !== undefined && expiresAt !== null) {
      body.expires_at = expiresAt instanceof Date ? expiresAt.toISOString() : expiresAt;
    }
    return (await this._do("POST", "/v1/subscriptions", { body, signal })).subscription_id;
  }

  /**
   * Cancel a subscription (NotFound unless this agent made it).
   * @param {string} subscriptionId
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async unsubscribe(subscriptionId, options = {}) {
    await this._do("DELETE", `/v1/subscriptions/${encodeURIComponent(subscriptionId)}`, options);
  }

  /**
   * The active subscriptions this agent made.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").SubscriptionInfo[]>}
   */
  async subscriptions(options = {}) {
    return this._do("GET", "/v1/subscriptions", options);
  }

  /**
   * One long poll: deliveries after `cursor` (from now without one) and the cursor to poll
   * from next.
   * @param {string | null} [cursor]
   * @param {{waitMs?: number, limit?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<{deliveries: import("./index.js").DeliveredMemory[], cursor: string}>}
   */
  async deliveries(cursor = null, options = {}) {
    const { waitMs = 1000, limit = 100, signal } = options;
    const params = { cursor, wait_ms: waitMs, limit };
    const timeoutMs = this.timeoutMs ? this.timeoutMs + waitMs : null;
    const response = await this._send("GET", "/v1/deliveries", { params, signal, timeoutMs });
    const data = await response.json();
    return {
      deliveries: data.deliveries.map((/** @type {any} */ d) => deliveredMemory(d.cursor, d)),
      cursor: data.cursor,
    };
  }

  /**
   * Deliveries as they come (server-sent events), until the loop breaks or `signal`
   * aborts. A dropped or silent connection (no heartbeat within `idleTimeoutMs`) is
   * reopened with `Last-Event-ID` set to the last cursor seen, so nothing is missed (one
   * may repeat). A 4xx answer rejects; with `reconnect: false` a dropped connection does.
   * @param {string | null} [cursor]
   * @param {import("./index.js").StreamOptions} [options]
   * @returns {AsyncGenerator<import("./index.js").DeliveredMemory, void, undefined>}
   */
  async *stream(cursor = null, options = {}) {
    const {
      reconnect = true,
      signal,
      retryDelayMs = 1000,
      maxRetryDelayMs = 30_000,
      idleTimeoutMs = 45_000,
      onConnect,
    } = options;
    let last = cursor;
    let failures = 0;
    while (true) {
      signal?.throwIfAborted();
      const controller = new AbortController();
      const abort = () => controller.abort(signal?.reason);
      signal?.addEventListener("abort", abort, { once: true });
      /** @type {ReturnType<typeof setTimeout> | undefined} */
      let idle;
      const touch = () => {
        if (!idleTimeoutMs) return;
        clearTimeout(idle);
        idle = setTimeout(
          () => controller.abort(new Error(`no event or heartbeat in ${idleTimeoutMs} ms`)),
          idleTimeoutMs,
        );
      };
      try {
        touch();
        /** @type {Response} */
        let response;
        try {
          response = await fetch(`${this.url}/v1/stream`, {
            method: "GET",
            headers: this._headers({
              Accept: "text/event-stream",
              "Cache-Control": "no-cache",
              ...(last ? { "Last-Event-ID": last } : {}),
            }),
            signal: controller.signal,
          });
        } catch (err) {
          throw new Dropped(err);
        }
        if (response.status >= 400 && response.status < 500) await raiseFor(response);
        if (response.status >= 500 || !response.body) {
          await response.body?.cancel().catch(() => {});
          throw new Dropped(new Error(`stream answered ${response.status}`));
        }
        failures = 0;
        onConnect?.(last);
        const parser = new SseParser();
        try {
          for await (const line of readLines(response.body)) {
            touch();
            const event = parser.feed(line);
            if (!event) continue;
            const delivery = sseDelivery(event.id, event.data);
            if (delivery) {
              last = delivery.cursor || last;
              yield delivery;
            }
          }
        } catch (err) {
          throw new Dropped(err);
        }
        throw new Dropped(new Error("the server closed the stream"));
      } catch (err) {
        if (!(err instanceof Dropped)) throw err;
        if (signal?.aborted) throw signal.reason;
        if (!reconnect) throw err.cause;
        failures += 1;
        const delay = Math.min(maxRetryDelayMs, retryDelayMs * 2 ** Math.min(failures - 1, 10));
        await sleep(delay, signal);
      } finally {
        clearTimeout(idle);
        signal?.removeEventListener("abort", abort);
        controller.abort(); // closes the connection when the caller breaks out of the loop
      }
    }
  }

  /**
   * Topics of the memories this token may see, with their counts.
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<Record<string, number>>}
   */
  async topics(options = {}) {
    return (await this._do("GET", "/v1/topics", options)).topics;
  }

  /**
   * Every memory this token may see, as export rows (JSON lines, streamed).
   * @param {{topic?: string, since?: Date | string, signal?: AbortSignal}} [options]
   * @returns {AsyncGenerator<Record<string, any>, void, undefined>}
   */
  async *export(options = {}) {
    const { topic, since, signal } = options;
    const controller = new AbortController();
    const response = await this._send("GET", "/v1/export", {
      params: { topic, since },
      signal: anySignal([signal, controller.signal]),
      timeoutMs: null,
    });
    try {
      if (!response.body) return;
      for await (const line of readLines(response.body)) {
        if (line.trim()) yield JSON.parse(line);
      }
    } finally {
      controller.abort();
    }
  }

  /**
   * Send (line number, raw JSON line) pairs to `/v1/import`; bad ones are dead-lettered
   * server-side.
   * @param {Array<[number, string]>} lines
   * @param {{source?: string, defaultScope?: string, signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").ImportSummary>}
   */
  async importLines(lines, options = {}) {
    const { source = "import", defaultScope = "tenant", signal } = options;
    const body = {
      rows: lines.map(([line, data]) => ({ line, data })),
      source,
      default_scope: defaultScope,
    };
    return this._do("POST", "/v1/import", { body, signal });
  }

  /**
   * The memory once it is indexed (read-your-writes); rejects with `WaitTimeout` after
   * `timeoutMs`.
   * @param {string} memoryId
   * @param {{timeoutMs?: number, intervalMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<import("./index.js").MemoryRecord>}
   */
  async waitFor(memoryId, options = {}) {
    const { timeoutMs = 30_000, intervalMs = 100, signal } = options;
    const deadline = Date.now() + timeoutMs;
    while (true) {
      try {
        return await this.get(memoryId, { signal });
      } catch (err) {
        if (!(err instanceof NotFound)) throw err;
      }
      if (Date.now() > deadline) {
        throw new WaitTimeout(`memory ${memoryId} not indexed in ${timeoutMs} ms`);
      }
      await sleep(intervalMs, signal);
    }
  }

  /**
   * Resolves once the memory is no longer readable (after a delete or its expiry); rejects
   * with `WaitTimeout` after `timeoutMs`.
   * @param {string} memoryId
   * @param {{timeoutMs?: number, intervalMs?: number, signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async waitGone(memoryId, options = {}) {
    const { timeoutMs = 30_000, intervalMs = 100, signal } = options;
    const deadline = Date.now() + timeoutMs;
    while (true) {
      try {
        await this.get(memoryId, { signal });
      } catch (err) {
        if (err instanceof NotFound) return;
        throw err;
      }
      if (Date.now() > deadline) {
        throw new WaitTimeout(`memory ${memoryId} still readable after ${timeoutMs} ms`);
      }
      await sleep(intervalMs, signal);
    }
  }
}

/** A connection that failed or ended: `stream` reconnects (internal). */
class Dropped extends Error {
  /** @param {unknown} cause */
  constructor(cause) {
    super("stream connection dropped", { cause });
  }
}

/** The Python SDK's name for the same client. */
export { MemstreamClient as HttpClient };

export default MemstreamClient;
