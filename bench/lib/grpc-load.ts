/**
 * gRPC unary load loop for the http2 bench: one @grpc/grpc-js channel,
 * `--concurrency` calls kept in flight for `--seconds`; prints
 * `{"calls":N,"seconds":S,"errors":E}`.
 *
 *   node bench/lib/grpc-load.ts --port N [--authority A] [--seconds 10] [--concurrency 64]
 */
import { parseArgs } from 'node:util';
import * as grpc from '@grpc/grpc-js';
import { echoService } from './grpc-echo.ts';

interface Msg {
  text: string;
  n: number;
}
type EchoClient = grpc.Client & { Unary(msg: Msg, cb: (err: grpc.ServiceError | null, res?: Msg) => void): void };

const { values } = parseArgs({ options: { port: { type: 'string' }, authority: { type: 'string' }, seconds: { type: 'string', default: '10' }, concurrency: { type: 'string', default: '64' } } });
const Echo = echoService();
const options: grpc.ChannelOptions = values.authority === undefined ? {} : { 'grpc.default_authority': values.authority };
const client = new Echo(`127.0.0.1:${values.port ?? ''}`, grpc.credentials.createInsecure(), options) as unknown as EchoClient;
const seconds = Number(values.seconds);
const concurrency = Number(values.concurrency);

let calls = 0;
let errors = 0;
let running = true;
const started = process.hrtime.bigint();
const msg: Msg = { text: 'hello', n: 1 };

function loop(): Promise<void> {
  return new Promise((resolve) => {
    const next = (): void => {
      if (!running) return resolve();
      client.Unary(msg, (err) => {
        if (err === null) calls++;
        else errors++;
        next();
      });
    };
    next();
  });
}

setTimeout(() => {
  running = false;
}, seconds * 1000);
await Promise.all(Array.from({ length: concurrency }, loop));
const elapsed = Number(process.hrtime.bigint() - started) / 1e9;
client.close();
process.stdout.write(`${JSON.stringify({ calls, seconds: elapsed, errors })}\n`);
