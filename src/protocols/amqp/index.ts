/** The amqp protocol (core/protocol-descriptor.ts): a pipeline listener that runs the connection handshake up to Open itself. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { amqpHealthProbe } from './health.ts';
import { amqpListenerSchema } from './config.ts';
import { MAX_HANDSHAKE_FRAME, createAmqpProtocol } from './handshake.ts';

export const amqpProtocol: ProtocolDescriptor<typeof amqpListenerSchema> = {
  name: 'amqp',
  schema: amqpListenerSchema,
  // Probed in the protocol: a broker that accepts connections but does not answer its opening is down.
  healthProbe: amqpHealthProbe,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createAmqpProtocol({
        tune: { channelMax: listener.channelMax, frameMax: listener.frameMax, heartbeat: listener.heartbeat },
        firstResponseTimeoutMs: listener.firstResponseTimeoutMs,
      }),
      // The header, Start-Ok, Tune-Ok and Open, each frame at most MAX_HANDSHAKE_FRAME.
      maxOpeningBytes: 2 * MAX_HANDSHAKE_FRAME,
    }),
};
