/** The http protocol (core/protocol-descriptor.ts): a pipeline listener whose protocol serves each connection's requests itself. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { httpListenerSchema } from './config.ts';
import { createHttpProtocol } from './connection.ts';

/** ALPN offered with TLS: HTTP/1.1 only (no HTTP/2 yet), so h2-capable clients fall back. */
const ALPN = ['http/1.1'] as const;

export const httpProtocol: ProtocolDescriptor<typeof httpListenerSchema> = {
  name: 'http',
  schema: httpListenerSchema,
  // Backends answer GET health.httpPath (when set) instead of a bare connect.
  healthProbe: 'http',
  create: (listener, ctx) => pipelineListener(listener, ctx, { module: createHttpProtocol(listener), maxOpeningBytes: listener.maxHeadBytes, alpnProtocols: ALPN }),
};
