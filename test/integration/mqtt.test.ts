/**
 * MQTT routing end to end (issue 22): the real `polyproxy` command (built
 * dist/) in front of two private Mosquitto instances, one per tenant,
 * driven by MQTT.js (3.1.1 and 5.0) and by mosquitto_pub / mosquitto_sub.
 * Each message is checked at the broker its tenant routes to (a direct
 * subscriber there), and absent from the other.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import type { IClientOptions, MqttClient } from 'mqtt';
import { request } from 'undici';
import { parseEndpoint } from '../../src/core/endpoint.ts';
import { probe } from '../../src/core/health.ts';
import { mqttHealthProbe } from '../../src/protocols/mqtt/health.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { freePort, mosquittoMissing, startMosquitto } from '../helpers/mosquitto.ts';
import type { MosquittoInstance } from '../helpers/mosquitto.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

const execFileAsync = promisify(execFile);
const skip = await mosquittoMissing();

/** A broker that accepts and never answers: the CONNECT replayed to it gets nothing back. */
const held = new Set<net.Socket>();
function silentServer(): Promise<net.Server> {
  const server = net.createServer((socket) => {
    held.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => held.delete(socket));
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

describe('mqtt listener', { skip: skip ?? false }, () => {
  let alpha: MosquittoInstance;
  let beta: MosquittoInstance;
  let silent: net.Server;
  let proxy: RunningCli;
  let pki: TestPki;
  let ca: Buffer;
  let admin: string;
  const clients: MqttClient[] = [];

  before(async () => {
    [alpha, beta] = await Promise.all([startMosquitto(), startMosquitto()]);
    silent = await silentServer();
    pki = await makeTestPki({ serverNames: ['localhost', '127.0.0.1'] });
    ca = await readFile(pki.caCert);
    const file = await writeConfig({
      workers: 1,
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: {
        alpha: `127.0.0.1:${alpha.port}`,
        beta: `127.0.0.1:${beta.port}`,
        down: `127.0.0.1:${await freePort()}`,
        mute: `127.0.0.1:${(silent.address() as AddressInfo).port}`,
      },
      listeners: [
        { name: 'mq', protocol: 'mqtt', host: '127.0.0.1', port: 0, firstResponseTimeoutMs: 1000, handshakeTimeoutMs: 1500 },
        { name: 'mq-cid', protocol: 'mqtt', host: '127.0.0.1', port: 0, routeBy: 'clientIdPrefix', separator: ':' },
        { name: 'mq-tls', protocol: 'mqtt', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
        { name: 'mq-one', protocol: 'mqtt', host: '127.0.0.1', port: 0, maxConnections: 1 },
      ],
    });
    proxy = await startCli(['--config', file]);
    admin = `http://127.0.0.1:${(proxy.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    await Promise.all(clients.map((client) => client.endAsync(true)));
    for (const socket of held) socket.destroy();
    await proxy?.stop();
    await Promise.all([alpha?.stop(), beta?.stop()]);
    await new Promise((resolve) => silent?.close(resolve));
    await pki?.cleanup();
  });

  async function connect(url: string, options: IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
    clients.push(client);
    return client;
  }

  /** Through the proxy, as `tenant` (its user name). */
  function viaProxy(tenant: string, version: 4 | 5, extra: IClientOptions = {}): Promise<MqttClient> {
    return connect(`mqtt://127.0.0.1:${proxy.port('mq')}`, { protocolVersion: version, username: tenant, password: 'any', ...extra });
  }

  /** Straight to a broker, bypassing the proxy. */
  function direct(broker: MosquittoInstance): Promise<MqttClient> {
    return connect(`mqtt://127.0.0.1:${broker.port}`, { protocolVersion: 4 });
  }

  /** The next message on `topic` at `client`. */
  function nextMessage(client: MqttClient, topic: string): Promise<{ payload: Buffer; retain: boolean; qos: number }> {
    return new Promise((resolve) => {
      const onMessage = (t: string, payload: Buffer, packet: { retain: boolean; qos: number }): void => {
        if (t !== topic) return;
        client.removeListener('message', onMessage);
        resolve({ payload, retain: packet.retain, qos: packet.qos });
      };
      client.on('message', onMessage);
    });
  }

  /** The CONNACK code a refused MQTT.js client reports. */
  async function refusedCode(url: string, options: IClientOptions): Promise<{ code: number; message: string }> {
    try {
      const client = await mqtt.connectAsync(url, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
      client.end(true);
    } catch (err) {
      return { code: (err as { code: number }).code, message: (err as Error).message };
    }
    assert.fail('the connection was accepted');
  }

  for (const version of [4, 5] as const) {
    it(`MQTT.js ${version === 4 ? '3.1.1' : '5.0'}: QoS 1 and 2 for two tenants land on their own broker only`, async () => {
      const [watchAlpha, watchBeta] = await Promise.all([direct(alpha), direct(beta)]);
      const topic = `t/${version}/${randomBytes(4).toString('hex')}`;
      await Promise.all([watchAlpha.subscribeAsync(topic, { qos: 2 }), watchBeta.subscribeAsync(topic, { qos: 2 })]);
      const leaked: string[] = [];
      watchBeta.on('message', (t, payload) => t === topic && leaked.push(payload.toString()));
      const publisher = await viaProxy('alpha', version);
      const subscriber = await viaProxy('alpha', version);
      await subscriber.subscribeAsync(topic, { qos: 2 });
      for (const qos of [1, 2] as const) {
        const atBroker = nextMessage(watchAlpha, topic);
        const atSubscriber = nextMessage(subscriber, topic);
        await publisher.publishAsync(topic, `alpha qos ${qos}`, { qos });
        assert.equal((await atBroker).payload.toString(), `alpha qos ${qos}`);
        const got = await atSubscriber;
        assert.deepEqual([got.payload.toString(), got.qos], [`alpha qos ${qos}`, qos]);
      }
      // beta's publishes reach beta's broker.
      const betaPublisher = await viaProxy('beta', version);
      const atBeta = nextMessage(watchBeta, topic);
      await betaPublisher.publishAsync(topic, 'beta qos 2', { qos: 2 });
      assert.equal((await atBeta).payload.toString(), 'beta qos 2');
      assert.deepEqual(leaked, ['beta qos 2'], 'alpha messages never reached beta');
    });
  }

  it('retained messages stay with their tenant: beta does not see alpha\'s', async () => {
    const topic = `retained/${randomBytes(4).toString('hex')}`;
    const publisher = await viaProxy('alpha', 5);
    await publisher.publishAsync(topic, 'kept', { qos: 1, retain: true });
    const later = await viaProxy('alpha', 4);
    const kept = nextMessage(later, topic);
    await later.subscribeAsync(topic, { qos: 1 });
    const got = await kept;
    assert.deepEqual([got.payload.toString(), got.retain], ['kept', true]);
    // beta subscribes, then a marker published after proves the retained message would have come first.
    const other = await viaProxy('beta', 5);
    const seen: string[] = [];
    other.on('message', (t, payload) => t === topic && seen.push(payload.toString()));
    await other.subscribeAsync(topic, { qos: 1 });
    const marker = nextMessage(other, topic);
    await other.publishAsync(topic, 'marker', { qos: 1 });
    await marker;
    assert.deepEqual(seen, ['marker']);
  });

  for (const version of [4, 5] as const) {
    it(`a will message (${version === 4 ? '3.1.1' : '5.0 with will properties'}) reaches its tenant's broker when the client vanishes`, async () => {
      const watch = await direct(alpha);
      const topic = `will/${version}/${randomBytes(4).toString('hex')}`;
      await watch.subscribeAsync(topic, { qos: 1 });
      const payload = randomBytes(60_000); // near the 65,535-byte limit of a will payload
      const will = { topic, payload, qos: 1 as const, retain: false, ...(version === 5 ? { properties: { willDelayInterval: 0, contentType: 'application/octet-stream', userProperties: { tenant: 'alpha' } } } : {}) };
      const client = await viaProxy('alpha', version, { will, keepalive: 30 });
      const arrived = nextMessage(watch, topic);
      (client.stream as net.Socket).destroy(); // no DISCONNECT: the broker publishes the will
      const got = await arrived;
      assert.equal(createHash('sha256').update(got.payload).digest('hex'), createHash('sha256').update(payload).digest('hex'));
    });
  }

  it('a 4 MB PUBLISH passes intact both ways (QoS 1)', async () => {
    const topic = `big/${randomBytes(4).toString('hex')}`;
    const subscriber = await viaProxy('beta', 5);
    await subscriber.subscribeAsync(topic, { qos: 1 });
    const publisher = await viaProxy('beta', 4);
    const payload = randomBytes(4 * 1024 * 1024);
    const got = nextMessage(subscriber, topic);
    await publisher.publishAsync(topic, payload, { qos: 1 });
    assert.ok((await got).payload.equals(payload));
  });

  it('mosquitto_pub / mosquitto_sub (3.1.1 and 5.0, QoS 1 and 2, retained) through the proxy', async () => {
    const port = String(proxy.port('mq'));
    for (const [tenant, broker] of [['alpha', alpha], ['beta', beta]] as const) {
      for (const [version, qos] of [['mqttv311', '1'], ['mqttv5', '2']] as const) {
        const topic = `cli/${tenant}/${version}/${randomBytes(3).toString('hex')}`;
        const watch = await direct(broker);
        await watch.subscribeAsync(topic, { qos: 1 });
        const atBroker = nextMessage(watch, topic);
        await execFileAsync('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', tenant, '-P', 'x', '-V', version, '-q', qos, '-r', '-t', topic, '-m', `hello ${tenant}`]);
        assert.equal((await atBroker).payload.toString(), `hello ${tenant}`);
        // The retained message comes back through the proxy to mosquitto_sub.
        const { stdout } = await execFileAsync('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-u', tenant, '-V', version, '-q', qos, '-t', topic, '-C', '1', '-W', '5', '-v']);
        assert.equal(stdout.trim(), `${topic} hello ${tenant}`);
      }
    }
  });

  it('a refused tenant sees the version\'s CONNACK code: 0x05 (3.1.1) / 0x87 with a reason string (5.0)', async () => {
    const url = `mqtt://127.0.0.1:${proxy.port('mq')}`;
    const v3 = await refusedCode(url, { protocolVersion: 4, username: 'nobody' });
    assert.equal(v3.code, 5);
    const v5 = await refusedCode(url, { protocolVersion: 5, username: 'nobody' });
    assert.equal(v5.code, 0x87);
    // No user name at all: nothing to route by.
    assert.equal((await refusedCode(url, { protocolVersion: 4 })).code, 5);
    assert.equal((await refusedCode(url, { protocolVersion: 5 })).code, 0x87);
    // mosquitto_pub exits with the code it was refused with.
    for (const [version, code] of [['mqttv311', 5], ['mqttv5', 0x87]] as const) {
      const failed = await execFileAsync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(proxy.port('mq')), '-u', 'nobody', '-V', version, '-t', 'x', '-m', 'y']).then(
        () => assert.fail('mosquitto_pub succeeded'),
        (err: { code: number; stderr: string }) => err,
      );
      assert.equal(failed.code, code, failed.stderr);
      assert.match(failed.stderr, /not authori[sz]ed/i);
    }
  });

  it('the 5.0 CONNACK carries the reason string, within the client\'s Maximum Packet Size', async () => {
    const client = await rawConnack(proxy.port('mq'), connectPacket({ level: 5, username: 'nobody' }));
    assert.equal(client[3], 0x87);
    assert.match(client.toString('utf8'), /tenant "nobody" is not routed by this proxy/);
    const small = await rawConnack(proxy.port('mq'), connectPacket({ level: 5, username: 'nobody', maxPacketSize: 16 }));
    assert.deepEqual([...small], [0x20, 3, 0, 0x87, 0], 'no reason string past the client limit');
  });

  it('an unreachable broker answers 0x03 / 0x88 (server unavailable); a silent one too, at firstResponseTimeoutMs', async () => {
    const url = `mqtt://127.0.0.1:${proxy.port('mq')}`;
    for (const tenant of ['down', 'mute']) {
      assert.equal((await refusedCode(url, { protocolVersion: 4, username: tenant })).code, 3, tenant);
      const v5 = await refusedCode(url, { protocolVersion: 5, username: tenant });
      assert.equal(v5.code, 0x88, tenant);
    }
  });

  it('routeBy clientIdPrefix: the tenant is the client id up to the separator; without one, 0x02 / 0x85', async () => {
    const url = `mqtt://127.0.0.1:${proxy.port('mq-cid')}`;
    const watch = await direct(beta);
    const topic = `cid/${randomBytes(4).toString('hex')}`;
    await watch.subscribeAsync(topic, { qos: 1 });
    const client = await connect(url, { protocolVersion: 5, clientId: 'beta:sensor-7' });
    const arrived = nextMessage(watch, topic);
    await client.publishAsync(topic, 'from beta:sensor-7', { qos: 1 });
    assert.equal((await arrived).payload.toString(), 'from beta:sensor-7');
    assert.equal((await refusedCode(url, { protocolVersion: 4, clientId: 'no-separator' })).code, 2);
    assert.equal((await refusedCode(url, { protocolVersion: 5, clientId: 'no-separator' })).code, 0x85);
    assert.equal((await refusedCode(url, { protocolVersion: 5, clientId: 'nobody:x' })).code, 0x87);
  });

  it('TLS termination: mqtts with MQTT.js and mosquitto_pub --cafile', async () => {
    const port = proxy.port('mq-tls');
    const watch = await direct(alpha);
    const topic = `tls/${randomBytes(4).toString('hex')}`;
    await watch.subscribeAsync(topic, { qos: 1 });
    const client = await connect(`mqtts://127.0.0.1:${port}`, { protocolVersion: 5, username: 'alpha', ca, servername: 'localhost' });
    let arrived = nextMessage(watch, topic);
    await client.publishAsync(topic, 'over tls', { qos: 1 });
    assert.equal((await arrived).payload.toString(), 'over tls');
    arrived = nextMessage(watch, topic);
    await execFileAsync('mosquitto_pub', ['-h', 'localhost', '-p', String(port), '--cafile', pki.caCert, '-u', 'alpha', '-q', '1', '-t', topic, '-m', 'cli over tls']);
    assert.equal((await arrived).payload.toString(), 'cli over tls');
  });

  it('maxConnections: the next client gets CONNACK server unavailable (3.1.1 form: its CONNECT was not read)', async () => {
    const first = await connect(`mqtt://127.0.0.1:${proxy.port('mq-one')}`, { protocolVersion: 4, username: 'alpha' });
    assert.ok(first.connected);
    const refused = await refusedCode(`mqtt://127.0.0.1:${proxy.port('mq-one')}`, { protocolVersion: 5, username: 'alpha' });
    assert.equal(refused.code, 3);
    first.end(true);
  });

  it('malformed CONNECTs: 5.0 gets 0x81 or 0x82, 3.1.1 a close without a CONNACK, an unknown level 0x01', async () => {
    const port = proxy.port('mq');
    const reserved = connectPacket({ level: 5, username: 'alpha' });
    setReservedFlag(reserved);
    const answer = await rawConnack(port, reserved);
    assert.deepEqual([answer[0], answer[2], answer[3]], [0x20, 0, 0x81], answer.toString('hex'));
    assert.match(answer.toString('utf8'), /the reserved connect flag is set/);
    const twice = connectPacket({ level: 5, username: 'alpha', maxPacketSize: 100, extraProperties: Buffer.from([0x27, 0, 0, 1, 0]) });
    assert.equal((await rawConnack(port, twice))[3], 0x82, 'a property given twice is a protocol error');
    const v3 = connectPacket({ level: 4, username: 'alpha' });
    setReservedFlag(v3);
    assert.equal((await rawConnack(port, v3)).length, 0, '3.1.1: closed without a word');
    const level6 = connectPacket({ level: 6, username: 'alpha' });
    assert.deepEqual([...(await rawConnack(port, level6))], [0x20, 2, 0, 0x01]);
    assert.equal((await rawConnack(port, Buffer.from('GET / HTTP/1.1\r\n\r\n'))).length, 0, 'not MQTT: closed');
  });

  it('handshake timeout: a client that never finishes its CONNECT is closed', async () => {
    const partial = connectPacket({ level: 4, username: 'alpha' }).subarray(0, 10);
    const started = Date.now();
    assert.equal((await rawConnack(proxy.port('mq'), partial)).length, 0);
    assert.ok(Date.now() - started >= 1400, 'closed at the listener\'s handshakeTimeoutMs');
  });

  it('the health probe finds a real Mosquitto up, and a port that does not answer MQTT down', async () => {
    assert.equal(await probe(parseEndpoint(`127.0.0.1:${alpha.port}`), undefined, 2000, mqttHealthProbe), null);
    assert.match((await probe(parseEndpoint(`127.0.0.1:${(silent.address() as AddressInfo).port}`), undefined, 300, mqttHealthProbe)) ?? '', /no answer within 300 ms/);
  });

  it('per-tenant metrics count the sessions and bytes of each tenant', async () => {
    const client = await viaProxy('beta', 5);
    await client.publishAsync('metrics/beta', randomBytes(100_000), { qos: 1 });
    await client.endAsync();
    // Bytes are added when a session ends.
    let samples = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      samples = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
      if (sample(samples, 'polyproxy_resource_bytes_total', { resource: 'beta', direction: 'in' }) > 100_000) break;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(sample(samples, 'polyproxy_resource_bytes_total', { resource: 'beta', direction: 'in' }) > 100_000);
    assert.ok(sample(samples, 'polyproxy_resource_connections_total', { resource: 'alpha' }) >= 5);
    assert.ok(sample(samples, 'polyproxy_resource_connections_total', { resource: 'beta' }) >= 3);
    assert.ok(sample(samples, 'polyproxy_resource_connections_open', { resource: 'alpha' }) >= 1);
  });
});

/** A CONNECT packet built by hand (clean start, keep alive 60, client id "raw"). */
function connectPacket(options: { level: number; username?: string; maxPacketSize?: number; extraProperties?: Buffer }): Buffer {
  const str = (text: string): Buffer => {
    const bytes = Buffer.from(text, 'utf8');
    return Buffer.concat([Buffer.from([bytes.length >> 8, bytes.length & 0xff]), bytes]);
  };
  const flags = 0x02 | (options.username === undefined ? 0 : 0x80);
  const parts = [str('MQTT'), Buffer.from([options.level, flags, 0, 60])];
  if (options.level === 5) {
    const props: Buffer[] = [];
    if (options.maxPacketSize !== undefined) props.push(Buffer.from([0x27, 0, 0, options.maxPacketSize >> 8, options.maxPacketSize & 0xff]));
    if (options.extraProperties !== undefined) props.push(options.extraProperties);
    const body = Buffer.concat(props);
    parts.push(Buffer.from([body.length]), body);
  }
  parts.push(str('raw'));
  if (options.username !== undefined) parts.push(str(options.username));
  const rest = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([0x10, rest.length]), rest]);
}

/** Sets the reserved bit of a CONNECT's connect flags (after "MQTT" and the level). */
function setReservedFlag(packet: Buffer): void {
  const at = packet.indexOf(Buffer.from('MQTT')) + 5;
  packet.writeUInt8(packet.readUInt8(at) | 0x01, at);
}

/** Sends `bytes` and collects everything until the proxy closes. */
function rawConnack(port: number, bytes: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(bytes));
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(chunks)));
  });
}
