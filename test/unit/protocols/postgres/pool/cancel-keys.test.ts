/** Proxy cancel keys: unique per client, resolved to the running server's key, forgotten at the end. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseEndpoint } from '../../../../../src/core/endpoint.ts';
import { resolveProxyCancelKey } from '../../../../../src/protocols/postgres/cancel-registry.ts';
import { dropClientKey, newClientKey, pooledCancel } from '../../../../../src/protocols/postgres/pool/cancel-keys.ts';
import { cancelRequest } from '../../../../../src/protocols/postgres/pool/messages.ts';

describe('pooled cancel keys', () => {
  it('a key resolves to the server running the query now, null when none, undefined once dropped', () => {
    const endpoint = parseEndpoint('127.0.0.1:5432');
    let running: { endpoint: typeof endpoint; packet: Buffer } | null = null;
    const key = newClientKey({ cancelTarget: () => running });
    assert.ok(key.processId > 0 && key.processId <= 0x7fffffff);
    assert.equal(key.secretKey.length, 4);
    assert.equal(key.hex.length, 16);
    assert.equal(pooledCancel(key.hex), null);
    running = { endpoint, packet: cancelRequest(42, Buffer.from([9, 9, 9, 9])) };
    assert.equal(pooledCancel(key.hex), running);
    // The listener's cancel path asks through the registry (registered on import).
    assert.equal(resolveProxyCancelKey(key.hex), running);
    const other = newClientKey({ cancelTarget: () => null });
    assert.notEqual(other.hex, key.hex);
    dropClientKey(key.hex);
    dropClientKey(other.hex);
    assert.equal(pooledCancel(key.hex), undefined);
  });
});
