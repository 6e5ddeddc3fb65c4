/**
 * The fastcgi protocol (core/protocol-descriptor.ts, issue #7): not a
 * pipeline protocol, the gateway serves HTTP on its own server (gateway.ts)
 * and speaks FastCGI to its own `backends`; no router, no reload yet.
 */
import { parseEndpoint } from '../../core/endpoint.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { checkFastCgiListener, fastcgiListenerSchema } from './config.ts';
import { FastCgiGateway } from './gateway.ts';

export const fastcgiProtocol: ProtocolDescriptor<typeof fastcgiListenerSchema> = {
  name: 'fastcgi',
  schema: fastcgiListenerSchema,
  check: checkFastCgiListener,
  create: (listener, ctx) =>
    new FastCgiGateway(
      {
        name: listener.name,
        host: listener.host,
        port: ctx.port,
        reusePort: ctx.reusePort,
        backends: listener.backends.map((b) => parseEndpoint(b)),
        balance: listener.balance,
        documentRoot: listener.documentRoot,
        index: listener.index,
        params: listener.params,
        connectTimeoutMs: listener.connectTimeoutMs,
        backendTimeoutMs: listener.backendTimeoutMs,
        keepAliveTimeoutMs: listener.keepAliveTimeoutMs,
        requestTimeoutMs: listener.requestTimeoutMs,
        healthCheckIntervalMs: listener.healthCheckIntervalMs,
        maxConnectionsPerBackend: listener.maxConnectionsPerBackend,
        backendIdleTimeoutMs: listener.backendIdleTimeoutMs,
        maxBufferedBodyBytes: listener.maxBufferedBodyBytes,
        maxConnections: listener.maxConnections,
        tcpKeepAliveMs: listener.tcpKeepAliveMs,
      },
      ctx.log,
      ctx.router.limits,
    ),
};
