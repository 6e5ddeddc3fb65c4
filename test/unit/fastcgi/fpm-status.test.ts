/** php-fpm status page parsing: the text page with `?full` (as php-fpm 8.2 prints it) and the JSON page. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { parseFpmStatus, parseFpmTime } from '../../../src/fastcgi/fpm-status.ts';

const TEXT = `pool:                 alpha
process manager:      static
start time:           22/Nov/2026:07:00:12 +0100
start since:          35
accepted conn:        12
listen queue:         1
max listen queue:     3
listen queue len:     511
idle processes:       2
active processes:     2
total processes:      4
max active processes: 3
max children reached: 5
slow requests:        6

************************
pid:                  18782
state:                Running
start time:           22/Nov/2026:07:00:12 +0100
start since:          35
requests:             7
request duration:     411
request method:       GET
request URI:          /status?full
content length:       0
user:                 -
script:               -
last request cpu:     0.00
last request memory:  0

************************
pid:                  18783
state:                Idle
start time:           22/Nov/2026:07:00:12 +0100
start since:          35
requests:             5
request duration:     1200
request method:       POST
request URI:          /index.php?x=1
content length:       300000
user:                 -
script:               /var/www/index.php
last request cpu:     12.50
last request memory:  2097152
`;

describe('php-fpm status page', () => {
  it('parses the pool fields and every process of the text page', () => {
    const s = parseFpmStatus(TEXT);
    assert.equal(s.pool, 'alpha');
    assert.equal(s.processManager, 'static');
    assert.equal(s.startTime?.toISOString(), '2026-11-22T06:00:12.000Z');
    assert.deepEqual(
      [s.startSince, s.acceptedConnections, s.listenQueue, s.maxListenQueue, s.listenQueueLength, s.idleProcesses, s.activeProcesses, s.totalProcesses, s.maxActiveProcesses, s.maxChildrenReached, s.slowRequests],
      [35, 12, 1, 3, 511, 2, 2, 4, 3, 5, 6],
    );
    assert.equal(s.memoryPeak, null);
    assert.equal(s.processes.length, 2);
    const p = s.processes[1];
    assert.deepEqual(
      { pid: p?.pid, state: p?.state, requests: p?.requests, duration: p?.requestDurationUs, method: p?.requestMethod, uri: p?.requestUri, length: p?.contentLength, script: p?.script, cpu: p?.lastRequestCpu, memory: p?.lastRequestMemory },
      { pid: 18783, state: 'Idle', requests: 5, duration: 1200, method: 'POST', uri: '/index.php?x=1', length: 300000, script: '/var/www/index.php', cpu: 12.5, memory: 2097152 },
    );
  });

  it('parses the JSON page the same way', () => {
    const json = JSON.stringify({
      pool: 'beta',
      'process manager': 'dynamic',
      'start time': 1795330812,
      'start since': 1,
      'accepted conn': 3,
      'listen queue': 0,
      'max listen queue': 0,
      'listen queue len': 0,
      'idle processes': 1,
      'active processes': 1,
      'total processes': 2,
      'max active processes': 1,
      'max children reached': 0,
      'slow requests': 0,
      'memory peak': 4194304,
      processes: [{ pid: 9, state: 'Idle', 'start time': 1795330812, 'start since': 1, requests: 2, 'request duration': 52, 'request method': 'GET', 'request uri': '/status?json&full', 'content length': 0, user: '-', script: '-', 'last request cpu': 0, 'last request memory': 0 }],
    });
    const s = parseFpmStatus(json);
    assert.equal(s.pool, 'beta');
    assert.equal(s.startTime?.getTime(), 1795330812000);
    assert.equal(s.memoryPeak, 4194304);
    assert.equal(s.processes[0]?.requestUri, '/status?json&full');
  });

  it('names a missing or non-numeric field', () => {
    assert.throws(() => parseFpmStatus(TEXT.replace(/accepted conn:.*\n/, '')), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_PROTOCOL' && e.message.includes('accepted conn'));
    assert.throws(() => parseFpmStatus(TEXT.replace('slow requests:        6', 'slow requests: lots')), /slow requests/);
    assert.throws(() => parseFpmStatus('<html>File not found.</html>'), (e: unknown) => e instanceof FastCgiError);
    assert.throws(() => parseFpmStatus(''), (e: unknown) => e instanceof FastCgiError);
    assert.throws(() => parseFpmStatus('{"pool": '), (e: unknown) => e instanceof FastCgiError);
  });

  it('reads php-fpm times', () => {
    assert.equal(parseFpmTime('01/Jan/2026:00:00:00 -0230')?.toISOString(), '2026-01-01T02:30:00.000Z');
    assert.equal(parseFpmTime('garbage'), null);
  });
});
