/**
 * Redis for integration tests, like PostgreSQL in services.ts: under CI=true
 * a missing Redis fails the test; elsewhere the test is skipped with the
 * reason printed.
 */
import net from 'node:net';
import { serviceMissing } from './services.ts';

export const REDIS_HOST = process.env.REDIS_HOST_TEST ?? '127.0.0.1';
export const REDIS_PORT = Number(process.env.REDIS_PORT_TEST ?? 6379);

/** True when something answers PING with +PONG on host:port. */
function answersPing(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    let seen = '';
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(2000, () => done(false));
    socket.once('error', () => done(false));
    socket.once('connect', () => socket.write('PING\r\n'));
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => {
      seen += text;
      if (seen.includes('\r\n')) done(seen.startsWith('+PONG'));
    });
  });
}

/**
 * Returns null when Redis is up, else the reason to skip (printed).
 * Under CI=true a missing Redis throws: CI must not pass by skipping.
 */
export function redisMissing(): Promise<string | null> {
  return serviceMissing(`Redis is not reachable on ${REDIS_HOST}:${REDIS_PORT}`, () => answersPing(REDIS_HOST, REDIS_PORT));
}
