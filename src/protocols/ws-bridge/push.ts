/**
 * The API's push (ws2api "API to WS"): `POST /<ClientId>` to the bridge
 * with a body → that body goes to the client as one message. 200 `ok` when
 * delivered (here or by a sibling worker), 404 when the client is connected
 * to no worker, 413 over maxMessageBytes, 503 when a sibling did not answer
 * in time and nobody delivered.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { pushElsewhere } from './cross-worker.ts';
import type { BridgeStats } from './metrics.ts';

export interface PushTarget {
  readonly name: string;
  readonly maxMessageBytes: number;
  readonly stats: BridgeStats;
  /** Sends to a client of this process; false when it holds none with that id. */
  deliver(clientId: string, body: Buffer, binary: boolean): boolean;
  /** Counts a push as a session until it is answered (drain waits for it). */
  pushStarted(): void;
  pushEnded(): void;
}

const OCTETS = 'application/octet-stream';

export function handlePush(target: PushTarget, clientId: string, req: IncomingMessage, res: ServerResponse): void {
  const declared = Number(req.headers['content-length']);
  if (declared > target.maxMessageBytes) {
    answer(res, 413, `push body over maxMessageBytes (${target.maxMessageBytes})`, true);
    return;
  }
  target.pushStarted();
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  req.on('data', (chunk: Buffer) => {
    if (over) return;
    size += chunk.length;
    if (size > target.maxMessageBytes) {
      over = true;
      chunks.length = 0;
      return;
    }
    chunks.push(chunk);
  });
  req.once('error', () => {
    over = true;
  });
  req.once('end', () => {
    if (over) {
      answer(res, 413, `push body over maxMessageBytes (${target.maxMessageBytes})`, true);
      target.pushEnded();
      return;
    }
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    const type = req.headers['content-type'];
    const binary = (typeof type === 'string' && type.toLowerCase().startsWith(OCTETS)) || !isUtf8(body);
    void deliver(target, clientId, body, binary, res).finally(() => target.pushEnded());
  });
  req.once('close', () => {
    if (!req.complete) target.pushEnded();
  });
}

async function deliver(target: PushTarget, clientId: string, body: Buffer, binary: boolean, res: ServerResponse): Promise<void> {
  if (target.deliver(clientId, body, binary)) {
    answer(res, 200, 'ok', false);
    return;
  }
  const elsewhere = await pushElsewhere(target.name, clientId, body, binary);
  if (elsewhere.delivered) {
    answer(res, 200, 'ok', false);
  } else if (elsewhere.missing > 0) {
    answer(res, 503, 'not every bridge worker answered; the client may be connected', false);
  } else {
    target.stats.pushesNotFound++;
    answer(res, 404, 'client not connected', false);
  }
}

function answer(res: ServerResponse, status: number, text: string, close: boolean): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string | number> = { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) };
  if (close) headers.connection = 'close';
  res.writeHead(status, headers).end(text);
}
