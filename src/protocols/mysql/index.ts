/** The mysql protocol (core/protocol-descriptor.ts): a pipeline listener with its own greeting and an auth switch. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { mysqlListenerSchema } from './config.ts';
import { MAX_OPENING_BYTES, createMysqlProtocol } from './handshake.ts';

export const mysqlProtocol: ProtocolDescriptor<typeof mysqlListenerSchema> = {
  name: 'mysql',
  schema: mysqlListenerSchema,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createMysqlProtocol({ handshakeTimeoutMs: listener.handshakeTimeoutMs, serverVersion: listener.serverVersion, auth: listener.auth }),
      maxOpeningBytes: MAX_OPENING_BYTES,
    }),
};
