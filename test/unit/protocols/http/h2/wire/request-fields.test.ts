/**
 * checkRequest / checkTrailers (RFC 9113 §8.2, §8.3.1; RFC 8441 §4): what
 * is accepted, what it reads, and every class of malformed request —
 * including the checks that keep the HTTP/1.1 hop safe (nothing that could
 * end a request line or a Host field early).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkRequest, checkTrailers, validValue } from '../../../../../../src/protocols/http/h2/wire/request-fields.ts';

const base = [':method', 'GET', ':scheme', 'https', ':authority', 'a.test:8443', ':path', '/x?y=1'];

describe('checkRequest', () => {
  it('reads a request: pseudo-header fields, content-length, content-type, accept (joined), grpc-timeout, host', () => {
    const head = checkRequest([...base, 'content-length', '12', 'content-type', 'application/grpc', 'accept', 'a/b', 'accept', 'c/d', 'grpc-timeout', '5S', 'host', 'h.test', 'te', 'trailers'], false);
    assert.deepEqual(head, {
      method: 'GET',
      scheme: 'https',
      authority: 'a.test:8443',
      path: '/x?y=1',
      protocol: undefined,
      contentLength: 12,
      contentType: 'application/grpc',
      accept: 'a/b, c/d',
      grpcTimeout: '5S',
      host: 'h.test',
    });
  });

  it('accepts OPTIONS *, a missing :authority (Host may stand in), obs-text and inner whitespace in values', () => {
    assert.equal(checkRequest([':method', 'OPTIONS', ':scheme', 'http', ':path', '*'], false)?.path, '*');
    assert.equal(checkRequest([':method', 'GET', ':scheme', 'http', ':path', '/'], false)?.authority, undefined);
    assert.ok(checkRequest([...base, 'x-v', 'caf\u00e9 au\tlait'], false));
  });

  it('CONNECT: plain (authority only) and extended (RFC 8441, only when announced)', () => {
    assert.equal(checkRequest([':method', 'CONNECT', ':authority', 'a.test:443'], false)?.method, 'CONNECT');
    const ws = [':method', 'CONNECT', ':protocol', 'websocket', ':scheme', 'https', ':authority', 'a.test', ':path', '/chat'];
    assert.equal(checkRequest(ws, true)?.protocol, 'websocket');
    assert.equal(checkRequest(ws, false), null);
    assert.equal(checkRequest([':method', 'CONNECT', ':authority', 'a.test', ':path', '/'], true), null);
    assert.equal(checkRequest([':method', 'CONNECT', ':protocol', 'websocket', ':authority', 'a.test'], true), null);
  });

  const malformed: [string, string[]][] = [
    ['no :method', [':scheme', 'https', ':path', '/']],
    ['no :path', [':method', 'GET', ':scheme', 'https']],
    ['no :scheme', [':method', 'GET', ':path', '/']],
    ['empty :path', [':method', 'GET', ':scheme', 'https', ':path', '']],
    [':path not origin-form', [':method', 'GET', ':scheme', 'https', ':path', 'x']],
    ['* for a method other than OPTIONS', [':method', 'GET', ':scheme', 'https', ':path', '*']],
    [':path with a space (would split the HTTP/1.1 request line)', [':method', 'GET', ':scheme', 'https', ':path', '/a b']],
    [':path with CR LF', [':method', 'GET', ':scheme', 'https', ':path', '/a\r\nX: y']],
    [':path with obs-text', [':method', 'GET', ':scheme', 'https', ':path', '/caf\u00e9']],
    [':method not a token', [':method', 'GE T', ':scheme', 'https', ':path', '/']],
    [':authority with CR LF (would end Host early)', [...base.slice(0, 4), ':authority', 'a.test\r\nx: y', ':path', '/']],
    [':authority with a space', [...base.slice(0, 4), ':authority', 'a .test', ':path', '/']],
    ['host with a slash', [...base, 'host', 'a/b']],
    ['duplicate :method', [...base, ':method', 'GET']],
    ['pseudo-header after a regular field', [':method', 'GET', 'x-a', '1', ':scheme', 'https', ':path', '/']],
    ['unknown pseudo-header', [...base, ':foo', 'bar']],
    [':status in a request', [...base, ':status', '200']],
    [':protocol without CONNECT', [...base, ':protocol', 'websocket']],
    ['uppercase field name', [...base, 'X-A', '1']],
    ['empty field name', [...base, '', '1']],
    ['field name with a space', [...base, 'x a', '1']],
    ['connection', [...base, 'connection', 'close']],
    ['keep-alive', [...base, 'keep-alive', '1']],
    ['proxy-connection', [...base, 'proxy-connection', 'x']],
    ['transfer-encoding', [...base, 'transfer-encoding', 'chunked']],
    ['upgrade', [...base, 'upgrade', 'h2c']],
    ['te other than trailers', [...base, 'te', 'gzip']],
    ['value with NUL', [...base, 'x-a', 'a\u0000b']],
    ['value with LF', [...base, 'x-a', 'a\nb']],
    ['value with CR', [...base, 'x-a', 'a\rb']],
    ['value with DEL', [...base, 'x-a', 'a\u007fb']],
    ['value with a leading space', [...base, 'x-a', ' a']],
    ['value with a trailing tab', [...base, 'x-a', 'a\t']],
    ['content-length not digits', [...base, 'content-length', '1e3']],
    ['content-length negative', [...base, 'content-length', '-1']],
    ['content-length empty', [...base, 'content-length', '']],
    ['content-length twice', [...base, 'content-length', '1', 'content-length', '1']],
    ['two host fields', [...base, 'host', 'a', 'host', 'b']],
  ];
  for (const [what, fields] of malformed) {
    it(`malformed: ${what}`, () => {
      assert.equal(checkRequest(fields, true), null);
    });
  }
});

describe('checkTrailers and validValue', () => {
  it('trailers: regular fields only, checked like the head', () => {
    assert.equal(checkTrailers(['grpc-status', '0', 'x-sum', 'abc']), true);
    assert.equal(checkTrailers([':status', '200']), false);
    assert.equal(checkTrailers(['X-Sum', 'abc']), false);
    assert.equal(checkTrailers(['x-sum', 'a\r\nb']), false);
    assert.equal(checkTrailers(['transfer-encoding', 'chunked']), false);
  });

  it('validValue: HTAB, SP..~ and obs-text inside; no CTL, no edge whitespace', () => {
    assert.equal(validValue(''), true);
    assert.equal(validValue('a\tb c~\u0080\u00ff'), true);
    for (const bad of ['\u0001', 'a\u001fb', ' a', 'a ', '\ta', 'a\t', 'a\u007f']) assert.equal(validValue(bad), false, JSON.stringify(bad));
  });
});
