/**
 * What one idle WebSocket client costs a server (ws-bridge, issue #23): a
 * process holding either polyproxy's ws-bridge listener (in-process, the
 * same WsBridgeListener the ws-bridge protocol runs, calling `--api`) or a
 * bare `ws` server (node:http + WebSocketServer in noServer mode, no
 * compression, no client tracking: the floor any ws-based bridge stands
 * on). Run with --expose-gc; stdin commands, one JSON reply line each:
 *   mark    → full GC, remember memoryUsage()      → {"type":"marked",...}
 *   measure → full GC, memoryUsage() since mark    → {"type":"measured","rssKb":..,"heapUsedKb":..,...}
 * Prints {"type":"ready","port":N} first. The clients come from ws-load.ts.
 *
 *   node --expose-gc bench/lib/ws-idle-target.ts --mode bridge|bare [--api URL]
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { WebSocketServer } from 'ws';
import type { WebSocket } from 'ws';
import { WsBridgeListener } from '../../src/protocols/ws-bridge/bridge.ts';
import { reply, serveCommands } from './child-commands.ts';

const { values } = parseArgs({ options: { mode: { type: 'string', default: 'bridge' }, api: { type: 'string' } } });
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) throw new Error('run with --expose-gc');

function noop(): void {}
function bareOnMessage(this: WebSocket): void {}

let port: number;
if (values.mode === 'bare') {
  const server = http.createServer();
  const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
  server.on('upgrade', (req, socket, head) => {
    wss.handleUpgrade(req, socket, head, (ws) => {
      ws.on('message', bareOnMessage);
      ws.on('error', noop);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
} else {
  if (values.api === undefined) throw new Error('--api is required with --mode bridge');
  // The listener's defaults (src/protocols/ws-bridge/config.ts), as the ws-bridge scenario runs it.
  const bridge = new WsBridgeListener(
    {
      name: 'ws-idle',
      host: '127.0.0.1',
      port: 0,
      reusePort: false,
      maxConnections: 0,
      tcpKeepAliveMs: 60_000,
      handshakeTimeoutMs: 10_000,
      api: values.api,
      metricsPath: '/metrics',
      ordering: 'ordered',
      duplicateClientId: 'replace',
      onApiFailure: 'drop',
      pingIntervalMs: 30_000,
      deadPeerTimeoutMs: 70_000,
      maxMessageBytes: 1024 * 1024,
      connectTimeoutMs: 5000,
      pool: { maxConnections: 64, maxIdle: 64, idleTimeoutMs: 60_000, timeoutMs: 60_000 },
    },
    pino({ level: 'silent' }),
  );
  port = (await bridge.listen()).port;
}

async function settledUsage(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    gc?.();
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  return process.memoryUsage();
}

let base: NodeJS.MemoryUsage | null = null;

serveCommands({
  mark: async () => {
    base = await settledUsage();
    reply({ type: 'marked', rssKb: base.rss / 1024 });
  },
  measure: async () => {
    const now = await settledUsage();
    const from = base ?? now;
    const kb = (k: keyof NodeJS.MemoryUsage): number => (now[k] - from[k]) / 1024;
    reply({ type: 'measured', rssKb: kb('rss'), heapUsedKb: kb('heapUsed'), heapTotalKb: kb('heapTotal'), externalKb: kb('external') });
  },
});
reply({ type: 'listening', port });
