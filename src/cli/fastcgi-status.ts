/**
 * `polyproxy fastcgi status --server E [--server E...] [--json]`: reads
 * php-fpm's status page (`?full`) from every server through ClusterProxy
 * and prints each as a table, or all as JSON. Exit 0 when every server
 * answered, 1 when one did not (the others are still printed), 2 on usage.
 */
import { parseArgs } from 'node:util';
import { FastCgiClusterProxy } from '../fastcgi/cluster-proxy.ts';
import type { ClusterStatus } from '../fastcgi/cluster-proxy.ts';
import { Cluster } from '../fastcgi/collections.ts';
import type { FpmStatus } from '../fastcgi/fpm-status.ts';

export const FASTCGI_USAGE = `Usage:
  polyproxy fastcgi status --server E [--server E...] [--json]

Reads php-fpm's status page (pm.status_path, with ?full) from every server.

Options:
      --server E        host:port, [v6]:port or unix:/path (repeat for several)
      --path P          the pools' pm.status_path (default /status)
      --timeout MS      connect and read timeout per server (default 5000)
      --json            print JSON instead of tables
  -h, --help            this help`;

const OPTIONS = {
  server: { type: 'string', multiple: true },
  path: { type: 'string' },
  timeout: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const;

export async function fastcgiCommand(argv: string[], out: NodeJS.WritableStream = process.stdout, err: NodeJS.WritableStream = process.stderr): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: OPTIONS, allowPositionals: true, strict: true });
  } catch (e) {
    err.write(`polyproxy fastcgi: ${(e as Error).message}\n\n${FASTCGI_USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  if (values.help === true) {
    out.write(`${FASTCGI_USAGE}\n`);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== 'status') {
    err.write(`polyproxy fastcgi: unknown command "${positionals.join(' ')}"\n\n${FASTCGI_USAGE}\n`);
    return 2;
  }
  const servers = values.server ?? [];
  if (servers.length === 0) {
    err.write(`polyproxy fastcgi status: give at least one --server\n\n${FASTCGI_USAGE}\n`);
    return 2;
  }
  const timeoutMs = values.timeout === undefined ? 5000 : Number(values.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) {
    err.write(`polyproxy fastcgi status: --timeout: expected a positive whole number of ms, got "${values.timeout}"\n`);
    return 2;
  }
  const path = values.path ?? '/status';
  let cluster: Cluster;
  try {
    cluster = new Cluster(servers);
  } catch (e) {
    err.write(`polyproxy fastcgi status: ${(e as Error).message}\n`);
    return 2;
  }
  const proxy = new FastCgiClusterProxy(cluster, { connectTimeoutMs: timeoutMs, readWriteTimeoutMs: timeoutMs, keepAlive: false });
  let results: ClusterStatus[];
  try {
    results = await proxy.getStatus(path);
  } finally {
    proxy.close();
  }
  if (values.json === true) {
    const json = results.map((r) => (r.error === undefined ? { server: r.server, status: r.status } : { server: r.server, error: { code: (r.error as { code?: string }).code ?? 'ERROR', message: r.error.message } }));
    out.write(`${JSON.stringify(json, null, 2)}\n`);
  } else {
    out.write(results.map(formatStatus).join('\n'));
  }
  return results.every((r) => r.error === undefined) ? 0 : 1;
}

function formatStatus(result: ClusterStatus): string {
  if (result.error !== undefined) return `== ${result.server}: ERROR ${(result.error as { code?: string }).code ?? ''} ${result.error.message}\n`;
  const s: FpmStatus = result.status;
  const lines = [
    `== ${result.server}: pool ${s.pool} (${s.processManager}), started ${s.startTime?.toISOString() ?? '?'} (${s.startSince} s ago)`,
    table(
      ['accepted conn', 'listen queue', 'max listen queue', 'listen queue len', 'idle', 'active', 'total', 'max active', 'max children reached', 'slow requests'],
      [[s.acceptedConnections, s.listenQueue, s.maxListenQueue, s.listenQueueLength, s.idleProcesses, s.activeProcesses, s.totalProcesses, s.maxActiveProcesses, s.maxChildrenReached, s.slowRequests].map(String)],
    ),
  ];
  if (s.processes.length > 0) {
    lines.push(
      table(
        ['pid', 'state', 'requests', 'duration µs', 'method', 'uri', 'cpu %', 'memory'],
        s.processes.map((p) => [String(p.pid), p.state, String(p.requests), String(p.requestDurationUs), p.requestMethod, p.requestUri, p.lastRequestCpu.toFixed(2), String(p.lastRequestMemory)]),
      ),
    );
  }
  return `${lines.join('\n')}\n`;
}

function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]): string => `  ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}
