/**
 * Backend dialing. The connect loop is the only place that retries, and it
 * only retries before any byte has been written to a backend.
 */
import net from 'node:net';
import type { Endpoint } from './endpoint.ts';
import { PolyproxyError } from './errors.ts';
import type { EndpointHealth } from './health.ts';
import { backendOnRead } from './relay.ts';
import { onreadOption } from './shared-read-buffer.ts';

const BACKEND_ONREAD = onreadOption(backendOnRead);

/** Opens one connection; rejects on error or after `timeoutMs`. */
export function connectEndpoint(endpoint: Endpoint, timeoutMs: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket =
      endpoint.type === 'unix'
        ? net.connect({ path: endpoint.path, allowHalfOpen: true, onread: BACKEND_ONREAD })
        : net.connect({ host: endpoint.host, port: endpoint.port, allowHalfOpen: true, noDelay: true, onread: BACKEND_ONREAD });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`connect timeout after ${timeoutMs} ms`));
    }, timeoutMs);
    const onError = (err: Error): void => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      clearTimeout(timer);
      socket.removeListener('error', onError);
      resolve(socket);
    });
  });
}

export interface Connected {
  readonly socket: net.Socket;
  readonly endpoint: Endpoint;
}

/**
 * Tries each candidate in order and returns the first that accepts.
 * Fails with BACKEND_UNREACHABLE naming every endpoint tried. Each result
 * feeds `health` (passive failure counting for the circuit breakers).
 */
export async function connectFirst(candidates: readonly Endpoint[], timeoutMs: number, health?: EndpointHealth): Promise<Connected> {
  const failures: string[] = [];
  for (const endpoint of candidates) {
    let socket: net.Socket;
    try {
      socket = await connectEndpoint(endpoint, timeoutMs);
    } catch (err) {
      const why = (err as Error).message;
      failures.push(`${endpoint.label}: ${why}`);
      health?.failed(endpoint, why);
      continue;
    }
    health?.succeeded(endpoint);
    return { socket, endpoint };
  }
  throw new PolyproxyError('BACKEND_UNREACHABLE', `backend unreachable (${failures.join('; ')})`, { retryable: true });
}

/** Delivers a single message to an endpoint and closes (e.g. a PostgreSQL CancelRequest). */
export async function sendOneShot(endpoint: Endpoint, bytes: Buffer, timeoutMs: number): Promise<void> {
  const socket = await connectEndpoint(endpoint, timeoutMs);
  socket.on('error', noop);
  socket.resume();
  socket.end(bytes);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

function noop(): void {}
