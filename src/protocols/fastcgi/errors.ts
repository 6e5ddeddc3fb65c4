/**
 * Gateway failures as PolyproxyErrors, answered through core's error pages
 * (src/core/http-error-response.ts: status by kind, HTML or JSON by Accept):
 * 502 backend refused/reset/broke the protocol, 504 backend timeout, 503
 * every backend down or busy, 400 bad path, 413 body too large.
 */
import { PolyproxyError } from '../../core/errors.ts';
import { HttpStatusError } from '../../core/http-error-response.ts';
import { FastCgiError } from '../../fastcgi/errors.ts';

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

/** 413: a body without Content-Length larger than maxBufferedBodyBytes (PHP needs CONTENT_LENGTH, so such bodies are buffered). */
export function bodyTooLarge(limit: number): PolyproxyError {
  return new HttpStatusError('PROTOCOL', 413, `Request bodies without Content-Length are limited to ${limit} bytes.`, { source: 'client' });
}
