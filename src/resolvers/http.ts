/**
 * `resolver.http`: the platform's control plane answers over HTTP.
 * `GET <url>?id=<id>&protocol=<p>&listener=<l>`:
 * - 200 with a JSON Route (or a bare `"host:port"` string) → that route;
 * - 404 → this source does not know the id: the next source is asked;
 * - 403 → FORBIDDEN;
 * - anything else (5xx, a body that is not JSON), a refused connection or
 *   no answer within `timeoutMs` → UNAVAILABLE, which every protocol answers
 *   natively (HTTP 503, SQLSTATE 57P03, ...).
 *
 * track() POSTs `{"id", "bytesIn", "bytesOut", "connections"}` to
 * `<url>/track` when `track: true` (fire and forget, same timeout).
 * Connections to the control plane are kept alive (one undici Agent).
 */
import { Agent, request } from 'undici';
import { PolyproxyError, ResolveError } from '../core/errors.ts';
import type { Activity, ResolveContext, Resolver, Route } from '../core/resolver.ts';

export interface HttpResolverOptions {
  readonly url: string;
  readonly timeoutMs: number;
  /** POST activity to `<url>/track`. */
  readonly track: boolean;
}

/** Larger answers are not a route. */
const MAX_BODY_BYTES = 64 * 1024;

export class HttpResolver implements Resolver {
  readonly #url: URL;
  readonly #trackUrl: string;
  readonly #timeoutMs: number;
  readonly #track: boolean;
  readonly #agent: Agent;
  #lookups = 0;
  #found = 0;
  #notFound = 0;
  #failures = 0;
  #tracked = 0;
  #trackFailures = 0;

  constructor(options: HttpResolverOptions) {
    this.#url = new URL(options.url);
    this.#trackUrl = `${options.url.replace(/\/+$/, '')}/track`;
    this.#timeoutMs = options.timeoutMs;
    this.#track = options.track;
    this.#agent = new Agent({ keepAliveTimeout: 10_000, connectTimeout: options.timeoutMs, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs });
  }

  async resolve(resourceId: string, ctx: ResolveContext): Promise<Route | null> {
    this.#lookups++;
    const url = new URL(this.#url);
    url.searchParams.set('id', resourceId);
    url.searchParams.set('protocol', ctx.protocol);
    url.searchParams.set('listener', ctx.listener);
    let status: number;
    let text: string;
    try {
      const res = await request(url, { method: 'GET', dispatcher: this.#agent, signal: AbortSignal.timeout(this.#timeoutMs), headers: { accept: 'application/json' } });
      status = res.statusCode;
      text = await readCapped(res.body);
    } catch (err) {
      this.#failures++;
      const why = (err as Error).name === 'TimeoutError' || (err as { code?: string }).code === 'UND_ERR_HEADERS_TIMEOUT' ? `no answer within ${this.#timeoutMs} ms` : (err as Error).message;
      throw new ResolveError('UNAVAILABLE', `resolver "http": ${why}`, { cause: err });
    }
    if (status === 404) {
      this.#notFound++;
      return null;
    }
    if (status === 403) throw new ResolveError('FORBIDDEN', `resolver "http": the control plane refused "${resourceId}"`);
    if (status !== 200) {
      this.#failures++;
      throw new ResolveError('UNAVAILABLE', `resolver "http": the control plane answered ${status}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      this.#failures++;
      throw new ResolveError('UNAVAILABLE', `resolver "http": the control plane's answer for "${resourceId}" is not JSON`);
    }
    this.#found++;
    if (typeof parsed === 'string') return { endpoint: parsed };
    return parsed as Route; // checked field by field by the router (route-check.ts)
  }

  track(resourceId: string, activity: Activity): void {
    if (!this.#track) return;
    this.#tracked++;
    const body = JSON.stringify({ id: resourceId, bytesIn: activity.bytesIn, bytesOut: activity.bytesOut, connections: activity.connections });
    request(this.#trackUrl, { method: 'POST', dispatcher: this.#agent, signal: AbortSignal.timeout(this.#timeoutMs), headers: { 'content-type': 'application/json' }, body }).then(
      (res) => {
        if (res.statusCode >= 300) this.#trackFailures++;
        res.body.resume();
      },
      () => {
        this.#trackFailures++;
      },
    );
  }

  stats(): Record<string, unknown> {
    return { lookups: this.#lookups, found: this.#found, notFound: this.#notFound, failures: this.#failures, tracked: this.#tracked, trackFailures: this.#trackFailures };
  }

  close(): Promise<void> {
    return this.#agent.close();
  }
}

async function readCapped(body: AsyncIterable<Buffer> & { destroy(): void }): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      body.destroy();
      throw new PolyproxyError('UNAVAILABLE', `resolver "http": answer over ${MAX_BODY_BYTES} bytes`);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}
