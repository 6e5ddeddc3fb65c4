/**
 * Which PostgreSQL query strings may run on a hot-standby replica outside a
 * transaction (issue 17). The decision comes from the real PostgreSQL
 * parser (libpg-query, the server's own grammar compiled to WASM), never
 * from a first keyword; whatever is not proven a read goes to the primary.
 *
 * A string is `read` when every statement in it is one of
 *   - SELECT / VALUES / TABLE without FOR UPDATE / NO KEY UPDATE / SHARE /
 *     KEY SHARE anywhere (sub-queries included), without INTO, without a
 *     data-modifying CTE (INSERT / UPDATE / DELETE / MERGE anywhere in it),
 *     and calling only functions on the read-only list;
 *   - SHOW;
 *   - EXPLAIN of such a read, or EXPLAIN without ANALYZE of INSERT /
 *     UPDATE / DELETE / MERGE (planned, never executed: the executor's
 *     read-only check is skipped for EXPLAIN-only).
 * `BEGIN READ ONLY` / `START TRANSACTION ... READ ONLY` alone is
 * `read-only-begin`: the whole transaction may go to one replica.
 * Everything else, and every parse error, is `primary`.
 *
 * Function calls are the part a parser cannot see through: `nextval`,
 * `setval`, advisory locks, `set_config`, `pg_notify`, `lo_*`, `dblink*`
 * and any user function write or take locks a standby refuses, so only
 * names on BUILTIN_READ_ONLY_FUNCTIONS (unqualified or `pg_catalog.`) or
 * on the caller's `readOnlyFunctions` (`name` matches unqualified calls,
 * `schema.name` qualified ones) are reads. User-defined operators, casts,
 * and views that call writing functions are invisible here: the standby
 * refuses such a statement with SQLSTATE 25006, which the split can treat
 * as "retry on the primary" while nothing was sent to the client.
 *
 * `pins` names the session state a statement creates that a replica (or
 * another pooled server) would not have, so the split keeps the client on
 * the primary for the rest of its session: temporary tables (and temp
 * views / sequences), session-level advisory locks, LISTEN, a session SET
 * (not SET LOCAL; also `set_config(..., false)`), PREPARE, and cursors
 * declared WITH HOLD.
 *
 * Results are cached by query text in an LRU bounded by total text size.
 * `loadPostgresParser()` must have resolved before `classify` can parse;
 * until then every string is `primary` (and nothing is cached).
 */
import { loadModule, parseSync } from 'libpg-query';
import { LRUCache } from 'lru-cache';

export type PostgresRoute = 'read' | 'read-only-begin' | 'primary';
export type SessionPin = 'temp-table' | 'advisory-lock' | 'listen' | 'set' | 'prepare' | 'hold-cursor';

export interface PostgresClassification {
  readonly route: PostgresRoute;
  /** Session state created by the string (possibly with route `primary`); empty when none. */
  readonly pins: readonly SessionPin[];
  /** Why the route is `primary` (for logs and tests); `read` / `read-only-begin` otherwise. */
  readonly reason: string;
}

export interface PostgresClassifierOptions {
  /** More functions that neither write nor lock: `name` (unqualified calls) or `schema.name`. */
  readonly readOnlyFunctions?: readonly string[];
  /** Cache budget in characters of query text (default 4 Mi); longer strings are not cached. */
  readonly cacheChars?: number;
  /** Strings longer than this are not cached (default 16 Ki characters). */
  readonly maxCachedLength?: number;
  /**
   * Settings the caller carries to every server itself (the transaction
   * pool's tracked parameters, replayed on whichever server a session
   * moves to): a session SET of one of these does not pin.
   */
  readonly carriedSettings?: (name: string) => boolean;
}

/**
 * Built-in functions that neither write, assign a transaction id, take
 * session locks nor fail on a standby. Deliberately absent: nextval,
 * setval, currval/lastval (session state), txid_current / pg_current_xact_id
 * (assign an xid), pg_current_wal_lsn (fails in recovery), advisory locks,
 * set_config, pg_notify, lo_*, dblink*, pg_terminate_backend & co.
 */
export const BUILTIN_READ_ONLY_FUNCTIONS: readonly string[] = [
  // aggregates and window functions
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'json_object_agg', 'jsonb_object_agg',
  'bool_and', 'bool_or', 'every', 'bit_and', 'bit_or', 'stddev', 'stddev_pop', 'stddev_samp', 'variance', 'var_pop', 'var_samp',
  'percentile_cont', 'percentile_disc', 'mode', 'row_number', 'rank', 'dense_rank', 'percent_rank', 'cume_dist', 'ntile',
  'lag', 'lead', 'first_value', 'last_value', 'nth_value',
  // strings
  'length', 'char_length', 'character_length', 'octet_length', 'bit_length', 'lower', 'upper', 'initcap', 'substr', 'substring',
  'trim', 'btrim', 'ltrim', 'rtrim', 'replace', 'translate', 'concat', 'concat_ws', 'format', 'left', 'right', 'lpad', 'rpad',
  'repeat', 'reverse', 'position', 'strpos', 'split_part', 'starts_with', 'overlay', 'chr', 'ascii', 'quote_ident',
  'quote_literal', 'quote_nullable', 'regexp_replace', 'regexp_match', 'regexp_matches', 'regexp_split_to_array',
  'regexp_split_to_table', 'regexp_like', 'regexp_count', 'regexp_instr', 'regexp_substr', 'string_to_array',
  'string_to_table', 'array_to_string', 'md5', 'sha224', 'sha256', 'sha384', 'sha512', 'encode', 'decode', 'to_hex',
  'convert_from', 'convert_to', 'unaccent',
  // numbers
  'abs', 'round', 'floor', 'ceil', 'ceiling', 'trunc', 'mod', 'power', 'sqrt', 'cbrt', 'exp', 'ln', 'log', 'log10', 'sign',
  'pi', 'degrees', 'radians', 'sin', 'cos', 'tan', 'asin', 'acos', 'atan', 'atan2', 'div', 'gcd', 'lcm', 'width_bucket',
  'random', 'greatest', 'least', 'nullif', 'coalesce', 'to_char', 'to_number', 'num_nonnulls', 'num_nulls',
  // dates and times
  'now', 'clock_timestamp', 'statement_timestamp', 'transaction_timestamp', 'timeofday', 'date_trunc', 'date_part',
  'date_bin', 'extract', 'age', 'to_date', 'to_timestamp', 'make_date', 'make_time', 'make_timestamp', 'make_timestamptz',
  'make_interval', 'justify_days', 'justify_hours', 'justify_interval', 'isfinite', 'timezone',
  // arrays, sets, json
  'generate_series', 'generate_subscripts', 'unnest', 'array_length', 'array_lower', 'array_upper', 'array_ndims',
  'array_dims', 'array_position', 'array_positions', 'array_append', 'array_prepend', 'array_cat', 'array_remove',
  'array_replace', 'cardinality', 'to_json', 'to_jsonb', 'row_to_json', 'array_to_json', 'json_build_object',
  'jsonb_build_object', 'json_build_array', 'jsonb_build_array', 'json_object', 'jsonb_object', 'json_array_elements',
  'jsonb_array_elements', 'json_array_elements_text', 'jsonb_array_elements_text', 'json_each', 'jsonb_each',
  'json_each_text', 'jsonb_each_text', 'json_extract_path', 'jsonb_extract_path', 'json_extract_path_text',
  'jsonb_extract_path_text', 'json_object_keys', 'jsonb_object_keys', 'json_typeof', 'jsonb_typeof', 'json_array_length',
  'jsonb_array_length', 'jsonb_set', 'jsonb_insert', 'jsonb_pretty', 'jsonb_strip_nulls', 'json_strip_nulls',
  'jsonb_path_query', 'jsonb_path_query_array', 'jsonb_path_query_first', 'jsonb_path_exists', 'jsonb_path_match',
  'json_populate_record', 'jsonb_populate_record', 'json_to_record', 'jsonb_to_record', 'json_to_recordset',
  'jsonb_to_recordset',
  // full text search
  'to_tsvector', 'to_tsquery', 'plainto_tsquery', 'phraseto_tsquery', 'websearch_to_tsquery', 'ts_rank', 'ts_rank_cd',
  'ts_headline', 'setweight', 'strip',
  // identity, catalog and replication state (all readable in recovery)
  'gen_random_uuid', 'version', 'current_setting', 'current_database', 'current_schema', 'current_schemas',
  'pg_backend_pid', 'pg_postmaster_start_time', 'pg_conf_load_time', 'pg_is_in_recovery', 'pg_last_wal_replay_lsn',
  'pg_last_wal_receive_lsn', 'pg_last_xact_replay_timestamp', 'pg_is_wal_replay_paused', 'pg_get_wal_replay_pause_state',
  'pg_typeof', 'format_type', 'pg_get_viewdef', 'pg_get_indexdef', 'pg_get_constraintdef', 'pg_get_expr',
  'pg_get_functiondef', 'pg_get_userbyid', 'pg_table_size', 'pg_relation_size', 'pg_total_relation_size',
  'pg_indexes_size', 'pg_database_size', 'pg_size_pretty', 'pg_column_size', 'obj_description', 'col_description',
  'has_table_privilege', 'has_schema_privilege', 'has_database_privilege', 'has_column_privilege',
  'has_function_privilege', 'pg_has_role', 'pg_table_is_visible', 'pg_type_is_visible', 'pg_function_is_visible',
  'to_regclass', 'to_regtype', 'to_regproc', 'inet_server_addr', 'inet_server_port', 'inet_client_addr', 'pg_sleep',
];

/** Session-level advisory locks (the `_xact_` ones end with the transaction and do not pin). */
const SESSION_ADVISORY_LOCKS = new Set(['pg_advisory_lock', 'pg_advisory_lock_shared', 'pg_try_advisory_lock', 'pg_try_advisory_lock_shared']);
const DATA_MODIFYING = new Set(['InsertStmt', 'UpdateStmt', 'DeleteStmt', 'MergeStmt']);
/** parsenodes.h CURSOR_OPT_HOLD. */
const CURSOR_OPT_HOLD = 0x0020;

const PRIMARY_PARSER_NOT_LOADED: PostgresClassification = Object.freeze({ route: 'primary', pins: [], reason: 'parser not loaded' });

type Node = Record<string, unknown>;

function isObject(value: unknown): value is Node {
  return typeof value === 'object' && value !== null;
}

/** A FuncCall's name parts (`String.sval`), or null when a part is not a plain name. */
function functionName(call: Node): string[] | null {
  const parts = call.funcname;
  if (!Array.isArray(parts)) return null;
  const names: string[] = [];
  for (const part of parts) {
    const str = isObject(part) && isObject(part.String) ? part.String.sval : undefined;
    if (typeof str !== 'string') return null;
    names.push(str);
  }
  return names.length > 0 ? names : null;
}

function constantBoolean(node: unknown): boolean | null {
  if (!isObject(node)) return null;
  // EXPLAIN options carry their argument as a bare String node (`analyze false`).
  if (isObject(node.String)) return textBoolean(node.String.sval);
  const constant = isObject(node.A_Const) ? node.A_Const : isObject(node.TypeCast) && isObject(node.TypeCast.arg) && isObject(node.TypeCast.arg.A_Const) ? node.TypeCast.arg.A_Const : null;
  if (constant === null) return null;
  if (isObject(constant.boolval)) return constant.boolval.boolval === true;
  if (isObject(constant.sval)) return textBoolean(constant.sval.sval);
  if (isObject(constant.ival)) return constant.ival.ival === undefined || constant.ival.ival === 0 ? false : constant.ival.ival === 1 ? true : null;
  return null;
}

function textBoolean(value: unknown): boolean | null {
  if (typeof value !== 'string') return null;
  const text = value.toLowerCase();
  if (['t', 'true', 'on', 'yes', 'y', '1'].includes(text)) return true;
  if (['f', 'false', 'off', 'no', 'n', '0'].includes(text)) return false;
  return null;
}

/** What a walk over one statement's tree found. */
interface Findings {
  /** First reason the statement cannot be a read, or null. */
  notRead: string | null;
  readonly pins: Set<SessionPin>;
}

export class PostgresClassifier {
  readonly #unqualified: ReadonlySet<string>;
  readonly #qualified: ReadonlySet<string>;
  readonly #cache: LRUCache<string, PostgresClassification>;
  readonly #maxCachedLength: number;
  readonly #carried: (name: string) => boolean;

  constructor(options: PostgresClassifierOptions = {}) {
    const unqualified = new Set(BUILTIN_READ_ONLY_FUNCTIONS);
    const qualified = new Set(BUILTIN_READ_ONLY_FUNCTIONS.map((name) => `pg_catalog.${name}`));
    for (const name of options.readOnlyFunctions ?? []) (name.includes('.') ? qualified : unqualified).add(name);
    this.#unqualified = unqualified;
    this.#qualified = qualified;
    this.#maxCachedLength = options.maxCachedLength ?? 16_384;
    this.#carried = options.carriedSettings ?? carriesNothing;
    this.#cache = new LRUCache({ maxSize: options.cacheChars ?? 4 * 1024 * 1024, sizeCalculation: (_value, key) => Math.max(1, key.length) });
  }

  /** Never throws: unparseable or unknown input is `primary`. */
  classify(sql: string): PostgresClassification {
    const cached = this.#cache.get(sql);
    if (cached !== undefined) return cached;
    let tree: unknown;
    try {
      tree = parseSync(sql);
    } catch (err) {
      if (!parserLoaded) return PRIMARY_PARSER_NOT_LOADED;
      return this.#remember(sql, { route: 'primary', pins: [], reason: `parse error: ${(err as Error).message}` });
    }
    return this.#remember(sql, this.#classifyTree(tree));
  }

  /** Entries in the cache (for stats). */
  get cached(): number {
    return this.#cache.size;
  }

  #remember(sql: string, result: PostgresClassification): PostgresClassification {
    if (sql.length <= this.#maxCachedLength) this.#cache.set(sql, result);
    return result;
  }

  #classifyTree(tree: unknown): PostgresClassification {
    const stmts = isObject(tree) && Array.isArray(tree.stmts) ? tree.stmts : [];
    if (stmts.length === 0) return { route: 'primary', pins: [], reason: 'empty query' };
    const pins = new Set<SessionPin>();
    let reason: string | null = null;
    let readOnlyBegin = false;
    for (const raw of stmts) {
      const stmt = isObject(raw) && isObject(raw.stmt) ? raw.stmt : {};
      const [type] = Object.keys(stmt);
      const body = type === undefined ? undefined : stmt[type];
      const findings: Findings = { notRead: null, pins };
      this.#walk(stmt, findings);
      let why = this.#statementNotRead(type, body, findings);
      if (why === 'read-only-begin') {
        readOnlyBegin = stmts.length === 1;
        why = readOnlyBegin ? null : 'BEGIN READ ONLY among other statements';
      }
      reason ??= why;
    }
    const pinList = [...pins];
    if (reason !== null) return { route: 'primary', pins: pinList, reason };
    return readOnlyBegin ? { route: 'read-only-begin', pins: pinList, reason: 'read-only-begin' } : { route: 'read', pins: pinList, reason: 'read' };
  }

  /** Why a statement of this type is not a read (null: it is), or 'read-only-begin'. */
  #statementNotRead(type: string | undefined, body: unknown, findings: Findings): string | null {
    const node = isObject(body) ? body : {};
    switch (type) {
      case 'SelectStmt':
      case 'VariableShowStmt':
        return findings.notRead;
      case 'ExplainStmt': {
        const options = Array.isArray(node.options) ? node.options : [];
        const analyze = options.some((option) => isObject(option) && isObject(option.DefElem) && option.DefElem.defname === 'analyze' && constantBoolean(option.DefElem.arg) !== false);
        const inner = isObject(node.query) ? Object.keys(node.query)[0] : undefined;
        if (!analyze && inner !== undefined && DATA_MODIFYING.has(inner)) return null;
        if (inner !== 'SelectStmt') return `EXPLAIN${analyze ? ' ANALYZE' : ''} of ${inner ?? 'nothing'}`;
        return findings.notRead;
      }
      case 'TransactionStmt': {
        const begins = node.kind === 'TRANS_STMT_BEGIN' || node.kind === 'TRANS_STMT_START';
        const options = Array.isArray(node.options) ? node.options : [];
        let readOnly = false;
        for (const option of options) {
          if (isObject(option) && isObject(option.DefElem) && option.DefElem.defname === 'transaction_read_only') {
            const arg = option.DefElem.arg;
            readOnly = isObject(arg) && isObject(arg.A_Const) && isObject(arg.A_Const.ival) && arg.A_Const.ival.ival === 1;
          }
        }
        return begins && readOnly ? 'read-only-begin' : 'transaction control';
      }
      case undefined:
        return 'empty statement';
      default:
        return type;
    }
  }

  /** Visits every node of a statement (iteratively: parse trees can be deep). */
  #walk(root: Node, findings: Findings): void {
    const stack: unknown[] = [root];
    while (stack.length > 0) {
      const value = stack.pop();
      if (Array.isArray(value)) {
        for (const item of value) if (isObject(item)) stack.push(item);
        continue;
      }
      if (!isObject(value)) continue;
      // RangeVars sit unwrapped under typed keys (relation, view, rel, sequence): TEMP creates one.
      if (value.relpersistence === 't') findings.pins.add('temp-table');
      for (const key in value) {
        const child = value[key];
        if (!isObject(child)) continue;
        if (!Array.isArray(child)) this.#visit(key, child, findings);
        stack.push(child);
      }
    }
  }

  #visit(type: string, node: Node, findings: Findings): void {
    const notRead = (why: string): void => {
      findings.notRead ??= why;
    };
    switch (type) {
      case 'FuncCall': {
        const parts = functionName(node);
        if (parts === null) return notRead('function call with an unusual name');
        const name = parts.join('.');
        const last = parts.at(-1) ?? '';
        if (SESSION_ADVISORY_LOCKS.has(last) && (parts.length === 1 || parts[0] === 'pg_catalog')) findings.pins.add('advisory-lock');
        if (last === 'set_config' && (parts.length === 1 || parts[0] === 'pg_catalog')) {
          const args = Array.isArray(node.args) ? node.args : [];
          if (constantBoolean(args[2]) !== true) findings.pins.add('set');
        }
        const known = parts.length === 1 ? this.#unqualified.has(name) : this.#qualified.has(name);
        if (!known) notRead(`function ${name} is not known to be read-only`);
        return;
      }
      case 'LockingClause':
        return notRead('row locking clause (FOR UPDATE / SHARE)');
      case 'SelectStmt':
        if (isObject(node.intoClause)) notRead('SELECT INTO');
        return;
      case 'ListenStmt':
        findings.pins.add('listen');
        return;
      case 'PrepareStmt':
        findings.pins.add('prepare');
        return;
      case 'VariableSetStmt':
        if (node.is_local !== true && node.kind !== 'VAR_RESET' && node.kind !== 'VAR_RESET_ALL' && !(typeof node.name === 'string' && this.#carried(node.name))) findings.pins.add('set');
        return;
      case 'DeclareCursorStmt':
        if (typeof node.options === 'number' && (node.options & CURSOR_OPT_HOLD) !== 0) findings.pins.add('hold-cursor');
        return;
      default:
        if (DATA_MODIFYING.has(type)) notRead(`data-modifying ${type}`);
    }
  }
}

function carriesNothing(): boolean {
  return false;
}

let parserLoaded = false;
let loading: Promise<void> | null = null;

/** Loads the WASM parser once (about tens of ms); classify answers `primary` until it has. */
export function loadPostgresParser(): Promise<void> {
  loading ??= loadModule().then(() => {
    parserLoaded = true;
  });
  return loading;
}
