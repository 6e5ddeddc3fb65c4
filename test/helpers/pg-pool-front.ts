/**
 * The PostgreSQL pool without the listener around it: a loopback server
 * that answers SSLRequest with 'N', reads the StartupMessage, says
 * AuthenticationOk (trust) and hands the client to a pooled ClientSession
 * (src/protocols/postgres/pool/). Lets the pool's tests drive it with real
 * clients (pg, psql, pgbench) against the real PostgreSQL without
 * proxy-side authentication in the way. The pool logs in to servers with
 * auth/backend-login.ts and no password (the machine's PostgreSQL trusts
 * loopback).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { sendOneShot } from '../../src/core/connect.ts';
import { parseEndpoint } from '../../src/core/endpoint.ts';
import { log } from '../../src/core/logger.ts';
import { backendLogin } from '../../src/protocols/postgres/auth/backend-login.ts';
import { parseStartupPacket } from '../../src/protocols/postgres/parse.ts';
import type { StartupPacket } from '../../src/protocols/postgres/parse.ts';
import { pooledCancel } from '../../src/protocols/postgres/pool/cancel-keys.ts';
import { ClientSession } from '../../src/protocols/postgres/pool/client-session.ts';
import { authenticationOk, errorMessage, POOL_SQLSTATE } from '../../src/protocols/postgres/pool/messages.ts';
import { startupParameters } from '../../src/protocols/postgres/pool/parameters.ts';
import { PoolManager } from '../../src/protocols/postgres/pool/server-pool.ts';
import type { PoolSettings, ServerLogin } from '../../src/protocols/postgres/pool/server-pool.ts';
import { forgetPools, newPoolStats } from '../../src/protocols/postgres/pool/stats.ts';
import { PG_HOST, PG_PORT } from './services.ts';

export const DEFAULT_SETTINGS: PoolSettings = {
  mode: 'transaction',
  size: 5,
  minSize: 0,
  maxClientConnections: 1000,
  maxServerConnectionsPerBackend: 100,
  queueTimeoutMs: 5000,
  serverIdleTimeoutMs: 600000,
};

export interface PoolFront {
  readonly port: number;
  readonly manager: PoolManager;
  readonly sessions: Set<ClientSession>;
  close(): Promise<void>;
}

let fronts = 0;

/** Starts a pool front on a free loopback port with `settings` (defaults above) against the machine's PostgreSQL. */
export async function startPoolFront(settings: Partial<PoolSettings> = {}, options: { backend?: string; login?: ServerLogin } = {}): Promise<PoolFront> {
  const all: PoolSettings = { ...DEFAULT_SETTINGS, ...settings };
  const listener = `pool-front-${++fronts}`;
  const manager = new PoolManager({
    settings: all,
    login: options.login ?? backendLogin,
    log,
    connectTimeoutMs: 5000,
    loginTimeoutMs: 5000,
    tcpKeepAliveMs: 0,
    makeStats: (pool) => newPoolStats(listener, pool, all.mode),
  });
  const endpoint = parseEndpoint(options.backend ?? `${PG_HOST}:${PG_PORT}`);
  const sessions = new Set<ClientSession>();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      let packet: { value: StartupPacket; consumed: number } | undefined;
      try {
        packet = parseStartupPacket(buffered);
      } catch (err) {
        socket.end(errorMessage('FATAL', POOL_SQLSTATE.PROTOCOL_VIOLATION, (err as Error).message));
        return;
      }
      if (packet === undefined) return;
      buffered = buffered.subarray(packet.consumed);
      const value = packet.value;
      if (value.type === 'ssl' || value.type === 'gssenc') {
        socket.write('N');
        return;
      }
      socket.removeListener('data', onData);
      if (value.type === 'cancel') {
        // As the listener does: a pooled client's key reaches the server running its query now.
        const target = pooledCancel(value.key);
        socket.destroy();
        if (target !== undefined && target !== null) void sendOneShot(target.endpoint, target.packet, 5000).catch(() => {});
        return;
      }
      socket.pause();
      const user = value.params.get('user') as string;
      const database = value.params.get('database') || user;
      const startup = startupParameters(value.params);
      if (typeof startup === 'string') {
        socket.end(errorMessage('FATAL', POOL_SQLSTATE.PROTOCOL_VIOLATION, startup));
        return;
      }
      if (!manager.admit(database)) {
        socket.end(errorMessage('FATAL', POOL_SQLSTATE.TOO_MANY, 'sorry, too many clients already'));
        return;
      }
      socket.write(authenticationOk());
      const pool = manager.pool(endpoint, database, user, { kind: 'none' });
      const session = new ClientSession(socket, buffered.length > 0 ? Buffer.from(buffered) : null, { manager, pool, tenant: database, startup });
      sessions.add(session);
      void session.done.then(() => sessions.delete(session));
    };
    socket.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    manager,
    sessions,
    async close() {
      for (const socket of sockets) socket.destroy();
      manager.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      forgetPools(listener);
    },
  };
}
