/** Protocol modules by config name. */
import type { ListenerConfig } from '../config/schema.ts';
import type { ProtocolModule } from '../core/protocol.ts';
import { createPostgresProtocol } from './postgres/index.ts';
import { createTcpProtocol } from './tcp/index.ts';

export function createProtocol(listener: ListenerConfig, name: string): ProtocolModule {
  switch (listener.protocol) {
    case 'postgres':
      return createPostgresProtocol();
    case 'tcp':
      return createTcpProtocol(name);
  }
}

/** How many opening bytes a protocol may buffer before the client is refused. */
export function maxOpeningBytes(listener: ListenerConfig): number {
  switch (listener.protocol) {
    case 'postgres':
      return 16 * 1024;
    case 'tcp':
      return 64 * 1024;
  }
}
