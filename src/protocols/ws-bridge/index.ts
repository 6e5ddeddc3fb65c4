/**
 * The ws-bridge protocol (core/protocol-descriptor.ts, DESIGN.md §3 ws2api):
 * not a pipeline protocol, it serves WebSocket clients on its own HTTP server
 * (bridge.ts) and calls the API; no router, no reload yet.
 */
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { WsBridgeListener } from './bridge.ts';
import { checkWsBridgeListener, wsBridgeListenerSchema } from './config.ts';

export const wsBridgeProtocol: ProtocolDescriptor<typeof wsBridgeListenerSchema> = {
  name: 'ws-bridge',
  schema: wsBridgeListenerSchema,
  check: checkWsBridgeListener,
  // One descriptor per WebSocket client; the API connections are a pool bounded per worker.
  descriptors: (listener) => ({ perSession: 1, pool: listener.pool.maxConnections }),
  create: (listener, ctx) =>
    new WsBridgeListener(
      {
        name: listener.name,
        host: listener.host,
        port: ctx.port,
        reusePort: ctx.reusePort,
        maxConnections: listener.maxConnections,
        tcpKeepAliveMs: listener.tcpKeepAliveMs,
        handshakeTimeoutMs: listener.handshakeTimeoutMs,
        api: listener.api,
        metricsPath: listener.metricsPath,
        ordering: listener.ordering,
        duplicateClientId: listener.duplicateClientId,
        onApiFailure: listener.onApiFailure,
        pingIntervalMs: listener.pingIntervalMs,
        deadPeerTimeoutMs: listener.deadPeerTimeoutMs,
        maxMessageBytes: listener.maxMessageBytes,
        connectTimeoutMs: listener.connectTimeoutMs,
        pool: listener.pool,
      },
      ctx.log,
      ctx.router.limits,
    ),
};
