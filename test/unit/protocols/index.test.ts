/** The protocol table: every row is a whole descriptor, and the config's listener schema is composed from it. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig } from '../../../src/config/load.ts';
import { configSchema } from '../../../src/config/schema.ts';
import { HEALTH_PROBES, PROTOCOLS, protocolOf } from '../../../src/protocols/index.ts';

function problems(raw: unknown): string {
  try {
    parseConfig(raw, '/tmp', 'test');
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.message;
  }
  assert.fail('config was accepted');
}

describe('the protocol table', () => {
  it('every row has a name, a schema whose protocol literal is that name, and create', () => {
    assert.ok(PROTOCOLS.length >= 8);
    for (const protocol of PROTOCOLS) {
      assert.equal(typeof protocol.create, 'function', protocol.name);
      const shape = (protocol.schema as unknown as { shape: { protocol: { value: string } } }).shape;
      assert.equal(shape.protocol.value, protocol.name);
      assert.ok(protocol.check === undefined || typeof protocol.check === 'function', protocol.name);
    }
    assert.equal(new Set(PROTOCOLS.map((p) => p.name)).size, PROTOCOLS.length, 'names are unique');
  });

  it('every row accepts a minimal listener of its protocol, with the common defaults', () => {
    const required: Record<string, Record<string, unknown>> = {
      tcp: { backend: '127.0.0.1:1' },
      'ws-bridge': { api: 'http://127.0.0.1:8000/ws/' },
      fastcgi: { backends: ['127.0.0.1:9000'], documentRoot: '/var/www' },
    };
    for (const { name } of PROTOCOLS) {
      const config = parseConfig({ listeners: [{ protocol: name, port: 0, ...required[name] }] }, '/tmp');
      const listener = config.listeners[0];
      assert.equal(listener?.protocol, name);
      assert.deepEqual(
        { host: listener.host, name: listener.name, connectTimeoutMs: listener.connectTimeoutMs, maxConnections: listener.maxConnections },
        { host: '0.0.0.0', name: `${name}-listener0`, connectTimeoutMs: 5000, maxConnections: 0 },
      );
      assert.equal(protocolOf(listener), PROTOCOLS.find((p) => p.name === name));
    }
  });

  it('an unknown protocol is refused with a message listing the table, in its order', () => {
    const message = problems({ listeners: [{ protocol: 'gopher', port: 70 }] });
    assert.match(message, new RegExp(`^listeners\\.0\\.protocol: protocol must be one of: ${PROTOCOLS.map((p) => p.name).join(', ')}$`, 'm'));
    const result = configSchema.safeParse({ listeners: [{ port: 70 }] });
    assert.ok(!result.success);
    assert.ok(result.error.issues.some((issue) => issue.message.startsWith('protocol must be one of: postgres, tcp, ')));
  });

  it("a protocol's own check still fires through the table, naming the field", () => {
    const wsBridge = { protocol: 'ws-bridge', port: 0, api: 'http://127.0.0.1:8000/ws/' };
    assert.match(problems({ listeners: [{ ...wsBridge, tls: { cert: 'c.pem', key: 'k.pem' } }] }), /^listeners\.0\.tls: ws-bridge does not terminate TLS/m);
    // Checks receive the whole config: a tcp listener without backend is fine once routes exist.
    assert.match(problems({ listeners: [{ protocol: 'tcp', port: 1 }] }), /^listeners\.0\.backend: a tcp listener needs a backend/m);
    assert.doesNotThrow(() => parseConfig({ routes: { x: '127.0.0.1:1' }, listeners: [{ protocol: 'tcp', port: 1 }] }, '/tmp'));
    // Only the listener's own protocol's check runs: the second listener is the one named.
    assert.match(problems({ listeners: [{ protocol: 'postgres', port: 1 }, { ...wsBridge, backend: '127.0.0.1:2' }] }), /^listeners\.1\.backend: ws-bridge has no backend/m);
  });

  it('health probes: http routes are probed with a GET, brokers with their opening, the others with a connect', () => {
    const exchanges: Record<string, string> = { mqtt: 'mqtt-connect', amqp: 'amqp-start' };
    for (const { name } of PROTOCOLS) {
      const kind = HEALTH_PROBES.get(name);
      if (typeof kind === 'object') assert.equal(kind.name, exchanges[name], name);
      else assert.equal(kind, name === 'http' ? 'http' : 'tcp', name);
    }
  });
});
