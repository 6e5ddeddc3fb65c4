import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PolyproxyError } from '../../../../../src/core/errors.ts';
import { encodeGrpcMessage, grpcErrorHeaders, grpcStatusOf, isGrpc, parseGrpcTimeout } from '../../../../../src/protocols/http/h2/grpc.ts';

describe('isGrpc', () => {
  it('application/grpc and its +codec and parameter forms, any case; not grpc-web or others', () => {
    for (const yes of ['application/grpc', 'application/grpc+proto', 'application/grpc+json', 'Application/GRPC', 'application/grpc;charset=utf-8']) assert.equal(isGrpc(yes), true, yes);
    for (const no of [undefined, '', 'application/grpc-web', 'application/grpc-web+proto', 'application/json', 'application/grpcx', 'text/plain']) assert.equal(isGrpc(no), false, String(no));
  });
});

describe('parseGrpcTimeout', () => {
  it('each unit, rounded up to whole milliseconds', () => {
    assert.equal(parseGrpcTimeout('1H'), 3_600_000);
    assert.equal(parseGrpcTimeout('2M'), 120_000);
    assert.equal(parseGrpcTimeout('3S'), 3000);
    assert.equal(parseGrpcTimeout('250m'), 250);
    assert.equal(parseGrpcTimeout('1500u'), 2);
    assert.equal(parseGrpcTimeout('1n'), 1);
    assert.equal(parseGrpcTimeout('0m'), 0);
    assert.equal(parseGrpcTimeout('99999999S'), 99_999_999_000);
  });

  it('malformed values are ignored (undefined)', () => {
    for (const bad of [undefined, '', 'S', '10', '10s', '10 S', '-1S', '1.5S', '123456789S', '１S', '10SS']) assert.equal(parseGrpcTimeout(bad), undefined, String(bad));
  });
});

describe('gRPC errors', () => {
  it('failure kinds map to gRPC codes: unknown authority NOT_FOUND, down backend UNAVAILABLE, timeout DEADLINE_EXCEEDED', () => {
    assert.equal(grpcStatusOf(new PolyproxyError('NOT_FOUND', 'x')), 5);
    assert.equal(grpcStatusOf(new PolyproxyError('BACKEND_UNREACHABLE', 'x')), 14);
    assert.equal(grpcStatusOf(new PolyproxyError('UNAVAILABLE', 'x')), 14);
    assert.equal(grpcStatusOf(new PolyproxyError('SHUTTING_DOWN', 'x')), 14);
    assert.equal(grpcStatusOf(new PolyproxyError('TIMEOUT', 'x')), 4);
    assert.equal(grpcStatusOf(new PolyproxyError('FORBIDDEN', 'x')), 7);
    assert.equal(grpcStatusOf(new PolyproxyError('INTERNAL', 'x')), 13);
  });

  it('a trailers-only response: HTTP 200, application/grpc, grpc-status, percent-encoded grpc-message', () => {
    const headers = grpcErrorHeaders(new PolyproxyError('NOT_FOUND', 'no route'), undefined, 'No route for host "é%".');
    assert.deepEqual(headers, {
      ':status': 200,
      'content-type': 'application/grpc',
      'grpc-status': '5',
      'grpc-message': 'No route for host "%C3%A9%25".',
      'x-polyproxy-error': 'PP_ERR_NOT_FOUND',
    });
    assert.equal(encodeGrpcMessage('plain text'), 'plain text');
    assert.equal(encodeGrpcMessage('a\nb'), 'a%0Ab');
  });
});
