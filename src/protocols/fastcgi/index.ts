/** The fastcgi listener: builds a FastCgiGateway from its validated config. */
import type { ListenerConfig } from '../../config/schema.ts';
import { parseEndpoint } from '../../core/endpoint.ts';
import type { Logger } from '../../core/logger.ts';
import { FastCgiGateway } from './gateway.ts';

export { FastCgiGateway } from './gateway.ts';
export type { GatewaySettings } from './gateway.ts';

type FastCgiListenerConfig = Extract<ListenerConfig, { protocol: 'fastcgi' }>;

export function createFastCgiGateway(config: FastCgiListenerConfig, options: { name: string; port: number; reusePort: boolean }, log: Logger): FastCgiGateway {
  return new FastCgiGateway(
    {
      name: options.name,
      host: config.host,
      port: options.port,
      reusePort: options.reusePort,
      backends: config.backends.map((b) => parseEndpoint(b)),
      balance: config.balance,
      documentRoot: config.documentRoot,
      index: config.index,
      params: config.params,
      connectTimeoutMs: config.connectTimeoutMs,
      backendTimeoutMs: config.backendTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      healthCheckIntervalMs: config.healthCheckIntervalMs,
      maxConnectionsPerBackend: config.maxConnectionsPerBackend,
      backendIdleTimeoutMs: config.backendIdleTimeoutMs,
      maxBufferedBodyBytes: config.maxBufferedBodyBytes,
      maxConnections: config.maxConnections,
    },
    log,
  );
}
