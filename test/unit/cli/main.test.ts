/** src/cli/main.ts through bin/polyproxy.js: `polyproxy check`, flags, exit codes and the lines naming what is wrong. */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

// bin/polyproxy.js runs the BUILT code: `npm test` builds first; alone, run `npm run build`.
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = path.join(ROOT, 'bin/polyproxy.js');
const BUILT = path.join(ROOT, 'dist/cli/main.js');

interface Run {
  readonly code: number | null;
  readonly signal: string | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs the CLI with the Node running the tests; never hangs longer than 15 s. */
function cli(...args: string[]): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = execFile(process.execPath, [BIN, ...args], { cwd: ROOT, timeout: 15_000, env: { ...process.env, POLYPROXY_LOG_LEVEL: 'silent' } }, (err, stdout, stderr) => {
      if (err !== null && typeof err.code !== 'number' && err.signal == null) return reject(err);
      resolve({ code: child.exitCode, signal: child.signalCode, stdout, stderr });
    });
  });
}

let dir: string;
let good: string;

before(async () => {
  assert.ok(existsSync(BUILT), `${BUILT} is missing: run "npm run build" first`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'polyproxy-cli-'));
  good = path.join(dir, 'good.yaml');
  await writeFile(
    good,
    ['workers: 2', 'security:', '  allowBackends: [127.0.0.0/8]', 'routes:', '  shop: 127.0.0.1:5432', '  blog: 127.0.0.1:5433', 'listeners:', '  - protocol: postgres', '    port: 6432', '  - protocol: tcp', '    port: 7000', '    backend: 127.0.0.1:7001', ''].join('\n'),
  );
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function configFile(name: string, text: string): Promise<string> {
  const p = path.join(dir, name);
  await writeFile(p, text);
  return p;
}

describe('polyproxy check', { concurrency: 4 }, () => {
  it('a good file exits 0 and prints a summary', async () => {
    const run = await cli('check', '--config', good);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'ok: 2 listener(s), 2 route(s), 2 worker(s)\n');
    assert.equal(run.stderr, '');
  });

  it('-c works as --config', async () => {
    const run = await cli('check', '-c', good);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^ok:/);
  });

  it('--workers overrides the file', async () => {
    const run = await cli('check', '--config', good, '--workers', '3');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^ok: 2 listener\(s\), 2 route\(s\), 3 worker\(s\)$/m);
  });

  it('a bad file exits 1 and stderr names the field', async () => {
    const bad = await configFile('bad-port.yaml', 'listeners:\n  - protocol: postgres\n    port: "6432"\n');
    const run = await cli('check', '--config', bad);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^listeners\.0\.port: .*expected number/m);
    assert.ok(run.stderr.includes(bad), 'stderr names the file');
  });

  it('a typo in a field name exits 1 naming it', async () => {
    const bad = await configFile('typo.yaml', 'listner:\n  - protocol: postgres\n    port: 6432\n');
    const run = await cli('check', '--config', bad);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^\(root\): unknown field "listner" \(did you mean "listeners"\?\)/m);
  });

  it('a bad route endpoint exits 1 naming routes.<key>', async () => {
    const bad = await configFile('route.yaml', 'routes:\n  shop: localhost\nlisteners:\n  - protocol: postgres\n    port: 6432\n');
    const run = await cli('check', '--config', bad);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^routes\.shop: invalid endpoint "localhost"/m);
  });

  it('a file that is not YAML exits 1', async () => {
    const bad = await configFile('broken.yaml', 'listeners: [\n');
    const run = await cli('check', '--config', bad);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /not valid YAML or JSON/);
  });

  it('a missing file exits 1', async () => {
    const run = await cli('check', '--config', path.join(dir, 'nope.yaml'));
    assert.equal(run.code, 1);
    assert.match(run.stderr, /cannot read .*nope\.yaml/);
  });

  it('check works on a one-line configuration too', async () => {
    const run = await cli('check', '--protocol', 'tcp', '--port', '7000', '--backend', '127.0.0.1:7001');
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'ok: 1 listener(s), 0 route(s), 1 worker(s)\n');
  });

  it('--config together with --backend exits 1', async () => {
    const run = await cli('check', '--config', good, '--backend', '127.0.0.1:1');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /either --config or --protocol\/--port\/--backend/);
  });
});

describe('polyproxy command line', { concurrency: 4 }, () => {
  it('--help exits 0 with the usage', async () => {
    for (const flag of ['--help', '-h']) {
      const run = await cli(flag);
      assert.equal(run.code, 0, `${flag}: ${run.stderr}`);
      assert.match(run.stdout, /^Usage:$/m);
      assert.match(run.stdout, /polyproxy check --config FILE/);
      assert.equal(run.stderr, '');
    }
  });

  it('--version prints the package version', async () => {
    const run = await cli('--version');
    assert.equal(run.code, 0);
    const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(run.stdout, `${pkg.version}\n`);
  });

  it('an unknown flag exits 2 naming it', async () => {
    const run = await cli('check', '--config', good, '--bogus');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /--bogus/);
    assert.match(run.stderr, /Usage:/);
    assert.equal(run.stdout, '');
  });

  it('an unknown command exits 2', async () => {
    const run = await cli('frobnicate');
    assert.equal(run.code, 2);
    assert.match(run.stderr, /unknown command "frobnicate"/);
  });

  it('a one-line start missing --backend exits 1 naming --backend', async () => {
    const run = await cli('--protocol', 'tcp', '--port', '0');
    assert.equal(run.signal, null, 'must exit by itself, not start a proxy');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /--backend is required/);
  });

  it('a one-line start missing --port or --protocol exits 1 naming it', async () => {
    const noPort = await cli('--protocol', 'tcp', '--backend', '127.0.0.1:1');
    assert.equal(noPort.code, 1);
    assert.match(noPort.stderr, /--port is required/);
    const noProtocol = await cli('--port', '0', '--backend', '127.0.0.1:1');
    assert.equal(noProtocol.code, 1);
    assert.match(noProtocol.stderr, /--protocol is required/);
  });

  it('a non-numeric --port exits 1 naming --port', async () => {
    const run = await cli('check', '--protocol', 'tcp', '--port', 'abc', '--backend', '127.0.0.1:1');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /--port: expected a whole number, got "abc"/);
  });

  it('a bad --backend exits 1 naming the listener field', async () => {
    const run = await cli('check', '--protocol', 'tcp', '--port', '7000', '--backend', 'nope');
    assert.equal(run.code, 1);
    assert.match(run.stderr, /listeners\.0\.backend: invalid endpoint "nope"/);
  });

  it('nothing to run exits 1', async () => {
    const run = await cli();
    assert.equal(run.code, 1);
    assert.match(run.stderr, /nothing to run/);
  });
});

describe('polyproxy check: what a start would fail on (issue 19)', { concurrency: 4 }, () => {
  it('a missing certificate exits 1 naming the field', async () => {
    const file = await configFile('no-cert.yaml', 'listeners:\n  - protocol: postgres\n    port: 6432\n    tls:\n      cert: missing.crt\n      key: missing.key\n');
    const run = await cli('check', '--config', file);
    assert.equal(run.code, 1);
    assert.equal(run.stdout, '');
    assert.match(run.stderr, /^listeners\.0\.tls\.cert: cannot read .*missing\.crt \(ENOENT\)$/m);
    assert.match(run.stderr, /^listeners\.0\.tls\.key: cannot read .*missing\.key \(ENOENT\)$/m);
  });

  it('a start with a missing certificate exits 1 with the same lines, no stack trace', async () => {
    const file = await configFile('no-cert-start.yaml', 'workers: 2\nlisteners:\n  - protocol: postgres\n    port: 0\n    tls:\n      cert: missing.crt\n      key: missing.key\n');
    const run = await cli('--config', file);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^listeners\.0\.tls\.cert: cannot read/m);
    assert.doesNotMatch(run.stderr, /^\s+at /m, 'no stack trace');
    assert.equal(run.stderr.match(/ENOENT/g)?.length, 2, 'each file once');
  });

  it('a missing required field says "required"', async () => {
    const file = await configFile('no-port.yaml', 'listeners:\n  - protocol: postgres\n');
    const run = await cli('check', '--config', file);
    assert.equal(run.code, 1);
    assert.match(run.stderr, /^listeners\.0\.port: required \(number\)$/m);
  });

  it('"polyproxy help" prints the usage', async () => {
    const run = await cli('help');
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /^Usage:$/m);
  });

  it('--help tells the one-line start runs one worker', async () => {
    const run = await cli('--help');
    assert.match(run.stdout, /--workers N +POLYPROXY_WORKERS +worker processes \(default: one-line start 1;/);
  });
});

