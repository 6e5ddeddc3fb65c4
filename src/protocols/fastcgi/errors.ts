/**
 * Gateway failures as HTTP responses, through the http listener's error
 * pages (src/protocols/http/errors.ts: status by kind, HTML or JSON by
 * Accept): 502 backend refused/reset/broke the protocol, 504 backend
 * timeout, 503 every backend down or busy, 400 bad path, 413 body too large.
 */
import type { ServerResponse } from 'node:http';
import { PolyproxyError } from '../../core/errors.ts';
import { FastCgiError } from '../../fastcgi/errors.ts';
import { errorResponse } from '../http/errors.ts';

/** FastCGI failure → the proxy's failure kinds. */
export function toGatewayError(err: unknown): PolyproxyError {
  if (err instanceof PolyproxyError) return err;
  if (err instanceof FastCgiError) {
    switch (err.code) {
      case 'FCGI_ERR_READ_TIMEOUT':
        return new PolyproxyError('TIMEOUT', err.message, { source: 'backend', cause: err });
      case 'FCGI_ERR_QUEUE_TIMEOUT':
        return new PolyproxyError('UNAVAILABLE', err.message, { source: 'backend', cause: err });
      default:
        return new PolyproxyError('BACKEND_UNREACHABLE', err.message, { source: 'backend', cause: err });
    }
  }
  return new PolyproxyError('INTERNAL', err instanceof Error ? err.message : String(err), { cause: err });
}

/** Writes the error page (the connection closes after it). */
export function sendErrorPage(res: ServerResponse, err: PolyproxyError, host: string | undefined, accept: string | undefined, head: boolean): void {
  const bytes = errorResponse(err, host, accept, head);
  // errorResponse builds raw bytes for core's sockets; node:http wants status and headers apart.
  const text = bytes.toString('latin1');
  const end = text.indexOf('\r\n\r\n');
  const lines = text.slice(0, end).split('\r\n');
  const statusLine = /^HTTP\/1\.1 (\d{3}) (.*)$/.exec(lines[0] ?? '');
  const headers: string[] = [];
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(':');
    headers.push(line.slice(0, colon), line.slice(colon + 1).trim());
  }
  res.writeHead(Number(statusLine?.[1] ?? 500), statusLine?.[2] ?? 'Error', headers);
  res.end(bytes.subarray(end + 4));
}

/** 413: a body without Content-Length larger than maxBufferedBodyBytes. */
export function sendTooLarge(res: ServerResponse, limit: number): void {
  const body = `<!doctype html><html><head><title>413 Content Too Large</title></head><body><h1>413 Content Too Large</h1><p>Request bodies without Content-Length are limited to ${limit} bytes.</p><hr><small>polyproxy</small></body></html>\n`;
  res.writeHead(413, 'Content Too Large', ['content-type', 'text/html; charset=utf-8', 'content-length', String(Buffer.byteLength(body)), 'x-polyproxy-error', 'PP_ERR_PROTOCOL', 'connection', 'close']);
  res.end(body);
}
