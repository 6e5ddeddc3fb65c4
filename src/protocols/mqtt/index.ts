/** The mqtt protocol (core/protocol-descriptor.ts): a pipeline listener whose opening is the CONNECT packet. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { mqttHealthProbe } from './health.ts';
import { checkMqttListener, mqttListenerSchema } from './config.ts';
import { createMqttProtocol } from './opening.ts';
import { MAX_CONNECT_BYTES } from './parse.ts';

export const mqttProtocol: ProtocolDescriptor<typeof mqttListenerSchema> = {
  name: 'mqtt',
  schema: mqttListenerSchema,
  // Probed in the protocol: a broker that accepts connections but does not answer its opening is down.
  healthProbe: mqttHealthProbe,
  check: checkMqttListener,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createMqttProtocol({ routeBy: listener.routeBy, separator: listener.separator ?? '/', firstResponseTimeoutMs: listener.firstResponseTimeoutMs }),
      // The CONNECT (at most MAX_CONNECT_BYTES plus its fixed header) and what the client pipelines behind it.
      maxOpeningBytes: MAX_CONNECT_BYTES + 64 * 1024,
    }),
};
