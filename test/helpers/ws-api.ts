/**
 * A ws2api API server for ws-bridge tests: a real node:http server that
 * records every request the bridge makes (method, path, content type, body)
 * and answers through a replaceable handler (default: `ok` to GET, echo
 * `re:<body>` to POST, empty to DELETE).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ApiRequest {
  readonly method: string;
  readonly path: string;
  readonly contentType: string | undefined;
  readonly body: Buffer;
  readonly headers: http.IncomingHttpHeaders;
}

export interface ApiReply {
  readonly status?: number;
  readonly body?: string | Buffer;
  readonly contentType?: string;
  /** Answer after this many ms. */
  readonly delayMs?: number;
}

export type ApiHandler = (req: ApiRequest) => ApiReply | Promise<ApiReply>;

export const defaultHandler: ApiHandler = (req) => {
  if (req.method === 'GET') return { body: 'ok' };
  if (req.method === 'POST') return req.contentType === 'application/octet-stream' ? { body: req.body, contentType: 'application/octet-stream' } : { body: `re:${req.body.toString('utf8')}` };
  return {};
};

export interface TestApi {
  readonly port: number;
  /** `http://127.0.0.1:<port>/wsoverhttp/` */
  readonly url: string;
  readonly requests: ApiRequest[];
  handler: ApiHandler;
  /** Resolves with the first recorded request (past or future) matching. */
  waitFor(predicate: (req: ApiRequest) => boolean, timeoutMs?: number): Promise<ApiRequest>;
  close(): Promise<void>;
}

export const API_BASE = '/wsoverhttp/';

export async function startApi(handler: ApiHandler = defaultHandler): Promise<TestApi> {
  const requests: ApiRequest[] = [];
  const waiters: Array<{ predicate: (req: ApiRequest) => boolean; resolve: (req: ApiRequest) => void }> = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const record: ApiRequest = { method: req.method ?? '', path: req.url ?? '', contentType: req.headers['content-type'], body: Buffer.concat(chunks), headers: req.headers };
      requests.push(record);
      for (let i = waiters.length - 1; i >= 0; i--) {
        const w = waiters[i];
        if (w !== undefined && w.predicate(record)) {
          waiters.splice(i, 1);
          w.resolve(record);
        }
      }
      void Promise.resolve(api.handler(record)).then(async (reply) => {
        if (reply.delayMs !== undefined) await new Promise((r) => setTimeout(r, reply.delayMs));
        if (res.destroyed) return;
        const body = reply.body ?? '';
        res.writeHead(reply.status ?? 200, { 'content-type': reply.contentType ?? 'text/plain', 'content-length': Buffer.byteLength(body) }).end(body);
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const api: TestApi = {
    port,
    url: `http://127.0.0.1:${port}${API_BASE}`,
    requests,
    handler,
    waitFor(predicate, timeoutMs = 5000) {
      const found = requests.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no matching API request within ${timeoutMs} ms; saw ${JSON.stringify(requests.map((r) => `${r.method} ${r.path} ${r.body.toString()}`))}`)), timeoutMs);
        waiters.push({
          predicate,
          resolve: (req) => {
            clearTimeout(timer);
            resolve(req);
          },
        });
      });
    },
    close() {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  return api;
}
