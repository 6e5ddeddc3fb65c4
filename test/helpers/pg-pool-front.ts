/**
 * The PostgreSQL pool without the listener around it: a loopback server
 * that answers SSLRequest with 'N', reads the StartupMessage, says
 * AuthenticationOk (trust) and hands the client to a pooled ClientSession
 * (src/protocols/postgres/pool/). Lets the pool's unit-level integration
 * tests drive it with real clients (pg, psql, pgbench) against the real
 * PostgreSQL, independent of proxy-side authentication. Server logins are
 * trust logins (the machine's PostgreSQL trusts loopback).
 */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { parseEndpoint } from '../../src/core/endpoint.ts';
import { log } from '../../src/core/logger.ts';
import { parseStartupPacket } from '../../src/protocols/postgres/parse.ts';
import type { StartupPacket } from '../../src/protocols/postgres/parse.ts';
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

/** A trust-only login: StartupMessage, then the server's messages up to ReadyForQuery. */
export const trustLogin: ServerLogin = (socket, options) =>
  new Promise((resolve, reject) => {
    const pairs = Buffer.from(`user\0${options.user}\0database\0${options.database}\0\0`);
    const startup = Buffer.alloc(8 + pairs.length);
    startup.writeUInt32BE(startup.length, 0);
    startup.writeUInt32BE(0x00030000, 4);
    pairs.copy(startup, 8);
    let buffered = Buffer.alloc(0);
    const parameters = new Map<string, string>();
    let processId = 0;
    let secretKey = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      buffered = Buffer.concat([buffered, chunk]);
      while (buffered.length >= 5) {
        const length = buffered.readUInt32BE(1);
        if (buffered.length < 1 + length) return;
        const type = buffered[0];
        const body = buffered.subarray(5, 1 + length);
        buffered = buffered.subarray(1 + length);
        if (type === 0x53) {
          const [name, value] = body.toString('utf8').split('\0');
          parameters.set(name as string, value as string);
        } else if (type === 0x4b) {
          processId = body.readUInt32BE(0);
          secretKey = Buffer.from(body.subarray(4));
        } else if (type === 0x45) {
          socket.removeListener('data', onData);
          const fields = new Map<string, string>();
          for (const part of body.toString('utf8').split('\0')) if (part.length > 1) fields.set(part[0] as string, part.slice(1));
          const raw = Buffer.alloc(5 + body.length);
          raw[0] = 0x45;
          raw.writeUInt32BE(4 + body.length, 1);
          body.copy(raw, 5);
          reject(Object.assign(new Error(fields.get('M') ?? 'login refused'), { sqlstate: fields.get('C') ?? 'XX000', raw }));
          return;
        } else if (type === 0x52 && body.readUInt32BE(0) !== 0) {
          socket.removeListener('data', onData);
          reject(new Error('the server asked for a password (the pool front logs in with trust only)'));
          return;
        } else if (type === 0x5a) {
          socket.removeListener('data', onData);
          socket.pause();
          resolve({ parameters, processId, secretKey, leftover: buffered.length > 0 ? Buffer.from(buffered) : null });
          return;
        }
      }
    };
    socket.on('data', onData);
    socket.write(startup);
  });

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
    login: options.login ?? trustLogin,
    log,
    connectTimeoutMs: 5000,
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
        socket.destroy();
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
