/**
 * issue 19: the package as users get it. `npm pack` (of the built checkout),
 * `npm install <tarball>` into an empty folder, then `npx polyproxy demo`
 * and a one-line start there, each stopped by SIGTERM to the PID started.
 * The user has Node 24 on PATH (the package needs it; the checkout pins it
 * as a devDependency, which a consumer does not get). Dependencies come from
 * npm's cache when it has them (--prefer-offline), else the registry.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/cli.ts';
import { killGroup, startInGroup, waitGone } from '../helpers/process-group.ts';
import type { Started } from '../helpers/process-group.ts';

const exec = promisify(execFile);

let dir: string;
let app: string;
let tarball: string;
let env: NodeJS.ProcessEnv;

before(async () => {
  assert.ok(existsSync(path.join(ROOT, 'dist/cli/main.js')), 'run npm run build first');
  dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-package-'));
  app = path.join(dir, 'app');
  // Node 24 first on PATH (and nothing else from the checkout); npm from the machine.
  env = { ...process.env, PATH: `${path.dirname(process.execPath)}:${(process.env.PATH ?? '').split(':').filter((d) => !d.startsWith(ROOT)).join(':')}` };
  for (const key of Object.keys(env)) if (key.startsWith('npm_') || key.startsWith('POLYPROXY_')) delete env[key];
  const { stdout } = await exec('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], { cwd: ROOT, env, maxBuffer: 64 * 1024 * 1024 });
  const [packed] = JSON.parse(stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = path.join(dir, (packed as { filename: string }).filename);
  const files = (packed as { files: Array<{ path: string }> }).files.map((f) => f.path);
  assert.ok(files.includes('polyproxy.schema.json'), 'the JSON Schema ships at the root');
  assert.ok(files.includes('bin/polyproxy.js') && files.includes('dist/cli/main.js'));
  assert.ok(!files.some((f) => f.startsWith('src/') || f.startsWith('test/')), 'no sources or tests in the package');
  await exec('mkdir', ['-p', app]);
  await writeFile(path.join(app, 'package.json'), '{ "name": "app", "private": true }\n');
  await exec('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], { cwd: app, env, timeout: 300000, maxBuffer: 64 * 1024 * 1024 });
});

after(async () => {
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
});

async function stop(started: Started): Promise<void> {
  const group = started.child.pid as number;
  try {
    process.kill(group, 'SIGTERM');
    await started.exited;
    assert.ok(await waitGone(group, [started.proxyPid]), started.output());
  } finally {
    killGroup(group, [started.proxyPid]);
  }
}

function echoOnce(port: number, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.end(text));
    let got = '';
    socket.setEncoding('utf8').on('data', (d: string) => (got += d));
    socket.on('end', () => resolve(got));
    socket.on('error', reject);
  });
}

describe('the packed package, installed into an empty folder', () => {
  it('npx polyproxy --version, without EBADENGINE', async () => {
    const { stdout, stderr } = await exec('npx', ['polyproxy', '--version'], { cwd: app, env });
    assert.match(stdout, /^\d+\.\d+\.\d+\n$/);
    assert.doesNotMatch(stderr, /EBADENGINE/);
  });

  it('npx polyproxy demo gets ready and relays, and SIGTERM stops it', async () => {
    const started = await startInGroup('npx', ['polyproxy', 'demo'], { cwd: app, env: { ...env, POLYPROXY_DEMO_PG_PORT: '0', POLYPROXY_DEMO_TCP_PORT: '0', POLYPROXY_DEMO_ADMIN_PORT: '0' }, timeoutMs: 120000 });
    try {
      assert.match(started.output(), /polyproxy demo: starting/);
      const echo = JSON.parse(started.output().split('\n').find((l) => l.includes('"polyproxy ready"')) as string) as { listeners: Array<{ name: string; port: number }> };
      const port = echo.listeners.find((l) => l.name === 'echo')?.port as number;
      assert.equal(await echoOnce(port, 'hello demo\n'), 'hello demo\n');
    } finally {
      await stop(started);
    }
  });

  it('a one-line start relays, and SIGTERM stops it', async () => {
    const backend = net.createServer((socket) => socket.pipe(socket));
    await new Promise<void>((resolve) => backend.listen(0, '127.0.0.1', resolve));
    const started = await startInGroup('npx', ['polyproxy', '--protocol', 'tcp', '--host', '127.0.0.1', '--port', '0', '--backend', `127.0.0.1:${(backend.address() as net.AddressInfo).port}`], { cwd: app, env, timeoutMs: 120000 });
    try {
      assert.equal(await echoOnce(started.port, 'one line\n'), 'one line\n');
    } finally {
      await stop(started);
      backend.close();
    }
  });
});
