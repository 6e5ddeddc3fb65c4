/**
 * Command-line flags and their POLYPROXY_* environment variables, for
 * containers and one-line starts: a flag wins over the environment, the
 * environment over the config file (README "Configuration by environment").
 */
import { ConfigError } from '../config/load.ts';

/** Applies to: `mode` picks file or one-line; `one-line` builds the single listener; `any` overrides either. */
type Scope = 'mode' | 'one-line' | 'any';

interface Setting {
  readonly flag: string;
  readonly env: string;
  readonly scope: Scope;
  readonly help: string;
}

/** One row per setting: README's table is this table. */
export const SETTINGS = {
  config: { flag: '--config', env: 'POLYPROXY_CONFIG', scope: 'mode', help: 'YAML or JSON config file' },
  protocol: { flag: '--protocol', env: 'POLYPROXY_PROTOCOL', scope: 'one-line', help: 'the listener protocol' },
  port: { flag: '--port', env: 'POLYPROXY_PORT', scope: 'one-line', help: 'listening port' },
  host: { flag: '--host', env: 'POLYPROXY_HOST', scope: 'one-line', help: 'listening address (default 0.0.0.0)' },
  backend: { flag: '--backend', env: 'POLYPROXY_BACKEND', scope: 'one-line', help: 'host:port, [v6]:port or unix:/path; several balance (flag repeated, or comma-separated)' },
  'tls-cert': { flag: '--tls-cert', env: 'POLYPROXY_TLS_CERT', scope: 'one-line', help: 'TLS certificate (PEM) the listener serves' },
  'tls-key': { flag: '--tls-key', env: 'POLYPROXY_TLS_KEY', scope: 'one-line', help: 'its private key (PEM)' },
  'tls-ca': { flag: '--tls-ca', env: 'POLYPROXY_TLS_CA', scope: 'one-line', help: 'CA bundle client certificates are verified against' },
  'tls-require-client-cert': { flag: '--tls-require-client-cert', env: 'POLYPROXY_TLS_REQUIRE_CLIENT_CERT', scope: 'one-line', help: 'refuse clients without a certificate signed by the CA (true/false)' },
  workers: { flag: '--workers', env: 'POLYPROXY_WORKERS', scope: 'any', help: 'worker processes (one-line default 1; file: its "workers", else CPU count)' },
  'log-level': { flag: '--log-level', env: 'POLYPROXY_LOG_LEVEL', scope: 'any', help: 'fatal | error | warn | info | debug | trace | silent' },
  'admin-port': { flag: '--admin-port', env: 'POLYPROXY_ADMIN_PORT', scope: 'any', help: 'admin server port (metrics, dashboard) on 127.0.0.1, or the file\'s admin.host' },
} as const satisfies Record<string, Setting>;

export type SettingName = keyof typeof SETTINGS;

/** A value and where it came from (`--port` or `POLYPROXY_PORT`), for messages that name it. */
export interface Sourced<T> {
  readonly value: T;
  readonly from: string;
}

export interface Settings {
  readonly mode: 'file' | 'one-line' | null;
  readonly config?: Sourced<string>;
  readonly protocol?: Sourced<string>;
  readonly port?: Sourced<number>;
  readonly host?: Sourced<string>;
  readonly backend?: Sourced<string[]>;
  readonly tlsCert?: Sourced<string>;
  readonly tlsKey?: Sourced<string>;
  readonly tlsCa?: Sourced<string>;
  readonly tlsRequireClientCert?: Sourced<boolean>;
  readonly workers?: Sourced<number>;
  readonly logLevel?: Sourced<string>;
  readonly adminPort?: Sourced<number>;
  /** Environment variables that were set but lost to a flag that chose the other mode. */
  readonly unused: string[];
}

export type FlagValues = Partial<Record<SettingName, string | string[] | boolean>>;

/** Merges flags over the environment. Throws ConfigError naming the flag or variable. */
export function resolveSettings(flags: FlagValues, env: NodeJS.ProcessEnv): Settings {
  const has = (name: SettingName): 'flag' | 'env' | null => (flags[name] !== undefined ? 'flag' : nonEmpty(env[SETTINGS[name].env]) ? 'env' : null);
  const names = Object.keys(SETTINGS) as SettingName[];
  const oneLine = names.filter((n) => SETTINGS[n].scope === 'one-line');
  const oneLineFlags = oneLine.filter((n) => flags[n] !== undefined);
  const oneLineEnv = oneLine.filter((n) => flags[n] === undefined && nonEmpty(env[SETTINGS[n].env]));
  if (flags.config !== undefined && oneLineFlags.length > 0) throw new ConfigError('use either --config or --protocol/--port/--backend, not both');

  let mode: Settings['mode'] = null;
  const unused: string[] = [];
  if (flags.config !== undefined) {
    mode = 'file';
    unused.push(...oneLineEnv.map((n) => SETTINGS[n].env));
  } else if (oneLineFlags.length > 0) {
    mode = 'one-line';
    if (has('config') === 'env') unused.push('POLYPROXY_CONFIG');
  } else if (has('config') === 'env') {
    if (oneLineEnv.length > 0) {
      throw new ConfigError(`POLYPROXY_CONFIG and ${oneLineEnv.map((n) => SETTINGS[n].env).join(', ')} are both set: use either a config file or a one-line start`);
    }
    mode = 'file';
  } else if (oneLineEnv.length > 0) {
    mode = 'one-line';
  }

  const text = (name: SettingName): Sourced<string> | undefined => {
    const flag = flags[name];
    if (typeof flag === 'string') return { value: flag, from: SETTINGS[name].flag };
    if (Array.isArray(flag)) return { value: flag.join(','), from: SETTINGS[name].flag };
    const value = env[SETTINGS[name].env];
    return nonEmpty(value) ? { value: value.trim(), from: SETTINGS[name].env } : undefined;
  };
  const int = (name: SettingName): Sourced<number> | undefined => {
    const t = text(name);
    if (t === undefined) return undefined;
    if (!/^\d+$/.test(t.value)) throw new ConfigError(`${t.from}: expected a whole number, got "${t.value}"`);
    return { value: Number(t.value), from: t.from };
  };
  const bool = (name: SettingName): Sourced<boolean> | undefined => {
    const flag = flags[name];
    if (typeof flag === 'boolean') return { value: flag, from: SETTINGS[name].flag };
    const t = text(name);
    if (t === undefined) return undefined;
    const v = t.value.toLowerCase();
    if (['true', '1', 'yes', 'on'].includes(v)) return { value: true, from: t.from };
    if (['false', '0', 'no', 'off'].includes(v)) return { value: false, from: t.from };
    throw new ConfigError(`${t.from}: expected true or false, got "${t.value}"`);
  };
  const backendFlag = flags.backend;
  const backendText = text('backend');
  const backend =
    Array.isArray(backendFlag) ? { value: backendFlag, from: '--backend' } : backendText === undefined ? undefined : { value: backendText.value.split(',').map((s) => s.trim()).filter((s) => s.length > 0), from: backendText.from };

  const settings: Settings = {
    mode,
    unused,
    ...optional('config', mode === 'file' ? text('config') : undefined),
    ...(mode === 'one-line'
      ? {
          ...optional('protocol', text('protocol')),
          ...optional('port', int('port')),
          ...optional('host', text('host')),
          ...optional('backend', backend),
          ...optional('tlsCert', text('tls-cert')),
          ...optional('tlsKey', text('tls-key')),
          ...optional('tlsCa', text('tls-ca')),
          ...optional('tlsRequireClientCert', bool('tls-require-client-cert')),
        }
      : {}),
    ...optional('workers', int('workers')),
    ...optional('logLevel', text('log-level')),
    ...optional('adminPort', int('admin-port')),
  };
  return settings;
}

function optional<K extends string, V>(key: K, value: V | undefined): { [P in K]?: V } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: V };
}

function nonEmpty(value: string | undefined): value is string {
  return value !== undefined && value.trim() !== '';
}
