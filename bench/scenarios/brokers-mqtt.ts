/**
 * brokers-mqtt (issue 22): MQTT publish rate at QoS 0 and QoS 1, 8 MQTT.js
 * publishers with 64 publishes in flight each, to a private Mosquitto:
 * directly, through polyproxy (mqtt listener, routeBy username) and,
 * for reference, through HAProxy in TCP mode (one thread), in the same run.
 * The rate is what the broker delivered to a subscriber connected to it
 * directly (bench/lib/mqtt-load.ts). The proxies are pinned to the proxy
 * CPU; Mosquitto and the load process share the other one.
 *
 * Env: BENCH_DURATION (s per run, default 10), BENCH_WARMUP (s, default 1),
 * BENCH_MQTT_CLIENTS (default 8), BENCH_MQTT_WINDOW (default 64).
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { envNumber } from '../lib/env.ts';
import { haproxyVersion, startHaproxyTcp } from '../lib/haproxy.ts';
import { pinned } from '../lib/machine.ts';
import { freePort, waitForPort } from '../lib/net.ts';
import { startPolyproxyWithConfig } from '../lib/polyproxy-config.ts';
import { removeOnExit, runCommand, spawnTracked } from '../lib/process.ts';
import { progress } from '../lib/progress.ts';
import { readCpuSeconds } from '../lib/rss.ts';
import type { Scenario, ScenarioContext, ScenarioReport } from '../lib/scenario.ts';
import { num, ratio } from '../lib/table.ts';
import type { Running } from '../lib/targets.ts';
import { clientCpu } from './tcp-rr.ts';

const BENCH_LIB = path.join(path.dirname(path.dirname(new URL(import.meta.url).pathname)), 'lib');
const MOSQUITTO = '/usr/sbin/mosquitto';
const MESSAGE_BYTES = 64;
const CLIENTS = Math.max(1, envNumber('BENCH_MQTT_CLIENTS', 8));
const WINDOW = Math.max(1, envNumber('BENCH_MQTT_WINDOW', 64));

interface RunResult {
  readonly deliveredPerSecond: number;
  readonly publishedPerSecond: number;
  readonly proxyCpu: number | null;
  readonly brokerCpu: number;
  readonly loadCpu: number;
}

async function runLoad(ctx: ScenarioContext, port: number, brokerPort: number, qos: number, seconds: number, proxyPid: number | null, brokerPid: number): Promise<RunResult> {
  const proxyBefore = proxyPid === null ? 0 : readCpuSeconds(proxyPid);
  const brokerBefore = readCpuSeconds(brokerPid);
  const started = Date.now();
  const args = ['--port', String(port), '--watch-port', String(brokerPort), '--clients', String(CLIENTS), '--seconds', String(seconds), '--qos', String(qos), '--size', String(MESSAGE_BYTES), '--window', String(WINDOW)];
  const [cmd, argv] = pinned(clientCpu(ctx), ctx.node, [path.join(BENCH_LIB, 'mqtt-load.ts'), ...args]);
  const r = await runCommand(cmd, argv, { name: 'mqtt-load', cwd: ctx.root });
  const elapsed = (Date.now() - started) / 1000;
  const line = r.stdout.split('\n').find((l) => l.includes('"type":"result"'));
  if (r.code !== 0 || line === undefined) throw new Error(`mqtt-load on port ${port} failed (exit ${r.code}):\n${r.stderr}${r.stdout}`);
  const result = JSON.parse(line) as { published: number; delivered: number; seconds: number; cpuSeconds: number };
  return {
    deliveredPerSecond: result.delivered / result.seconds,
    publishedPerSecond: result.published / result.seconds,
    proxyCpu: proxyPid === null ? null : (readCpuSeconds(proxyPid) - proxyBefore) / elapsed,
    brokerCpu: (readCpuSeconds(brokerPid) - brokerBefore) / elapsed,
    loadCpu: result.cpuSeconds / result.seconds,
  };
}

export const brokersMqttScenario: Scenario = {
  name: 'brokers-mqtt',
  description: 'MQTT QoS 0 and QoS 1 publish rate (8 MQTT.js publishers, 64 in flight each) to a private Mosquitto: direct vs polyproxy (mqtt) vs HAProxy tcp',
  needsBuild: true,
  async run(ctx: ScenarioContext): Promise<ScenarioReport> {
    const seconds = envNumber('BENCH_DURATION', 10);
    const warmup = envNumber('BENCH_WARMUP', 1);
    const versions = { mosquitto: (await runCommand(MOSQUITTO, ['-h'])).stdout.split('\n')[0]?.trim() ?? '', haproxy: await haproxyVersion() };
    const started: Running[] = [];
    try {
      progress('brokers-mqtt: starting Mosquitto, polyproxy, HAProxy');
      const brokerPort = await freePort();
      const dir = mkdtempSync(path.join(os.tmpdir(), 'polyproxy-bench-mosquitto-'));
      const cleanup = removeOnExit(dir);
      writeFileSync(path.join(dir, 'mosquitto.conf'), `listener ${brokerPort} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n`);
      const [bcmd, bargs] = pinned(clientCpu(ctx), MOSQUITTO, ['-c', path.join(dir, 'mosquitto.conf')]);
      const broker = spawnTracked(bcmd, bargs, { name: 'mosquitto', cwd: ctx.root });
      started.push({
        name: 'mosquitto',
        port: brokerPort,
        pid: broker.pid,
        proc: broker,
        stop: async () => {
          await broker.stop('SIGTERM', 5000);
          rmSync(dir, { recursive: true, force: true });
          cleanup.forget();
        },
      });
      await waitForPort(brokerPort, 10_000, broker);
      const backend = `127.0.0.1:${brokerPort}`;
      const polyproxy = await startPolyproxyWithConfig(ctx, {
        security: { allowBackends: ['127.0.0.0/8'] },
        routes: { bench: backend },
        listeners: [{ name: 'mq', protocol: 'mqtt', host: '127.0.0.1', port: await freePort() }],
      });
      started.push(polyproxy);
      const haproxy = await startHaproxyTcp(ctx, { backend });
      started.push(haproxy);
      const targets = [
        { key: 'direct', label: 'direct (Mosquitto)', port: brokerPort, pid: null },
        { key: 'polyproxy', label: 'polyproxy (mqtt, routeBy username)', port: polyproxy.port, pid: polyproxy.pid },
        { key: 'haproxy', label: 'HAProxy tcp (nbthread 1)', port: haproxy.port, pid: haproxy.pid },
      ];
      const results = new Map<string, RunResult>();
      for (const qos of [0, 1]) {
        for (const t of targets) {
          progress(`brokers-mqtt: QoS ${qos}, ${t.label} (warm-up ${warmup} s, then ${seconds} s)`);
          await runLoad(ctx, t.port, brokerPort, qos, warmup, t.pid, broker.pid);
          results.set(`${qos}:${t.key}`, await runLoad(ctx, t.port, brokerPort, qos, seconds, t.pid, broker.pid));
        }
      }
      const rate = (qos: number, key: string): number => results.get(`${qos}:${key}`)?.deliveredPerSecond ?? 0;
      const rows = [0, 1].flatMap((qos) =>
        targets.map((t) => {
          const r = results.get(`${qos}:${t.key}`) as RunResult;
          return [
            `QoS ${qos}`,
            t.label,
            num(r.deliveredPerSecond),
            ratio(r.deliveredPerSecond, rate(qos, 'direct')),
            ratio(r.deliveredPerSecond, rate(qos, 'haproxy')),
            r.proxyCpu === null ? '—' : `${Math.round(r.proxyCpu * 100)} %`,
            r.proxyCpu === null ? '—' : num((r.proxyCpu / r.deliveredPerSecond) * 1e6, 1),
            `${Math.round(r.brokerCpu * 100)} %`,
            `${Math.round(r.loadCpu * 100)} %`,
          ];
        }),
      );
      const verdict = `polyproxy ${ratio(rate(0, 'polyproxy'), rate(0, 'direct'))} direct and ${ratio(rate(0, 'polyproxy'), rate(0, 'haproxy'))} HAProxy at QoS 0; ${ratio(rate(1, 'polyproxy'), rate(1, 'direct'))} direct and ${ratio(rate(1, 'polyproxy'), rate(1, 'haproxy'))} HAProxy at QoS 1`;
      return {
        title: `MQTT publish rate: ${CLIENTS} MQTT.js publishers, ${WINDOW} in flight each, ${MESSAGE_BYTES}-byte messages, private Mosquitto`,
        verdict,
        tables: [{ table: { headers: ['QoS', 'target', 'delivered/s', 'vs direct', 'vs HAProxy', 'proxy CPU', 'proxy CPU µs/message', 'broker CPU', 'load CPU'], rows } }],
        notes: [
          `\`node bench/lib/mqtt-load.ts --clients ${CLIENTS} --window ${WINDOW} --size ${MESSAGE_BYTES} --qos <0|1> --seconds ${seconds}\` per target and QoS after a ${warmup} s warm-up, one run each: every publisher keeps ${WINDOW} publishes in flight (QoS 0: until written; QoS 1: until PUBACKed); the rate is what Mosquitto delivered to one subscriber connected to it directly, over the run.`,
          `${versions.mosquitto} (its own process, no persistence); ${versions.haproxy}. polyproxy: one worker, \`logLevel: warn\`, an mqtt listener routing user name \`bench\` to the broker. The proxies ${ctx.proxyCpu < 0 ? 'are not pinned' : `are pinned to CPU ${ctx.proxyCpu}; Mosquitto and the load process share CPU ${clientCpu(ctx)}`}. "proxy CPU" is the proxy's user+system CPU over the run's wall time (100 % = one core).`,
          'This 2-core machine is shared: other engineers ran tests at the same time, so figures are noisy; compare within the run.',
        ],
        data: {
          settings: { seconds, warmup, clients: CLIENTS, window: WINDOW, messageBytes: MESSAGE_BYTES, proxyCpu: ctx.proxyCpu },
          versions,
          results: Object.fromEntries(results),
        },
      };
    } finally {
      progress('brokers-mqtt: stopping processes');
      await Promise.all(started.map((r) => r.stop()));
    }
  },
};
