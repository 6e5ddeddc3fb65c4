/**
 * src/core/client-connection.ts over a real loopback socket pair: reads
 * driven by parsers across chunks, the opening size limit, the client
 * leaving, TLS upgrade in place (plaintext pipelined before it refused,
 * client certificate checks), detach with the bytes sent after the
 * opening, close with the native error.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import tls from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { ClientConnection } from '../../../src/core/client-connection.ts';
import type { OpeningParser, TlsServerSettings } from '../../../src/core/client-connection.ts';
import { PolyproxyError } from '../../../src/core/errors.ts';
import { makeTestPki } from '../../helpers/certs.ts';
import type { TestPki } from '../../helpers/certs.ts';

let server: net.Server;
let port: number;
const accepted: net.Socket[] = [];
const waiting: Array<(socket: net.Socket) => void> = [];
const opened: net.Socket[] = [];
let pki: TestPki;

before(async () => {
  server = net.createServer({ allowHalfOpen: true }, (socket) => {
    const take = waiting.shift();
    if (take !== undefined) take(socket);
    else accepted.push(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  pki = await makeTestPki({ serverNames: ['proxy.test'] });
});

after(async () => {
  for (const s of opened) s.destroy();
  server.close();
  await pki.cleanup();
});

/** A connected pair: the client's socket and the server side wrapped in a ClientConnection. */
async function pair(options: { maxOpeningBytes?: number; tls?: TlsServerSettings | null } = {}): Promise<{ client: net.Socket; conn: ClientConnection }> {
  const serverSide = new Promise<net.Socket>((resolve) => waiting.push(resolve));
  const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
  client.on('error', () => {});
  opened.push(client);
  const socket = await serverSide;
  opened.push(socket);
  return { client, conn: new ClientConnection(socket, { maxOpeningBytes: options.maxOpeningBytes ?? 1024, tls: options.tls ?? null }) };
}

/** A line ending in LF; the parser is also told how many times it was called. */
function lineParser(calls: number[]): OpeningParser<string> {
  return (buffered) => {
    calls.push(buffered.length);
    const end = buffered.indexOf(0x0a);
    return end < 0 ? undefined : { value: buffered.toString('latin1', 0, end), consumed: end + 1 };
  };
}

/** Resolves after the connection has taken in the next chunk (its own 'data' listener runs first). */
function arrived(conn: ClientConnection): Promise<unknown> {
  return new Promise((resolve) => conn.socket.once('data', resolve));
}

const isProtocol = (pattern: RegExp) => (err: unknown) => err instanceof PolyproxyError && err.kind === 'PROTOCOL' && err.source === 'client' && pattern.test(err.message);

function settings(requireClientCert: boolean): TlsServerSettings {
  return {
    secureContext: tls.createSecureContext({ cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey), ca: readFileSync(pki.caCert) }),
    requestCert: requireClientCert,
    requireClientCert,
  };
}

describe('ClientConnection', () => {
  it('reads a message split over chunks, and keeps what follows for the next read and for detach', async () => {
    const { client, conn } = await pair();
    assert.equal(conn.remoteAddress, '127.0.0.1');
    assert.equal(conn.remotePort, client.localPort);
    const calls: number[] = [];
    const first = conn.read(lineParser(calls));
    client.write('ab');
    await arrived(conn);
    client.write('c\nde');
    assert.equal(await first, 'abc');
    assert.ok(calls.length >= 2, 'the parser saw the partial bytes, then all of them');
    assert.equal(conn.hasBuffered, true);
    client.write('f\nafter the opening');
    assert.equal(await conn.read(lineParser([])), 'def');
    // Waits, consuming nothing, until all of it is buffered.
    await conn.read((buffered) => (buffered.length >= 17 ? { value: null, consumed: 0 } : undefined));
    const { socket, leftover } = conn.detach();
    assert.equal(leftover?.toString(), 'after the opening');
    assert.equal(socket.isPaused(), true, 'the relay decides when to read');
  });

  it('rejects a read with the parser\'s error, and a second concurrent read', async () => {
    const { client, conn } = await pair();
    const bad = conn.read(() => {
      throw new PolyproxyError('PROTOCOL', 'bad magic', { source: 'client' });
    });
    await assert.rejects(conn.read(lineParser([])), (err: PolyproxyError) => err.kind === 'INTERNAL');
    client.write('x');
    await assert.rejects(bad, isProtocol(/bad magic/));
  });

  it('refuses an opening larger than maxOpeningBytes', async () => {
    const { client, conn } = await pair({ maxOpeningBytes: 8 });
    const read = conn.read(lineParser([]));
    client.write('0123456789abcdef');
    await assert.rejects(read, isProtocol(/opening larger than 8 bytes/));
  });

  it('a client that ends during its opening fails the read, and every read after it', async () => {
    const { client, conn } = await pair();
    const read = conn.read(lineParser([]));
    client.end('partial');
    await assert.rejects(read, isProtocol(/closed the connection during its opening/));
    await assert.rejects(conn.read(lineParser([])), isProtocol(/closed the connection/));
  });

  it('whenGone runs once when the client half-closes, reading or not, and at once when it already has', async () => {
    const { client, conn } = await pair();
    let calls = 0;
    conn.whenGone(() => calls++);
    const ended = new Promise((resolve) => conn.socket.once('end', resolve));
    client.end();
    await ended;
    assert.equal(calls, 1);
    // Set after the FIN: runs at once; null forgets a callback.
    conn.whenGone(() => calls++);
    assert.equal(calls, 2);
    const other = await pair();
    other.conn.whenGone(() => calls++);
    other.conn.whenGone(null);
    const otherEnded = new Promise((resolve) => other.conn.socket.once('end', resolve));
    other.client.end();
    await otherEnded;
    assert.equal(calls, 2);
  });

  it('abort() fails a pending read with the error given', async () => {
    const { conn } = await pair();
    const read = conn.read(lineParser([]));
    const err = new PolyproxyError('HANDSHAKE_TIMEOUT', 'too slow', { source: 'client' });
    conn.abort(err);
    await assert.rejects(read, (e) => e === err);
  });

  it('close() writes the native error, then ends', async () => {
    const { client, conn } = await pair();
    let got = '';
    client.setEncoding('utf8');
    client.on('data', (text: string) => (got += text));
    const ended = new Promise((resolve) => client.once('end', resolve));
    conn.close(Buffer.from('ERROR: no such database\n'));
    await ended;
    assert.equal(got, 'ERROR: no such database\n');
  });

  it('upgradeToTls needs TLS settings, and refuses plaintext pipelined before the handshake', async () => {
    const plain = await pair();
    await assert.rejects(plain.conn.upgradeToTls(), (err: PolyproxyError) => err.kind === 'INTERNAL');
    const { client, conn } = await pair({ tls: settings(false) });
    assert.equal(conn.tlsAvailable, true);
    client.write('STARTTLS\nINJECTED');
    assert.equal(await conn.read(lineParser([])), 'STARTTLS');
    if (!conn.hasBuffered) await arrived(conn);
    await assert.rejects(conn.upgradeToTls(), isProtocol(/unencrypted data after the TLS request/));
  });

  it('upgrades in place: reads go on over TLS, tls carries the SNI name; no client certificate is a problem only when required', async () => {
    for (const required of [false, true]) {
      const { client, conn } = await pair({ tls: settings(required) });
      const upgraded = conn.upgradeToTls();
      const secure = tls.connect({ socket: client, servername: 'proxy.test', ca: readFileSync(pki.caCert) });
      secure.on('error', () => {});
      opened.push(secure);
      await upgraded;
      assert.equal(conn.tls?.servername, 'proxy.test');
      assert.equal(conn.tls?.authorized, false);
      assert.equal(conn.clientCertProblem(), required ? 'a valid client certificate is required (none presented)' : null);
      secure.write('over tls\n');
      assert.equal(await conn.read(lineParser([])), 'over tls');
    }
  });

  it('a client certificate signed by the CA satisfies requireClientCert', async () => {
    const { client, conn } = await pair({ tls: settings(true) });
    const upgraded = conn.upgradeToTls();
    const secure = tls.connect({ socket: client, servername: 'proxy.test', ca: readFileSync(pki.caCert), cert: readFileSync(pki.clientCert), key: readFileSync(pki.clientKey) });
    secure.on('error', () => {});
    opened.push(secure);
    await upgraded;
    assert.equal(conn.tls?.authorized, true);
    assert.equal(conn.clientCertProblem(), null);
  });
});
