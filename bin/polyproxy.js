#!/usr/bin/env node
// The installed command runs the built JavaScript (Node does not strip types
// under node_modules). Plain JavaScript any Node parses, because this is the
// one file that may run on an older Node: polyproxy needs Node 24.
//
// On Node >= 24 it runs in this process: no wrapper between the signal and
// the proxy. On an older Node it runs the Node 24 of the `node` package when
// one is installed (the checkout pins it as a devDependency; a project may
// depend on it), forwarding signals and exiting as the child does; without
// one it says what is needed. This replaces package.json's `engines`: npm
// checks `engines` against the Node npm itself runs on, which is not the
// Node that runs polyproxy when `node` is pinned, so it warned on every
// install while the run used Node 24.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import process from 'node:process';

const REQUIRED_MAJOR = 24;

if (majorOf(process.versions.node) >= REQUIRED_MAJOR) {
  const { runCli } = await import('../dist/cli/main.js');
  runCli();
} else {
  const node = pinnedNode();
  if (node === null) {
    process.stderr.write(
      `polyproxy needs Node.js ${REQUIRED_MAJOR} or newer; this is Node ${process.versions.node} (${process.execPath}).\n` +
        `Install Node.js ${REQUIRED_MAJOR}, or add it to your project: npm install --save-dev node@${REQUIRED_MAJOR}\n`,
    );
    process.exitCode = 1;
  } else {
    runWith(node);
  }
}

function majorOf(version) {
  return Number(String(version).split('.')[0]);
}

/** The `node` package's binary, resolved from the working directory's project, then from this package; null when none is Node >= 24. */
function pinnedNode() {
  const from = [path.join(process.cwd(), 'package.json'), import.meta.url];
  for (const base of from) {
    try {
      const manifest = createRequire(base).resolve('node/package.json');
      const { version } = JSON.parse(readFileSync(manifest, 'utf8'));
      if (majorOf(version) >= REQUIRED_MAJOR) return path.join(path.dirname(manifest), 'bin', 'node');
    } catch {
      // not installed there
    }
  }
  return null;
}

/**
 * Runs this file again under `node`. The child gets its own process group so
 * a terminal's Ctrl-C (sent to the foreground group) reaches it once, through
 * this forwarder, not twice (a second SIGINT means "exit now"). If this
 * process is killed outright the child notices its parent is gone
 * (POLYPROXY_PARENT_WATCH, src/supervisor/parent-watch.ts) and drains.
 */
function runWith(node) {
  const child = spawn(node, process.argv.slice(1), {
    stdio: 'inherit',
    detached: true,
    env: { ...process.env, POLYPROXY_PARENT_WATCH: '1' },
  });
  const signals = ['SIGTERM', 'SIGINT', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2'];
  const forward = (signal) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of signals) process.on(signal, forward);
  child.on('error', (err) => {
    process.stderr.write(`polyproxy: cannot run ${node}: ${err.message}\n`);
    process.exit(1);
  });
  child.on('exit', (code, signal) => {
    for (const s of signals) process.removeListener(s, forward);
    // exitCode, not process.exit(): see src/supervisor/exit.ts (nodejs/node#54918).
    if (signal !== null) process.kill(process.pid, signal);
    else process.exitCode = code ?? 1;
  });
}
