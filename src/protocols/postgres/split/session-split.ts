/**
 * The read/write split of a pooled postgres listener (issue 17; README
 * "Read/write split"). `PostgresSplit` is the listener's (its classifier,
 * settings and replica sets); `SessionSplit` is one client session's, asked
 * by the pooled ClientSession (pool/client-session.ts) at the one point
 * where it takes a server connection: between transactions, with the
 * client's next messages held.
 *
 *   - pinned (session state a replica would not have: temporary tables,
 *     session advisory locks, LISTEN, session SET, PREPARE, WITH HOLD
 *     cursors): the primary, and the session keeps the primary connection
 *     it has for the rest of its session (session-mode behaviour, reset
 *     with DISCARD ALL at its end) — the state lives in that connection;
 *   - the held messages are not all reads (held.ts): the primary;
 *   - readAfterWriteMs since the session's last exchange that went to the
 *     primary as a write: the primary;
 *   - else a replica from the route's ReplicaSet (healthy, lag within
 *     maxReplicaLagMs), else the primary.
 * Transactions stay on the server that started them: the pool gives a
 * server back only on ReadyForQuery 'I' (never on 'T' / 'E'), so
 * everything between BEGIN and COMMIT follows the BEGIN, and `BEGIN READ
 * ONLY` puts the whole transaction on one replica.
 *
 * A replica the session cannot get a connection from (connect or login
 * failed) is marked down and the same messages go to the primary: the
 * client sees nothing.
 */
import type { Endpoint } from '../../../core/endpoint.ts';
import { parseEndpoint } from '../../../core/endpoint.ts';
import type { Logger } from '../../../core/logger.ts';
import type { ReadWriteSplitSettings } from '../../../core/rw-split/config.ts';
import { countPinnedSession, countStatement } from '../../../core/rw-split/metrics.ts';
import type { SplitReason, SplitTarget } from '../../../core/rw-split/metrics.ts';
import { ReadAfterWrite } from '../../../core/rw-split/read-after-write.ts';
import { replicaSetFor } from '../../../core/rw-split/registry.ts';
import { ReplicaSet } from '../../../core/rw-split/replica-set.ts';
import { trackedName } from '../pool/parameters.ts';
import type { ClientStatements } from '../pool/prepared-statements.ts';
import type { PoolManager, ServerPool } from '../pool/server-pool.ts';
import { PostgresClassifier, loadPostgresParser } from './classify.ts';
import { classifyHeld, parseBodyText } from './held.ts';
import { postgresLagProbe } from './lag-probe.ts';

/** Held bytes without a whole exchange past this go to the primary (the session pauses the client at 64 KiB held). */
const MAX_WAIT_BYTES = 60 * 1024;

const T_QUERY = 0x51;
const T_PARSE = 0x50;
const T_BIND = 0x42;
const SQLSTATE_TOO_MANY = '53300';

export class PostgresSplit {
  readonly listener: string;
  readonly settings: ReadWriteSplitSettings;
  readonly classifier: PostgresClassifier;
  readonly manager: PoolManager;
  readonly log: Logger;
  readonly #endpoints = new Map<string, Endpoint>();

  constructor(options: { listener: string; settings: ReadWriteSplitSettings; manager: PoolManager; log: Logger }) {
    this.listener = options.listener;
    this.settings = options.settings;
    this.manager = options.manager;
    this.log = options.log;
    // The pool replays its tracked parameters on every server, replicas included: a SET of one of them needs no pin.
    this.classifier = new PostgresClassifier({ readOnlyFunctions: options.settings.readOnlyFunctions, carriedSettings: (name) => trackedName(name) !== undefined });
    // Until the WASM parser is in, every statement goes to the primary.
    void loadPostgresParser();
  }

  /** One client session of `route`, whose replicas are `replicas` (not empty); `primary` is its pool on the primary. */
  session(route: string, replicas: readonly string[], primary: ServerPool): SessionSplit {
    const set = replicaSetFor({ listener: this.listener, route, replicas }, () => {
      // The probe logs in as the sessions do: the route's first session's database, user and credentials.
      const probe = postgresLagProbe({ database: primary.database, user: primary.user, credentials: primary.credentials });
      return new ReplicaSet({ listener: this.listener, route, replicas, settings: this.settings, probe, log: this.log });
    });
    return new SessionSplit(this, set, primary);
  }

  endpoint(text: string): Endpoint {
    let endpoint = this.#endpoints.get(text);
    if (endpoint === undefined) {
      endpoint = parseEndpoint(text);
      this.#endpoints.set(text, endpoint);
    }
    return endpoint;
  }
}

export class SessionSplit {
  readonly split: PostgresSplit;
  readonly set: ReplicaSet;
  readonly primary: ServerPool;
  /** Session state pins the session to the primary (and to its primary connection). */
  pinned = false;
  readonly #raw: ReadAfterWrite | null;
  /** The exchange now on the primary wrote (or may have): reads need the primary for readAfterWriteMs after it. */
  #wrote = false;
  /** The replica whose connection the session holds now, or null (primary, or none). */
  #replica: string | null = null;
  #target: SplitTarget = 'primary';
  #reason: SplitReason = 'write';
  /** Statements counted since the server was taken (the first has the choice's reason, later ones 'transaction'). */
  #counted = 0;
  /** A replica failed: the next choice is the primary, whatever the messages. */
  #fallback = false;
  readonly #replicaPools = new Map<string, ServerPool>();
  readonly #statementText: (name: string) => string | undefined;
  #statements: ClientStatements | null = null;

  constructor(split: PostgresSplit, set: ReplicaSet, primary: ServerPool) {
    this.split = split;
    this.set = set;
    this.primary = primary;
    this.#raw = split.settings.readAfterWriteMs > 0 ? new ReadAfterWrite(split.settings.readAfterWriteMs) : null;
    this.#statementText = (name) => {
      const statement = this.#statements?.get(name);
      return statement === undefined ? undefined : parseBodyText(statement.parseBody);
    };
  }

  /** Whether the session keeps its (primary) server connection between transactions. */
  get holdsServer(): boolean {
    return this.pinned && this.#replica === null;
  }

  /**
   * The session takes a server for `held[0, length)` (its next messages,
   * starting at a message boundary): the pool to take it from, or null to
   * wait for more bytes (no whole exchange held yet).
   */
  choose(held: Buffer, length: number, statements: ClientStatements): ServerPool | null {
    this.#release();
    this.#counted = 0;
    if (this.#wrote) {
      this.#wrote = false;
      // Called once the server that ran it was given back: the commit is behind us.
      this.#raw?.noteCommittedWrite(Date.now());
    }
    if (this.pinned) return this.#toPrimary('pinned');
    if (this.#fallback) {
      this.#fallback = false;
      return this.#toPrimary('fallback');
    }
    this.#statements = statements;
    const verdict = classifyHeld(held, length, this.split.classifier, this.#statementText);
    this.#statements = null;
    if (verdict.pins.length > 0) {
      this.#pin();
      this.#wrote = true;
      return this.#toPrimary('pinned');
    }
    if (verdict.route === 'wait') {
      if (length < MAX_WAIT_BYTES) return null;
      this.#wrote = true;
      return this.#toPrimary('write');
    }
    if (verdict.route === 'primary') {
      this.#wrote = true;
      return this.#toPrimary('write');
    }
    if (this.#raw !== null && this.#raw.primaryRequired(Date.now())) return this.#toPrimary('read-after-write');
    const endpoint = this.set.pick();
    if (endpoint === undefined) return this.#toPrimary('no-replica');
    this.set.acquire(endpoint);
    this.#replica = endpoint;
    this.#target = 'replica';
    this.#reason = 'read';
    return this.#replicaPool(endpoint);
  }

  /**
   * The pool the session waited on gave it no connection. True: a replica
   * (marked down unless it was only busy); the session asks again and
   * gets the primary. False: the primary's failure, the client's.
   */
  failed(sqlstate: string, message: string): boolean {
    const replica = this.#replica;
    if (replica === null) return false;
    this.#release();
    if (sqlstate !== SQLSTATE_TOO_MANY) this.set.markDown(replica, message);
    this.#fallback = true;
    return true;
  }

  /**
   * A client message the session forwards to the server it holds (every
   * message type; only Query, Parse and Bind matter): counted, and on the
   * primary checked for session state that pins and for writes.
   */
  observe(type: number, body: Buffer, start: number, end: number): void {
    if (type !== T_QUERY && type !== T_PARSE && type !== T_BIND) return;
    if (type !== T_PARSE) countStatement(this.split.listener, this.#target, this.#counted++ === 0 || this.#reason === 'pinned' ? this.#reason : 'transaction');
    // A replica runs only reads; a pinned session stays where it is; a Bind's statement was classified at its Parse.
    if (this.#replica !== null || this.pinned || type === T_BIND) return;
    let textStart = start;
    if (type === T_PARSE) {
      const nameEnd = body.indexOf(0, start);
      if (nameEnd < 0 || nameEnd >= end) return;
      textStart = nameEnd + 1;
    }
    const textEnd = body.indexOf(0, textStart);
    const verdict = this.split.classifier.classify(body.toString('utf8', textStart, textEnd < 0 || textEnd >= end ? end : textEnd));
    if (verdict.route !== 'read') this.#wrote = true;
    if (verdict.pins.length > 0 && !this.pinned) this.#pin();
  }

  /** The session gave its server back (or lost it). */
  detached(): void {
    this.#release();
  }

  /** The client session ended. */
  end(): void {
    this.#release();
    if (this.pinned) countPinnedSession(this.split.listener, -1);
  }

  #release(): void {
    if (this.#replica === null) return;
    this.set.release(this.#replica);
    this.#replica = null;
  }

  #pin(): void {
    this.pinned = true;
    countPinnedSession(this.split.listener, 1);
  }

  #toPrimary(reason: SplitReason): ServerPool {
    this.#target = 'primary';
    this.#reason = reason;
    return this.primary;
  }

  #replicaPool(endpoint: string): ServerPool {
    const manager = this.split.manager;
    let pool = this.#replicaPools.get(endpoint);
    // The manager drops pools nobody used for a while: take the live one.
    if (pool === undefined || manager.pools.get(pool.key) !== pool) {
      const primary = this.primary;
      pool = manager.pool(this.split.endpoint(endpoint), primary.database, primary.user, primary.credentials);
      this.#replicaPools.set(endpoint, pool);
    }
    return pool;
  }
}
