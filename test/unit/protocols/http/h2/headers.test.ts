import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { h1RequestHead, h2RequestHeaders, responseHeaders, trailerHeaders } from '../../../../../src/protocols/http/h2/headers.ts';

const fwd = { clientAddress: '::ffff:10.0.0.9', proto: 'https' };

describe('h2 request headers to an HTTP/1.1 backend', () => {
  it('Host from :authority, pseudo-headers and connection-specific fields dropped, cookies joined, X-Forwarded-* the proxy’s own', () => {
    const raw = [':method', 'GET', ':path', '/x', ':scheme', 'https', ':authority', 'A.test:8443', 'cookie', 'a=1', 'accept', '*/*', 'cookie', 'b=2', 'te', 'trailers', 'x-forwarded-for', '1.2.3.4', 'x-forwarded-host', 'evil', 'forwarded', 'host=evil', 'connection', 'x', 'host', 'other'];
    assert.equal(
      h1RequestHead('GET', '/x', raw, 'A.test:8443', fwd, false),
      'GET /x HTTP/1.1\r\nhost: A.test:8443\r\naccept: */*\r\ncookie: a=1; b=2\r\nx-forwarded-for: 1.2.3.4, 10.0.0.9\r\nx-forwarded-proto: https\r\nx-forwarded-host: A.test:8443\r\n\r\n',
    );
  });

  it('a body without content-length goes chunked; content-length and expect as HTTP/1.1 needs them', () => {
    const raw = [':method', 'POST', ':path', '/up', ':scheme', 'http', ':authority', 'a.test', 'expect', '100-continue', 'transfer-encoding', 'chunked'];
    assert.equal(h1RequestHead('POST', '/up', raw, 'a.test', fwd, true), 'POST /up HTTP/1.1\r\nhost: a.test\r\ntransfer-encoding: chunked\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: https\r\nx-forwarded-host: a.test\r\n\r\n');
    const withLength = [':method', 'PUT', ':path', '/p', ':authority', 'a.test', 'content-length', '5'];
    assert.equal(h1RequestHead('PUT', '/p', withLength, 'a.test', fwd, false), 'PUT /p HTTP/1.1\r\nhost: a.test\r\ncontent-length: 5\r\nx-forwarded-for: 10.0.0.9\r\nx-forwarded-proto: https\r\nx-forwarded-host: a.test\r\n\r\n');
  });
});

describe('h2 request headers to an HTTP/2 backend', () => {
  it('keeps :method and :path, sets :authority and :scheme http, keeps te: trailers (gRPC) and repeated fields', () => {
    const raw = [':method', 'POST', ':path', '/pkg.Svc/Call', ':scheme', 'https', ':authority', 'api.test', 'content-type', 'application/grpc', 'te', 'trailers', 'grpc-timeout', '100m', 'x-a', '1', 'x-a', '2'];
    assert.deepEqual(h2RequestHeaders(raw, 'api.test', { clientAddress: '127.0.0.1', proto: 'http' }), {
      ':method': 'POST',
      ':path': '/pkg.Svc/Call',
      'content-type': 'application/grpc',
      te: 'trailers',
      'grpc-timeout': '100m',
      'x-a': ['1', '2'],
      ':authority': 'api.test',
      ':scheme': 'http',
      'x-forwarded-for': '127.0.0.1',
      'x-forwarded-proto': 'http',
      'x-forwarded-host': 'api.test',
    });
  });
});

describe('response headers to the HTTP/2 client', () => {
  it('drops connection-specific fields and pseudo-headers, adds telemetry', () => {
    assert.deepEqual(responseHeaders(200, { ':status': '200', connection: 'keep-alive', 'keep-alive': 'timeout=5', 'transfer-encoding': 'chunked', 'set-cookie': ['a', 'b'], 'content-type': 'text/plain' }, { 'x-proxy-cache': 'hit' }), {
      ':status': 200,
      'set-cookie': ['a', 'b'],
      'content-type': 'text/plain',
      'x-proxy-cache': 'hit',
    });
    assert.deepEqual(trailerHeaders({ 'grpc-status': '0', 'grpc-message': '', connection: 'x' }), { 'grpc-status': '0', 'grpc-message': '' });
  });
});
