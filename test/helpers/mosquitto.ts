/**
 * Mosquitto for integration tests: the machine's broker (127.0.0.1:1883)
 * decides whether MQTT tests run (under CI=true a missing one fails them),
 * and tests start their own `mosquitto -c <file>` instances on free ports
 * (a bare `mosquitto -p N` binds localhost and may miss IPv4: the file says
 * `listener N 127.0.0.1` and `allow_anonymous true`).
 */
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { canConnect, serviceMissing } from './services.ts';

export const MOSQUITTO_HOST = '127.0.0.1';
export const MOSQUITTO_PORT = Number(process.env.MOSQUITTO_PORT_TEST ?? 1883);
const MOSQUITTO_BIN = process.env.MOSQUITTO_BIN ?? '/usr/sbin/mosquitto';

/** Null when Mosquitto answers on 127.0.0.1:1883 and its binary and clients are installed, else the reason to skip. */
export function mosquittoMissing(): Promise<string | null> {
  return serviceMissing(`Mosquitto is not reachable on ${MOSQUITTO_HOST}:${MOSQUITTO_PORT} (or mosquitto / mosquitto_pub is not installed)`, async () => {
    const { access } = await import('node:fs/promises');
    try {
      await access(MOSQUITTO_BIN);
      await access('/usr/bin/mosquitto_pub');
    } catch {
      return false;
    }
    return canConnect(MOSQUITTO_HOST, MOSQUITTO_PORT);
  });
}

export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface MosquittoInstance {
  readonly port: number;
  readonly child: ChildProcess;
  stop(): Promise<void>;
}

/** A private Mosquitto on a free port (anonymous, no persistence), ready when it accepts connections. */
export async function startMosquitto(extraConfig: readonly string[] = []): Promise<MosquittoInstance> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-mosquitto-'));
  const port = await freePort();
  const file = path.join(dir, 'mosquitto.conf');
  await writeFile(file, [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence false', 'log_dest stderr', 'log_type error', ...extraConfig, ''].join('\n'));
  const child = spawn(MOSQUITTO_BIN, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => (stderr += text));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (let i = 0; i < 200; i++) {
    if (child.exitCode !== null) break;
    if (await canConnect('127.0.0.1', port)) {
      return {
        port,
        child,
        async stop() {
          if (child.exitCode === null && child.signalCode === null) {
            child.kill('SIGTERM');
            await exited;
          }
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
  child.kill('SIGKILL');
  await rm(dir, { recursive: true, force: true });
  throw new Error(`mosquitto did not start on port ${port}: ${stderr}`);
}
