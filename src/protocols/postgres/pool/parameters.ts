/**
 * Session parameters in transaction mode. A client's SETs and startup
 * parameters live on whichever server connection ran them; when the client
 * moves to another one, the values it relies on are replayed there first.
 *
 * What the client set is learned from the server, never by parsing SQL:
 * - parameters the server reports (GUC_REPORT: application_name,
 *   client_encoding, DateStyle, IntervalStyle, TimeZone,
 *   standard_conforming_strings...) arrive as ParameterStatus, in their
 *   normalized form;
 * - the others (search_path, extra_float_digits, statement_timeout... not
 *   reported by PostgreSQL 15) are read back with current_setting() after a
 *   transaction whose CommandComplete said SET or RESET (so SET LOCAL, gone
 *   at COMMIT, is not carried over).
 *
 * A value of null means "the server's default": replayed as RESET.
 */

/** Reported parameters the pool keeps in step (PostgreSQL sends ParameterStatus for each). */
export const REPORTED = ['application_name', 'client_encoding', 'DateStyle', 'IntervalStyle', 'TimeZone', 'standard_conforming_strings'] as const;

/** Parameters the server does not report: read back after a transaction that ran SET. */
export const UNREPORTED = ['search_path', 'extra_float_digits', 'statement_timeout', 'lock_timeout', 'idle_in_transaction_session_timeout', 'default_transaction_isolation'] as const;

const TRACKED_LOWER = new Map<string, string>([...REPORTED, ...UNREPORTED].map((name) => [name.toLowerCase(), name]));

/** The canonical spelling of a tracked parameter name, or undefined when the pool does not track it. */
export function trackedName(name: string): string | undefined {
  return TRACKED_LOWER.get(name.toLowerCase());
}

/** Values by canonical name; absent or null = the server's default. */
export type ParameterValues = Map<string, string | null>;

const TRACKED: readonly string[] = [...REPORTED, ...UNREPORTED];

/**
 * One string per set of tracked values: two sets are in step exactly when
 * their fingerprints are equal (values are C strings, never NUL; null and
 * absent are both the server's default). Sessions cache it and drop the
 * cache when a value changes, so a handover compares two strings instead
 * of every parameter.
 */
export function fingerprint(values: ParameterValues): string {
  let key = '';
  for (const name of TRACKED) {
    const value = values.get(name);
    key += value === undefined || value === null ? '-\0' : `=${value}\0`;
  }
  return key;
}

/** True when `server` runs with every value `client` relies on. */
export function inStep(client: ParameterValues, server: ParameterValues): boolean {
  for (const [name, value] of client) if ((server.get(name) ?? null) !== value) return false;
  for (const [name, value] of server) if (value !== null && !client.has(name)) return false;
  return true;
}

/** A SQL string literal, safe whatever standard_conforming_strings says. */
export function literal(value: string): string {
  const body = value.replaceAll("'", "''");
  return body.includes('\\') ? `E'${body.replaceAll('\\', '\\\\')}'` : `'${body}'`;
}

/**
 * The statements that bring `server` in step with `client` (one simple
 * Query, answered as one batch and swallowed by the session), or null when
 * nothing differs. Updates `server` to what it will hold.
 */
export function replayStatements(client: ParameterValues, server: ParameterValues): string | null {
  const parts: string[] = [];
  const sets: string[] = [];
  for (const [name, value] of client) {
    if ((server.get(name) ?? null) === value) continue;
    if (value === null) parts.push(`RESET ${name}`);
    else sets.push(`pg_catalog.set_config(${literal(name)}, ${literal(value)}, false)`);
    server.set(name, value);
  }
  for (const [name, value] of server) {
    if (value === null || client.has(name)) continue;
    parts.push(`RESET ${name}`);
    server.set(name, null);
  }
  if (sets.length > 0) parts.unshift(`SELECT ${sets.join(', ')}`);
  return parts.length === 0 ? null : parts.join('; ');
}

/** The query that reads back the unreported parameters, in UNREPORTED order (one DataRow). */
export const READ_BACK_QUERY = `SELECT ${UNREPORTED.map((name) => `pg_catalog.current_setting(${literal(name)})`).join(', ')}`;

/**
 * Reads the read-back DataRow's values (body of a 'D' message) into
 * `target`. Values equal to the server's defaults (`defaults`, read once per
 * pool) become null so an untouched parameter is not replayed.
 */
export function readBackRow(body: Buffer, start: number, end: number, target: ParameterValues, defaults: ReadonlyMap<string, string> | null): void {
  const count = body.readUInt16BE(start);
  let at = start + 2;
  for (let i = 0; i < count && i < UNREPORTED.length && at + 4 <= end; i++) {
    const length = body.readInt32BE(at);
    at += 4;
    const name = UNREPORTED[i] as string;
    if (length < 0) {
      target.set(name, null);
      continue;
    }
    const value = body.toString('utf8', at, at + length);
    at += length;
    target.set(name, defaults !== null && defaults.get(name) === value ? null : value);
  }
}

/** Startup parameters a pooled client may send besides the tracked ones: ignored, as PgBouncer's ignore_startup_parameters. */
const IGNORED_STARTUP = new Set(['user', 'database', 'fallback_application_name', 'replication']);

/**
 * A pooled client's StartupMessage parameters as tracked values. A
 * parameter the pool cannot carry from one server connection to the next
 * refuses the login (PgBouncer: "unsupported startup parameter"): the
 * returned string says which. `options` may carry `-c name=value` (or
 * `--name=value`) pairs of tracked parameters.
 */
export function startupParameters(params: ReadonlyMap<string, string>): ParameterValues | string {
  const out: ParameterValues = new Map();
  for (const [name, value] of params) {
    if (IGNORED_STARTUP.has(name)) continue;
    if (name === 'options') {
      const problem = readOptions(value, out);
      if (problem !== null) return problem;
      continue;
    }
    const tracked = trackedName(name);
    if (tracked === undefined) return `unsupported startup parameter: ${name}`;
    out.set(tracked, value);
  }
  const fallback = params.get('fallback_application_name');
  if (!out.has('application_name') && fallback !== undefined) out.set('application_name', fallback);
  if (params.get('replication') !== undefined && params.get('replication') !== 'false' && params.get('replication') !== 'off' && params.get('replication') !== '0') return 'unsupported startup parameter: replication';
  return out;
}

function readOptions(text: string, out: ParameterValues): string | null {
  // Words split on blanks; a backslash escapes the next character (libpq's rule).
  const words: string[] = [];
  let word = '';
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (c === '\\' && i + 1 < text.length) {
      word += text[++i];
      inWord = true;
    } else if (c === ' ' || c === '\t') {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      word += c;
      inWord = true;
    }
  }
  if (inWord) words.push(word);
  for (let i = 0; i < words.length; i++) {
    let setting: string;
    const w = words[i] as string;
    if (w === '-c') setting = words[++i] ?? '';
    else if (w.startsWith('-c')) setting = w.slice(2);
    else if (w.startsWith('--')) setting = w.slice(2);
    else return `unsupported startup parameter in options: ${w}`;
    const eq = setting.indexOf('=');
    if (eq <= 0) return `unsupported startup parameter in options: ${setting}`;
    const tracked = trackedName(setting.slice(0, eq).replaceAll('-', '_'));
    if (tracked === undefined) return `unsupported startup parameter in options: ${setting.slice(0, eq)}`;
    out.set(tracked, setting.slice(eq + 1));
  }
  return null;
}
