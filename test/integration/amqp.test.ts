/**
 * AMQP 0-9-1 routing end to end (issue 22): the real `polyproxy` command
 * (built dist/) in front of the machine's RabbitMQ, two virtual hosts made
 * for the test, amqplib publishing and consuming through the proxy, and
 * raw handshakes and amqp-tools for the reply codes amqplib hides.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import amqp from 'amqplib';
import type { ChannelModel } from 'amqplib';
import { request } from 'undici';
import { parseEndpoint } from '../../src/core/endpoint.ts';
import { probe } from '../../src/core/health.ts';
import { amqpHealthProbe } from '../../src/protocols/amqp/health.ts';
import { HEADER, RawAmqp, addVhosts, closeFields, deleteVhosts, rabbitmqMissing, rabbitmqctl } from '../helpers/amqp.ts';
import { makeTestPki } from '../helpers/certs.ts';
import type { TestPki } from '../helpers/certs.ts';
import { startCli, writeConfig } from '../helpers/cli.ts';
import type { RunningCli } from '../helpers/cli.ts';
import { freePort } from '../helpers/mosquitto.ts';
import { parsePrometheus, sample } from '../helpers/prometheus.ts';

const execFileAsync = promisify(execFile);
const skip = await rabbitmqMissing();
const tag = randomBytes(3).toString('hex');
const ALPHA = `pp_alpha_${tag}`;
const BETA = `pp_beta_${tag}`;
const MISSING = `pp_missing_${tag}`; // routed, but not a vhost of the broker

describe('amqp listener', { skip: skip ?? false }, () => {
  let proxy: RunningCli;
  let silent: net.Server;
  const held = new Set<net.Socket>();
  let pki: TestPki;
  let ca: Buffer;
  let admin: string;
  const connections: ChannelModel[] = [];
  const raws: RawAmqp[] = [];

  before(async () => {
    await addVhosts([ALPHA, BETA]);
    // A broker that accepts and never says a word.
    silent = net.createServer((socket) => {
      held.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => held.delete(socket));
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    pki = await makeTestPki({ serverNames: ['localhost', '127.0.0.1'] });
    ca = await readFile(pki.caCert);
    const file = await writeConfig({
      workers: 1,
      admin: { host: '127.0.0.1', port: 0 },
      security: { allowBackends: ['127.0.0.0/8'] },
      routes: { [ALPHA]: '127.0.0.1:5672', [BETA]: '127.0.0.1:5672', [MISSING]: '127.0.0.1:5672', pp_down: `127.0.0.1:${await freePort()}`, pp_mute: `127.0.0.1:${(silent.address() as AddressInfo).port}` },
      listeners: [
        { name: 'am', protocol: 'amqp', host: '127.0.0.1', port: 0 },
        // RabbitMQ takes over a second to refuse a wrong password: only the silent-broker test uses a short deadline.
        { name: 'am-quick', protocol: 'amqp', host: '127.0.0.1', port: 0, firstResponseTimeoutMs: 1000 },
        { name: 'am-tls', protocol: 'amqp', host: '127.0.0.1', port: 0, tls: { cert: pki.serverCert, key: pki.serverKey } },
        { name: 'am-big', protocol: 'amqp', host: '127.0.0.1', port: 0, frameMax: 1048576 },
        { name: 'am-one', protocol: 'amqp', host: '127.0.0.1', port: 0, maxConnections: 1 },
      ],
    });
    proxy = await startCli(['--config', file]);
    admin = `http://127.0.0.1:${(proxy.ready as unknown as { admin: AddressInfo }).admin.port}`;
  });

  after(async () => {
    for (const raw of raws) raw.destroy();
    await Promise.all(connections.map((c) => c.close().catch(() => {})));
    await proxy?.stop();
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => silent?.close(resolve));
    await pki?.cleanup();
    if (skip === null) await deleteVhosts([ALPHA, BETA]);
  });

  async function connect(url: string, socketOptions: Record<string, unknown> = {}): Promise<ChannelModel> {
    const connection = await amqp.connect(url, socketOptions);
    connection.on('error', () => {});
    connections.push(connection);
    return connection;
  }

  function raw(listener = 'am'): RawAmqp {
    const client = new RawAmqp(proxy.port(listener));
    raws.push(client);
    return client;
  }

  it('amqplib publishes and consumes on two vhosts through the proxy; a queue of one is not in the other', async () => {
    const queue = `q_${tag}`;
    for (const vhost of [ALPHA, BETA]) {
      const connection = await connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am')}/${vhost}`);
      const channel = await connection.createConfirmChannel();
      await channel.assertQueue(queue, { durable: false, autoDelete: false });
      channel.sendToQueue(queue, Buffer.from(`hello ${vhost}`));
      await channel.waitForConfirms();
      const got = await new Promise<string>((resolve) => void channel.consume(queue, (message) => message !== null && resolve(message.content.toString()), { noAck: true }));
      assert.equal(got, `hello ${vhost}`);
    }
    // Straight to RabbitMQ: a queue only in alpha's vhost is unknown in beta's.
    const only = `only_alpha_${tag}`;
    const viaProxy = await connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am')}/${ALPHA}`);
    await (await viaProxy.createChannel()).assertQueue(only, { durable: false });
    const direct = await connect(`amqp://guest:guest@127.0.0.1:5672/${BETA}`);
    const channel = await direct.createChannel();
    channel.on('error', () => {});
    await assert.rejects(channel.checkQueue(only), /404/);
    const directAlpha = await connect(`amqp://guest:guest@127.0.0.1:5672/${ALPHA}`);
    assert.equal((await (await directAlpha.createChannel()).checkQueue(only)).queue, only);
  });

  it('a 1 MB message crosses in many body frames, intact', async () => {
    const connection = await connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am')}/${BETA}`);
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    const body = randomBytes(1024 * 1024);
    channel.sendToQueue(queue, body);
    const got = await new Promise<Buffer>((resolve) => void channel.consume(queue, (message) => message !== null && resolve(message.content), { noAck: true }));
    assert.ok(got.equals(body));
  });

  it('an unrouted vhost gets Connection.Close 530 NOT_ALLOWED about Connection.Open (raw, amqp-tools and amqplib)', async () => {
    const answer = await raw().handshake('pp_nobody');
    assert.ok(answer !== null);
    assert.deepEqual([answer.classId, answer.methodId], [10, 50]);
    assert.deepEqual(closeFields(answer), { code: 530, text: "NOT_ALLOWED - vhost 'pp_nobody' is not routed by this proxy", classId: 10, methodId: 40 });
    const failed = await execFileAsync('amqp-publish', ['--url', `amqp://guest:guest@127.0.0.1:${proxy.port('am')}/pp_nobody`, '-r', 'x', '-b', 'y']).then(
      () => assert.fail('amqp-publish succeeded'),
      (err: { stderr: string }) => err,
    );
    assert.match(failed.stderr, /server connection error 530, message: NOT_ALLOWED - vhost 'pp_nobody' is not routed by this proxy/);
    await assert.rejects(amqp.connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am')}/pp_nobody`), /ConnectionClose/);
  });

  it("the broker's own refusals reach the client as it sent them: 403 for a wrong password, 530 for a vhost it does not have", async () => {
    const wrong = await raw().handshake(ALPHA, { password: 'wrong' });
    assert.ok(wrong !== null);
    const refused = closeFields(wrong);
    assert.equal(refused.code, 403);
    assert.match(refused.text, /^ACCESS_REFUSED/);
    const missing = await raw().handshake(MISSING);
    assert.ok(missing !== null);
    const notFound = closeFields(missing);
    assert.equal(notFound.code, 530);
    assert.match(notFound.text, new RegExp(`vhost ${MISSING} not found`));
  });

  it('an unreachable broker: 541 INTERNAL_ERROR', async () => {
    const answer = await raw().handshake('pp_down');
    assert.ok(answer !== null);
    assert.deepEqual(closeFields(answer), { code: 541, text: "INTERNAL_ERROR - cannot reach the broker for vhost 'pp_down'", classId: 10, methodId: 40 });
  });

  it('a broker silent past firstResponseTimeoutMs: 541 INTERNAL_ERROR', async () => {
    const answer = await raw('am-quick').handshake('pp_mute');
    assert.ok(answer !== null);
    assert.deepEqual(closeFields(answer), { code: 541, text: "INTERNAL_ERROR - vhost 'pp_mute' is unavailable right now, try again later", classId: 10, methodId: 40 });
  });

  it('a listener offering a larger frame_max than the broker allows refuses the client with 530, before any frame could break it', async () => {
    const answer = await raw('am-big').handshake(ALPHA);
    assert.ok(answer !== null);
    const close = closeFields(answer);
    assert.equal(close.code, 530);
    assert.match(close.text, /frame_max=1048576 > 131072 max size of the broker/);
    // A client that takes less than the broker allows is fine on the same listener.
    const ok = await raw('am-big').handshake(ALPHA, { frameMax: 131072 });
    assert.deepEqual([ok?.classId, ok?.methodId], [10, 41]);
  });

  it('the client agrees frame_max with the proxy within its offer; more is 530', async () => {
    const answer = await raw().handshake(ALPHA, { frameMax: 262144 });
    assert.ok(answer !== null);
    assert.equal(closeFields(answer).code, 530);
    assert.match(closeFields(answer).text, /frame_max=262144 > 131072 max size of the proxy/);
  });

  it('the heartbeat the client chose is the one the broker runs', async () => {
    const connection = await connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am')}/${BETA}?heartbeat=7`, { clientProperties: { connection_name: `pp-heartbeat-${tag}` } });
    assert.ok(connection);
    const listing = await rabbitmqctl('list_connections', '-q', '--no-table-headers', 'client_properties', 'timeout', 'frame_max', 'channel_max');
    const line = listing.split('\n').find((l) => l.includes(`pp-heartbeat-${tag}`));
    assert.ok(line !== undefined, listing);
    assert.match(line, /\t7\t131072\t2047$/);
  });

  it('a client speaking another protocol version gets the AMQP 0-9-1 header and a close', async () => {
    const client = raw();
    client.send(Buffer.from('AMQP\x00\x01\x00\x00', 'latin1')); // AMQP 1.0
    assert.deepEqual(await client.rest(), HEADER);
    const http = raw();
    http.send(Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    assert.deepEqual(await http.rest(), HEADER);
  });

  it('TLS termination: amqps with amqplib', async () => {
    const connection = await connect(`amqps://guest:guest@localhost:${proxy.port('am-tls')}/${ALPHA}`, { ca: [ca] });
    const channel = await connection.createChannel();
    const { queue } = await channel.assertQueue('', { exclusive: true });
    channel.sendToQueue(queue, Buffer.from('over tls'));
    const got = await new Promise<string>((resolve) => void channel.consume(queue, (message) => message !== null && resolve(message.content.toString()), { noAck: true }));
    assert.equal(got, 'over tls');
  });

  it('maxConnections: the next client gets Connection.Start, then Close 506 RESOURCE_ERROR', async () => {
    const first = await connect(`amqp://guest:guest@127.0.0.1:${proxy.port('am-one')}/${ALPHA}`);
    assert.ok(first);
    const client = raw('am-one');
    client.send(HEADER);
    const start = await client.frame();
    assert.deepEqual([start?.classId, start?.methodId], [10, 10]);
    const close = await client.frame();
    assert.ok(close !== null);
    assert.deepEqual(closeFields(close), { code: 506, text: 'RESOURCE_ERROR - too many connections', classId: 0, methodId: 0 });
  });

  it('frames on a channel before Open: 504 CHANNEL_ERROR; a method out of order: 503 COMMAND_INVALID', async () => {
    const early = raw();
    early.send(HEADER);
    await early.frame();
    early.send(Buffer.from([1, 0, 1, 0, 0, 0, 5, 0, 20, 0, 10, 0, 0xce])); // Channel.Open on channel 1
    const channelError = await early.frame();
    assert.ok(channelError !== null);
    assert.equal(closeFields(channelError).code, 504);
    const disorder = raw();
    disorder.send(HEADER);
    await disorder.frame();
    disorder.send(Buffer.from([1, 0, 0, 0, 0, 0, 5, 0, 10, 0, 40, 0, 0xce])); // Open before Start-Ok
    const invalid = await disorder.frame();
    assert.ok(invalid !== null);
    assert.deepEqual(closeFields(invalid), { code: 503, text: "COMMAND_INVALID - expected 'connection.start_ok', got 'connection.open'", classId: 10, methodId: 40 });
  });

  it('the health probe finds the real RabbitMQ up (Connection.Start), and the proxy\'s own listener too', async () => {
    assert.equal(await probe(parseEndpoint('127.0.0.1:5672'), undefined, 2000, amqpHealthProbe), null);
    assert.equal(await probe(parseEndpoint(`127.0.0.1:${proxy.port('am')}`), undefined, 2000, amqpHealthProbe), null);
  });

  it('per-tenant metrics count each vhost', async () => {
    const samples = parsePrometheus(await (await request(`${admin}/metrics`)).body.text());
    assert.ok(sample(samples, 'polyproxy_resource_connections_total', { resource: ALPHA }) >= 3);
    assert.ok(sample(samples, 'polyproxy_resource_connections_total', { resource: BETA }) >= 2);
  });
});

describe('amqp listener: drain', { skip: skip ?? false }, () => {
  it('a client still in its handshake at the drain deadline gets Close 320 CONNECTION_FORCED', async () => {
    const proxy = await startCli([
      '--config',
      await writeConfig({ shutdownTimeoutSeconds: 0.5, security: { allowBackends: ['127.0.0.0/8'] }, routes: { x: '127.0.0.1:5672' }, listeners: [{ name: 'am', protocol: 'amqp', host: '127.0.0.1', port: 0 }] }),
    ], 60_000); // a busy machine may take a while to start it
    const client = new RawAmqp(proxy.port('am'));
    try {
      client.send(HEADER);
      const start = await client.frame();
      assert.equal(start?.methodId, 10);
      // The proxy now waits for Start-Ok; the drain passes its deadline.
      proxy.child.kill('SIGTERM');
      const close = await client.frame();
      assert.ok(close !== null);
      assert.deepEqual(closeFields(close), { code: 320, text: 'CONNECTION_FORCED - the proxy is shutting down', classId: 0, methodId: 0 });
      assert.equal((await proxy.exited).code, 0);
    } finally {
      client.destroy();
      await proxy.stop();
    }
  });
});
