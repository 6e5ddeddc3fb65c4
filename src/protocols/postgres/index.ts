/** The postgres protocol (core/protocol-descriptor.ts): a pipeline listener whose opening is the StartupMessage. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { postgresListenerSchema } from './config.ts';
import { createPostgresProtocol } from './opening.ts';

export const postgresProtocol: ProtocolDescriptor<typeof postgresListenerSchema> = {
  name: 'postgres',
  schema: postgresListenerSchema,
  // The StartupMessage (limited to 10,000 bytes by parse.ts) and the SSL/GSSENC requests before it.
  create: (listener, ctx) => pipelineListener(listener, ctx, { module: createPostgresProtocol(), maxOpeningBytes: 16 * 1024, firstResponseTimeoutMs: listener.firstResponseTimeoutMs }),
};
