/** The mongodb protocol (core/protocol-descriptor.ts): a pipeline listener that answers the handshakes itself. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { mongodbListenerSchema } from './config.ts';
import { createMongoProtocol } from './protocol.ts';
import { MAX_OPENING_BUFFER } from './wire.ts';

export const mongodbProtocol: ProtocolDescriptor<typeof mongodbListenerSchema> = {
  name: 'mongodb',
  schema: mongodbListenerSchema,
  create: (listener, ctx) => pipelineListener(listener, ctx, { module: createMongoProtocol(), maxOpeningBytes: MAX_OPENING_BUFFER }),
};
