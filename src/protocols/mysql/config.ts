/**
 * The mysql listener's fields: the common ones and the version its own greeting announces.
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';

export const mysqlListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('mysql'),
  /** The server version the proxy's own greeting announces (before the backend is known). */
  serverVersion: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
});

export type MysqlListenerConfig = z.output<typeof mysqlListenerSchema>;
