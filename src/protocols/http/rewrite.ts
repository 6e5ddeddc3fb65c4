/**
 * The heads the proxy writes: the request to the backend and the response
 * to the client, with hop-by-hop fields removed (RFC 9110 §7.6.1) and the
 * proxy's own connection management added. Framing fields
 * (Content-Length, Transfer-Encoding) pass unchanged because the body bytes
 * pass unchanged.
 *
 * Heads are copied, not rebuilt: the request or status line and every kept
 * field line go out as the bytes that came in (runs of kept lines in one
 * copy), so no string is made per field and nothing needs encoding. The
 * exception is a request with an absolute-form target: the backend gets the
 * origin form and a Host made from the target's authority (RFC 9112
 * §3.2.2), the authority the request was routed by.
 */
import { bytesAre, tidy } from './head-parser.ts';
import type { HttpHead } from './head-parser.ts';

/** Never removed because a Connection header names them: they frame the message or route it. */
const PROTECTED = new Set(['host', 'content-length', 'transfer-encoding']);

/**
 * True when field `k` (its offsets in head.fields) is connection-specific:
 * always Connection, Keep-Alive, Proxy-Connection, TE and Upgrade, plus any
 * field the Connection header names.
 */
function isHopByHop(head: HttpHead, k: number): boolean {
  const raw = head.raw;
  const name = head.fields[k] as number;
  const length = (head.fields[k + 1] as number) - name;
  switch (length) {
    case 2:
      if (bytesAre(raw, name, 'te')) return true;
      break;
    case 7:
      if (bytesAre(raw, name, 'upgrade')) return true;
      break;
    case 10:
      if (bytesAre(raw, name, 'connection') || bytesAre(raw, name, 'keep-alive')) return true;
      break;
    case 16:
      if (bytesAre(raw, name, 'proxy-connection')) return true;
      break;
  }
  for (const token of head.connection) {
    if (token.length !== length || PROTECTED.has(token)) continue;
    // bytesAre folds case for letters, digits and '-'; a token with other tchars is compared as a string.
    if (SIMPLE_TOKEN.test(token) ? bytesAre(raw, name, token) : raw.toString('latin1', name, name + length).toLowerCase() === token) return true;
  }
  return false;
}

const SIMPLE_TOKEN = /^[a-z0-9-]+$/;

/** X-Forwarded-For, -Proto or -Host: replaced by the proxy's own. */
function isForwarded(head: HttpHead, k: number): boolean {
  const name = head.fields[k] as number;
  const length = (head.fields[k + 1] as number) - name;
  if (length < 15 || length > 17 || !bytesAre(head.raw, name, 'x-forwarded-')) return false;
  return (length === 15 && bytesAre(head.raw, name + 12, 'for')) || (length === 16 && bytesAre(head.raw, name + 12, 'host')) || (length === 17 && bytesAre(head.raw, name + 12, 'proto'));
}

/**
 * RFC 7239 Forwarded: dropped. The proxy writes the forwarding fields the
 * backend may trust (X-Forwarded-*); a client's `Forwarded: host=...` would
 * otherwise name, to a backend that reads it, a tenant the proxy did not
 * route by (issue 15).
 */
function isRfc7239Forwarded(head: HttpHead, k: number): boolean {
  const name = head.fields[k] as number;
  return (head.fields[k + 1] as number) - name === 9 && bytesAre(head.raw, name, 'forwarded');
}

function keepRequestField(head: HttpHead, k: number): boolean {
  return !(head.forwarded && isForwarded(head, k)) && !isHopByHop(head, k) && !(head.absoluteForm && isHost(head, k)) && !isRfc7239Forwarded(head, k);
}

function isHost(head: HttpHead, k: number): boolean {
  const name = head.fields[k] as number;
  return (head.fields[k + 1] as number) - name === 4 && bytesAre(head.raw, name, 'host');
}

function keepResponseField(head: HttpHead, k: number): boolean {
  if (!isHopByHop(head, k)) return true;
  // A 101 keeps its Upgrade field: it names the protocol switched to.
  return head.status === 101 && (head.fields[k + 1] as number) - (head.fields[k] as number) === 7 && bytesAre(head.raw, head.fields[k] as number, 'upgrade');
}

/**
 * Copies the field lines of `head` that `keep` accepts into `out` at `at`,
 * each run of kept lines in one copy. Returns the end offset. Field lines
 * are contiguous: one ends where the next name starts, the last where the
 * blank line starts.
 */
function copyFields(head: HttpHead, out: Buffer, at: number, keep: (head: HttpHead, k: number) => boolean): number {
  const raw = head.raw;
  const f = head.fields;
  let runStart = -1;
  let runEnd = -1;
  for (let k = 0; k < f.length; k += 4) {
    const lineStart = f[k] as number;
    if (keep(head, k)) {
      if (runStart < 0) runStart = lineStart;
      runEnd = k + 4 < f.length ? (f[k + 4] as number) : raw.length - 2;
      continue;
    }
    if (runStart >= 0) {
      at += raw.copy(out, at, runStart, runEnd);
      runStart = -1;
    }
  }
  if (runStart >= 0) at += raw.copy(out, at, runStart, runEnd);
  return at;
}

/** Host, Content-Length or Transfer-Encoding: the lines HttpHead.untidy is about. */
function isFramingOrHost(head: HttpHead, k: number): boolean {
  const name = head.fields[k] as number;
  switch ((head.fields[k + 1] as number) - name) {
    case 4:
      return bytesAre(head.raw, name, 'host');
    case 14:
      return bytesAre(head.raw, name, 'content-length');
    case 17:
      return bytesAre(head.raw, name, 'transfer-encoding');
  }
  return false;
}

/**
 * copyFields for a head whose Host or framing lines have unusual
 * whitespace around their values (HttpHead.untidy): those lines go out as
 * `name: value`, so that no next hop reads the whitespace as part of the
 * value. Never longer than the line received (it had whitespace to lose).
 */
function copyFieldsTidied(head: HttpHead, out: Buffer, at: number, keep: (head: HttpHead, k: number) => boolean): number {
  const raw = head.raw;
  const f = head.fields;
  for (let k = 0; k < f.length; k += 4) {
    if (!keep(head, k)) continue;
    const nameEnd = f[k + 1] as number;
    if (isFramingOrHost(head, k) && !tidy(raw, nameEnd, f[k + 2] as number, f[k + 3] as number)) {
      at += raw.copy(out, at, f[k] as number, nameEnd);
      at += COLON_SP.copy(out, at);
      at += raw.copy(out, at, f[k + 2] as number, f[k + 3] as number);
      at += CRLF.copy(out, at);
    } else {
      at += raw.copy(out, at, f[k] as number, k + 4 < f.length ? (f[k + 4] as number) : raw.length - 2);
    }
  }
  return at;
}

export interface ForwardInfo {
  readonly clientAddress: string;
  /** `http` or `https`. */
  readonly proto: string;
}

/** The client's address as X-Forwarded-For shows it (an IPv4-mapped IPv6 address as IPv4). */
function forwardedAddress(clientAddress: string): string {
  return clientAddress.startsWith('::ffff:') ? clientAddress.slice(7) : clientAddress;
}

/**
 * The proxy's own forwarding fields for a request without X-Forwarded-*
 * fields: the same for every request of a connection with the same Host, so
 * the session keeps the bytes (see HttpSession).
 */
export function forwardingFields(host: string | undefined, info: ForwardInfo): Buffer {
  let out = `x-forwarded-for: ${forwardedAddress(info.clientAddress)}\r\nx-forwarded-proto: ${info.proto}\r\n`;
  if (host !== undefined) out += `x-forwarded-host: ${host}\r\n`;
  return Buffer.from(out, 'latin1');
}

/**
 * The proxy's forwarding fields when the request carries X-Forwarded-*
 * fields of its own: their For values are kept in front of the client's
 * address; Proto and Host are replaced.
 */
function mergedForwardingFields(head: HttpHead, info: ForwardInfo): Buffer {
  let forwardedFor: string | undefined;
  const f = head.fields;
  for (let k = 0; k < f.length; k += 4) {
    if ((f[k + 1] as number) - (f[k] as number) === 15 && isForwarded(head, k)) {
      const value = head.raw.toString('latin1', f[k + 2] as number, f[k + 3] as number);
      forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
    }
  }
  const client = forwardedAddress(info.clientAddress);
  let out = `x-forwarded-for: ${forwardedFor === undefined ? client : `${forwardedFor}, ${client}`}\r\nx-forwarded-proto: ${info.proto}\r\n`;
  if (head.host !== undefined) out += `x-forwarded-host: ${head.host}\r\n`;
  return Buffer.from(out, 'latin1');
}

const CRLF = Buffer.from('\r\n', 'latin1');
const COLON_SP = Buffer.from(': ', 'latin1');
const CONNECTION_KEEP_ALIVE = Buffer.from('connection: keep-alive\r\n', 'latin1');
const CONNECTION_CLOSE = Buffer.from('connection: close\r\n', 'latin1');
const CONNECTION_UPGRADE = Buffer.from('connection: upgrade\r\n', 'latin1');
const HTTP11 = Buffer.from('HTTP/1.1 ', 'latin1');

/**
 * The request head for the backend: keep-alive towards the backend,
 * X-Forwarded-* added. `forwarding` is forwardingFields(head.host, info)
 * when the caller has it already (used only when the request has no
 * X-Forwarded-* fields of its own).
 */
export function requestHeadBytes(head: HttpHead, info: ForwardInfo, forwarding: Buffer | null = null): Buffer {
  const fwd = head.forwarded ? mergedForwardingFields(head, info) : (forwarding ?? forwardingFields(head.host, info));
  const tail = head.upgrade !== undefined ? Buffer.from(`connection: upgrade\r\nupgrade: ${head.upgrade}\r\n`, 'latin1') : head.minor === 0 ? CONNECTION_KEEP_ALIVE : null;
  const host = head.absoluteForm ? `host: ${head.host as string}\r\n` : '';
  // At most this long: the head as received (dropped fields and an origin-form target make it shorter) plus what is added.
  const out = Buffer.allocUnsafe(head.raw.length + host.length + fwd.length + (tail === null ? 0 : tail.length));
  // The request line as sent (the parser accepts exactly "method SP target SP HTTP/1.x"), or with the
  // target in origin form and the received Host replaced (RFC 9112 §3.2.2: a proxy MUST do both).
  let at = head.absoluteForm ? out.write(`${head.method} ${head.originTarget} HTTP/1.${head.minor}\r\n${host}`, 0, 'latin1') : head.raw.copy(out, 0, 0, head.lineEnd);
  at = head.untidy ? copyFieldsTidied(head, out, at, keepRequestField) : copyFields(head, out, at, keepRequestField);
  at += fwd.copy(out, at);
  if (tail !== null) at += tail.copy(out, at);
  at += CRLF.copy(out, at);
  return at === out.length ? out : out.subarray(0, at);
}

/**
 * The response head for the client, followed by room for `reserve` more
 * bytes: the caller copies body bytes to the last `reserve` bytes, so a
 * small response leaves in one write. "HTTP/1.1", then the backend's status
 * code and reason as sent. `close` says the proxy closes the client
 * connection after this response; `extra` is appended as is.
 */
export function responseHeadBytes(head: HttpHead, clientMinor: number, close: boolean, extra: string, reserve = 0): Buffer {
  const tail = head.status === 101 ? CONNECTION_UPGRADE : close ? CONNECTION_CLOSE : clientMinor === 0 ? CONNECTION_KEEP_ALIVE : null;
  const out = Buffer.allocUnsafe(head.raw.length + (tail === null ? 0 : tail.length) + extra.length + reserve);
  // "HTTP/1.x " becomes "HTTP/1.1 " (9 bytes either way).
  let at = HTTP11.copy(out, 0);
  at += head.raw.copy(out, at, 9, head.lineEnd);
  at = head.untidy ? copyFieldsTidied(head, out, at, keepResponseField) : copyFields(head, out, at, keepResponseField);
  if (tail !== null) at += tail.copy(out, at);
  if (extra.length > 0) at += out.write(extra, at, 'latin1');
  at += CRLF.copy(out, at);
  return at + reserve === out.length ? out : out.subarray(0, at + reserve);
}
