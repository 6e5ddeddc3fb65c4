/**
 * The heads the proxy writes: the request to the backend and the response
 * to the client, with hop-by-hop fields removed (RFC 9110 §7.6.1) and the
 * proxy's own connection management added. Framing fields
 * (Content-Length, Transfer-Encoding) pass unchanged because the body bytes
 * pass unchanged.
 */
import type { HttpHead } from './head-parser.ts';

/** Always connection-specific (RFC 9110 §7.6.1, plus the legacy Proxy-Connection). */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'upgrade']);
/** Never removed because a Connection header names them: they frame the message or route it. */
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding']);

function isHopByHop(lower: string, connection: readonly string[]): boolean {
  if (HOP_BY_HOP.has(lower)) return true;
  return connection.length > 0 && connection.includes(lower) && !PROTECTED.has(lower);
}

export interface ForwardInfo {
  readonly clientAddress: string;
  /** `http` or `https`. */
  readonly proto: string;
}

/** The request head for the backend: keep-alive towards the backend, X-Forwarded-* added. */
export function requestHead(head: HttpHead, info: ForwardInfo): string {
  let out = `${head.method} ${head.target} HTTP/1.${head.minor}\r\n`;
  let forwardedFor: string | undefined;
  for (const [name, value] of head.headers) {
    const lower = name.length <= 17 ? name.toLowerCase() : name;
    if (isHopByHop(lower, head.connection)) continue;
    if (lower.startsWith('x-forwarded-')) {
      if (lower === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
      if (lower === 'x-forwarded-for' || lower === 'x-forwarded-proto' || lower === 'x-forwarded-host') continue;
    }
    out += `${name}: ${value}\r\n`;
  }
  const client = info.clientAddress.startsWith('::ffff:') ? info.clientAddress.slice(7) : info.clientAddress;
  out += `x-forwarded-for: ${forwardedFor === undefined ? client : `${forwardedFor}, ${client}`}\r\nx-forwarded-proto: ${info.proto}\r\n`;
  if (head.host !== undefined) out += `x-forwarded-host: ${head.host}\r\n`;
  if (head.upgrade !== undefined) out += `connection: upgrade\r\nupgrade: ${head.upgrade}\r\n`;
  else if (head.minor === 0) out += 'connection: keep-alive\r\n';
  return `${out}\r\n`;
}

/**
 * The response head for the client. `statusLine` is the backend's status
 * line without its version ("200 OK"). `close` says the proxy closes the
 * client connection after this response; `extra` is appended as is.
 */
export function responseHead(statusLine: string, head: HttpHead, clientMinor: number, close: boolean, extra: string): string {
  let out = `HTTP/1.1 ${statusLine}\r\n`;
  const upgrading = head.status === 101;
  for (const [name, value] of head.headers) {
    const lower = name.length <= 17 ? name.toLowerCase() : name;
    if (isHopByHop(lower, head.connection)) {
      if (!(upgrading && lower === 'upgrade')) continue;
    }
    out += `${name}: ${value}\r\n`;
  }
  if (upgrading) out += 'connection: upgrade\r\n';
  else if (close) out += 'connection: close\r\n';
  else if (clientMinor === 0) out += 'connection: keep-alive\r\n';
  return `${out}${extra}\r\n`;
}
