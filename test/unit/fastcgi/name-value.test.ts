/** FastCGI name-value pairs (spec section 3.4): 1- and 4-byte lengths, truncation, round trips. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FastCgiError } from '../../../src/fastcgi/errors.ts';
import { decodeNameValuePairs, encodeNameValuePairs } from '../../../src/fastcgi/name-value.ts';

const protocolError = (e: unknown): boolean => e instanceof FastCgiError && e.code === 'FCGI_ERR_PROTOCOL';

describe('FastCGI name-value pairs', () => {
  it('uses one length byte below 128 and four with the top bit set from 128', () => {
    assert.equal(encodeNameValuePairs([['A', 'bc']]).toString('hex'), '0102' + '41' + '6263');
    const long = 'x'.repeat(128);
    const bytes = encodeNameValuePairs({ N: long });
    assert.equal(bytes.subarray(0, 5).toString('hex'), '01' + '80000080');
    assert.equal(bytes.length, 1 + 4 + 1 + 128);
    assert.equal(decodeNameValuePairs(bytes).get('N'), long);
  });

  it('round-trips UTF-8 and numbers from a record', () => {
    const map = decodeNameValuePairs(encodeNameValuePairs({ SCRIPT_FILENAME: '/var/www/é.php', CONTENT_LENGTH: 42, EMPTY: '' }));
    assert.deepEqual(Object.fromEntries(map), { SCRIPT_FILENAME: '/var/www/é.php', CONTENT_LENGTH: '42', EMPTY: '' });
  });

  it('refuses an empty name', () => {
    assert.throws(() => encodeNameValuePairs([['', 'x']]), (e: unknown) => e instanceof FastCgiError && e.code === 'FCGI_ERR_INVALID_ARGUMENT');
  });

  it('fails with FCGI_ERR_PROTOCOL when a length or a pair is cut', () => {
    assert.throws(() => decodeNameValuePairs(Buffer.from('01', 'hex')), protocolError);
    assert.throws(() => decodeNameValuePairs(Buffer.from('0180', 'hex')), protocolError);
    assert.throws(() => decodeNameValuePairs(Buffer.from('0105414243', 'hex')), protocolError);
    assert.throws(() => decodeNameValuePairs(Buffer.from('ffffffff01', 'hex')), protocolError);
  });
});
