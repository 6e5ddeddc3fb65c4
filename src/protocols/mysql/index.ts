/** The mysql protocol (core/protocol-descriptor.ts): a pipeline listener with its own greeting and an auth switch. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { checkMysqlListener, mysqlListenerSchema } from './config.ts';
import { MAX_OPENING_BYTES, createMysqlProtocol } from './handshake.ts';

export const mysqlProtocol: ProtocolDescriptor<typeof mysqlListenerSchema> = {
  name: 'mysql',
  schema: mysqlListenerSchema,
  check: checkMysqlListener,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createMysqlProtocol({
        handshakeTimeoutMs: listener.handshakeTimeoutMs,
        serverVersion: listener.serverVersion,
        auth: listener.auth,
        ...(listener.readWriteSplit === undefined
          ? {}
          : { split: { listener: listener.name, settings: listener.readWriteSplit, connectTimeoutMs: listener.connectTimeoutMs, idleTimeoutMs: listener.idleTimeoutMs, log: ctx.log } }),
      }),
      maxOpeningBytes: MAX_OPENING_BYTES,
    }),
};
