import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { READ_HANDLE, READ_SHARED, WRITE_DIRECT, WRITE_SOCKET } from '../../../../src/core/relay.ts';

const FIXTURE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../fixtures/relay-session.ts');

interface SessionReport {
  directIo: boolean;
  sides: Array<[number, number]>;
  bytesIn: number;
  bytesOut: number;
  atClient: string;
}

/** Runs test/fixtures/relay-session.ts in a fresh process with POLYPROXY_DIRECT_IO set to `value` (or unset). */
function relaySession(value: string | undefined): Promise<SessionReport> {
  const env = { ...process.env };
  if (value === undefined) delete env.POLYPROXY_DIRECT_IO;
  else env.POLYPROXY_DIRECT_IO = value;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [FIXTURE], { env, timeout: 15_000 }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as SessionReport);
    });
  });
}

describe('ioSupport: the POLYPROXY_DIRECT_IO switch', { timeout: 30_000 }, () => {
  it('unset: this Node passes the shape checks, and relayed plain-TCP sides read and write through their handles', async () => {
    const report = await relaySession(undefined);
    assert.equal(report.directIo, true, 'process.binding("stream_wrap") changed shape: the relay fell back to socket methods');
    assert.deepEqual(report.sides, [
      [READ_HANDLE, WRITE_DIRECT],
      [READ_HANDLE, WRITE_DIRECT],
    ]);
    assert.equal(report.atClient, 'ping-pong');
    assert.deepEqual([report.bytesIn, report.bytesOut], [4, 9]);
  });

  it('0: direct I/O is off, sides keep their sockets’ methods, and the session still relays', async () => {
    const report = await relaySession('0');
    assert.equal(report.directIo, false);
    assert.deepEqual(report.sides, [
      [READ_SHARED, WRITE_SOCKET],
      [READ_SHARED, WRITE_SOCKET],
    ]);
    assert.equal(report.atClient, 'ping-pong');
    assert.deepEqual([report.bytesIn, report.bytesOut], [4, 9]);
  });
});
