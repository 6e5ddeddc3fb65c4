/**
 * Proxy-side authentication on the postgres listener (config `auth`):
 * the client authenticates to the proxy during identify, then the proxy
 * logs in to a dedicated backend connection with the credentials that
 * produced (replay), and tells the client what a server would after its
 * login: AuthenticationOk, the backend's ParameterStatus, BackendKeyData
 * (the backend's own key, registered so CancelRequest still reaches it)
 * and ReadyForQuery. The relay then runs as without `auth`.
 */
import type { Socket } from 'node:net';
import type { ClientConnection } from '../../../core/client-connection.ts';
import type { Opening, ProtocolSession } from '../../../core/protocol.ts';
import type { RouteCredential } from '../../../core/resolver.ts';
import type { RouteDecision } from '../../../core/router.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import type { PostgresAuthConfig } from '../config.ts';
import { AuthQuery } from './auth-query.ts';
import { authenticateClient } from './client-auth.ts';
import type { ClientAuthSettings } from './client-auth.ts';
import { AUTHENTICATION_OK, backendKeyData, negotiateProtocolVersion, parameterStatus, readyForQuery } from './messages.ts';
import { backendLogin } from './backend-login.ts';
import { chainLookups, tableLookup, userEntry } from './secrets.ts';
import type { AuthenticatedClient, BackendLoginResult, SecretLookup, UserEntry } from './types.ts';
import { createHash } from 'node:crypto';

/** A listener's `auth`, prepared once. */
export interface ListenerAuth {
  readonly settings: ClientAuthSettings;
  readonly users: ReadonlyMap<string, UserEntry>;
  readonly authQuery: AuthQuery | null;
  /** The proxy's login to a backend (and the auth query) must finish within this long. */
  readonly loginTimeoutMs: number;
}

export function prepareListenerAuth(config: PostgresAuthConfig, listenerName: string, loginTimeoutMs: number): ListenerAuth {
  const users = new Map<string, UserEntry>();
  for (const [name, user] of Object.entries(config.users)) {
    const entry = userEntry(user);
    if (entry !== undefined) users.set(name, entry);
  }
  const q = config.authQuery;
  // The fake salt's key: the listener's whole auth config (its passwords and verifiers are secret), the same in every worker.
  const mockKey = createHash('sha256').update(listenerName).update('\0').update(JSON.stringify(config)).digest('hex');
  return {
    settings: { method: config.method, mockKey },
    users,
    authQuery: q === undefined ? null : new AuthQuery({ user: q.user, password: q.password, database: q.database, query: q.query, cacheTtlMs: q.cacheTtlMs }),
    loginTimeoutMs,
  };
}

const routeTables = new WeakMap<Readonly<Record<string, RouteCredential>>, ReadonlyMap<string, UserEntry>>();

/** A route's credentials as a lookup table, built once per cached route. */
function routeTable(credentials: Readonly<Record<string, RouteCredential>>): ReadonlyMap<string, UserEntry> {
  let table = routeTables.get(credentials);
  if (table === undefined) {
    const built = new Map<string, UserEntry>();
    for (const [name, user] of Object.entries(credentials)) {
      const entry = userEntry(user);
      if (entry !== undefined) built.set(name, entry);
    }
    table = built;
    routeTables.set(credentials, table);
  }
  return table;
}

/** Where this client's secret is looked for: the tenant's route, the listener's users, the auth query on the tenant's backend. */
export function secretLookupFor(auth: ListenerAuth, decision: RouteDecision, database: string): SecretLookup {
  const lookups: SecretLookup[] = [];
  const credentials = decision.entry.route.credentials;
  if (credentials !== undefined) lookups.push(tableLookup(routeTable(credentials)));
  lookups.push(tableLookup(auth.users));
  const query = auth.authQuery;
  if (query !== null) lookups.push((user) => query.lookup({ candidates: decision.candidates, database, timeoutMs: auth.loginTimeoutMs }, user));
  return chainLookups(lookups);
}

/**
 * Protocol 3.2 clients and `_pq_.` options: the proxy speaks 3.0 to the
 * client (it logs in to backends with 3.0), so it answers
 * NegotiateProtocolVersion as a 3.0 server would.
 */
export function negotiation(version: number, params: ReadonlyMap<string, string>): Buffer | null {
  const options = [...params.keys()].filter((key) => key.startsWith('_pq_.'));
  if ((version & 0xffff) === 0 && options.length === 0) return null;
  return negotiateProtocolVersion(0, options);
}

/** Routes and authenticates the client; the opening carries the decision, replay() logs in to the backend. */
export async function authenticatedOpening(
  auth: ListenerAuth,
  conn: ClientConnection,
  session: ProtocolSession | undefined,
  startup: { version: number; params: ReadonlyMap<string, string> },
  hooks: Pick<Opening, 'onConnected' | 'onClose'>,
): Promise<{ opening: Opening; client: AuthenticatedClient }> {
  if (session === undefined) throw new PolyproxyError('INTERNAL', 'proxy-side authentication needs the listener session');
  const negotiate = negotiation(startup.version, startup.params);
  if (negotiate !== null) conn.write(negotiate);
  const user = startup.params.get('user') as string;
  const database = startup.params.get('database') || user;
  const decision = await session.router.route(database, session.resolveContext());
  const client = await authenticateClient(conn, startup, auth.settings, secretLookupFor(auth, decision, database));
  return { opening: { resourceId: database, replay: null, decision, ...hooks }, client };
}

/** Logs in to the freshly connected backend for `client` and answers the client as the server would have. */
export async function loginAndGreet(auth: ListenerAuth, conn: ClientConnection, backend: Socket, client: AuthenticatedClient): Promise<BackendLoginResult> {
  const result = await backendLogin(backend, { user: client.user, database: client.database, params: client.params, credentials: client.credentials, timeoutMs: auth.loginTimeoutMs });
  conn.write(greeting(result));
  return result;
}

/** What the client reads after its authentication: AuthenticationOk, ParameterStatus..., BackendKeyData, ReadyForQuery, then anything the backend sent after. */
export function greeting(result: BackendLoginResult): Buffer {
  const parts: Buffer[] = [AUTHENTICATION_OK];
  for (const [name, value] of result.parameters) parts.push(parameterStatus(name, value));
  if (result.secretKey.length > 0) parts.push(backendKeyData(result.processId, result.secretKey));
  parts.push(readyForQuery('I'));
  if (result.leftover !== null) parts.push(result.leftover);
  return Buffer.concat(parts);
}

/** The cancel registry's key for a backend's BackendKeyData: hex of pid and secret, as parse.ts reads a CancelRequest. */
export function cancelKeyOf(result: BackendLoginResult): string {
  const pid = Buffer.allocUnsafe(4);
  pid.writeUInt32BE(result.processId >>> 0, 0);
  return Buffer.concat([pid, result.secretKey]).toString('hex');
}
