/**
 * The postgres listener's fields: the common ones (src/config/listener-fields.ts).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';

export const postgresListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('postgres'),
  /**
   * The backend must answer the StartupMessage (its first byte) within this
   * long; past it the client gets 57P03, the session ends and the endpoint's
   * circuit breaker counts a failure. 0 = wait forever.
   */
  firstResponseTimeoutMs: z.number().int().min(0).default(15000),
});

export type PostgresListenerConfig = z.output<typeof postgresListenerSchema>;
