/** Protocol modules by config name. */
import type { ListenerConfig } from '../config/schema.ts';
import type { ProtocolModule } from '../core/protocol.ts';
import { MAX_OPENING_BUFFER as MONGODB_MAX_OPENING_BUFFER } from './mongodb/wire.ts';
import { createMongoProtocol } from './mongodb/protocol.ts';
import { createHttpProtocol } from './http/connection.ts';
import { MAX_OPENING_BYTES as MYSQL_MAX_OPENING_BYTES, createMysqlProtocol } from './mysql/handshake.ts';
import { createPostgresProtocol } from './postgres/opening.ts';
import { createSmtpProtocol } from './smtp/session.ts';
import { createTcpProtocol } from './tcp/opening.ts';

export function createProtocol(listener: ListenerConfig, name: string): ProtocolModule {
  switch (listener.protocol) {
    case 'postgres':
      return createPostgresProtocol();
    case 'mongodb':
      return createMongoProtocol();
    case 'mysql':
      return createMysqlProtocol({ handshakeTimeoutMs: listener.handshakeTimeoutMs, serverVersion: listener.serverVersion });
    case 'tcp':
      return createTcpProtocol(name, listener);
    case 'smtp':
      return createSmtpProtocol({ routeBy: listener.routeBy, hostname: listener.hostname, maxLineLength: listener.maxLineLength, replayTimeoutMs: listener.connectTimeoutMs });
    case 'http':
      return createHttpProtocol(listener);
    case 'ws-bridge':
      // Serves on its own HTTP server (src/protocols/ws-bridge/), not through core's pipeline.
      throw new Error(`listener ${name}: ws-bridge is not a pipeline protocol`);
    case 'fastcgi':
      // Serves on its own HTTP server (src/protocols/fastcgi/), not through core's pipeline.
      throw new Error(`listener ${name}: fastcgi is not a pipeline protocol`);
  }
}

/** How many opening bytes a protocol may buffer before the client is refused. */
export function maxOpeningBytes(listener: ListenerConfig): number {
  switch (listener.protocol) {
    case 'postgres':
      return 16 * 1024;
    case 'mongodb':
      return MONGODB_MAX_OPENING_BUFFER;
    case 'mysql':
      return MYSQL_MAX_OPENING_BYTES;
    case 'tcp':
      return 64 * 1024;
    case 'smtp':
      // Pipelined commands before routing (routeBy: rcpt), each at most maxLineLength.
      return 64 * 1024;
    case 'http':
      return listener.maxHeadBytes;
    case 'ws-bridge':
    case 'fastcgi':
      return 0;
  }
}
