/**
 * The pipeline listener's drain: protocols that serve the connection
 * themselves hear it (ProtocolSession.onDrain), and at the deadline a
 * client still in its opening gets the protocol's SHUTTING_DOWN error,
 * whether the protocol was reading from it or waiting on something else
 * (issue 16, defects 4 and 9).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { ClientConnection } from '../../../src/core/client-connection.ts';
import type { PolyproxyError } from '../../../src/core/errors.ts';
import { EndpointHealth } from '../../../src/core/health.ts';
import { Listener } from '../../../src/core/listener.ts';
import type { DrainTarget, Opening, ProtocolModule, ProtocolSession } from '../../../src/core/protocol.ts';
import { Router } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';

const silent = pino({ level: 'silent' });

/** One byte says what the client's opening does: R reads forever, W waits on `waiting` (a backend, say), T serves the connection itself. */
function fakeProtocol(waiting: Promise<void>, drains: boolean[]): ProtocolModule {
  const one = (buffered: Buffer) => ({ value: buffered.toString('latin1', 0, 1), consumed: 1 });
  return {
    name: 'fake',
    async identify(conn: ClientConnection, session?: ProtocolSession): Promise<Opening | null> {
      const mode = await conn.read(one);
      if (mode === 'R') await conn.read(() => undefined);
      if (mode === 'W') {
        await waiting;
        return { resourceId: 'db', replay: null };
      }
      // T: served here until the drain deadline.
      session?.takeOver();
      await new Promise<void>((resolve) => {
        const target: DrainTarget = {
          drain(deadline) {
            drains.push(deadline);
            if (deadline) resolve();
          },
        };
        session?.onDrain(target);
      });
      conn.close(Buffer.from('served: bye\n'));
      return null;
    },
    encodeError(err: PolyproxyError): Buffer {
      return Buffer.from(`ERR ${err.kind}\n`);
    },
  };
}

function client(port: number, first: string): { received: () => string; closed: Promise<void> } {
  let got = '';
  const socket = net.connect({ host: '127.0.0.1', port }, () => socket.write(first));
  socket.setEncoding('utf8');
  socket.on('data', (text: string) => (got += text));
  socket.on('error', () => {});
  return { received: () => got, closed: new Promise((resolve) => socket.once('close', () => resolve())) };
}

describe('Listener drain', () => {
  it('tells self-serving connections, then answers openings SHUTTING_DOWN at the deadline', async () => {
    let release!: () => void;
    const waiting = new Promise<void>((resolve) => (release = resolve));
    const drains: boolean[] = [];
    const health = new EndpointHealth({}, silent);
    const router = new Router({ sources: [{ name: 's', resolver: { resolve: () => ({ endpoint: '127.0.0.1:1' }) } }], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 1000, cacheMaxEntries: 10, resolveTimeoutMs: 1000, health });
    const listener = new Listener(
      { name: 'fake', protocol: 'fake', host: '127.0.0.1', port: 0, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 30_000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 0, maxConnections: 0, maxOpeningBytes: 1024, reusePort: false },
      fakeProtocol(waiting, drains),
      router,
      null,
      silent,
    );
    const { port } = await listener.listen();
    const reading = client(port, 'R');
    const waiter = client(port, 'W');
    const served = client(port, 'T');
    for (let i = 0; i < 200 && listener.sessions < 3; i++) await new Promise((resolve) => setTimeout(resolve, 5));
    await new Promise((resolve) => setTimeout(resolve, 20)); // each identify is past its first read

    await listener.stopAccepting();
    assert.deepEqual(drains, [false], 'the self-serving connection hears the drain');
    assert.equal(listener.sessions, 3, 'openings are left to finish');

    listener.destroyAll('shutdown');
    assert.deepEqual(drains, [false, true]);
    await Promise.all([reading.closed, waiter.closed, served.closed]);
    assert.equal(reading.received(), 'ERR SHUTTING_DOWN\n', 'a pending read fails and the refusal answers');
    assert.equal(waiter.received(), 'ERR SHUTTING_DOWN\n', 'waiting on something else: answered at once');
    assert.equal(served.received(), 'served: bye\n');

    // The waiting opening finishes later: no second answer, and the listener goes idle.
    release();
    await listener.idle();
    assert.equal(listener.sessions, 0);
  });
});
