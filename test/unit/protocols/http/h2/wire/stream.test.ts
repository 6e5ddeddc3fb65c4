/**
 * H2Stream's response side against a real node:http2 client: a response
 * that waits for trailers ends exactly once, whether the owner sends
 * trailers, an empty list, or nothing at all — while the client's side of
 * the stream is still open (as in a gRPC bidi call), where a second
 * END_STREAM would be a frame on a half-closed stream (RFC 9113 §5.1).
 */
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { H2ServerConnection } from '../../../../../../src/protocols/http/h2/wire/connection.ts';
import type { H2Stream, StreamOwner } from '../../../../../../src/protocols/http/h2/wire/stream.ts';

type Mode = 'empty' | 'fields' | 'none';

function owner(stream: H2Stream, mode: Mode): StreamOwner {
  return {
    onClientAborted() {},
    onClientClose() {},
    onClientDrain() {},
    onWantTrailers() {
      if (mode === 'empty') stream.sendTrailers({});
      else if (mode === 'fields') stream.sendTrailers({ 'x-done': 'yes' });
    },
  };
}

describe('H2Stream: responses that wait for trailers', () => {
  let server: net.Server;
  let port = 0;

  before(async () => {
    server = net.createServer((socket) => {
      const conn = new H2ServerConnection(socket, { maxConcurrentStreams: 100, initialWindowSize: 65535, connectionWindowSize: 1 << 20, maxHeaderListSize: 65536, maxHeaders: 100 });
      conn.start(
        {
          onStream(stream, head) {
            const mode = head.path.slice(1) as Mode;
            stream.owner = owner(stream, mode);
            stream.respond([':status', '200'], { waitForTrailers: true });
            stream.write(Buffer.from('part '));
            stream.end(Buffer.from('end'));
          },
          onOversized() {},
          onConnectionError() {},
          onClose() {},
        },
        null,
      );
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });

  after(() => {
    server.close();
  });

  for (const mode of ['empty', 'fields', 'none'] as const) {
    it(`trailers ${mode}: the response ends once while the request is still open, and the connection goes on`, async () => {
      const session = http2.connect(`http://127.0.0.1:${port}`);
      const sessionErrors: Error[] = [];
      session.on('error', (err) => sessionErrors.push(err));
      try {
        const result = await new Promise<{ body: string; trailers: http2.IncomingHttpHeaders | null }>((resolve, reject) => {
          // The request body stays open until the response has ended.
          const stream = session.request({ ':method': 'POST', ':path': `/${mode}`, ':authority': 'x.test' }, { endStream: false });
          let body = '';
          let trailers: http2.IncomingHttpHeaders | null = null;
          stream.setEncoding('utf8');
          stream.on('data', (c: string) => {
            body += c;
          });
          stream.on('trailers', (t) => {
            trailers = t;
          });
          stream.on('error', reject);
          stream.on('end', () => {
            stream.end();
            resolve({ body, trailers });
          });
        });
        assert.equal(result.body, 'part end');
        if (mode === 'fields') assert.equal(result.trailers?.['x-done'], 'yes');
        else assert.equal(result.trailers, null);
        // The same connection still serves a stream: no frame after END_STREAM broke it.
        const second = await new Promise<string>((resolve, reject) => {
          const stream = session.request({ ':method': 'GET', ':path': '/none', ':authority': 'x.test' });
          let body = '';
          stream.setEncoding('utf8');
          stream.on('data', (c: string) => {
            body += c;
          });
          stream.on('error', reject);
          stream.on('end', () => resolve(body));
        });
        assert.equal(second, 'part end');
        assert.deepEqual(sessionErrors, []);
      } finally {
        session.close();
      }
    });
  }
});
