/** The smtp protocol (core/protocol-descriptor.ts): a pipeline listener that holds the dialogue until it can route. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { smtpListenerSchema } from './config.ts';
import { createSmtpProtocol } from './session.ts';

export const smtpProtocol: ProtocolDescriptor<typeof smtpListenerSchema> = {
  name: 'smtp',
  schema: smtpListenerSchema,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createSmtpProtocol({ routeBy: listener.routeBy, hostname: listener.hostname, maxLineLength: listener.maxLineLength, replayTimeoutMs: listener.connectTimeoutMs }),
      // Pipelined commands before routing (routeBy: rcpt), each at most maxLineLength.
      maxOpeningBytes: 64 * 1024,
      // An idle relayed session ends at the RFC 5321 command timeout unless idleTimeoutMs is set.
      idleTimeoutMs: listener.idleTimeoutMs === 0 ? listener.commandTimeoutMs : listener.idleTimeoutMs,
    }),
};
