/**
 * Types of @memstream/client (hand-written; the implementation is `index.js`).
 *
 * Records keep the API's field names (`memory_id`, `agent_id`, ...) exactly as the JSON has
 * them; timestamps are ISO 8601 strings. Options use camelCase.
 */

// --- records -----------------------------------------------------------------------------------

/** Where a memory is visible: `private`, `tenant`, `team:<name>` or `public`. */
export type Scope = "private" | "tenant" | "public" | `team:${string}`;

export type Outcome = "used" | "helped" | "wrong" | "ignored";

/** ISO 8601 timestamp, as the API returns it. */
export type Timestamp = string;

/** One search result. */
export interface SearchHit {
  memory_id: string;
  text: string;
  score: number;
  agent_id: string;
  scope: Scope;
  tags: string[];
  valid_from?: Timestamp | null;
  /** null: still valid */
  valid_to?: Timestamp | null;
  /** "verified" or "refuted" by the verifiers; null: no claim checked */
  verification?: string | null;
  /** "memory", or "fact" in knowledge mode */
  kind?: "memory" | "fact";
  /** a fact's member memories, best first */
  provenance?: string[];
}

/** A team's pooled memory state (`GET /v1/teams/{team}/pooled`). */
export interface PooledState {
  team: string;
  members: string[];
  /** mean attention weight of each member, in the order of `members` */
  influence: number[];
  /** float32 little-endian, base64 */
  vector_b64: string;
  dim: number;
  updated_by: string;
  model: string;
}

/** A student policy distilled from a team's experience (`GET /v1/models/{name}`). */
export interface ModelVersion {
  name: string;
  version: number;
  versions: number[];
  team: string;
  observation_dim: number;
  actions: number;
  /** digest of the float32 weights */
  weights_sha256: string;
  published_at: number;
  /** topic, offsets (partition -> next offset covered), teachers, pairs, config, ... */
  lineage: Record<string, unknown>;
  input: string;
  output: string;
  /** the ONNX model, base64 */
  onnx_b64?: string;
}

/** One memory as its reader may see it (`GET /v1/memories/{id}`). */
export interface MemoryRecord {
  memory_id: string;
  text: string;
  agent_id: string;
  scope: Scope;
  topic: string | null;
  tags: string[];
  metadata: Record<string, unknown>;
  ts: Timestamp;
  valid_from: Timestamp | null;
  valid_to: Timestamp | null;
  expires_at: Timestamp | null;
  usefulness: number;
  supersedes: string[];
}

/** One page of `list`; pass `next_cursor` as `cursor` for the next one (null: the last). */
export interface MemoryPage {
  memories: MemoryRecord[];
  next_cursor: string | null;
}

/** Narrow a subscription; each list means "any of" (empty or absent: no narrowing). */
export interface SubscriptionFilters {
  topics?: string[];
  tags?: string[];
  /** authors' agent ids */
  source_agents?: string[];
  scopes?: Scope[];
}

/** A subscription this agent made (`GET /v1/subscriptions`). */
export interface SubscriptionInfo {
  subscription_id: string;
  query: string | null;
  min_score: number;
  filters: Record<string, unknown>;
  max_per_minute: number;
  expires_at: Timestamp | null;
  include_own: boolean;
  created_at: Timestamp;
}

/** One pushed memory; `cursor` resumes after it (`deliveries(cursor)`, `stream(cursor)`). */
export interface DeliveredMemory {
  cursor: string;
  /** the delivery event's id */
  event_id: string | null;
  /** when the delivery was made */
  ts: Timestamp | null;
  subscription_id: string;
  memory_id: string;
  text: string;
  score: number;
  source_agent: string;
  memory_scope: Scope;
  tags: string[];
  topic: string | null;
  /** personal values were replaced for this reader */
  redacted: boolean;
  expires_at: Timestamp | null;
}

export interface DeliveryPage {
  deliveries: DeliveredMemory[];
  /** poll again from here */
  cursor: string;
}

export interface ImportSummary {
  accepted: number;
  dead_lettered: number;
  rows: Array<{
    line: number;
    status: "accepted" | "dead_letter";
    memory_id?: string | null;
    reason?: string | null;
    detail?: string | null;
  }>;
}

/** One row of `export` (what `memstream import` reads back). */
export type ExportRow = Record<string, any>;

// --- options -----------------------------------------------------------------------------------

export interface RequestOptions {
  /** abort the request */
  signal?: AbortSignal;
}

export interface MemstreamClientOptions {
  /** per-request time limit in ms (default 30000; 0 for none); `stream` has none */
  timeoutMs?: number;
  /** User-Agent header (default `memstream-typescript`) */
  userAgent?: string;
}

export interface AddOptions extends RequestOptions {
  /** default `tenant`; a `team:<x>` scope needs membership of team x (403 otherwise) */
  scope?: Scope;
  tags?: string[];
  topic?: string | null;
  metadata?: Record<string, unknown>;
  context?: string | null;
  /** ids of the memories this one replaces */
  supersedes?: string[];
  /** seconds the memory lives */
  ttl?: number | null;
}

export interface SearchOptions extends RequestOptions {
  /** how many results, 1..100 (default 10) */
  k?: number;
  /** any of these topics */
  topics?: string[];
  /** any of these tags */
  tags?: string[];
  /** the memories valid at this time */
  asOf?: Date | string;
  /** memories (default), consolidated facts with provenance, or by the query */
  mode?: "episodic" | "knowledge" | "auto";
}

export interface ListOptions extends RequestOptions {
  topic?: string;
  /** the author's agent id */
  agent?: string;
  /** any of these tags */
  tags?: string[];
  /** created at or after */
  since?: Date | string;
  /** page size, 1..1000 (default 100) */
  limit?: number;
  cursor?: string | null;
}

export interface FeedbackOptions extends RequestOptions {
  /** 0..1 */
  score?: number;
  note?: string;
}

export interface CachedResult {
  result_id: string;
  task: string;
  result: string;
  verification: "verified" | "unverified" | "failed";
  agent_id: string;
  scope: string;
}

export interface CacheLookup {
  outcome: "hit" | "miss" | "rejected";
  result: CachedResult | null;
  score: number | null;
  reason: string | null;
}

export interface CacheResultOptions extends RequestOptions {
  verification?: "verified" | "unverified" | "failed";
  scope?: string;
}

export interface Reputation {
  tenant: string;
  agent_id: string;
  /** 0..1; 0.5 where no trusted rater has rated it */
  reputation: number;
  /** its weight as a rater, relative to the most trusted */
  trust: number;
  ratings_received: number;
  weighted_good: number;
  weighted_bad: number;
  seeded: boolean;
}

export interface SubscribeOptions extends RequestOptions {
  /** -1..1 (default 0.5) */
  minScore?: number;
  filters?: SubscriptionFilters;
  /** also deliver this agent's own memories (default false) */
  includeOwn?: boolean;
  maxPerMinute?: number;
  expiresAt?: Date | string;
}

export interface DeliveriesOptions extends RequestOptions {
  /** how long to wait for the first delivery, 0..30000 ms (default 1000) */
  waitMs?: number;
  /** 1..500 (default 100) */
  limit?: number;
}

export interface StreamOptions extends RequestOptions {
  /** reopen a dropped connection with Last-Event-ID (default true) */
  reconnect?: boolean;
  /** first wait before reconnecting, doubled per failure (default 1000 ms) */
  retryDelayMs?: number;
  /** longest wait before reconnecting (default 30000 ms) */
  maxRetryDelayMs?: number;
  /** reconnect when nothing, not even a heartbeat, came for this long (default 45000; 0: never) */
  idleTimeoutMs?: number;
  /** called each time a connection is open, with the cursor it resumes from */
  onConnect?: (cursor: string | null) => void;
}

export interface ExportOptions extends RequestOptions {
  topic?: string;
  since?: Date | string;
}

export interface ImportOptions extends RequestOptions {
  source?: string;
  defaultScope?: Scope;
}

export interface WaitOptions extends RequestOptions {
  /** default 30000 ms */
  timeoutMs?: number;
  /** default 100 ms */
  intervalMs?: number;
}

// --- errors ------------------------------------------------------------------------------------

export interface FieldError {
  field: string;
  message: string;
}

/** An answer the API refused: `status` is its HTTP status, `fields` the invalid ones. */
export class MemstreamError extends Error {
  constructor(status: number, message: string, fields?: FieldError[]);
  readonly status: number;
  /** the server's `error` text */
  readonly message: string;
  readonly fields: FieldError[];
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
/** 429: over the token's rate limit or privacy budget. */
export class RateLimited extends MemstreamError {
  constructor(status: number, message: string, fields?: FieldError[], retryAfter?: number | null);
  /** seconds to wait (the Retry-After header), when the server said */
  readonly retryAfter: number | null;
}
/** `waitFor` / `waitGone` ran out of time. */
export class WaitTimeout extends Error {
  constructor(message: string);
}

/** The error an answer of status >= 400 stands for, from its body text and headers. */
export function errorFor(status: number, text: string, headers: Headers): MemstreamError;

// --- low-level helpers (exported for reuse and tests) ------------------------------------------

/** Lines of a byte stream, split on \n, \r\n or \r. */
export function readLines(
  body: ReadableStream<Uint8Array>,
): AsyncGenerator<string, void, undefined>;

/** A server-sent-events parser fed one line at a time. */
export class SseParser {
  id: string | null;
  event: string | null;
  data: string[];
  /** the finished event at a blank line; null otherwise (comments are skipped) */
  feed(line: string): { id: string | null; event: string | null; data: string } | null;
}

/** A delivery JSON (`/v1/deliveries` item or SSE data) flattened to a DeliveredMemory. */
export function deliveredMemory(cursor: string, data: unknown): DeliveredMemory;

// --- the client --------------------------------------------------------------------------------

/** Client for the memstream HTTP API. The token decides tenant, agent, teams, clearance. */
export class MemstreamClient {
  constructor(url: string, token: string, options?: MemstreamClientOptions);
  readonly url: string;
  readonly timeoutMs: number;

  /** Share a memory; resolves to its id (readable once indexed: `waitFor`). */
  add(text: string, options?: AddOptions): Promise<string>;
  /** Hybrid search over the memories this token may see. */
  search(query: string, options?: SearchOptions): Promise<SearchHit[]>;
  /** One memory; NotFound if absent or not visible to this token. */
  get(memoryId: string, options?: RequestOptions): Promise<MemoryRecord>;
  /** One page of the memories this token may see, oldest first. */
  list(options?: ListOptions): Promise<MemoryPage>;
  /** Every memory `list` would page through. */
  iterate(options?: Omit<ListOptions, "cursor">): AsyncGenerator<MemoryRecord, void, undefined>;
  /** Delete a memory (author or admin); resolves to the deletion event's id (asynchronous: `waitGone`). */
  delete(memoryId: string, options?: RequestOptions): Promise<string>;
  /** The supersession chain through a memory, oldest first. */
  history(memoryId: string, options?: RequestOptions): Promise<MemoryRecord[]>;
  /** How useful a memory was; resolves to the feedback event's id. */
  feedback(memoryId: string, outcome: Outcome, options?: FeedbackOptions): Promise<string>;
  /** Publish a task's result to the semantic result cache. */
  cacheResult(task: string, result: string, options?: CacheResultOptions): Promise<CachedResult>;
  /** A stored result for a task that means the same and names the same values, if any. */
  lookup(task: string, options?: RequestOptions): Promise<CacheLookup>;
  /** An agent's reputation in this token's tenant. */
  reputation(agentId: string, options?: RequestOptions): Promise<Reputation>;
  /** A team's pooled memory state (members of the team only). */
  pooledState(team: string, options?: RequestOptions): Promise<PooledState>;
  /** A student policy of your team: version, lineage, the ONNX model (`onnx_b64`). */
  model(name: string, options?: RequestOptions & { version?: number }): Promise<ModelVersion>;
  /** A standing query; resolves to its id (applies within moments: see `subscriptions`). */
  subscribe(query: string, options?: SubscribeOptions): Promise<string>;
  /** Cancel a subscription this agent made (NotFound otherwise). */
  unsubscribe(subscriptionId: string, options?: RequestOptions): Promise<void>;
  /** The active subscriptions this agent made. */
  subscriptions(options?: RequestOptions): Promise<SubscriptionInfo[]>;
  /** One long poll: deliveries after `cursor` (from now without one) and the next cursor. */
  deliveries(cursor?: string | null, options?: DeliveriesOptions): Promise<DeliveryPage>;
  /**
   * Deliveries as they come (server-sent events) until the loop breaks or `signal` aborts;
   * reconnects with Last-Event-ID after a dropped connection (a delivery may repeat).
   */
  stream(
    cursor?: string | null,
    options?: StreamOptions,
  ): AsyncGenerator<DeliveredMemory, void, undefined>;
  /** Topics of the memories this token may see, with counts. */
  topics(options?: RequestOptions): Promise<Record<string, number>>;
  /** Every memory this token may see, as export rows (streamed JSON lines). */
  export(options?: ExportOptions): AsyncGenerator<ExportRow, void, undefined>;
  /** Send (line number, raw JSON line) pairs; bad rows are dead-lettered server-side. */
  importLines(lines: Array<[number, string]>, options?: ImportOptions): Promise<ImportSummary>;
  /** The memory once it is readable (read-your-writes); WaitTimeout after `timeoutMs`. */
  waitFor(memoryId: string, options?: WaitOptions): Promise<MemoryRecord>;
  /** Resolves once the memory is no longer readable; WaitTimeout after `timeoutMs`. */
  waitGone(memoryId: string, options?: WaitOptions): Promise<void>;
}

/** The Python SDK's name for the same client. */
export { MemstreamClient as HttpClient };

export default MemstreamClient;
