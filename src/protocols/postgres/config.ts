/**
 * The postgres listener's fields: the common ones (src/config/listener-fields.ts).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';

export const postgresListenerSchema = z.strictObject({ ...listenerFields, protocol: z.literal('postgres') });

export type PostgresListenerConfig = z.output<typeof postgresListenerSchema>;
