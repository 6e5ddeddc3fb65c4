/**
 * The `polyproxy` command (DESIGN.md §3):
 *   polyproxy [start] --config FILE
 *   polyproxy check --config FILE
 *   polyproxy --protocol postgres --port 6432 --backend 127.0.0.1:5432
 *   polyproxy demo
 *   polyproxy fastcgi status --server E [--server E...] [--json]
 */
import { parseArgs } from 'node:util';
import { checkConfig } from '../config/check.ts';
import { ConfigError, loadConfigFile, parseConfig } from '../config/load.ts';
import type { Config } from '../config/schema.ts';
import { log } from '../core/logger.ts';
import { packageVersion } from '../core/version.ts';
import { runDemo } from '../demo/run-demo.ts';
import { fastcgiCommand } from './fastcgi-status.ts';
import { resolveSettings } from './settings.ts';
import type { Settings } from './settings.ts';
import { run } from '../supervisor/run.ts';

const USAGE = `polyproxy — protocol-aware multi-tenant proxy

Usage:
  polyproxy --config FILE               run the proxy (also: polyproxy start --config FILE)
  polyproxy check --config FILE         validate a config file as a start would (files, certificates,
                                        resolver module, ports); exit 1 naming the bad field
  polyproxy --protocol P --port N --backend HOST:PORT
                                        one listener with a fixed backend, no file needed
  polyproxy demo                        the proxy with embedded demo backends
  polyproxy fastcgi status --server E [--server E...] [--json]
                                        php-fpm status of each FastCGI server
  polyproxy help                        this help

Options (each also read from the environment variable shown; a flag wins
over the environment, the environment over the config file):
  -c, --config FILE     POLYPROXY_CONFIG      YAML or JSON config file
      --protocol P      POLYPROXY_PROTOCOL    postgres | mysql | mongodb | http | smtp | tcp | ...
      --port N          POLYPROXY_PORT        listening port (one-line start)
      --host H          POLYPROXY_HOST        listening address (one-line start, default 0.0.0.0)
      --backend E       POLYPROXY_BACKEND     host:port, [v6]:port or unix:/path (one-line start;
                                              repeat the flag, or comma-separate, to balance)
      --tls-cert FILE   POLYPROXY_TLS_CERT    serve TLS with this certificate (one-line start)
      --tls-key FILE    POLYPROXY_TLS_KEY     ... and this key
      --tls-ca FILE     POLYPROXY_TLS_CA      CA for client certificates
      --tls-require-client-cert  POLYPROXY_TLS_REQUIRE_CLIENT_CERT=true
                                              refuse clients without a certificate from the CA
      --workers N       POLYPROXY_WORKERS     worker processes (default: one-line start 1;
                                              a config file's "workers", else the CPU count)
      --log-level L     POLYPROXY_LOG_LEVEL   fatal | error | warn | info | debug | trace | silent
      --admin-port N    POLYPROXY_ADMIN_PORT  admin server (metrics, dashboard, /readyz) port
  -h, --help            this help
  -v, --version         print the version`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  protocol: { type: 'string' },
  port: { type: 'string' },
  host: { type: 'string' },
  backend: { type: 'string', multiple: true },
  workers: { type: 'string' },
  'log-level': { type: 'string' },
  'admin-port': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-require-client-cert': { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'v' },
} as const;

export async function main(argv: string[]): Promise<number> {
  // Its own options (--server, --json): see src/cli/fastcgi-status.ts.
  if (argv[0] === 'fastcgi') return fastcgiCommand(argv.slice(1));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    process.stderr.write(`polyproxy: ${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true || (positionals[0] === 'help' && positionals.length === 1)) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (values.version === true) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  const command = positionals[0] ?? 'start';
  if (positionals.length > 1 || !['start', 'check', 'demo'].includes(command)) {
    process.stderr.write(`polyproxy: unknown command "${positionals.join(' ')}"\n\n${USAGE}\n`);
    return 2;
  }

  if (command === 'demo') return runDemo();

  let config: Config;
  let settings: Settings;
  try {
    settings = resolveSettings(values, process.env);
    for (const name of settings.unused) process.stderr.write(`polyproxy: warning: ${name} is set but does not apply: the command line chose ${settings.mode === 'file' ? 'a config file' : 'a one-line start'}\n`);
    config = await configFrom(values, settings);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`polyproxy: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
  // What a start would die on (files, certificates, resolver module, ports), before anything binds.
  const { problems, warnings } = await checkConfig(config, command === 'check' ? {} : { lookup: null });
  for (const warning of warnings) process.stderr.write(`polyproxy: warning: ${warning}\n`);
  if (problems.length > 0) {
    process.stderr.write(`polyproxy: ${settings.config?.value ?? sourcesOf(settings)} is invalid:\n${problems.join('\n')}\n`);
    return 1;
  }
  if (command === 'check') {
    process.stdout.write(`ok: ${config.listeners.length} listener(s), ${Object.keys(config.routes).length} route(s), ${config.workers} worker(s)${warnings.length > 0 ? `, ${warnings.length} warning(s)` : ''}\n`);
    return 0;
  }
  await run(config, { reload: settings.mode === 'file' ? () => configFrom(values, settings) : null });
  return -1; // keep running
}

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K] extends { multiple: true } ? string[] : (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

async function configFrom(values: Values, settings: Settings): Promise<Config> {
  const overrides: Record<string, unknown> = {};
  if (settings.workers !== undefined) overrides.workers = settings.workers.value;
  if (settings.logLevel !== undefined) overrides.logLevel = settings.logLevel.value;
  if (settings.mode === 'file' && settings.config !== undefined) {
    const file = settings.config.value;
    const config = await loadConfigFile(file);
    if (settings.adminPort !== undefined) overrides.admin = { ...(config.admin ?? {}), port: settings.adminPort.value };
    return Object.keys(overrides).length === 0 ? config : parseConfig({ ...config, ...overrides }, process.cwd(), `${file} with ${sourcesOf(settings)}`);
  }
  if (settings.mode === null) {
    throw new ConfigError(`nothing to run: give --config FILE or --protocol/--port/--backend (or POLYPROXY_CONFIG, or POLYPROXY_PROTOCOL/_PORT/_BACKEND)\n\n${USAGE}`);
  }
  const { protocol, port, backend } = settings;
  if (protocol === undefined) throw new ConfigError('--protocol is required for a one-line start (or POLYPROXY_PROTOCOL)');
  if (port === undefined) throw new ConfigError('--port is required for a one-line start (or POLYPROXY_PORT)');
  if (backend === undefined) throw new ConfigError('--backend is required for a one-line start (or POLYPROXY_BACKEND)');
  const tls = tlsFrom(settings);
  return parseConfig(
    {
      workers: 1,
      ...overrides,
      ...(settings.adminPort === undefined ? {} : { admin: { port: settings.adminPort.value } }),
      listeners: [
        {
          name: protocol.value,
          protocol: protocol.value,
          port: port.value,
          backend: backend.value.length === 1 ? backend.value[0] : backend.value,
          ...(settings.host === undefined ? {} : { host: settings.host.value }),
          ...(tls === null ? {} : { tls }),
        },
      ],
    },
    process.cwd(),
    sourcesOf(settings),
  );
}

/** A one-line start's `tls` block, or null without TLS settings. */
function tlsFrom(settings: Settings): Record<string, unknown> | null {
  const { tlsCert, tlsKey, tlsCa, tlsRequireClientCert } = settings;
  if (tlsCert === undefined && tlsKey === undefined && tlsCa === undefined && tlsRequireClientCert === undefined) return null;
  if (tlsCert === undefined) throw new ConfigError(`${(tlsKey ?? tlsCa ?? tlsRequireClientCert)?.from ?? '--tls-key'} needs a certificate: --tls-cert (or POLYPROXY_TLS_CERT)`);
  if (tlsKey === undefined) throw new ConfigError(`${tlsCert.from} needs its key: --tls-key (or POLYPROXY_TLS_KEY)`);
  return {
    cert: tlsCert.value,
    key: tlsKey.value,
    ...(tlsCa === undefined ? {} : { ca: tlsCa.value }),
    ...(tlsRequireClientCert === undefined ? {} : { requireClientCert: tlsRequireClientCert.value }),
  };
}

/** "command line", "environment" or both: what the values came from, for the error header. */
function sourcesOf(settings: Settings): string {
  const froms = Object.values(settings).filter((v): v is { from: string } => typeof v === 'object' && v !== null && 'from' in v).map((v) => v.from);
  const flags = froms.some((f) => f.startsWith('--'));
  const env = froms.some((f) => f.startsWith('POLYPROXY_'));
  return flags && env ? 'command line and environment' : env ? 'environment' : 'command line';
}

export function runCli(): void {
  main(process.argv.slice(2)).then(
    (code) => {
      if (code >= 0) process.exitCode = code;
    },
    (err: unknown) => {
      if (err instanceof ConfigError) {
        process.stderr.write(`polyproxy: ${err.message}\n`);
        process.exitCode = 1;
        return;
      }
      log.fatal({ err }, 'polyproxy failed to start');
      process.exitCode = 1;
    },
  );
}
