/**
 * MQTT publish load: `--clients` MQTT.js clients (MQTT 3.1.1, user name
 * `--username`) publish `--size`-byte messages at QoS `--qos` to topic
 * bench/<n> for `--seconds`, each keeping up to `--window` publishes in
 * flight (QoS 0: written; QoS 1: PUBACKed). One more client, connected to
 * `--watch-port` (the broker itself), subscribes to bench/# at QoS 0 and
 * counts what the broker delivered in the window, which is the rate
 * reported (the same measure for both QoS levels).
 *
 * Prints `{"type":"result","published":P,"delivered":D,"seconds":S,"cpuSeconds":C}` and exits.
 *
 *   node bench/lib/mqtt-load.ts --port N --watch-port M [--clients 8] [--seconds 10] [--qos 0] [--size 64] [--window 64] [--username bench]
 */
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import type { MqttClient } from 'mqtt';

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    'watch-port': { type: 'string' },
    clients: { type: 'string', default: '8' },
    seconds: { type: 'string', default: '10' },
    qos: { type: 'string', default: '0' },
    size: { type: 'string', default: '64' },
    window: { type: 'string', default: '64' },
    username: { type: 'string', default: 'bench' },
  },
});
const port = Number(values.port);
const clients = Number(values.clients);
const seconds = Number(values.seconds);
const qos = Number(values.qos) as 0 | 1;
const window = Number(values.window);
const payload = Buffer.alloc(Number(values.size), 0x61);

const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${values['watch-port']}`, { reconnectPeriod: 0, protocolVersion: 4 });
let delivered = 0;
let counting = false;
watcher.on('message', () => {
  if (counting) delivered++;
});
await watcher.subscribeAsync('bench/#', { qos: 0 });

const publishers: MqttClient[] = await Promise.all(
  Array.from({ length: clients }, () => mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, protocolVersion: 4, username: values.username, password: 'x' })),
);
let published = 0;
let running = true;
const cpu0 = process.cpuUsage();
const started = performance.now();
counting = true;
const stopAt = started + seconds * 1000;

async function pump(client: MqttClient, n: number): Promise<void> {
  const topic = `bench/${n}`;
  let inflight = 0;
  await new Promise<void>((resolve) => {
    const next = (): void => {
      while (running && inflight < window) {
        inflight++;
        client.publish(topic, payload, { qos }, () => {
          inflight--;
          published++;
          if (running && performance.now() >= stopAt) running = false;
          if (!running && inflight === 0) resolve();
          else next();
        });
      }
    };
    next();
  });
}

const timer = setTimeout(() => (running = false), seconds * 1000);
await Promise.all(publishers.map((client, n) => pump(client, n)));
clearTimeout(timer);
const elapsed = (performance.now() - started) / 1000;
counting = false;
const used = process.cpuUsage(cpu0);
process.stdout.write(`${JSON.stringify({ type: 'result', published, delivered, seconds: elapsed, cpuSeconds: (used.user + used.system) / 1e6 })}\n`);
await Promise.all([...publishers, watcher].map((c) => c.endAsync(true)));
process.exit(0);
