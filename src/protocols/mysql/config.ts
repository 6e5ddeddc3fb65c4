/**
 * The mysql listener's fields: the common ones, the version its own
 * greeting announces, and proxy-side authentication (`auth`).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';

export const mysqlAuthSchema = z.strictObject({
  /**
   * The plugin the proxy's greeting asks for (a client that answers with
   * another is switched to it): mysql_native_password (MariaDB's default)
   * or caching_sha2_password (MySQL 8's; full authentication over TLS, or
   * with the proxy's RSA key without TLS).
   */
  plugin: z.enum(['mysql_native_password', 'caching_sha2_password']).default('mysql_native_password'),
  /** The users the proxy authenticates, by name. */
  users: z.record(z.string().min(1), z.strictObject({ password: z.string().min(1) })),
  /** The account the proxy logs in to the backend with, for every client. */
  backendUser: z.strictObject({ user: z.string().min(1), password: z.string() }),
});

export type MysqlAuthConfig = z.output<typeof mysqlAuthSchema>;

export const mysqlListenerSchema = z.strictObject({
  ...listenerFields,
  protocol: z.literal('mysql'),
  /** The server version the proxy's greeting announces (before the backend is known). */
  serverVersion: z.string().min(1).regex(/^[\x21-\x7e]+$/, 'printable ASCII without spaces').optional(),
  /** Proxy-side authentication; absent: the client authenticates to the backend through the relay. */
  auth: mysqlAuthSchema.optional(),
});

export type MysqlListenerConfig = z.output<typeof mysqlListenerSchema>;
