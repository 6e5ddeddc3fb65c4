/**
 * RabbitMQ for integration tests: the machine's broker (127.0.0.1:5672,
 * guest/guest) decides whether AMQP tests run (under CI=true a missing one
 * fails them); vhosts are made and removed with rabbitmqctl. RawAmqp drives
 * a handshake frame by frame, written here from the AMQP 0-9-1 spec (not
 * with the proxy's codecs), for the reply codes amqplib does not expose.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { promisify } from 'node:util';
import { canConnect, serviceMissing } from './services.ts';

const execFileAsync = promisify(execFile);
export const RABBITMQ_HOST = '127.0.0.1';
export const RABBITMQ_PORT = Number(process.env.RABBITMQ_PORT_TEST ?? 5672);

export function rabbitmqMissing(): Promise<string | null> {
  return serviceMissing(`RabbitMQ is not reachable on ${RABBITMQ_HOST}:${RABBITMQ_PORT}`, () => canConnect(RABBITMQ_HOST, RABBITMQ_PORT));
}

export function rabbitmqctl(...args: string[]): Promise<string> {
  return execFileAsync('rabbitmqctl', args, { timeout: 60_000 }).then((r) => r.stdout);
}

/** Creates the vhosts (in parallel) and gives guest every permission on them. */
export async function addVhosts(names: readonly string[]): Promise<void> {
  await Promise.all(names.map((name) => rabbitmqctl('add_vhost', name)));
  await Promise.all(names.map((name) => rabbitmqctl('set_permissions', '-p', name, 'guest', '.*', '.*', '.*')));
}

export async function deleteVhosts(names: readonly string[]): Promise<void> {
  await Promise.all(names.map((name) => rabbitmqctl('delete_vhost', name).catch(() => '')));
}

export interface RawFrame {
  type: number;
  channel: number;
  payload: Buffer;
  classId: number;
  methodId: number;
}

function shortstr(text: string): Buffer {
  const bytes = Buffer.from(text);
  return Buffer.concat([Buffer.from([bytes.length]), bytes]);
}

function longstr(bytes: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(bytes.length);
  return Buffer.concat([len, bytes]);
}

export function method(classId: number, methodId: number, args: Buffer, channel = 0): Buffer {
  const head = Buffer.alloc(11);
  head[0] = 1;
  head.writeUInt16BE(channel, 1);
  head.writeUInt32BE(4 + args.length, 3);
  head.writeUInt16BE(classId, 7);
  head.writeUInt16BE(methodId, 9);
  return Buffer.concat([head, args, Buffer.from([0xce])]);
}

export const HEADER = Buffer.from('AMQP\x00\x00\x09\x01', 'latin1');

export function startOk(user: string, password: string): Buffer {
  return method(10, 11, Buffer.concat([longstr(Buffer.alloc(0)), shortstr('PLAIN'), longstr(Buffer.from(`\0${user}\0${password}`)), shortstr('en_US')]));
}

export function tuneOk(channelMax: number, frameMax: number, heartbeat: number): Buffer {
  const args = Buffer.alloc(8);
  args.writeUInt16BE(channelMax, 0);
  args.writeUInt32BE(frameMax, 2);
  args.writeUInt16BE(heartbeat, 6);
  return method(10, 31, args);
}

export function open(vhost: string): Buffer {
  return method(10, 40, Buffer.concat([shortstr(vhost), shortstr(''), Buffer.from([0])]));
}

/** A Connection.Close's fields. */
export function closeFields(frame: RawFrame): { code: number; text: string; classId: number; methodId: number } {
  const args = frame.payload.subarray(4);
  const code = args.readUInt16BE(0);
  const length = args[2] as number;
  const text = args.toString('utf8', 3, 3 + length);
  return { code, text, classId: args.readUInt16BE(3 + length), methodId: args.readUInt16BE(5 + length) };
}

/** A raw client: writes bytes, reads whole frames. */
export class RawAmqp {
  readonly socket: net.Socket;
  #buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | null = null;

  constructor(port: number) {
    this.socket = net.connect({ host: '127.0.0.1', port });
    this.socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    this.socket.on('error', () => {});
    this.socket.on('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  send(bytes: Buffer): void {
    this.socket.write(bytes);
  }

  /** Every byte received until the peer closed. */
  async rest(): Promise<Buffer> {
    while (!this.#closed) await new Promise<void>((resolve) => (this.#wake = resolve));
    return this.#buffer;
  }

  /** The next frame (skipping heartbeats), or null when the connection closed first. */
  async frame(): Promise<RawFrame | null> {
    while (true) {
      if (this.#buffer.length >= 7) {
        const size = this.#buffer.readUInt32BE(3);
        if (this.#buffer.length >= 8 + size) {
          const payload = this.#buffer.subarray(7, 7 + size);
          const frame = { type: this.#buffer[0] as number, channel: this.#buffer.readUInt16BE(1), payload, classId: size >= 4 ? payload.readUInt16BE(0) : 0, methodId: size >= 4 ? payload.readUInt16BE(2) : 0 };
          this.#buffer = this.#buffer.subarray(8 + size);
          if (frame.type === 8) continue;
          return frame;
        }
      }
      if (this.#closed) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
  }

  /** Runs the handshake up to Open; returns the answer to Open (Open-Ok or Close) or the first Close before it. */
  async handshake(vhost: string, options: { user?: string; password?: string; frameMax?: number } = {}): Promise<RawFrame | null> {
    this.send(HEADER);
    const start = await this.frame();
    if (start === null || start.methodId !== 10) return start;
    this.send(startOk(options.user ?? 'guest', options.password ?? 'guest'));
    const tune = await this.frame();
    if (tune === null || tune.methodId !== 30) return tune;
    const args = tune.payload.subarray(4);
    this.send(tuneOk(args.readUInt16BE(0), options.frameMax ?? args.readUInt32BE(2), 0));
    this.send(open(vhost));
    return this.frame();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
