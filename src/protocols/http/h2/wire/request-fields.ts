/**
 * A client's request header list, checked as RFC 9113 §8.2 and §8.3.1
 * say before anything of it is used or forwarded: a malformed request is
 * a stream error (PROTOCOL_ERROR, §8.1.1). The checks also keep the
 * HTTP/1.1 hop safe: `:method` is a token, `:path` visible ASCII, and
 * `:authority` host characters only, so nothing the backend parses can
 * differ from what the proxy routed (no CR, LF, SP or NUL reaches a
 * request line or Host). Field values follow nghttp2's rule: HTAB, SP
 * through `~` and obs-text, no leading or trailing whitespace
 * (§8.2.1).
 */

/** What the proxy needs of a request, read in the same pass as the checks. */
export interface RequestHead {
  method: string;
  scheme: string | undefined;
  authority: string | undefined;
  path: string;
  /** RFC 8441 `:protocol` (extended CONNECT). */
  protocol: string | undefined;
  /** content-length, -1 without one. */
  contentLength: number;
  contentType: string | undefined;
  accept: string | undefined;
  grpcTimeout: string | undefined;
  host: string | undefined;
}

/** tchar (RFC 9110 §5.6.2), lowercase letters only in names (RFC 9113 §8.2.1). */
const NAME_CHAR = new Uint8Array(256);
const TOKEN_CHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") {
  NAME_CHAR[c.charCodeAt(0)] = 1;
  TOKEN_CHAR[c.charCodeAt(0)] = 1;
}
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZ') TOKEN_CHAR[c.charCodeAt(0)] = 1;
/** RFC 3986 authority: unreserved, sub-delims, ":", "@", "[", "]", and "%" of pct-encoding. */
const AUTHORITY_CHAR = new Uint8Array(256);
for (const c of "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@[]%") AUTHORITY_CHAR[c.charCodeAt(0)] = 1;

/** Connection-specific fields (§8.2.2). */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

function validName(name: string): boolean {
  const n = name.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) if (NAME_CHAR[name.charCodeAt(i)] !== 1) return false;
  return true;
}

/** HTAB, SP–~ and obs-text; no leading or trailing SP/HTAB. */
export function validValue(value: string): boolean {
  const n = value.length;
  if (n === 0) return true;
  let c = value.charCodeAt(0);
  if (c === 0x20 || c === 0x09) return false;
  c = value.charCodeAt(n - 1);
  if (c === 0x20 || c === 0x09) return false;
  for (let i = 0; i < n; i++) {
    c = value.charCodeAt(i);
    if (c < 0x20 ? c !== 0x09 : c === 0x7f) return false;
  }
  return true;
}

function validToken(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) if (TOKEN_CHAR[value.charCodeAt(i)] !== 1) return false;
  return true;
}

function validPath(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) {
    const c = value.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

function validAuthority(value: string): boolean {
  const n = value.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) if (AUTHORITY_CHAR[value.charCodeAt(i)] !== 1) return false;
  return true;
}

/**
 * Checks a request's decoded list (flat name, value pairs) and reads what
 * the proxy needs; null: malformed. `extendedConnect`: we announced
 * SETTINGS_ENABLE_CONNECT_PROTOCOL (RFC 8441 §4).
 */
export function checkRequest(fields: readonly string[], extendedConnect: boolean): RequestHead | null {
  let method: string | undefined;
  let scheme: string | undefined;
  let authority: string | undefined;
  let path: string | undefined;
  let protocol: string | undefined;
  let contentLength = -1;
  let contentType: string | undefined;
  let accept: string | undefined;
  let grpcTimeout: string | undefined;
  let host: string | undefined;
  let regular = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    const value = fields[i + 1] as string;
    if (name.charCodeAt(0) === 0x3a /* : */) {
      // Pseudo-header fields come first, each at most once, and only the request's (§8.3).
      if (regular) return null;
      switch (name) {
        case ':method':
          if (method !== undefined || !validToken(value)) return null;
          method = value;
          break;
        case ':scheme':
          if (scheme !== undefined || !validToken(value)) return null;
          scheme = value;
          break;
        case ':authority':
          if (authority !== undefined || !validAuthority(value)) return null;
          authority = value;
          break;
        case ':path':
          if (path !== undefined || !validPath(value)) return null;
          path = value;
          break;
        case ':protocol':
          if (protocol !== undefined || !extendedConnect || !validToken(value)) return null;
          protocol = value;
          break;
        default:
          return null;
      }
      continue;
    }
    regular = true;
    if (!validName(name) || !validValue(value)) return null;
    switch (name) {
      case 'content-length': {
        // One value of digits only (nghttp2 refuses a repeated one too).
        if (contentLength !== -1 || value.length === 0 || value.length > 15) return null;
        for (let j = 0; j < value.length; j++) {
          const c = value.charCodeAt(j);
          if (c < 0x30 || c > 0x39) return null;
        }
        contentLength = Number(value);
        break;
      }
      case 'content-type':
        contentType = value;
        break;
      case 'accept':
        accept = accept === undefined ? value : `${accept}, ${value}`;
        break;
      case 'grpc-timeout':
        grpcTimeout = value;
        break;
      case 'te':
        if (value !== 'trailers') return null;
        break;
      case 'host':
        if (host !== undefined || !validAuthority(value)) return null;
        host = value;
        break;
      default:
        if (CONNECTION_SPECIFIC.has(name)) return null;
    }
  }
  if (method === undefined) return null;
  if (method === 'CONNECT') {
    if (protocol === undefined) {
      // A plain CONNECT (§8.5): :authority only.
      if (authority === undefined || scheme !== undefined || path !== undefined) return null;
      return { method, scheme, authority, path: '', protocol, contentLength, contentType, accept, grpcTimeout, host };
    }
    // Extended CONNECT (RFC 8441 §4): :scheme, :path and :authority too.
    if (scheme === undefined || path === undefined || authority === undefined) return null;
  } else {
    if (protocol !== undefined || scheme === undefined || path === undefined) return null;
    // An http or https request's :path is origin-form, or "*" for OPTIONS (§8.3.1).
    if (path.charCodeAt(0) !== 0x2f && !(path === '*' && method === 'OPTIONS')) return null;
  }
  return { method, scheme, authority, path, protocol, contentLength, contentType, accept, grpcTimeout, host };
}

/** Trailer fields: no pseudo-header fields (§8.1), names and values as in the head. */
export function checkTrailers(fields: readonly string[]): boolean {
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i] as string;
    if (!validName(name) || !validValue(fields[i + 1] as string) || CONNECTION_SPECIFIC.has(name)) return false;
  }
  return true;
}
