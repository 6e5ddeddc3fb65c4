/** The http protocol (core/protocol-descriptor.ts): a pipeline listener whose protocol serves each connection's requests itself. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { httpListenerSchema } from './config.ts';
import { createHttpProtocol } from './connection.ts';

/** ALPN offered with TLS: h2 preferred (the server's order decides), http/1.1 for the rest; http/1.1 only with `http2.enabled: false`. */
const ALPN_H2 = ['h2', 'http/1.1'] as const;
const ALPN_H1 = ['http/1.1'] as const;

export const httpProtocol: ProtocolDescriptor<typeof httpListenerSchema> = {
  name: 'http',
  schema: httpListenerSchema,
  // Backends answer GET health.httpPath (when set) instead of a bare connect.
  healthProbe: 'http',
  create: (listener, ctx) => pipelineListener(listener, ctx, { module: createHttpProtocol(listener), maxOpeningBytes: listener.maxHeadBytes, alpnProtocols: listener.http2.enabled ? ALPN_H2 : ALPN_H1 }),
};
