/**
 * The one rule for sending a request to a backend again, after some of its
 * bytes were written (connect.ts's Dial retries only before that, trying
 * the next candidate). Used by every protocol that reuses kept-alive
 * backend connections for request/response exchanges (http, the FastCGI
 * gateway and client).
 *
 * undici's rule: once request bytes reached a backend, the request is sent
 * again only when
 * - its method is idempotent (RFC 9110 §9.2.2: GET, HEAD, OPTIONS, TRACE,
 *   PUT, DELETE) — the backend may have executed it before the connection
 *   went away, and running a POST or PATCH twice is not the client's choice;
 * - the failure is the one a keep-alive race produces (RFC 9112 §9.3.1): a
 *   REUSED connection closed (EOF or reset) before ANY response byte — the
 *   backend's idle timer closed it as the request went out. A fresh
 *   connection failing, a timeout, or a response cut short is an answer
 *   about the backend, not about the connection;
 * - the request can be sent again as it was (no body, or a body still held);
 * - and it was not retried already (once).
 */

/** RFC 9110 §9.2.2. */
const IDEMPOTENT = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** At most this many extra attempts per request. */
export const MAX_RETRIES = 1;

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.has(method);
}

/** What is known about one failed attempt. */
export interface AttemptFailure {
  /** The request's method (for FastCGI, REQUEST_METHOD). */
  readonly method: string;
  /** Some request bytes were written to the backend. */
  readonly requestSent: boolean;
  /** The connection had carried an earlier exchange (a kept-alive one from a pool). */
  readonly reusedConnection: boolean;
  /** The failure was the connection closing (EOF or reset), not a timeout or a protocol error. */
  readonly connectionClosed: boolean;
  /** Some response byte arrived. */
  readonly responseStarted: boolean;
  /** The request can be sent again as it was: no body, or a body still held whole. */
  readonly replayable: boolean;
  /** Attempts already retried for this request. */
  readonly retries: number;
}

/** True when the request may be sent again, on another connection. */
export function mayRetry(failure: AttemptFailure): boolean {
  if (failure.retries >= MAX_RETRIES) return false;
  // Nothing reached the backend: the request was never seen (Dial's own case).
  if (!failure.requestSent) return true;
  return failure.reusedConnection && failure.connectionClosed && !failure.responseStarted && failure.replayable && isIdempotent(failure.method);
}
