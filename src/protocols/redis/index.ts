/** The redis protocol (core/protocol-descriptor.ts): a pipeline listener that answers until AUTH names the tenant. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { checkRedisListener, redisListenerSchema } from './config.ts';
import { INLINE_MAX } from './resp.ts';
import { createRedisProtocol } from './session.ts';

export const redisProtocol: ProtocolDescriptor<typeof redisListenerSchema> = {
  name: 'redis',
  schema: redisListenerSchema,
  // Active probes connect; a backend that accepts but does not answer the replayed AUTH counts as failed (passive, after replay).
  healthProbe: 'tcp',
  check: checkRedisListener,
  create: (listener, ctx) =>
    pipelineListener(listener, ctx, {
      module: createRedisProtocol({ routeBy: listener.routeBy, replayTimeoutMs: listener.connectTimeoutMs }),
      // One pre-AUTH command is at most an inline line or 10 bulks of 16 KiB (resp.ts); pipelined commands after it wait here too.
      maxOpeningBytes: 4 * INLINE_MAX,
    }),
};
