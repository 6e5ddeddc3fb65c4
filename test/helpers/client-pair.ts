/** Loopback socket pairs whose server side is wrapped in a ClientConnection, for protocol opening tests. */
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { ClientConnection } from '../../src/core/client-connection.ts';
import type { TlsServerSettings } from '../../src/core/client-connection.ts';

export interface ClientPairs {
  /** A connected pair: the client's socket and the server side as a ClientConnection. */
  pair(options?: { maxOpeningBytes?: number; tls?: TlsServerSettings | null }): Promise<{ client: net.Socket; conn: ClientConnection }>;
  /** Everything the client received until the server side ended. */
  received(client: net.Socket): Promise<Buffer>;
  close(): void;
}

export async function clientPairs(): Promise<ClientPairs> {
  const waiting: Array<(socket: net.Socket) => void> = [];
  const opened: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (socket) => waiting.shift()?.(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    async pair(options = {}) {
      const serverSide = new Promise<net.Socket>((resolve) => waiting.push(resolve));
      const client = net.connect({ host: '127.0.0.1', port, allowHalfOpen: true });
      client.on('error', () => {});
      opened.push(client);
      const socket = await serverSide;
      opened.push(socket);
      return { client, conn: new ClientConnection(socket, { maxOpeningBytes: options.maxOpeningBytes ?? 65536, tls: options.tls ?? null }) };
    },
    received(client) {
      const chunks: Buffer[] = [];
      client.on('data', (chunk: Buffer) => chunks.push(chunk));
      return new Promise((resolve) => client.once('end', () => resolve(Buffer.concat(chunks))));
    },
    close() {
      for (const s of opened) s.destroy();
      server.close();
    },
  };
}
