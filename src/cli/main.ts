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

Options:
  -c, --config FILE     YAML or JSON config file
      --protocol P      postgres | mysql | mongodb | http | smtp | tcp (one-line start)
      --port N          listening port        (one-line start)
      --host H          listening address     (one-line start, default 0.0.0.0)
      --backend E       host:port, [v6]:port or unix:/path (one-line start)
      --workers N       worker processes (default: one-line start 1; a config file's
                        "workers", else the CPU count)
      --log-level L     fatal | error | warn | info | debug | trace | silent
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
  try {
    config = await configFrom(values);
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
    process.stderr.write(`polyproxy: ${values.config ?? 'config'} is invalid:\n${problems.join('\n')}\n`);
    return 1;
  }
  if (command === 'check') {
    process.stdout.write(`ok: ${config.listeners.length} listener(s), ${Object.keys(config.routes).length} route(s), ${config.workers} worker(s)${warnings.length > 0 ? `, ${warnings.length} warning(s)` : ''}\n`);
    return 0;
  }
  await run(config, { reload: values.config === undefined ? null : () => configFrom(values) });
  return -1; // keep running
}

type Values = { [K in keyof typeof OPTIONS]?: (typeof OPTIONS)[K] extends { multiple: true } ? string[] : (typeof OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

async function configFrom(values: Values): Promise<Config> {
  const overrides: Record<string, unknown> = {};
  if (values.workers !== undefined) overrides.workers = toInt(values.workers, '--workers');
  if (values['log-level'] !== undefined) overrides.logLevel = values['log-level'];
  if (values.config !== undefined) {
    if (values.protocol !== undefined || values.backend !== undefined) throw new ConfigError('use either --config or --protocol/--port/--backend, not both');
    const config = await loadConfigFile(values.config);
    return Object.keys(overrides).length === 0 ? config : parseConfig({ ...config, ...overrides }, process.cwd(), values.config);
  }
  if (values.protocol === undefined && values.port === undefined && values.backend === undefined) {
    throw new ConfigError(`nothing to run: give --config FILE or --protocol/--port/--backend\n\n${USAGE}`);
  }
  if (values.protocol === undefined) throw new ConfigError('--protocol is required for a one-line start');
  if (values.port === undefined) throw new ConfigError('--port is required for a one-line start');
  if (values.backend === undefined) throw new ConfigError('--backend is required for a one-line start');
  const backend = values.backend.length === 1 ? values.backend[0] : values.backend;
  return parseConfig(
    {
      workers: 1,
      ...overrides,
      listeners: [{ name: values.protocol, protocol: values.protocol, port: toInt(values.port, '--port'), backend, ...(values.host === undefined ? {} : { host: values.host }) }],
    },
    process.cwd(),
    'command line',
  );
}

function toInt(text: string, flag: string): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(`${flag}: expected a whole number, got "${text}"`);
  return Number(text);
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
