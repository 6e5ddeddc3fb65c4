/**
 * Protocol-level named prepared statements in transaction mode (as
 * PgBouncer 1.21's max_prepared_statements). A client's Parse("s1", sql,
 * types) is remembered by the client under its own name and by the pool
 * under a proxy-unique server-side name shared by every client that
 * prepares the same text and parameter types ("pp_<n>"). Each server
 * connection knows which of those it has; the session prepares one lazily,
 * right before the client's Bind or Describe that needs it, on whichever
 * server connection runs that message. The driver never sees "prepared
 * statement does not exist".
 *
 * The registry is per pool key (one database and user: the same text may
 * mean another thing elsewhere). An entry lives while a client refers to it;
 * a server connection keeps what it prepared (bounded: past
 * MAX_PREPARED_PER_SERVER the connection is closed instead of reused).
 */

/** A statement as the server side knows it. */
export interface Statement {
  /** The proxy-unique server-side name. */
  readonly serverName: string;
  /** The Parse message body with the server-side name (sent as is to prepare it on a server connection). */
  readonly parseBody: Buffer;
  /** Clients holding it under some name. */
  refs: number;
  readonly key: string;
}

/** A server connection keeping more statements than this is closed, not reused (bounds server memory). */
export const MAX_PREPARED_PER_SERVER = 1000;

let nextId = 0;

export class StatementRegistry {
  readonly #byKey = new Map<string, Statement>();

  get size(): number {
    return this.#byKey.size;
  }

  /**
   * The statement for a client's Parse body (`body[start, end)`: name, query,
   * parameter types) whose name ends at `nameEnd`; takes a reference.
   */
  acquire(body: Buffer, nameEnd: number, end: number): Statement {
    // The key is the query text and the parameter types: the bytes after the name.
    const key = body.toString('latin1', nameEnd + 1, end);
    let statement = this.#byKey.get(key);
    if (statement === undefined) {
      const serverName = `pp_${(nextId++).toString(36)}`;
      const nameLength = Buffer.byteLength(serverName);
      const rest = end - (nameEnd + 1);
      const parseBody = Buffer.allocUnsafe(nameLength + 1 + rest);
      parseBody.write(serverName, 0, 'latin1');
      parseBody[nameLength] = 0;
      body.copy(parseBody, nameLength + 1, nameEnd + 1, end);
      statement = { serverName, parseBody, refs: 0, key };
      this.#byKey.set(key, statement);
    }
    statement.refs++;
    return statement;
  }

  /** Drops a client's reference (its Close, or the end of its session). */
  release(statement: Statement): void {
    statement.refs--;
    if (statement.refs <= 0 && this.#byKey.get(statement.key) === statement) this.#byKey.delete(statement.key);
  }
}

/** One client's statements by its own names. */
export class ClientStatements {
  readonly registry: StatementRegistry;
  readonly #byName = new Map<string, Statement>();

  constructor(registry: StatementRegistry) {
    this.registry = registry;
  }

  get size(): number {
    return this.#byName.size;
  }

  get(name: string): Statement | undefined {
    return this.#byName.get(name);
  }

  /** The client's Parse of `name`: a name in use is replaced (PostgreSQL would refuse it; the session checks first). */
  define(name: string, statement: Statement): void {
    const old = this.#byName.get(name);
    if (old !== undefined) this.registry.release(old);
    this.#byName.set(name, statement);
  }

  /** The client's Close of `name`; false when it had no such statement. */
  close(name: string): boolean {
    const old = this.#byName.get(name);
    if (old === undefined) return false;
    this.registry.release(old);
    this.#byName.delete(name);
    return true;
  }

  /** The session ended. */
  clear(): void {
    for (const statement of this.#byName.values()) this.registry.release(statement);
    this.#byName.clear();
  }
}
