/**
 * Failures as HTTP responses: kind → status, with a small HTML page, or
 * JSON when the client's Accept prefers it. Every error response closes the
 * connection (`Connection: close`): the proxy does not try to resynchronise
 * with a client whose request it refused.
 */
import type { PolyproxyError } from '../../core/errors.ts';
import { HttpParseError } from './head-parser.ts';
import { ConnectionLimitError } from './pool.ts';

const STATUS: Record<string, number> = {
  NOT_FOUND: 404,
  FORBIDDEN: 403,
  UNAVAILABLE: 503,
  TIMEOUT: 504,
  BACKEND_UNREACHABLE: 502,
  PROTOCOL: 400,
  HANDSHAKE_TIMEOUT: 408,
  TLS_REQUIRED: 403,
  TOO_MANY: 503,
  INTERNAL: 500,
};

const REASON: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  404: 'Not Found',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  500: 'Internal Server Error',
  501: 'Not Implemented',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
  505: 'HTTP Version Not Supported',
};

export function statusOf(err: PolyproxyError): number {
  if (err instanceof HttpParseError) return err.status;
  return STATUS[err.kind] ?? 500;
}

/** The whole error response. `accept` is the request's Accept header when it was parsed. */
export function errorResponse(err: PolyproxyError, resourceId: string | undefined, accept?: string, headRequest = false): Buffer {
  const status = statusOf(err);
  const reason = REASON[status] ?? 'Error';
  const detail = publicDetail(err, status, resourceId);
  let body: string;
  let type: string;
  if (accept !== undefined && prefersJson(accept)) {
    type = 'application/json';
    body = JSON.stringify({ error: { status, code: err.code, message: detail } });
  } else {
    type = 'text/html; charset=utf-8';
    body = `<!doctype html><html><head><title>${status} ${reason}</title></head><body><h1>${status} ${reason}</h1><p>${escapeHtml(detail)}</p><hr><small>polyproxy</small></body></html>\n`;
  }
  const length = Buffer.byteLength(body);
  const head = `HTTP/1.1 ${status} ${reason}\r\ncontent-type: ${type}\r\ncontent-length: ${length}\r\nx-polyproxy-error: ${err.code}\r\nconnection: close\r\ncache-control: no-store\r\n\r\n`;
  return Buffer.from(headRequest ? head : head + body);
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
      if (err instanceof ConnectionLimitError || err.cause instanceof ConnectionLimitError) return `The backend for ${host} has reached its connection limit; try again later.`;
      return err.kind === 'TOO_MANY' ? 'Too many connections.' : `${host[0]?.toUpperCase()}${host.slice(1)} is unavailable.`;
    case 504:
      return `The backend for ${host} did not answer in time.`;
    case 502:
      return `The backend for ${host} could not be reached or failed.`;
    case 408:
      return 'The request did not arrive in time.';
    case 431:
    case 400:
    case 501:
    case 505:
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
