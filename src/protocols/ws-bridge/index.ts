/**
 * The WebSocket ↔ HTTP bridge (ws2api protocol, DESIGN.md §3). Not a
 * pipeline protocol: it runs its own HTTP server (bridge.ts) and is built
 * by supervisor/proxy.ts for `protocol: ws-bridge`.
 */
import type { ListenerConfig } from '../../config/schema.ts';
import type { Logger } from '../../core/logger.ts';
import { WsBridgeListener } from './bridge.ts';

export { WsBridgeListener, CLOSE_REPLACED } from './bridge.ts';
export type { WsBridgeSettings } from './bridge.ts';

type WsBridgeConfig = Extract<ListenerConfig, { protocol: 'ws-bridge' }>;

export function createWsBridgeListener(config: WsBridgeConfig, options: { port: number; reusePort: boolean }, log: Logger): WsBridgeListener {
  return new WsBridgeListener(
    {
      name: config.name,
      host: config.host,
      port: options.port,
      reusePort: options.reusePort,
      maxConnections: config.maxConnections,
      api: config.api,
      metricsPath: config.metricsPath,
      ordering: config.ordering,
      duplicateClientId: config.duplicateClientId,
      onApiFailure: config.onApiFailure,
      pingIntervalMs: config.pingIntervalMs,
      deadPeerTimeoutMs: config.deadPeerTimeoutMs,
      maxMessageBytes: config.maxMessageBytes,
      connectTimeoutMs: config.connectTimeoutMs,
      pool: config.pool,
    },
    log,
  );
}
