/** WebSocket client helpers for ws-bridge tests (the `ws` client). */
import type { IncomingMessage } from 'node:http';
import WebSocket from 'ws';

export interface Received {
  readonly data: Buffer;
  readonly isBinary: boolean;
}

/** A connected client that records its messages and its close. */
export class Client {
  readonly ws: WebSocket;
  readonly messages: Received[] = [];
  readonly closed: Promise<{ code: number; reason: string }>;
  #waiters: Array<() => void> = [];

  constructor(ws: WebSocket) {
    this.ws = ws;
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.messages.push({ data, isBinary });
      for (const w of this.#waiters.splice(0)) w();
    });
    this.closed = new Promise((resolve) => ws.once('close', (code: number, reason: Buffer) => resolve({ code, reason: reason.toString('utf8') })));
  }

  /** Resolves once `n` messages arrived in total. */
  async received(n: number, timeoutMs = 5000): Promise<Received[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.messages.length < n) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`expected ${n} messages, got ${this.messages.length}: ${JSON.stringify(this.messages.map((m) => m.data.toString()))}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.messages.slice(0, n);
  }

  close(code?: number, reason?: string): Promise<{ code: number; reason: string }> {
    this.ws.close(code, reason);
    return this.closed;
  }
}

export type ConnectResult = { ok: true; client: Client } | { ok: false; status: number; body: string };

/** Opens ws://127.0.0.1:<port>/<id>; a refused upgrade resolves with its HTTP status and body. */
export function connect(port: number, path: string, options: WebSocket.ClientOptions = {}): Promise<ConnectResult> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`, options);
    const client = new Client(ws);
    ws.once('open', () => resolve({ ok: true, client }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        resolve({ ok: false, status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
        ws.terminate();
      });
    });
    ws.once('error', (err) => reject(err));
  });
}

export async function connectOk(port: number, path: string, options: WebSocket.ClientOptions = {}): Promise<Client> {
  const result = await connect(port, path, options);
  if (!result.ok) throw new Error(`upgrade refused: ${result.status} ${result.body}`);
  return result.client;
}

/** The API's push: POST /<id> to the bridge. */
export async function push(port: number, id: string, body: string | Buffer, contentType = 'text/plain'): Promise<{ status: number; text: string }> {
  const res = await fetch(`http://127.0.0.1:${port}/${id}`, { method: 'POST', body: typeof body === 'string' ? body : new Uint8Array(body), headers: { 'content-type': contentType } });
  return { status: res.status, text: await res.text() };
}

/** Reads the bridge's metrics page into name → value (the listener's series). */
export async function metrics(port: number, path = '/metrics'): Promise<Map<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${port}${path}`)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(polyproxy_wsbridge_\w+)\{[^}]*\} (\S+)$/.exec(line);
    if (m !== null) out.set(m[1] as string, Number(m[2]));
  }
  return out;
}
