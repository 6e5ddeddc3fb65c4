/** The proxy's INFO and the check that a backend can honour it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SERVER_ID, incompatibility, infoLine, parseVersion } from '../../../../src/protocols/nats/info.ts';
import type { AnnouncedInfo } from '../../../../src/protocols/nats/info.ts';

const announced: AnnouncedInfo = { maxPayload: 1048576, headers: true, serverVersion: '2.2.0', tls: false, tlsVerify: false, serverName: 'na' };
const backend = { version: '2.9.10', proto: 1, headers: true, max_payload: 1048576, auth_required: true };

describe('infoLine', () => {
  it('announces the configured values, and no nonce or connect_urls', () => {
    const text = infoLine(announced, 7, '::ffff:127.0.0.1').toString();
    assert.match(text, /^INFO \{.*\} \r\n$/);
    const info = JSON.parse(text.slice(5)) as Record<string, unknown>;
    assert.deepEqual(info, { server_id: SERVER_ID, server_name: 'na', version: '2.2.0', proto: 1, headers: true, auth_required: true, max_payload: 1048576, client_id: 7, client_ip: '127.0.0.1' });
    assert.match(SERVER_ID, /^N[A-Z2-7]{55}$/);
    const tls = JSON.parse(infoLine({ ...announced, tls: true }, 1, '::1').toString().slice(5)) as Record<string, unknown>;
    assert.equal(tls.tls_required, true);
    assert.equal(tls.tls_verify, false);
    const verify = JSON.parse(infoLine({ ...announced, tls: true, tlsVerify: true }, 1, '::1').toString().slice(5)) as Record<string, unknown>;
    assert.equal(verify.tls_verify, true);
  });
});

describe('incompatibility', () => {
  it('accepts a backend that offers at least what was announced', () => {
    assert.equal(incompatibility(announced, backend), null);
    assert.equal(incompatibility({ ...announced, headers: false }, { ...backend, headers: false }), null);
    assert.equal(incompatibility(announced, { ...backend, max_payload: 8388608, version: '2.2.0' }), null);
  });

  it('names what a backend lacks', () => {
    assert.match(incompatibility({ ...announced, maxPayload: 8388608 }, backend) ?? '', /max_payload 1048576 is smaller than the announced 8388608/);
    assert.match(incompatibility(announced, { ...backend, headers: false }) ?? '', /does not support headers/);
    assert.match(incompatibility({ ...announced, serverVersion: '2.10.0' }, backend) ?? '', /version 2\.9\.10 is older than the announced 2\.10\.0/);
    assert.match(incompatibility(announced, { ...backend, proto: 0 }) ?? '', /protocol 0/);
    assert.match(incompatibility(announced, { ...backend, tls_required: true }) ?? '', /requires TLS/);
    assert.match(incompatibility(announced, { ...backend, version: 'x' }) ?? '', /version x/);
  });

  it('parseVersion reads major.minor.patch', () => {
    assert.deepEqual(parseVersion('v2.10.3-beta'), [2, 10, 3]);
    assert.equal(parseVersion(2), null);
  });
});
