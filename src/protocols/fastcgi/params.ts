/**
 * The FastCGI params for one HTTP request, as nginx's `fastcgi_params` plus
 * `fastcgi_split_path_info ^(.+?\.php)(/.*)$` and `fastcgi_index` would
 * build them (RFC 3875 section 4.1 meta-variables, HTTP_* for headers).
 * Pure: no sockets.
 */

export interface ParamsSettings {
  /** Without a trailing slash. */
  readonly documentRoot: string;
  readonly index: string;
  readonly serverSoftware: string;
  /** Listener-wide extra params (config `params`). */
  readonly extra: Readonly<Record<string, string>>;
}

export interface ScriptTarget {
  /** SCRIPT_NAME: the script's path under the document root. */
  readonly scriptName: string;
  /** PATH_INFO: what follows the script in the path ('' when nothing). */
  readonly pathInfo: string;
}

export class BadRequestPath extends Error {}

/**
 * Decodes and checks the request path and picks the script: a path ending
 * in "/" gets the index file; a path with a `.php` segment is split there
 * (the rest is PATH_INFO); any other path goes to the index file at the root
 * with the path as PATH_INFO (front controller). Throws BadRequestPath for
 * undecodable paths, NUL bytes and `..` segments.
 */
export function resolveScript(rawPath: string, index: string): ScriptTarget {
  let path: string;
  try {
    path = decodeURIComponent(rawPath);
  } catch {
    throw new BadRequestPath(`undecodable path ${JSON.stringify(rawPath.slice(0, 100))}`);
  }
  if (!path.startsWith('/')) throw new BadRequestPath('the path must start with "/"');
  if (path.includes('\0')) throw new BadRequestPath('NUL byte in the path');
  path = path.replace(/\/{2,}/g, '/');
  if (/(^|\/)\.\.?(\/|$)/.test(path)) throw new BadRequestPath('"." or ".." segment in the path');
  if (path.endsWith('/')) return { scriptName: path + index, pathInfo: '' };
  const php = /^(.+?\.php)(\/.*)?$/.exec(path);
  if (php !== null) return { scriptName: php[1] as string, pathInfo: php[2] ?? '' };
  return { scriptName: `/${index}`, pathInfo: path };
}

export interface RequestFacts {
  readonly method: string;
  /** The request target as received (REQUEST_URI). */
  readonly url: string;
  readonly httpVersion: string;
  /** Node's rawHeaders: name, value, name, value... */
  readonly rawHeaders: readonly string[];
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly localAddress: string;
  readonly localPort: number;
  /** CONTENT_LENGTH to send ('' when there is no body). */
  readonly contentLength: string;
}

/** Header names that never become params: framing (sent as CONTENT_*) and httpoxy (HTTP_PROXY, CVE-2016-5385). */
const SKIP_HEADERS = new Set(['content-length', 'content-type', 'proxy', 'transfer-encoding', 'connection', 'keep-alive', 'upgrade', 'te', 'trailer']);

/** `x-forwarded-for` → `HTTP_X_FORWARDED_FOR`; null for names with "_" (nginx drops them too: they could spoof a dashed header). */
export function headerParamName(name: string): string | null {
  if (name.includes('_')) return null;
  return `HTTP_${name.toUpperCase().replace(/-/g, '_')}`;
}

export function buildParams(facts: RequestFacts, target: ScriptTarget, settings: ParamsSettings): Map<string, string> {
  const q = facts.url.indexOf('?');
  const query = q < 0 ? '' : facts.url.slice(q + 1);
  const params = new Map<string, string>();
  let contentType = '';
  let host = '';
  const headers = new Map<string, string>();
  const raw = facts.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = (raw[i] as string).toLowerCase();
    const value = raw[i + 1] as string;
    if (name === 'content-type') contentType = value;
    if (name === 'host' && host === '') host = value;
    if (SKIP_HEADERS.has(name)) continue;
    const param = headerParamName(name);
    if (param === null) continue;
    const seen = headers.get(param);
    headers.set(param, seen === undefined ? value : `${seen}${name === 'cookie' ? '; ' : ', '}${value}`);
  }
  const serverName = host === '' ? facts.localAddress : host.replace(/:\d+$/, '').replace(/^\[(.*)\]$/, '$1');
  params.set('GATEWAY_INTERFACE', 'CGI/1.1');
  params.set('SERVER_SOFTWARE', settings.serverSoftware);
  params.set('QUERY_STRING', query);
  params.set('REQUEST_METHOD', facts.method);
  params.set('CONTENT_TYPE', contentType);
  params.set('CONTENT_LENGTH', facts.contentLength);
  params.set('SCRIPT_FILENAME', settings.documentRoot + target.scriptName);
  params.set('SCRIPT_NAME', target.scriptName);
  if (target.pathInfo !== '') {
    params.set('PATH_INFO', target.pathInfo);
    params.set('PATH_TRANSLATED', settings.documentRoot + target.pathInfo);
  }
  params.set('REQUEST_URI', facts.url);
  params.set('DOCUMENT_URI', target.scriptName + target.pathInfo);
  params.set('DOCUMENT_ROOT', settings.documentRoot);
  params.set('SERVER_PROTOCOL', `HTTP/${facts.httpVersion}`);
  params.set('REQUEST_SCHEME', 'http');
  params.set('REMOTE_ADDR', facts.remoteAddress);
  params.set('REMOTE_PORT', String(facts.remotePort));
  params.set('SERVER_ADDR', facts.localAddress);
  params.set('SERVER_PORT', String(facts.localPort));
  params.set('SERVER_NAME', serverName);
  // php-cgi's cgi.force_redirect guard expects it (nginx's fastcgi_params sets it too).
  params.set('REDIRECT_STATUS', '200');
  for (const [k, v] of headers) params.set(k, v);
  for (const [k, v] of Object.entries(settings.extra)) params.set(k, v);
  return params;
}
