// The public HTTP API, as the console calls it: same origin, the token in
// the Authorization header only (never in a URL), kept in the tab's session
// storage. An error is the API's own body: its code and message, shown as
// they are.

const KEY = "gitfaas.token";

export function token(): string | null {
  return sessionStorage.getItem(KEY);
}

/// The token, or "" for an API without authentication (--auth none);
/// null forgets both.
export function setToken(value: string | null): void {
  if (value === null) sessionStorage.removeItem(KEY);
  else sessionStorage.setItem(KEY, value);
}

/// Whether the user went on without a token.
export function openApi(): boolean {
  return sessionStorage.getItem(KEY) === "";
}

/// What the API refused (or what kept it from answering).
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly body: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/// Called on every 401: the token is wrong or expired.
let onUnauthorized: (error: ApiError) => void = () => {};
export function whenUnauthorized(f: (error: ApiError) => void): void {
  onUnauthorized = f;
}

export interface Call {
  method?: string;
  query?: Record<string, string | undefined>;
  body?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  /// A 401 is the caller's to show (the token prompt's own check).
  keepOn401?: boolean;
}

export function url(path: string, query: Call["query"] = {}): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== "") params.append(k, v);
  const qs = params.toString();
  return qs ? `${path}?${qs}` : path;
}

/// The answer, unread: for the log stream.
export async function raw(path: string, call: Call = {}): Promise<Response> {
  const headers: Record<string, string> = { Accept: "application/json", ...call.headers };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let response: Response;
  try {
    response = await fetch(url(path, call.query), {
      method: call.method ?? "GET",
      headers,
      body: call.body,
      signal: call.signal,
      credentials: "omit",
      cache: "no-store",
      redirect: "error",
    });
  } catch (e) {
    if (e instanceof DOMException && e.name === "AbortError") throw e;
    throw new ApiError(0, "network", `gitfaas did not answer: ${String(e)}`);
  }
  if (!response.ok) {
    const error = await failure(response);
    if (error.status === 401 && !call.keepOn401) onUnauthorized(error);
    throw error;
  }
  return response;
}

async function failure(response: Response): Promise<ApiError> {
  const text = await response.text();
  try {
    const body = JSON.parse(text) as Record<string, unknown>;
    if (typeof body.message === "string") {
      return new ApiError(response.status, String(body.code ?? "unknown"), body.message, body);
    }
  } catch {
    // not JSON: shown as it came
  }
  return new ApiError(response.status, "unknown", text || response.statusText);
}

/// A JSON answer, with its headers.
export async function json<T>(path: string, call: Call = {}): Promise<{ body: T; response: Response }> {
  const response = await raw(path, call);
  return { body: (await response.json()) as T, response };
}

export async function get<T>(path: string, call: Call = {}): Promise<T> {
  return (await json<T>(path, call)).body;
}

// The shapes the console reads (the OpenAPI document's).

export interface RunSummary {
  requestUid: string;
  topic: string;
  commit: string;
  createdAt: string;
  status: string;
  parent: string | null;
  trigger: string;
  scheduledTime?: string;
}

export interface Page {
  runs: RunSummary[];
  next: string | null;
}

export interface ObjectView {
  apiVersion: string;
  kind: string;
  namespace?: string;
  name: string;
  functionUid: string;
  path: string;
  status: Record<string, unknown> & { phase?: string };
}

export interface RunDetail {
  requestUid: string;
  topic: string;
  commit: string;
  createdAt: string;
  expiresAt: string;
  done: boolean;
  succeeded: boolean | null;
  objects: ObjectView[];
  functions: { functionUid: string; path: string; response: unknown }[];
  report?: Record<string, unknown>;
  callback?: Record<string, unknown> & { attempts?: Record<string, unknown>[] };
  status: string;
  queue?: { position: number };
  attempts?: Record<string, unknown>[];
  retryOf?: string;
  parent?: string;
  trigger: string;
  scheduledTime?: string;
  cloudEvent?: Record<string, string>;
  children: string[];
  childrenTruncated: boolean;
}

export interface TreeNode {
  requestUid: string;
  topic: string;
  status: string;
  createdAt: string;
  children: TreeNode[];
}

export interface Schedule {
  cron: string;
  timezone: string;
  nextTick: string | null;
  startingDeadlineSeconds: number;
}

export interface Topic {
  name: string;
  files: string[];
  maxConcurrent: number | null;
  overflow: string | null;
  maxQueued?: number | null;
  maxQueuedBytes?: number | null;
  retry: { attempts: number; backoff: string; maxBackoff: string } | null;
  result: string | null;
  filter: string | null;
  schedule: Schedule | null;
}

export interface Topics {
  commit: string | null;
  topics: Topic[];
}

export interface TopicDetail extends Topic {
  commit: string | null;
  manifests: { path: string; text: string }[];
}

export interface SyncError {
  message: string;
  commit?: string;
  problems?: Problem[];
  at: string;
}

export interface Problem {
  file: string;
  line?: number;
  message: string;
}

export interface Status {
  source: string;
  commit: string | null;
  sync: {
    commit: string | null;
    lastSync: string | null;
    lastSuccess: string | null;
    lastError: SyncError | null;
    /// The last rejected commit, kept through later failures of another
    /// kind until a commit serves (newer gitfaas).
    lastRejected?: SyncError | null;
    consecutiveFailures: number;
  };
  topics: { name: string; configs: string[]; schedule?: Schedule | null }[];
  namespace: string;
  scheduler?: Record<string, unknown>;
}

export interface ApplyEntry {
  error: boolean;
  path: string;
  message: string;
  functionUid: string;
  objects: { apiVersion: string; kind: string; namespace?: string; name: string }[];
  rendered?: unknown[];
}

export interface Report {
  requestUid: string;
  applies: ApplyEntry[];
  error: boolean;
  message?: string;
  topic: string;
  commit: string;
  dryRun: boolean;
  status?: string;
  position?: number;
  filtered?: boolean;
}

export function problem(p: Problem): string {
  return p.line ? `${p.file}:${p.line}: ${p.message}` : `${p.file}: ${p.message}`;
}
