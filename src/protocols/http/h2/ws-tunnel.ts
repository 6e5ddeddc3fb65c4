/**
 * WebSockets over HTTP/2 (RFC 8441): the listener announces
 * SETTINGS_ENABLE_CONNECT_PROTOCOL, a client opens a stream with
 * `:method CONNECT` and `:protocol websocket`, and the stream carries the
 * WebSocket frames both ways. The backend is an ordinary HTTP/1.1
 * WebSocket server: the proxy opens a connection to it and sends the
 * HTTP/1.1 Upgrade request (RFC 6455 §4.1, with its own Sec-WebSocket-Key,
 * whose Sec-WebSocket-Accept it checks), the client's subprotocols,
 * extensions, Origin, cookies and other fields, and the X-Forwarded-*
 * fields; a 101 becomes the stream's 200 (with the backend's chosen
 * subprotocol and extensions), and from then on the stream and the socket
 * are piped to each other, frames untouched (the WebSocket framing is the
 * same over both, RFC 8441 §5). Any other answer is relayed as the
 * stream's status; a backend that does not answer within backendTimeoutMs
 * is a 504. Routes with `protocol: h2` get 501 (that would need RFC 8441 on
 * the backend leg too).
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import { HttpStatusError } from '../../../core/http-error-response.ts';
import type { RouteDecision } from '../../../core/router.ts';
import { dialFirst } from './dial.ts';
import type { H2Exchange } from './exchange.ts';
import { NO_ERROR } from './wire/frames.ts';
import type { H2Stream } from './wire/stream.ts';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest backend response head read before the tunnel opens. */
const MAX_HEAD = 64 * 1024;
/** Request fields not passed on: the proxy's own Upgrade request sets these (RFC 6455 §4.1), or they are hop-by-hop. */
const DROP = new Set([
  'host',
  'connection',
  'upgrade',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'content-length',
  'sec-websocket-key',
  'sec-websocket-version',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
]);

/** RFC 8441 §4: an extended CONNECT for the WebSocket protocol. */
export function isWebSocketConnect(method: string, protocol: string | string[] | undefined): boolean {
  return method === 'CONNECT' && typeof protocol === 'string' && protocol.toLowerCase() === 'websocket';
}

/** Opens the tunnel for a routed extended CONNECT stream; failures are answered on the stream (exchange.fail). */
export async function openWebSocketTunnel(ex: H2Exchange, decision: RouteDecision): Promise<void> {
  if (decision.entry.route.protocol === 'h2') {
    ex.fail(new HttpStatusError('PROTOCOL', 501, 'WebSockets over HTTP/2 to an HTTP/2 backend are not supported', { source: 'client', ...(ex.resourceId === undefined ? {} : { resourceId: ex.resourceId }) }));
    return;
  }
  const conn = ex.conn;
  const core = conn.core;
  let socket: Socket;
  try {
    const timeoutMs = decision.entry.route.timeoutMs ?? core.connectTimeoutMs;
    socket = (await dialFirst(decision.candidates as readonly Endpoint[], timeoutMs, core.tcpKeepAliveMs, core.router.health)).socket;
  } catch (err) {
    ex.fail(new PolyproxyError('BACKEND_UNREACHABLE', (err as Error).message, { source: 'backend', ...(ex.resourceId === undefined ? {} : { resourceId: ex.resourceId }), cause: err }));
    return;
  }
  if (ex.done || ex.stream.destroyed) {
    socket.destroy();
    return;
  }
  const key = randomBytes(16).toString('base64');
  const authority = ex.authority as string;
  let head = `GET ${ex.path} HTTP/1.1\r\nhost: ${authority}\r\nconnection: Upgrade\r\nupgrade: websocket\r\nsec-websocket-version: 13\r\nsec-websocket-key: ${key}\r\n`;
  let forwardedFor: string | undefined;
  const raw = ex.raw;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i] as string;
    const value = raw[i + 1] as string;
    if (name.charCodeAt(0) === 0x3a) continue;
    if (name === 'x-forwarded-for') forwardedFor = forwardedFor === undefined ? value : `${forwardedFor}, ${value}`;
    if (DROP.has(name)) continue;
    head += `${name}: ${value}\r\n`;
  }
  const fwd = conn.forward;
  const client = fwd.clientAddress.startsWith('::ffff:') ? fwd.clientAddress.slice(7) : fwd.clientAddress;
  head += `x-forwarded-for: ${forwardedFor === undefined ? client : `${forwardedFor}, ${client}`}\r\nx-forwarded-proto: ${fwd.proto}\r\nx-forwarded-host: ${authority}\r\n\r\n`;
  new Tunnel(ex, socket, key).start(head);
}

/** One WebSocket tunnel: the backend's answer to the Upgrade, then the two pipes. */
class Tunnel {
  readonly ex: H2Exchange;
  readonly socket: Socket;
  readonly key: string;
  #buf: Buffer = Buffer.alloc(0);
  #timer: NodeJS.Timeout | null = null;
  #open = false;

  constructor(ex: H2Exchange, socket: Socket, key: string) {
    this.ex = ex;
    this.socket = socket;
    this.key = key;
  }

  start(head: string): void {
    const socket = this.socket;
    socket.on('data', this.#onHead);
    socket.on('error', this.#onSocketGone);
    socket.on('close', this.#onSocketGone);
    this.ex.stream.once('close', this.#onStreamClose);
    this.#timer = setTimeout(this.#onTimeout, this.ex.conn.backendTimeoutMs);
    socket.write(head);
  }

  readonly #onHead = (chunk: Buffer): void => {
    this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.#buf.length > MAX_HEAD) this.#refuse(new PolyproxyError('BACKEND_UNREACHABLE', 'the backend answered the WebSocket upgrade with an oversized head', { source: 'backend' }));
      return;
    }
    this.#clearTimer();
    this.socket.removeListener('data', this.#onHead);
    const lines = this.#buf.toString('latin1', 0, end).split('\r\n');
    const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
    const fields = new Map<string, string>();
    for (let i = 1; i < lines.length; i++) {
      const line = lines[i] as string;
      const colon = line.indexOf(':');
      if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
    }
    const ex = this.ex;
    const stream = ex.stream;
    if (status !== 101) {
      if (status < 200 || status > 599) {
        this.#refuse(new PolyproxyError('BACKEND_UNREACHABLE', 'the backend sent no valid answer to the WebSocket upgrade', { source: 'backend' }));
        return;
      }
      // The backend refused the upgrade (403, 404...): its status, without its body.
      ex.responded = true;
      ex.done = true;
      stream.respond({ ':status': status, 'content-length': '0' }, { endStream: true });
      closeWhenSent(stream);
      this.socket.destroy();
      return;
    }
    const accept = createHash('sha1').update(this.key + WS_GUID).digest('base64');
    if (fields.get('sec-websocket-accept') !== accept || fields.get('upgrade')?.toLowerCase() !== 'websocket') {
      this.#refuse(new PolyproxyError('BACKEND_UNREACHABLE', 'the backend answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept or Upgrade', { source: 'backend' }));
      return;
    }
    if (ex.done || stream.destroyed) {
      this.socket.destroy();
      return;
    }
    const headers: Record<string, string | number> = { ':status': 200 };
    const protocol = fields.get('sec-websocket-protocol');
    if (protocol !== undefined) headers['sec-websocket-protocol'] = protocol;
    const extensions = fields.get('sec-websocket-extensions');
    if (extensions !== undefined) headers['sec-websocket-extensions'] = extensions;
    ex.responded = true;
    ex.done = true;
    this.#open = true;
    stream.respond(headers);
    const rest = this.#buf.subarray(end + 4);
    this.#buf = Buffer.alloc(0);
    if (rest.length > 0) stream.write(rest);
    // Readable.pipe needs only write/end/'drain'/'close' of its destination, which H2Stream has.
    this.socket.pipe(stream as unknown as NodeJS.WritableStream);
    stream.pipe(this.socket);
  };

  #refuse(err: PolyproxyError): void {
    this.#clearTimer();
    this.socket.destroy();
    const ex = this.ex;
    ex.fail(new PolyproxyError(err.kind, err.message, { source: err.source, ...(ex.resourceId === undefined ? {} : { resourceId: ex.resourceId }) }));
  }

  readonly #onTimeout = (): void => {
    this.#timer = null;
    const ex = this.ex;
    this.socket.destroy();
    ex.fail(new PolyproxyError('TIMEOUT', `the backend did not answer the WebSocket upgrade within ${ex.conn.backendTimeoutMs} ms`, { source: 'backend', ...(ex.resourceId === undefined ? {} : { resourceId: ex.resourceId }) }));
  };

  /** The backend connection ended: the tunnel's stream ends with it (before the 101: a 502). */
  readonly #onSocketGone = (): void => {
    this.#clearTimer();
    const ex = this.ex;
    if (!this.#open) {
      ex.fail(new PolyproxyError('BACKEND_UNREACHABLE', 'the backend closed the connection during the WebSocket upgrade', { source: 'backend', ...(ex.resourceId === undefined ? {} : { resourceId: ex.resourceId }) }));
      return;
    }
    const stream = ex.stream;
    if (stream.destroyed) return;
    if (!stream.writableEnded) stream.end();
    closeWhenSent(stream);
  };

  readonly #onStreamClose = (): void => {
    this.#clearTimer();
    if (!this.socket.destroyed) this.socket.destroy();
  };

  #clearTimer(): void {
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
  }
}

/** Our side is done and the client's may not be: RST_STREAM NO_ERROR once the last frame is out (RFC 9113 §8.1), so the stream does not hold the connection open. */
function closeWhenSent(stream: H2Stream): void {
  if (stream.closed) return;
  if (stream.writableFinished) stream.close(NO_ERROR);
  else stream.once('finish', closeNoError);
}

function closeNoError(this: H2Stream): void {
  if (!this.closed) this.close(NO_ERROR);
}
