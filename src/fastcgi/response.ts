/** A completed FastCGI response: the CGI head parsed, the body, stderr and timing. */
import { splitCgiOutput } from './cgi-head.ts';

export class FastCgiResponse {
  /** The client's id for this request (sendAsyncRequest's return value). */
  readonly requestId: number;
  /** The server that answered (`host:port` or `unix:/path`). */
  readonly server: string;
  readonly status: number;
  /** The reason phrase from a `Status:` header, or ''. */
  readonly statusText: string;
  /** Header fields in order, as the application sent them (Status excluded). */
  readonly headers: ReadonlyArray<readonly [string, string]>;
  readonly body: Buffer;
  /** The whole stdout: head and body. */
  readonly output: Buffer;
  /** Everything on FCGI_STDERR (PHP notices, error_log() output). */
  readonly stderr: string;
  /** The application's exit status from FCGI_END_REQUEST. */
  readonly appStatus: number;
  /** From the request's first byte sent to FCGI_END_REQUEST. */
  readonly durationMs: number;

  constructor(init: { requestId: number; server: string; output: Buffer; stderr: string; appStatus: number; durationMs: number }) {
    const { head, body } = splitCgiOutput(init.output);
    this.requestId = init.requestId;
    this.server = init.server;
    this.status = head.status;
    this.statusText = head.statusText;
    this.headers = head.headers;
    this.body = body;
    this.output = init.output;
    this.stderr = init.stderr;
    this.appStatus = init.appStatus;
    this.durationMs = init.durationMs;
  }

  /** The first value of a header (case-insensitive). */
  header(name: string): string | undefined {
    const lower = name.toLowerCase();
    return this.headers.find(([n]) => n.toLowerCase() === lower)?.[1];
  }

  /** Every value of a header (Set-Cookie may repeat). */
  headerValues(name: string): string[] {
    const lower = name.toLowerCase();
    return this.headers.filter(([n]) => n.toLowerCase() === lower).map(([, v]) => v);
  }

  /** Headers by lower-case name. */
  headerMap(): Map<string, string[]> {
    const map = new Map<string, string[]>();
    for (const [n, v] of this.headers) {
      const key = n.toLowerCase();
      const list = map.get(key);
      if (list === undefined) map.set(key, [v]);
      else list.push(v);
    }
    return map;
  }

  text(): string {
    return this.body.toString('utf8');
  }

  json<T = unknown>(): T {
    return JSON.parse(this.text()) as T;
  }
}
