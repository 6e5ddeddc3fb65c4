/**
 * Backend connections for the HTTP/2 side's clients (its own HTTP/1.1
 * client, h1-backends.ts, and node:http2 for h2): ordinary sockets, since
 * both read them themselves (core's dials read through the shared buffer,
 * which neither can use).
 * Candidates in order, each result fed to the endpoint's breaker.
 */
import net from 'node:net';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import type { EndpointHealth } from '../../../core/health.ts';

/** A connect that failed: nothing of the request reached the backend. */
export class DialError extends Error {
  readonly code: string | undefined;

  constructor(message: string, options: { cause?: unknown; code?: string | undefined } = {}) {
    super(message, { cause: options.cause });
    this.name = 'DialError';
    this.code = options.code;
  }
}

export interface Dialed {
  readonly socket: net.Socket;
  readonly endpoint: Endpoint;
}

/** One endpoint; rejects on error or after `timeoutMs`. */
export function dialOne(endpoint: Endpoint, timeoutMs: number, keepAliveMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.type === 'unix'
        ? net.connect({ path: endpoint.path })
        : net.connect({ host: endpoint.host, port: endpoint.port, noDelay: true, keepAlive: keepAliveMs > 0, keepAliveInitialDelay: keepAliveMs });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new DialError(`connect timed out after ${timeoutMs} ms`, { code: 'ETIMEDOUT' }));
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeAllListeners('error');
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new DialError(err.message, { cause: err, code: err.code }));
    });
  });
}

/** The first candidate that accepts; BACKEND_UNREACHABLE naming each one tried. */
export async function dialFirst(candidates: readonly Endpoint[], timeoutMs: number, keepAliveMs: number, health: EndpointHealth | undefined): Promise<Dialed> {
  const problems: string[] = [];
  for (const endpoint of candidates) {
    try {
      const socket = await dialOne(endpoint, timeoutMs, keepAliveMs);
      health?.succeeded(endpoint);
      return { socket, endpoint };
    } catch (err) {
      const why = (err as Error).message;
      health?.failed(endpoint, why);
      problems.push(`${endpoint.label}: ${why}`);
    }
  }
  throw new PolyproxyError('BACKEND_UNREACHABLE', `no backend accepted the connection (${problems.join('; ')})`, { source: 'backend' });
}
