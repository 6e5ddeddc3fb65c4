/**
 * The mysql listener's fields: the common ones, the version its own
 * greeting announces, and proxy-side authentication (`auth`).
 */
import { z } from 'zod';
import { listenerFields } from '../../config/listener-fields.ts';
import type { ListenerCheck } from '../../core/protocol-descriptor.ts';
import { mysqlReadWriteSplitSchema } from '../../core/rw-split/config.ts';

/**
 * The read/write split of a mysql listener (needs `auth`): the shared
 * settings without readOnlyFunctions — a SELECT calling any function the
 * MySQL classifier does not know to be read-only goes to the primary.
 */
export type MysqlReadWriteSplit = z.output<typeof mysqlReadWriteSplitSchema>;

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
  /** Reads outside transactions to the route's replicas (src/protocols/mysql/split/); needs `auth`. */
  readWriteSplit: mysqlReadWriteSplitSchema.optional(),
});

export type MysqlListenerConfig = z.output<typeof mysqlListenerSchema>;

/** Rules the schema cannot say: the split opens backend connections itself, so it needs proxy-side auth. */
export function checkMysqlListener(listener: MysqlListenerConfig, at: ListenerCheck): void {
  if (listener.readWriteSplit !== undefined && listener.auth === undefined) {
    at.problem('readWriteSplit', 'needs `auth` (with backendUser): the proxy opens the primary and replica connections itself, so it must authenticate clients and log in to the backends with configured credentials');
  }
}
