/**
 * One error type for every failure the proxy can meet. `kind` is what a
 * protocol module maps to its own wire error (SQLSTATE, HTTP status, SMTP
 * reply...); `code` is stable for tests and logs; `source` says whose fault
 * it was; `retryable` says whether the connect loop may try another endpoint.
 */

/** The failure kinds a Resolver may throw (see ResolveError). */
export type ResolveErrorCode = 'NOT_FOUND' | 'FORBIDDEN' | 'UNAVAILABLE' | 'TIMEOUT' | 'INTERNAL';

/** Every failure kind; protocols map each one to a native error. */
export type FailureKind =
  | ResolveErrorCode
  | 'BACKEND_UNREACHABLE' // connect refused, reset or timed out on every candidate
  | 'PROTOCOL' //           the client broke the protocol (malformed/oversized opening)
  | 'HANDSHAKE_TIMEOUT' //  the client did not finish its opening in time
  | 'TLS_REQUIRED' //       client certificate or TLS missing where it is required
  | 'TOO_MANY' //           listener connection limit reached
  | 'LIMITED' //            a tenant limit (limits.*): connections, connection or request rate, fair share
  | 'SHUTTING_DOWN'; //     the drain deadline passed before the client's opening finished

export type FailureSource = 'client' | 'backend' | 'resolver' | 'internal';

export class PolyproxyError extends Error {
  readonly code: string;
  readonly kind: FailureKind;
  readonly source: FailureSource;
  readonly retryable: boolean;
  /** The resource the failure concerns, when the protocol knew it before core did. */
  readonly resourceId: string | undefined;

  constructor(kind: FailureKind, message: string, options: { source?: FailureSource; retryable?: boolean; cause?: unknown; resourceId?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PolyproxyError';
    this.kind = kind;
    this.code = `PP_ERR_${kind}`;
    this.source = options.source ?? defaultSource(kind);
    this.retryable = options.retryable ?? false;
    this.resourceId = options.resourceId;
  }
}

/**
 * Thrown by resolvers. `NOT_FOUND` means "this source does not know the id":
 * the router then asks the next source, and only the last NOT_FOUND reaches
 * the client.
 */
export class ResolveError extends PolyproxyError {
  constructor(code: ResolveErrorCode, message?: string, options: { cause?: unknown } = {}) {
    super(code, message ?? code.toLowerCase().replace('_', ' '), { source: 'resolver', cause: options.cause });
    this.name = 'ResolveError';
  }
}

function defaultSource(kind: FailureKind): FailureSource {
  switch (kind) {
    case 'BACKEND_UNREACHABLE':
      return 'backend';
    case 'PROTOCOL':
    case 'HANDSHAKE_TIMEOUT':
    case 'TLS_REQUIRED':
    case 'LIMITED':
      return 'client';
    case 'INTERNAL':
    case 'TOO_MANY':
    case 'SHUTTING_DOWN':
      return 'internal';
    default:
      return 'resolver';
  }
}

/** Which tenant limit refused: the metrics' `limit` label. */
export type LimitName = 'connections' | 'connection-rate' | 'request-rate' | 'fair-share';

/**
 * A tenant over one of its limits. `retryAfterMs` is when trying again may
 * succeed (a rate bucket's refill); 0 when nobody can tell (a concurrent
 * limit frees up when a session ends). Protocols with a retry hint use it.
 */
export class LimitError extends PolyproxyError {
  readonly limit: LimitName;
  readonly retryAfterMs: number;

  constructor(limit: LimitName, resourceId: string, message: string, retryAfterMs = 0) {
    super('LIMITED', message, { source: 'client', resourceId });
    this.name = 'LimitError';
    this.limit = limit;
    this.retryAfterMs = retryAfterMs;
  }

  /** Whole seconds for a Retry-After style hint, at least 1. */
  get retryAfterSeconds(): number {
    return Math.max(1, Math.ceil(this.retryAfterMs / 1000));
  }
}

/** Wraps anything thrown by user code into a PolyproxyError. */
export function toPolyproxyError(err: unknown): PolyproxyError {
  if (err instanceof PolyproxyError) return err;
  // A resolver written against the contract but without importing our class.
  if (err !== null && typeof err === 'object' && 'code' in err) {
    const code = (err as { code: unknown }).code;
    if (code === 'NOT_FOUND' || code === 'FORBIDDEN' || code === 'UNAVAILABLE' || code === 'TIMEOUT' || code === 'INTERNAL') {
      return new ResolveError(code, (err as { message?: string }).message, { cause: err });
    }
  }
  const message = err instanceof Error ? err.message : String(err);
  return new PolyproxyError('INTERNAL', message, { cause: err });
}
