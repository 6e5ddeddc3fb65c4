/**
 * Failures as HTTP responses, for every listener that speaks HTTP to its
 * clients (the http protocol, the ws-bridge, the fastcgi gateway): kind →
 * status, and a small page in HTML, JSON (when the client's Accept prefers
 * it) or plain text (the ws-bridge's API talks plain text). Refusals close
 * the connection (`Connection: close`): the proxy does not try to
 * resynchronise with a client whose request it refused.
 */
import http from 'node:http';
import type { ServerResponse } from 'node:http';
import { LimitError, PolyproxyError } from './errors.ts';
import type { FailureKind, FailureSource } from './errors.ts';

/** A failure whose HTTP status is not its kind's (431 for a PROTOCOL error, 413, 409...). */
export class HttpStatusError extends PolyproxyError {
  readonly status: number;

  constructor(kind: FailureKind, status: number, message: string, options: { source?: FailureSource; cause?: unknown; resourceId?: string } = {}) {
    super(kind, message, options);
    this.name = 'HttpStatusError';
    this.status = status;
  }
}

const STATUS: Record<FailureKind, number> = {
  NOT_FOUND: 404,
  FORBIDDEN: 403,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  BACKEND_UNREACHABLE: 502,
  PROTOCOL: 400,
  HANDSHAKE_TIMEOUT: 408,
  TLS_REQUIRED: 403,
  TOO_MANY: 503,
  LIMITED: 429, // RFC 6585 Too Many Requests, with Retry-After
  SHUTTING_DOWN: 503,
  INTERNAL: 500,
};

/** RFC 9110's names where node:http still has older ones (413). */
const REASON: Record<number, string> = { 413: 'Content Too Large' };

export function statusOf(err: PolyproxyError): number {
  if (err instanceof HttpStatusError) return err.status;
  return STATUS[err.kind] ?? 500;
}

export function reasonOf(status: number): string {
  return REASON[status] ?? http.STATUS_CODES[status] ?? 'Error';
}

/** html: the http protocol and the fastcgi gateway (browsers); text: the ws-bridge (ws2api answers are plain text). */
export type ErrorFormat = 'html' | 'text';

export interface ErrorPageOptions {
  /** The request's Accept header, when it was parsed: JSON wins when it prefers JSON. */
  readonly accept?: string | undefined;
  /** Without a body (the request was HEAD). */
  readonly headRequest?: boolean;
  /** What the client is told; default: a fixed sentence per status, no backend addresses or resolver internals. */
  readonly detail?: string | undefined;
  readonly format?: ErrorFormat;
}

export interface ErrorPage {
  readonly status: number;
  readonly reason: string;
  /** Flat name/value pairs, Connection aside (the caller decides). */
  readonly headers: string[];
  readonly body: string;
}

export function errorPage(err: PolyproxyError, resourceId: string | undefined, options: ErrorPageOptions = {}): ErrorPage {
  const status = statusOf(err);
  const reason = reasonOf(status);
  const detail = options.detail ?? publicDetail(err, status, resourceId);
  let body: string;
  let type: string;
  if (options.accept !== undefined && prefersJson(options.accept)) {
    type = 'application/json';
    body = JSON.stringify({ error: { status, code: err.code, message: detail } });
  } else if (options.format === 'text') {
    type = 'text/plain; charset=utf-8';
    body = detail;
  } else {
    type = 'text/html; charset=utf-8';
    body = `<!doctype html><html><head><title>${status} ${reason}</title></head><body><h1>${status} ${reason}</h1><p>${escapeHtml(detail)}</p><hr><small>polyproxy</small></body></html>\n`;
  }
  const headers = ['content-type', type, 'content-length', String(Buffer.byteLength(body)), 'x-polyproxy-error', err.code];
  // RFC 9110 10.2.3: when to try again (a rate bucket's refill; 1 s for a concurrent limit).
  if (err instanceof LimitError) headers.push('retry-after', String(err.retryAfterSeconds));
  return { status, reason, headers, body: options.headRequest === true ? '' : body };
}

/** The whole response as bytes, for a raw socket (core's pipeline, a refused upgrade); it closes the connection. */
export function errorResponse(err: PolyproxyError, resourceId: string | undefined, options: ErrorPageOptions = {}): Buffer {
  const page = errorPage(err, resourceId, options);
  let head = `HTTP/1.1 ${page.status} ${page.reason}\r\n`;
  for (let i = 0; i < page.headers.length; i += 2) head += `${page.headers[i]}: ${page.headers[i + 1]}\r\n`;
  return Buffer.from(`${head}connection: close\r\ncache-control: no-store\r\n\r\n${page.body}`);
}

export interface SendErrorOptions extends ErrorPageOptions {
  /** Close the connection after it (default true; false keeps a keep-alive API client's connection). */
  readonly close?: boolean;
  /** Headers the status calls for (Allow with 405, Upgrade with 426). */
  readonly headers?: Readonly<Record<string, string>>;
}

/** The same response through node:http. */
export function sendErrorPage(res: ServerResponse, err: PolyproxyError, resourceId: string | undefined, options: SendErrorOptions = {}): void {
  const page = errorPage(err, resourceId, options);
  const headers = page.headers;
  if (options.headers !== undefined) for (const [name, value] of Object.entries(options.headers)) headers.push(name, value);
  if (options.close !== false) headers.push('connection', 'close');
  headers.push('cache-control', 'no-store');
  res.writeHead(page.status, page.reason, headers);
  res.end(page.body);
}

/** What the client may be told: no backend addresses or resolver internals. */
function publicDetail(err: PolyproxyError, status: number, resourceId: string | undefined): string {
  const host = resourceId === undefined ? 'this host' : `host "${resourceId}"`;
  switch (status) {
    case 404:
      return `No route for ${host}.`;
    case 403:
      return `Access to ${host} is forbidden.`;
    case 503:
      if (err.kind === 'SHUTTING_DOWN') return 'The proxy is shutting down.';
      return err.kind === 'TOO_MANY' ? 'Too many connections.' : `${host[0]?.toUpperCase()}${host.slice(1)} is unavailable.`;
    case 429:
      return `Too many requests or connections for ${host}; try again later.`;
    case 504:
      return `The backend for ${host} did not answer in time.`;
    case 502:
      return `The backend for ${host} could not be reached or failed.`;
    case 408:
      return 'The request did not arrive in time.';
    case 400:
    case 405:
    case 409:
    case 413:
    case 426:
    case 431:
    case 501:
    case 505:
      // About the client's own request.
      return err.message;
    default:
      return 'Internal error.';
  }
}

function prefersJson(accept: string): boolean {
  const a = accept.toLowerCase();
  const json = a.indexOf('json');
  if (json < 0) return false;
  const html = a.indexOf('text/html');
  return html < 0 || json < html;
}

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
