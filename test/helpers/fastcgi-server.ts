/** A fake FastCGI responder for tests: parses each request (params, stdin) and lets a behaviour answer it with exact records. */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { decodeNameValuePairs } from '../../src/fastcgi/name-value.ts';
import { FCGI_BEGIN_REQUEST, FCGI_PARAMS, FCGI_STDIN, FCGI_STDOUT, RecordParser, decodeBeginRequest, encodeEndRequest, encodeRecord } from '../../src/fastcgi/records.ts';

export interface Received {
  flags: number;
  params: Map<string, string>;
  stdin: Buffer;
  socket: net.Socket;
  connection: number;
}

export type Behaviour = (req: Received) => void;

/** A fake responder: parses each request and lets `behaviour` answer it. */
export async function fakeServer(behaviour: Behaviour): Promise<{ address: string; connections: () => number; close: () => Promise<void> }> {
  let connections = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    const connection = ++connections;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let params: Buffer[] = [];
    let stdin: Buffer[] = [];
    let flags = 0;
    const parser = new RecordParser((type, _id, content) => {
      if (type === FCGI_BEGIN_REQUEST) {
        flags = decodeBeginRequest(content).flags;
        params = [];
        stdin = [];
      } else if (type === FCGI_PARAMS && content.length > 0) params.push(Buffer.from(content));
      else if (type === FCGI_STDIN) {
        if (content.length > 0) stdin.push(Buffer.from(content));
        else behaviour({ flags, params: decodeNameValuePairs(Buffer.concat(params)), stdin: Buffer.concat(stdin), socket, connection });
      }
    });
    socket.on('data', (chunk: Buffer) => parser.push(chunk));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    address: `127.0.0.1:${(server.address() as AddressInfo).port}`,
    connections: () => connections,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

export function answer(req: Received, stdout: string, extra: Buffer[] = []): void {
  req.socket.write(Buffer.concat([...extra, encodeRecord(FCGI_STDOUT, 1, Buffer.from(stdout)), encodeRecord(FCGI_STDOUT, 1), encodeEndRequest(1, 0)]));
  if ((req.flags & 1) === 0) req.socket.end();
}

