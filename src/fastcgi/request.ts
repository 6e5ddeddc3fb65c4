/**
 * Requests to a FastCGI responder, as a web server would send them: the CGI
 * parameters (RFC 3875 section 4.1) derived from a script path, a method, a
 * query and a body, plus any parameter the caller sets. Callbacks mirror
 * hollodotme/fast-cgi-client: response, failure and pass-through (output as
 * it arrives).
 */
import { RawContent, UrlEncodedFormData, encodeForm } from './content.ts';
import type { FormValue, RequestContent } from './content.ts';
import type { FastCgiResponse } from './response.ts';

export type Query = string | Readonly<Record<string, FormValue>>;

export interface RequestOptions {
  /** Query string (without `?`) or fields to encode. */
  readonly query?: Query;
  /** REQUEST_URI; default: the script name plus the query. */
  readonly requestUri?: string;
  /** SCRIPT_NAME; default: `/` + the script file's base name. */
  readonly scriptName?: string;
  /** More parameters; they override the defaults. */
  readonly params?: Readonly<Record<string, string | number>>;
}

export type ResponseCallback = (response: FastCgiResponse) => void;
export type FailureCallback = (error: Error) => void;
/** Output as it arrives: `stream` is 'stdout' or 'stderr'. */
export type PassThroughCallback = (chunk: Buffer, stream: 'stdout' | 'stderr') => void;

export class FastCgiRequest {
  readonly method: string;
  readonly scriptFilename: string;
  readonly content: RequestContent | null;
  readonly #params = new Map<string, string>();
  readonly responseCallbacks: ResponseCallback[] = [];
  readonly failureCallbacks: FailureCallback[] = [];
  readonly passThroughCallbacks: PassThroughCallback[] = [];

  constructor(method: string, scriptFilename: string, content: RequestContent | string | Uint8Array | null = null, options: RequestOptions = {}) {
    this.method = method.toUpperCase();
    this.scriptFilename = scriptFilename;
    this.content = content === null ? null : typeof content === 'string' || content instanceof Uint8Array ? new RawContent(content, 'application/x-www-form-urlencoded') : content;
    const query = options.query === undefined ? '' : typeof options.query === 'string' ? options.query.replace(/^\?/, '') : encodeForm(options.query);
    const base = scriptFilename.slice(scriptFilename.lastIndexOf('/') + 1);
    const scriptName = options.scriptName ?? `/${base}`;
    const defaults: Record<string, string> = {
      GATEWAY_INTERFACE: 'FastCGI/1.0',
      REQUEST_METHOD: this.method,
      SCRIPT_FILENAME: scriptFilename,
      SCRIPT_NAME: scriptName,
      QUERY_STRING: query,
      REQUEST_URI: options.requestUri ?? (query === '' ? scriptName : `${scriptName}?${query}`),
      DOCUMENT_URI: scriptName,
      SERVER_SOFTWARE: 'polyproxy',
      SERVER_PROTOCOL: 'HTTP/1.1',
      SERVER_NAME: 'localhost',
      SERVER_ADDR: '127.0.0.1',
      SERVER_PORT: '80',
      REMOTE_ADDR: '127.0.0.1',
      REMOTE_PORT: '9985',
      REQUEST_SCHEME: 'http',
      CONTENT_TYPE: this.content?.contentType ?? '',
      CONTENT_LENGTH: String(this.content?.length ?? 0),
    };
    for (const [k, v] of Object.entries(defaults)) this.#params.set(k, v);
    for (const [k, v] of Object.entries(options.params ?? {})) this.#params.set(k, String(v));
  }

  /** Sets a parameter (a custom variable, a header as HTTP_*, or a CGI default). */
  setParam(name: string, value: string | number): this {
    this.#params.set(name, String(value));
    return this;
  }

  getParam(name: string): string | undefined {
    return this.#params.get(name);
  }

  /** Every parameter sent with the request. */
  get params(): ReadonlyMap<string, string> {
    return this.#params;
  }

  addResponseCallbacks(...callbacks: ResponseCallback[]): this {
    this.responseCallbacks.push(...callbacks);
    return this;
  }

  addFailureCallbacks(...callbacks: FailureCallback[]): this {
    this.failureCallbacks.push(...callbacks);
    return this;
  }

  addPassThroughCallbacks(...callbacks: PassThroughCallback[]): this {
    this.passThroughCallbacks.push(...callbacks);
    return this;
  }
}

type Body = RequestContent | string | Uint8Array | Readonly<Record<string, FormValue>> | null;

/** A plain object body becomes url-encoded form data. */
function toContent(body: Body): RequestContent | string | Uint8Array | null {
  if (body === null || typeof body === 'string' || body instanceof Uint8Array) return body;
  if (typeof (body as RequestContent).body === 'function' && typeof (body as RequestContent).contentType === 'string') return body as RequestContent;
  return new UrlEncodedFormData(body as Readonly<Record<string, FormValue>>);
}

export class GetRequest extends FastCgiRequest {
  constructor(scriptFilename: string, options: RequestOptions = {}) {
    super('GET', scriptFilename, null, options);
  }
}

export class PostRequest extends FastCgiRequest {
  constructor(scriptFilename: string, body: Body = null, options: RequestOptions = {}) {
    super('POST', scriptFilename, toContent(body), options);
  }
}

export class PutRequest extends FastCgiRequest {
  constructor(scriptFilename: string, body: Body = null, options: RequestOptions = {}) {
    super('PUT', scriptFilename, toContent(body), options);
  }
}

export class PatchRequest extends FastCgiRequest {
  constructor(scriptFilename: string, body: Body = null, options: RequestOptions = {}) {
    super('PATCH', scriptFilename, toContent(body), options);
  }
}

export class DeleteRequest extends FastCgiRequest {
  constructor(scriptFilename: string, body: Body = null, options: RequestOptions = {}) {
    super('DELETE', scriptFilename, toContent(body), options);
  }
}
