/**
 * The API's push (ws2api "API to WS"): `POST /<ClientId>` to the bridge
 * with a body → that body goes to the client as one message. 200 `ok` when
 * delivered (here, by a sibling worker or by another instance of the
 * fleet), 404 when the client is connected nowhere, 413 over maxMessageBytes, 503 when a sibling did not answer
 * in time and nobody delivered. Refusals are PolyproxyErrors the listener
 * counts and answers through core's error pages (errors.ts).
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PolyproxyError } from '../../core/errors.ts';
import type { FleetClients } from '../../fleet/ws-clients.ts';
import { pushInFleet } from './cross-instance.ts';
import { pushElsewhere } from './cross-worker.ts';
import { clientNotConnected, pushUndecided, tooLarge } from './errors.ts';
import type { BridgeStats } from './metrics.ts';

export interface PushTarget {
  readonly name: string;
  readonly maxMessageBytes: number;
  readonly stats: BridgeStats;
  /** The fleet's registry of this listener's clients (`cluster.redis`), or null. */
  readonly fleetClients: FleetClients | null;
  /** Sends to a client of this process; false when it holds none with that id. */
  deliver(clientId: string, body: Buffer, binary: boolean): boolean;
  /** Counts a push as a session until it is answered (drain waits for it). */
  pushStarted(): void;
  pushEnded(): void;
  /** Counts the failure and answers it; `close` when the request's body was left unread. */
  refusePush(req: IncomingMessage, res: ServerResponse, error: PolyproxyError, close: boolean): void;
}

const OCTETS = 'application/octet-stream';

export function handlePush(target: PushTarget, clientId: string, req: IncomingMessage, res: ServerResponse): void {
  const declared = Number(req.headers['content-length']);
  if (declared > target.maxMessageBytes) {
    target.refusePush(req, res, tooLarge(target.maxMessageBytes), true);
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
      target.refusePush(req, res, tooLarge(target.maxMessageBytes), true);
      target.pushEnded();
      return;
    }
    const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, size);
    const type = req.headers['content-type'];
    const binary = (typeof type === 'string' && type.toLowerCase().startsWith(OCTETS)) || !isUtf8(body);
    void deliver(target, clientId, body, binary, req, res).finally(() => target.pushEnded());
  });
  req.once('close', () => {
    if (!req.complete) target.pushEnded();
  });
}

async function deliver(target: PushTarget, clientId: string, body: Buffer, binary: boolean, req: IncomingMessage, res: ServerResponse): Promise<void> {
  if (target.deliver(clientId, body, binary)) {
    delivered(res);
    return;
  }
  const elsewhere = await pushElsewhere(target.name, clientId, body, binary);
  if (elsewhere.delivered) {
    delivered(res);
    return;
  }
  // Another instance of the fleet may hold it (404 only when none does).
  const inFleet = target.fleetClients === null ? 'not-found' : await pushInFleet(target.fleetClients, target.name, clientId, body, binary);
  if (inFleet === 'delivered') {
    delivered(res);
  } else if (elsewhere.missing > 0 || inFleet === 'undecided') {
    target.refusePush(req, res, pushUndecided(), false);
  } else {
    target.stats.pushesNotFound++;
    target.refusePush(req, res, clientNotConnected(), false);
  }
}

function delivered(res: ServerResponse): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': 2 }).end('ok');
}
