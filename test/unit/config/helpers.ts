/** Config fixtures shared by load.test.ts and schema.test.ts. */
import assert from 'node:assert/strict';
import { ConfigError } from '../../../src/config/load.ts';

/** Expects a ConfigError whose message has a line starting with `field: `; returns that line. */
export function assertNamesField(fn: () => unknown, field: string, why?: RegExp): string {
  let error: unknown;
  try {
    fn();
  } catch (err) {
    error = err;
  }
  assert.ok(error instanceof ConfigError, `expected ConfigError, got ${String(error)}`);
  assert.equal(error.name, 'ConfigError');
  const line = error.message.split('\n').find((l) => l.startsWith(`${field}: `));
  assert.ok(line !== undefined, `no line naming "${field}" in:\n${error.message}`);
  if (why !== undefined) assert.match(line, why);
  return line;
}

export const MINIMAL = { listeners: [{ protocol: 'postgres', port: 5432 }] };
export const withMinimal = (extra: Record<string, unknown>): Record<string, unknown> => ({ ...MINIMAL, ...extra });

export const FULL_YAML = `# every field, set
workers: 2
logLevel: warn
shutdownTimeoutSeconds: 12
security:
  allowPrivateBackends: false
  allowBackends:
    - 127.0.0.0/8
    - "::1"
    - unix:/var/run/postgresql
cache:
  ttlSeconds: 30
  maxEntries: 500
admin:
  host: 127.0.0.1
  port: 9900
  historyIntervalMs: 2000
metrics:
  maxResources: 50
health:
  intervalMs: 500
  timeoutMs: 300
  rise: 1
  fall: 3
  failureThreshold: 2
  openMs: 4000
  httpPath: /healthz
coldStart:
  timeoutMs: 9000
  maxWaiting: 10
  pollIntervalMs: 50
routes:
  shop: 127.0.0.1:5432
  "*.example.com":
    - 127.0.0.1:5433
    - 127.0.0.2:5433
  db:
    primary: 127.0.0.1:5434
    replicas: [127.0.0.1:5435, "[::1]:5436"]
  sock: unix:/var/run/postgresql/.s.PGSQL.5432
resolver:
  module: ./resolvers/tenants.ts
  timeoutMs: 2000
listeners:
  - name: pg-main
    protocol: postgres
    host: 127.0.0.1
    port: 6432
    tls:
      cert: certs/server.crt
      key: ./certs/server.key
      ca: ../ca/ca.crt
      requireClientCert: true
    connectTimeoutMs: 3000
    idleTimeoutMs: 60000
    handshakeTimeoutMs: 4000
    maxConnections: 100
    firstResponseTimeoutMs: 8000
    tcpKeepAliveMs: 30000
  - name: raw
    protocol: tcp
    port: 7000
    backend: [127.0.0.1:7001, 127.0.0.1:7002]
`;

export const FULL_OBJECT = {
  workers: 2,
  logLevel: 'warn',
  shutdownTimeoutSeconds: 12,
  security: { allowPrivateBackends: false, allowBackends: ['127.0.0.0/8', '::1', 'unix:/var/run/postgresql'] },
  cache: { ttlSeconds: 30, maxEntries: 500 },
  admin: { host: '127.0.0.1', port: 9900, historyIntervalMs: 2000 },
  metrics: { maxResources: 50 },
  health: { intervalMs: 500, timeoutMs: 300, rise: 1, fall: 3, failureThreshold: 2, openMs: 4000, httpPath: '/healthz' },
  coldStart: { timeoutMs: 9000, maxWaiting: 10, pollIntervalMs: 50 },
  routes: {
    shop: '127.0.0.1:5432',
    '*.example.com': ['127.0.0.1:5433', '127.0.0.2:5433'],
    db: { primary: '127.0.0.1:5434', replicas: ['127.0.0.1:5435', '[::1]:5436'] },
    sock: 'unix:/var/run/postgresql/.s.PGSQL.5432',
  },
  resolver: { module: './resolvers/tenants.ts', timeoutMs: 2000 },
  listeners: [
    {
      name: 'pg-main',
      protocol: 'postgres',
      host: '127.0.0.1',
      port: 6432,
      tls: { cert: 'certs/server.crt', key: './certs/server.key', ca: '../ca/ca.crt', requireClientCert: true },
      connectTimeoutMs: 3000,
      idleTimeoutMs: 60000,
      handshakeTimeoutMs: 4000,
      maxConnections: 100,
      firstResponseTimeoutMs: 8000,
      tcpKeepAliveMs: 30000,
    },
    { name: 'raw', protocol: 'tcp', port: 7000, backend: ['127.0.0.1:7001', '127.0.0.1:7002'] },
  ],
};
