/**
 * A dial that finds no file descriptor (EMFILE) is not the backend's
 * fault: it fails at once with UNAVAILABLE (the client gets its protocol's
 * "unavailable" error), no other candidate is tried and no breaker counts
 * it (issue 16, defect 8). Run in a child process under a low
 * `ulimit -n` (prlimit), with every descriptor taken.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const SRC = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../src/core');

const SCRIPT = `
import { openSync } from 'node:fs';
import { connectFirst } from '${SRC}/connect.ts';
import { parseEndpoint } from '${SRC}/endpoint.ts';
import { EndpointHealth } from '${SRC}/health.ts';
const health = new EndpointHealth({ failureThreshold: 1 });
const first = parseEndpoint(process.argv[1]);
const second = parseEndpoint(process.argv[2]);
health.watch([first, second], 'tcp', false);
const held = [];
// Twice: descriptors the module loader was still closing come free in between.
try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
await new Promise((resolve) => setTimeout(resolve, 50));
try { for (;;) held.push(openSync('/dev/null', 'r')); } catch {}
try {
  await connectFirst([first, second], 1000, health);
  console.log(JSON.stringify({ connected: true }));
} catch (err) {
  console.log(JSON.stringify({ kind: err.kind, source: err.source, cause: err.cause?.code, first: health.state(first.label), second: health.state(second.label) }));
}
process.exit(0);
`;

describe('connect: out of file descriptors', { skip: process.platform !== 'linux' ? 'needs prlimit' : false }, () => {
  it('fails with UNAVAILABLE caused by EMFILE, without breaker accounting or trying the next candidate', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    try {
      const run = spawnSync('prlimit', ['--nofile=64:64', process.execPath, '--input-type=module', '-e', SCRIPT, `127.0.0.1:${port}`, `127.0.0.2:${port}`], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, run.stderr);
      const lines = run.stdout.trim().split('\n');
      assert.deepEqual(JSON.parse(lines[lines.length - 1] as string), { kind: 'UNAVAILABLE', source: 'internal', cause: 'EMFILE', first: 'closed', second: 'closed' });
    } finally {
      server.close();
    }
  });
});
