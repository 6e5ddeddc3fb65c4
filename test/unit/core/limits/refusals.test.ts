/** A tenant limit's refusal (LimitError, kind LIMITED) in each protocol's words, with the retry hint where there is one. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LimitError } from '../../../../src/core/errors.ts';
import { errorResponse as httpErrorResponse } from '../../../../src/core/http-error-response.ts';
import { decodeDocument } from '../../../../src/protocols/mongodb/bson.ts';
import { encodeErrorReply } from '../../../../src/protocols/mongodb/errors.ts';
import { encodeFailure as mysqlFailure } from '../../../../src/protocols/mysql/errors.ts';
import { encodeError as pgError } from '../../../../src/protocols/postgres/errors.ts';
import { encodeFailure as smtpFailure } from '../../../../src/protocols/smtp/errors.ts';
import { REPLY_CODES as amqpReplyCodes, replyText as amqpReplyText } from '../../../../src/protocols/amqp/errors.ts';
import { grpcStatusOf } from '../../../../src/protocols/http/h2/grpc.ts';
import { encodeFailure as mqttFailure } from '../../../../src/protocols/mqtt/errors.ts';
import { errorLine as natsErrorLine } from '../../../../src/protocols/nats/errors.ts';
import { errorLine as redisErrorLine } from '../../../../src/protocols/redis/errors.ts';

const rate = new LimitError('connection-rate', 'shop', 'connection rate limit of 2/s reached', 1500);
const count = new LimitError('connections', 'shop', 'connection limit of 5 reached');

test('postgres: 53300 naming the tenant, with a retry hint', () => {
  const text = pgError(rate, 'shop').toString('latin1');
  assert.match(text, /C53300\0/);
  assert.match(text, /Mtoo many connections for tenant "shop" \(connection rate limit\)\0/);
  assert.match(text, /HTry again in 2 s\.\0/);
  assert.match(pgError(count, 'shop').toString('latin1'), /HTry again when one of its sessions has ended\.\0/);
});

test('mysql: ERR 1040 / 08004', () => {
  const packet = mysqlFailure(count, 'shop', 2, true);
  assert.equal(packet[4], 0xff);
  assert.equal(packet.readUInt16LE(5), 1040);
  assert.equal(packet.subarray(8, 13).toString(), '08004');
  assert.match(packet.toString('latin1'), /Too many connections for tenant 'shop'/);
});

test('smtp: 421 4.7.0', () => {
  assert.equal(smtpFailure(count, 'shop.example').toString(), '421 4.7.0 Too many connections for shop.example, try again later\r\n');
});

test('mongodb: error 462 as the reply to the pending request', () => {
  const reply = encodeErrorReply(count, 'shop', { requestID: 7, op: 'msg', moreToCome: false }, 1) as Buffer;
  // OP_MSG: header (16) + flags (4) + section kind 0 (1) + the document.
  const doc = decodeDocument(reply, 21) as Record<string, unknown>;
  assert.equal(doc.code, 462);
  assert.equal(doc.codeName, 'IngressRequestRateLimitExceeded');
  assert.equal(reply.readInt32LE(8), 7);
});

test('http: 429 with Retry-After in whole seconds (at least 1)', () => {
  const text = httpErrorResponse(rate, 'shop').toString();
  assert.match(text, /^HTTP\/1\.1 429 Too Many Requests\r\n/);
  assert.match(text, /\r\nretry-after: 2\r\n/);
  assert.match(httpErrorResponse(count, 'shop').toString(), /\r\nretry-after: 1\r\n/);
});

test('redis: -ERR naming the user and the limit', () => {
  assert.equal(redisErrorLine(count, 'shop'), "-ERR user 'shop' is over its limit: connection limit of 5 reached");
});

test('nats: -ERR maximum connections exceeded, as nats-server words it', () => {
  assert.equal(natsErrorLine(count), "-ERR 'maximum connections exceeded'\r\n");
});

test('mqtt: CONNACK 0x97 quota exceeded in 5.0, 0x03 server unavailable in 3.1.1', () => {
  const v5 = mqttFailure(count, 'shop', 5, undefined);
  assert.ok(v5 !== null);
  assert.equal(v5[0], 0x20);
  assert.equal(v5[3], 0x97);
  assert.deepEqual(mqttFailure(count, 'shop', 4, undefined), Buffer.from([0x20, 0x02, 0x00, 0x03]));
});

test('amqp: Connection.Close 530 NOT_ALLOWED naming the vhost', () => {
  assert.equal(amqpReplyCodes.LIMITED, 530);
  assert.match(amqpReplyText(count, 530, 'shop'), /^NOT_ALLOWED - connection to .*shop.* refused: connection limit of 5 reached$/);
});

test('grpc: 8 RESOURCE_EXHAUSTED', () => {
  assert.equal(grpcStatusOf(rate), 8);
});
