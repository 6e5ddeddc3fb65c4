/**
 * Header lists crossing HTTP versions: a client's HTTP/2 request to an
 * HTTP/1.1 or HTTP/2 backend, and a backend's response back to the HTTP/2
 * client. Pseudo-headers become the request line and Host (RFC 9113
 * §8.3.1), connection-specific fields are dropped both ways (§8.2.2; RFC
 * 9110 §7.6.1), and the forwarding fields are the proxy's own, exactly as
 * on the HTTP/1.1 path (rewrite.ts): X-Forwarded-For keeps the client's
 * values in front of the client's address, -Proto and -Host are replaced,
 * RFC 7239 Forwarded is dropped.
 */
import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';

/** Never forwarded from an HTTP/2 request: connection-specific, or replaced by the proxy's own. */
const DROP_REQUEST = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'host', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'http2-settings']);
/** Never relayed to an HTTP/2 client (RFC 9113 §8.2.2). */
const DROP_RESPONSE = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

export interface ForwardContext {
  readonly clientAddress: string;
  /** `http` or `https`: the client side's scheme. */
  readonly proto: string;
}

function forwardedAddress(clientAddress: string): string {
  return clientAddress.startsWith('::ffff:') ? clientAddress.slice(7) : clientAddress;
}

/**
 * The request head for an HTTP/1.1 backend (h1-backends.ts), request line
 * through the blank line, from the client's raw header list, with Host
 * from `:authority`. The list was checked before (wire/request-fields.ts
 * for an HTTP/2 client, RFC 9113 §8.2.1: lowercase token names, no CR, LF
 * or NUL in values, a token `:method`, a visible-ASCII `:path`, host
 * characters in `:authority`; node:http's parser for a bridged HTTP/1.1
 * client), so names and values are written as they are. TE and Expect
 * are dropped (an HTTP/1.1 hop of its own; the body goes at once); Cookie
 * fields, which HTTP/2 may split (§8.2.3), are joined with "; ". A body
 * with no content-length goes chunked (`chunked`: the caller has one).
 */
export function h1RequestHead(method: string, path: string, raw: readonly string[], authority: string, fwd: ForwardContext, chunked: boolean): string {
  let head = `${method} ${path} HTTP/1.1\r\nhost: ${authority}\r\n`;
  let forwardedFor: string | undefined;
  let cookie: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    if (name.charCodeAt(0) === 0x3a /* : */) continue;
    const value = raw[i + 1] as string;
    if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      continue;
    }
    if (name === 'cookie') {
      cookie = cookie === undefined ? value : `${cookie}; ${value}`;
      continue;
    }
    if (name === 'te' || name === 'expect' || DROP_REQUEST.has(name)) continue;
    head += `${name}: ${value}\r\n`;
  }
  if (cookie !== undefined) head += `cookie: ${cookie}\r\n`;
  if (chunked) head += 'transfer-encoding: chunked\r\n';
  const client = forwardedAddress(fwd.clientAddress);
  return `${head}x-forwarded-for: ${forwardedFor === undefined ? client : `${forwardedFor}, ${client}`}\r\nx-forwarded-proto: ${fwd.proto}\r\nx-forwarded-host: ${authority}\r\n\r\n`;
}

/** The request for an HTTP/2 backend: the pseudo-headers kept (`:scheme` the backend hop's: http for h2c, https over TLS), `te: trailers` kept (gRPC requires it). */
export function h2RequestHeaders(raw: readonly string[], authority: string, fwd: ForwardContext, scheme = 'http'): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  let forwardedFor: string | undefined;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (name.charCodeAt(0) === 0x3a) {
      if (name !== ':authority' && name !== ':scheme') out[name] = value;
      continue;
    }
    if (name === 'x-forwarded-for') {
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      continue;
    }
    if (DROP_REQUEST.has(name) || (name === 'te' && value !== 'trailers')) continue;
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = [String(prior), value];
  }
  out[':authority'] = authority;
  out[':scheme'] = scheme;
  const client = forwardedAddress(fwd.clientAddress);
  out['x-forwarded-for'] = forwardedFor === undefined ? client : `${forwardedFor}, ${client}`;
  out['x-forwarded-proto'] = fwd.proto;
  out['x-forwarded-host'] = authority;
  return out;
}

/** An HTTP/2 backend's response head for the HTTP/2 client; `extra` are the telemetry fields. */
export function responseHeaders(status: number, headers: IncomingHttpHeaders, extra: OutgoingHttpHeaders | null): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = { ':status': status };
  for (const name in headers) {
    if (name.charCodeAt(0) === 0x3a || DROP_RESPONSE.has(name)) continue;
    out[name] = headers[name];
  }
  if (extra !== null) Object.assign(out, extra);
  return out;
}

/** Trailers to relay: pseudo-headers and connection-specific fields dropped. */
export function trailerHeaders(trailers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const name in trailers) if (name.charCodeAt(0) !== 0x3a && !DROP_RESPONSE.has(name)) out[name] = trailers[name];
  return out;
}

/**
 * Fields not forwarded from a request's trailers (RFC 9110 §6.5.1: a
 * sender must not put in trailers what framing, routing, authentication,
 * request modifiers or content handling need up front, and a recipient
 * must not merge them into the head), the connection-specific ones, and
 * the proxy's own forwarding fields.
 */
const NOT_IN_TRAILERS = new Set([
  'content-length',
  'transfer-encoding',
  'host',
  'te',
  'trailer',
  'connection',
  'keep-alive',
  'proxy-connection',
  'upgrade',
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'content-type',
  'content-encoding',
  'content-range',
  'expect',
  'max-forwards',
  'cache-control',
  'range',
  'if-match',
  'if-none-match',
  'if-modified-since',
  'if-unmodified-since',
  'if-range',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
]);

/** A request's trailer fields to forward (raw list in, names lowercased, pseudo-headers and the fields above dropped); null when none are left. */
export function forwardableTrailers(raw: readonly string[] | null): string[] | null {
  if (raw === null) return null;
  let out: string[] | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    if (name.charCodeAt(0) === 0x3a || NOT_IN_TRAILERS.has(name)) continue;
    (out ??= []).push(name, raw[i + 1] as string);
  }
  return out;
}

/** A chunked body's last chunk with trailer fields (RFC 9112 §7.1.2); `trailers` checked and filtered (forwardableTrailers). */
export function lastChunk(trailers: readonly string[] | null): string {
  if (trailers === null) return '0\r\n\r\n';
  let out = '0\r\n';
  for (let i = 0; i < trailers.length; i += 2) out += `${trailers[i] as string}: ${trailers[i + 1] as string}\r\n`;
  return `${out}\r\n`;
}

/** A raw field list as node:http2's header object; repeated names as arrays. */
export function rawToHeaders(raw: readonly string[]): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    const prior = out[name];
    if (prior === undefined) out[name] = value;
    else if (Array.isArray(prior)) prior.push(value);
    else out[name] = [String(prior), value];
  }
  return out;
}
