/** The tcp protocol (core/protocol-descriptor.ts): a pipeline listener for raw TCP, routed by backend, SNI or first bytes. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { checkTcpListener, tcpListenerSchema } from './config.ts';
import { createTcpProtocol } from './opening.ts';

export const tcpProtocol: ProtocolDescriptor<typeof tcpListenerSchema> = {
  name: 'tcp',
  schema: tcpListenerSchema,
  check: checkTcpListener,
  create: (listener, ctx) => pipelineListener(listener, ctx, { module: createTcpProtocol(listener.name, listener), maxOpeningBytes: 64 * 1024, firstResponseTimeoutMs: listener.firstResponseTimeoutMs }),
};
