/** Ports: find a free one, wait until one accepts connections. */
import net from 'node:net';
import type { Tracked } from './process.ts';

/** A port that was free a moment ago (the kernel picks it; tiny race accepted). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function tryConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
    socket.setTimeout(1000, () => done(false));
  });
}

/** Polls until `host:port` accepts a TCP connection; fails early if `owner` exits. */
export async function waitForPort(port: number, timeoutMs: number, owner?: Tracked, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (owner !== undefined && !owner.running) {
      throw new Error(`${owner.name} exited before listening on ${host}:${port}\n${owner.tail.join('\n')}`);
    }
    if (await tryConnect(host, port)) return;
    await sleep(100);
  }
  throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms${owner === undefined ? '' : `\n${owner.tail.join('\n')}`}`);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
