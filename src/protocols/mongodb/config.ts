/**
 * The mongodb listener's fields: the common ones (src/config/listener-fields.ts).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';

export const mongodbListenerSchema = z.strictObject({ ...listenerFields, protocol: z.literal('mongodb') });

export type MongoListenerConfig = z.output<typeof mongodbListenerSchema>;
