/**
 * A loopback endpoint whose connects get no answer: a listener with backlog 1
 * in a worker thread that never accepts (its thread is blocked), with two
 * handshakes filling its queue, so the kernel drops further SYNs. Unlike an
 * unrouted address, this hangs the same everywhere (some sandboxes refuse
 * TEST-NET at once).
 */
import net from 'node:net';
import { Worker } from 'node:worker_threads';

export interface Unanswered {
  /** `127.0.0.1:<port>` */
  readonly endpoint: string;
  close(): Promise<void>;
}

export async function unansweredEndpoint(): Promise<Unanswered> {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  const worker = new Worker(
    `const net = require('node:net');
     const { parentPort, workerData } = require('node:worker_threads');
     const server = net.createServer();
     server.listen({ port: 0, host: '127.0.0.1', backlog: 1 }, () => {
       parentPort.postMessage(server.address().port);
       Atomics.wait(workerData, 0, 0);
     });`,
    { eval: true, workerData: gate },
  );
  const port = await new Promise<number>((resolve) => worker.once('message', resolve));
  const fillers: net.Socket[] = [];
  for (let i = 0; i < 2; i++) {
    const filler = net.connect({ host: '127.0.0.1', port });
    filler.on('error', () => {});
    fillers.push(filler);
    await new Promise((resolve) => filler.once('connect', resolve));
  }
  return {
    endpoint: `127.0.0.1:${port}`,
    async close() {
      for (const f of fillers) f.destroy();
      Atomics.store(gate, 0, 1);
      Atomics.notify(gate, 0);
      await worker.terminate();
    },
  };
}
