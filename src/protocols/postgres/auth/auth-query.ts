/**
 * PgBouncer's auth_query: the proxy logs in to the tenant's backend as the
 * auth user (backend-login.ts) and asks it for a role's secret with the
 * extended protocol, the user name bound to $1 (never spliced into SQL).
 * Answers — found or not — are cached briefly per (endpoint, database,
 * user); concurrent lookups of one key share one query.
 */
import type { Socket } from 'node:net';
import { BackendReader } from '../../../core/backend-reader.ts';
import { connectFirst } from '../../../core/connect.ts';
import { Deadline } from '../../../core/deadline.ts';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import { backendLogin } from './backend-login.ts';
import { MSG_ERROR, MSG_NOTICE, MSG_PARAMETER_STATUS, MSG_READY, message, messageParser, parseFields } from './messages.ts';
import { parseStoredSecret } from './secrets.ts';
import { PostgresServerError } from './server-error.ts';
import type { BackendCredentials, UserEntry } from './types.ts';

export interface AuthQuerySettings {
  readonly user: string;
  readonly password: string | undefined;
  /** The database the auth user connects to; undefined: the client's. */
  readonly database: string | undefined;
  /** Returns (name, secret) for $1; the secret column may be NULL (a role without password). */
  readonly query: string;
  readonly cacheTtlMs: number;
}

export interface AuthQueryTarget {
  /** The tenant's endpoints, first choice first. */
  readonly candidates: readonly Endpoint[];
  /** The client's database. */
  readonly database: string;
  readonly timeoutMs: number;
}

const MAX_ROW_MESSAGE = 1024 * 1024;
const readMessage = messageParser(MAX_ROW_MESSAGE, 'backend');

/** The cache of one listener's auth query. */
export class AuthQuery {
  readonly settings: AuthQuerySettings;
  readonly #cache = new Map<string, { expires: number; answer: Promise<UserEntry | null> }>();

  constructor(settings: AuthQuerySettings) {
    this.settings = settings;
  }

  /** The user's secret from the tenant's backend; null when the query returns no row or a NULL secret. */
  lookup(target: AuthQueryTarget, user: string): Promise<UserEntry | null> {
    const database = this.settings.database ?? target.database;
    const first = target.candidates[0];
    const key = `${first?.label ?? ''}\0${database}\0${user}`;
    const now = Date.now();
    const hit = this.#cache.get(key);
    if (hit !== undefined && hit.expires > now) return hit.answer;
    if (this.#cache.size > 10_000) this.#sweep(now);
    // Whatever went wrong (the auth user's login, the query's permissions) is for the logs, not for an unauthenticated client.
    const answer = runAuthQuery(target.candidates, database, this.settings, user, target.timeoutMs).catch((err: unknown) => {
      throw new PolyproxyError('INTERNAL', `auth query as "${this.settings.user}" on ${first?.label ?? '?'} failed: ${(err as Error).message}`, { source: 'internal', cause: err });
    });
    const slot = { expires: Number.POSITIVE_INFINITY, answer };
    this.#cache.set(key, slot);
    answer.then(
      () => {
        slot.expires = Date.now() + this.settings.cacheTtlMs;
      },
      // A failure is not an answer: the next client asks again.
      () => {
        if (this.#cache.get(key) === slot) this.#cache.delete(key);
      },
    );
    return answer;
  }

  #sweep(now: number): void {
    for (const [key, slot] of this.#cache) if (slot.expires <= now) this.#cache.delete(key);
  }
}

/** Parse + Bind (one text parameter) + Execute + Sync, unnamed statement and portal. */
function extendedQuery(sql: string, value: string): Buffer {
  const parse = Buffer.concat([Buffer.from('\0'), Buffer.from(`${sql}\0`), Buffer.from([0, 0])]);
  const param = Buffer.from(value, 'utf8');
  const bindHead = Buffer.from([0, 0, 0, 0, 0, 1]); // portal "", statement "", 0 format codes, 1 parameter
  const length = Buffer.allocUnsafe(4);
  length.writeInt32BE(param.length, 0);
  const bind = Buffer.concat([bindHead, length, param, Buffer.from([0, 0])]); // 0 result format codes
  const execute = Buffer.from([0, 0, 0, 0, 0]); // portal "", no row limit
  return Buffer.concat([message(0x50, parse), message(0x42, bind), message(0x45, execute), message(0x53, Buffer.alloc(0))]);
}

function queryError(text: string): PolyproxyError {
  return new PolyproxyError('INTERNAL', `auth query failed: ${text}`, { source: 'internal' });
}

/** Reads the text value of column `index` of a DataRow; null for SQL NULL. */
function column(body: Buffer, index: number): string | null {
  if (body.length < 2) throw queryError('malformed DataRow');
  const count = body.readUInt16BE(0);
  if (index >= count) throw queryError(`the query must return two columns (name, secret), got ${count}`);
  let at = 2;
  for (let i = 0; ; i++) {
    if (at + 4 > body.length) throw queryError('malformed DataRow');
    const length = body.readInt32BE(at);
    at += 4;
    if (i === index) {
      if (length < 0) return null;
      if (at + length > body.length) throw queryError('malformed DataRow');
      return body.toString('utf8', at, at + length);
    }
    if (length > 0) at += length;
  }
}

async function runAuthQuery(candidates: readonly Endpoint[], database: string, settings: AuthQuerySettings, user: string, timeoutMs: number): Promise<UserEntry | null> {
  const { socket } = await connectFirst(candidates, timeoutMs);
  socket.on('error', noop);
  try {
    const credentials: BackendCredentials = settings.password === undefined ? { kind: 'none' } : { kind: 'password', password: settings.password };
    const login = await backendLogin(socket, { user: settings.user, database, credentials, timeoutMs });
    socket.resume();
    const secret = await queryRow(socket, settings.query, user, timeoutMs, login.leftover);
    socket.end(message(0x58, Buffer.alloc(0))); // Terminate
    return secret === null ? null : { secret: parseStoredSecret(secret) };
  } finally {
    if (!socket.writableEnded) socket.destroy();
    else setTimeout(destroy, 1000, socket).unref();
  }
}

async function queryRow(socket: Socket, sql: string, user: string, timeoutMs: number, leftover: Buffer | null): Promise<string | null> {
  const reader = new BackendReader(socket, 'the auth query');
  if (leftover !== null) socket.unshift(leftover);
  const deadline = timeoutMs > 0 ? new Deadline(timeoutMs) : null;
  const late = (): PolyproxyError => new PolyproxyError('TIMEOUT', `the auth query got no answer within ${timeoutMs} ms`, { source: 'backend' });
  try {
    socket.write(extendedQuery(sql, user));
    let secret: string | null = null;
    let rows = 0;
    let failure: Error | null = null;
    while (true) {
      const read = reader.read(readMessage);
      const msg = await (deadline === null ? read : deadline.wait(read, late));
      switch (msg.type) {
        case 0x44: // DataRow
          if (++rows > 1) failure = queryError(`more than one row for user "${user}"`);
          else secret = column(msg.body, 1);
          break;
        case MSG_ERROR: {
          const fields = parseFields(msg.body);
          failure = fields === undefined ? queryError('malformed ErrorResponse') : new PostgresServerError(fields, msg.body);
          break;
        }
        case MSG_READY:
          if (failure !== null) throw failure;
          return secret;
        case 0x31: // ParseComplete
        case 0x32: // BindComplete
        case 0x43: // CommandComplete
        case 0x49: // EmptyQueryResponse
        case MSG_NOTICE:
        case MSG_PARAMETER_STATUS:
          break;
        default:
          throw queryError(`unexpected message ${JSON.stringify(String.fromCharCode(msg.type))}`);
      }
    }
  } finally {
    deadline?.clear();
    reader.dispose();
  }
}

function destroy(socket: Socket): void {
  socket.destroy();
}

function noop(): void {}
