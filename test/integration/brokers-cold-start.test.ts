/**
 * Cold starts on the broker listeners (issue 22): a resolver module's route
 * carries `coldStart.wake()`, which starts a private Mosquitto. MQTT.js
 * clients arriving while it sleeps wait and connect once it is up (one
 * wake for all); a tenant whose broker never wakes gets the version's
 * "server unavailable" CONNACK at the deadline, and an AMQP client the
 * 541 Close.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { RawAmqp, closeFields } from '../helpers/amqp.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { freePort, mosquittoMissing } from '../helpers/mosquitto.ts';

const skip = await mosquittoMissing();

function resolverModule(sleepyPort: number, deadPort: number, dir: string): string {
  return `
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
let wakes = 0;
export let broker = null;
const conf = ${JSON.stringify(path.join(dir, 'sleepy.conf'))};
writeFileSync(conf, 'listener ${sleepyPort} 127.0.0.1\\nallow_anonymous true\\npersistence false\\n');
const sleepy = {
  endpoint: '127.0.0.1:${sleepyPort}',
  coldStart: {
    async wake() {
      wakes++;
      writeFileSync(${JSON.stringify(path.join(dir, 'wakes'))}, String(wakes));
      broker = spawn('/usr/sbin/mosquitto', ['-c', conf], { stdio: 'ignore' });
      process.on('exit', () => broker.kill());
    },
  },
};
const never = { endpoint: '127.0.0.1:${deadPort}', coldStart: { async wake() {} } };
export default { resolve: (id) => (id === 'sleepy' ? sleepy : never) };
`;
}

describe('cold start on the mqtt and amqp listeners', { skip: skip ?? false }, () => {
  let cli: RunningCli;
  let dir: string;

  before(async () => {
    const config = await writeConfig({});
    dir = path.dirname(config);
    await writeFile(path.join(dir, 'resolver.mjs'), resolverModule(await freePort(), await freePort(), dir));
    await writeFile(
      config,
      JSON.stringify({
        workers: 1,
        logLevel: 'warn',
        security: { allowPrivateBackends: true },
        coldStart: { timeoutMs: 1500, pollIntervalMs: 50 },
        resolver: { module: './resolver.mjs' },
        listeners: [
          { name: 'mq', protocol: 'mqtt', host: '127.0.0.1', port: 0 },
          { name: 'am', protocol: 'amqp', host: '127.0.0.1', port: 0 },
        ],
      }),
    );
    cli = await startCli(['--config', config], 60_000);
  });

  after(async () => {
    await cli?.stop();
  });

  it('clients of a sleeping broker wait for one wake, then connect and publish', async () => {
    const url = `mqtt://127.0.0.1:${cli.port('mq')}`;
    const clients = await Promise.all(Array.from({ length: 5 }, (_, i) => mqtt.connectAsync(url, { protocolVersion: i % 2 === 0 ? 5 : 4, username: 'sleepy', reconnectPeriod: 0, connectTimeout: 10_000 })));
    try {
      for (const client of clients) await client.publishAsync('woke/up', 'hi', { qos: 1 });
      const { readFile } = await import('node:fs/promises');
      assert.equal(await readFile(path.join(dir, 'wakes'), 'utf8'), '1');
    } finally {
      await Promise.all(clients.map((c) => c.endAsync(true)));
    }
  });

  it('a broker that never wakes: CONNACK 0x03 / 0x88 and Close 541 at the deadline', async () => {
    const url = `mqtt://127.0.0.1:${cli.port('mq')}`;
    for (const [version, code] of [[4, 3], [5, 0x88]] as const) {
      const err = await mqtt.connectAsync(url, { protocolVersion: version, username: 'asleep', reconnectPeriod: 0, connectTimeout: 10_000 }).then(
        (c) => {
          c.end(true);
          return assert.fail('connected');
        },
        (e: { code: number }) => e,
      );
      assert.equal(err.code, code);
    }
    const raw = new RawAmqp(cli.port('am'));
    try {
      const answer = await raw.handshake('asleep');
      assert.ok(answer !== null);
      assert.equal(closeFields(answer).code, 541);
    } finally {
      raw.destroy();
    }
  });
});
