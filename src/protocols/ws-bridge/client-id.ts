/**
 * The resource id of a ws-bridge connection or push: the ClientId, the
 * first path segment of the request target (DESIGN.md §3, ws2api). It is
 * kept as sent (percent-escapes included) and appended to the API URL as is,
 * so only characters that are valid in a URL path segment (RFC 3986 §3.3
 * `pchar`) are accepted.
 */

/** Longest ClientId accepted (it ends up in API URLs and logs). */
export const MAX_CLIENT_ID_LENGTH = 256;

const PCHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})+$/;

/** `.` and `..`, also percent-encoded: URL parsers and API servers resolve `%2e%2e` as `..` (WHATWG URL, double-dot segment). */
const DOT_SEGMENT = /^(?:\.|%2e){1,2}$/i;

/**
 * `/abc`, `/abc/`, `/abc?x=1` → `abc`. Returns null for a target without a
 * usable first segment (`/`, `//x`, `*`, absolute-form) or with more path
 * after it (`/abc/def`: another resource, not this client).
 */
export function parseClientId(target: string | undefined): string | null {
  if (target === undefined || target.charCodeAt(0) !== 0x2f /* / */) return null;
  let end = target.length;
  const query = target.indexOf('?');
  if (query >= 0) end = query;
  const hash = target.indexOf('#');
  if (hash >= 0 && hash < end) end = hash;
  let slash = target.indexOf('/', 1);
  if (slash >= end) slash = -1;
  if (slash >= 0 && slash !== end - 1) return null;
  const id = target.slice(1, slash >= 0 ? slash : end);
  if (id.length === 0 || id.length > MAX_CLIENT_ID_LENGTH || !PCHARS.test(id) || DOT_SEGMENT.test(id)) return null;
  return id;
}

/** RFC 6455 §4.2.1: a base64-encoded 16-byte nonce. */
const KEY = /^[+/0-9A-Za-z]{22}==$/;

/**
 * Why a WebSocket opening handshake would be refused (the checks `ws` makes
 * in handleUpgrade), or null when it is acceptable. Checked before the API
 * is asked, so the API never approves a connection that cannot be made.
 */
export function handshakeProblem(method: string | undefined, headers: Readonly<Record<string, string | string[] | undefined>>): string | null {
  if (method !== 'GET') return 'Invalid HTTP method';
  const upgrade = headers.upgrade;
  if (typeof upgrade !== 'string' || upgrade.toLowerCase() !== 'websocket') return 'Invalid Upgrade header';
  const key = headers['sec-websocket-key'];
  if (typeof key !== 'string' || !KEY.test(key)) return 'Missing or invalid Sec-WebSocket-Key header';
  const version = headers['sec-websocket-version'];
  if (version !== '13' && version !== '8') return 'Missing or invalid Sec-WebSocket-Version header';
  return null;
}
