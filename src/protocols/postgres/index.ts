/** The postgres protocol (core/protocol-descriptor.ts): a pipeline listener whose opening is the StartupMessage. */
import { pipelineListener } from '../../core/protocol-descriptor.ts';
import type { ProtocolDescriptor } from '../../core/protocol-descriptor.ts';
import { prepareListenerAuth } from './auth/listener-auth.ts';
import { checkPostgresListener, postgresListenerSchema } from './config.ts';
import { createPostgresProtocol } from './opening.ts';
import { createListenerPool, perWorkerSettings } from './pool/listener-pool.ts';

export const postgresProtocol: ProtocolDescriptor<typeof postgresListenerSchema> = {
  name: 'postgres',
  schema: postgresListenerSchema,
  // The StartupMessage (limited to 10,000 bytes by parse.ts) and the SSL/GSSENC requests before it.
  check: checkPostgresListener,
  create: (listener, ctx) => {
    // With auth, the proxy's login to the backend has the first-response deadline (or the handshake's when that is 0).
    const auth = listener.auth === undefined ? null : prepareListenerAuth(listener.auth, listener.name, listener.firstResponseTimeoutMs || listener.handshakeTimeoutMs);
    const pool =
      auth === null || listener.pool === undefined
        ? null
        : createListenerPool({
            listener: listener.name,
            settings: perWorkerSettings(listener.pool, ctx.workers ?? 1),
            auth,
            log: ctx.log,
            connectTimeoutMs: listener.connectTimeoutMs,
            tcpKeepAliveMs: listener.tcpKeepAliveMs,
            readWriteSplit: listener.readWriteSplit,
          });
    return pipelineListener(listener, ctx, { module: createPostgresProtocol(auth, pool), maxOpeningBytes: 16 * 1024, firstResponseTimeoutMs: listener.firstResponseTimeoutMs });
  },
};
