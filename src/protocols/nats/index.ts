/** The nats protocol (core/protocol-descriptor.ts): a pipeline listener that sends its own INFO and routes by CONNECT. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { checkNatsListener, natsListenerSchema } from './config.ts';
import { MAX_CONTROL_LINE } from './parse.ts';
import { createNatsProtocol } from './session.ts';

export const natsProtocol: ProtocolDescriptor<typeof natsListenerSchema> = {
  name: 'nats',
  schema: natsListenerSchema,
  // Active probes connect; a backend that accepts but sends no (compatible) INFO counts as failed (passive, after replay).
  healthProbe: 'tcp',
  check: checkNatsListener,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createNatsProtocol({
        routeBy: listener.routeBy,
        tokenSeparator: listener.tokenSeparator ?? '.',
        announced: { maxPayload: listener.maxPayload, headers: listener.headers, serverVersion: listener.serverVersion, tls: listener.tls !== undefined, tlsVerify: listener.tls?.requireClientCert === true, serverName: listener.name },
        replayTimeoutMs: listener.connectTimeoutMs,
      }),
      // The CONNECT line, and what the client pipelines behind it (PING, SUB, a first PUB) while the backend is dialled.
      maxOpeningBytes: MAX_CONTROL_LINE + 64 * 1024,
    }),
};
