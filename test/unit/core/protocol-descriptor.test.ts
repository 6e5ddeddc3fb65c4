/** pipelineListener: core's Listener from a listener's common fields, the supervisor's context and the protocol's parts. */
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { describe, it } from 'node:test';
import { pino } from 'pino';
import type { TlsServerSettings } from '../../../src/core/client-connection.ts';
import { pipelineListener } from '../../../src/core/protocol-descriptor.ts';
import type { ListenerBasics, ListenerContext } from '../../../src/core/protocol-descriptor.ts';
import type { ProtocolModule } from '../../../src/core/protocol.ts';
import { Router } from '../../../src/core/router.ts';
import { SsrfGuard } from '../../../src/core/ssrf-guard.ts';

const silent = pino({ level: 'silent' });
const module: ProtocolModule = { name: 'test', identify: () => Promise.resolve(null), encodeError: () => null };
const router = (): Router => new Router({ sources: [], guard: new SsrfGuard({ allowPrivateBackends: true, allowBackends: [] }), cacheTtlMs: 1000, cacheMaxEntries: 10, resolveTimeoutMs: 1000 });
const certs = (): TlsServerSettings => ({ secureContext: tls.createSecureContext(), requestCert: false, requireClientCert: false });

const LISTENER: ListenerBasics & { name: string } = { name: 'l1', protocol: 'test', host: '127.0.0.1', port: 7000, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 2000, maxConnections: 5, tcpKeepAliveMs: 60000 };

function context(overrides: Partial<ListenerContext> = {}): ListenerContext {
  return { port: 7001, reusePort: true, log: silent, router: router(), tls: null, ...overrides };
}

describe('pipelineListener', () => {
  it('takes the common fields from the config, port and reusePort from the context, the rest from the parts', () => {
    const ctx = context();
    const listener = pipelineListener(LISTENER, ctx, { module, maxOpeningBytes: 1234 });
    assert.deepEqual(listener.settings, { name: 'l1', protocol: 'test', host: '127.0.0.1', port: 7001, connectTimeoutMs: 1000, idleTimeoutMs: 0, handshakeTimeoutMs: 2000, firstResponseTimeoutMs: 0, tcpKeepAliveMs: 60000, maxConnections: 5, maxOpeningBytes: 1234, reusePort: true });
    assert.equal(listener.protocol, module);
    assert.equal(listener.router, ctx.router);
    assert.equal(listener.tls, null);
  });

  it("a protocol's idle default replaces the config's", () => {
    assert.equal(pipelineListener(LISTENER, context(), { module, maxOpeningBytes: 1, idleTimeoutMs: 300 }).settings.idleTimeoutMs, 300);
  });

  it('ALPN is added to the TLS settings at start and again when a reload swaps them', () => {
    const listener = pipelineListener(LISTENER, context({ tls: certs() }), { module, maxOpeningBytes: 1, alpnProtocols: ['http/1.1'] });
    assert.deepEqual(listener.tls?.alpnProtocols, ['http/1.1']);
    const next = router();
    const renewed = certs();
    listener.reconfigure({ router: next, tls: renewed });
    assert.equal(listener.router, next);
    assert.equal(listener.tls?.secureContext, renewed.secureContext);
    assert.deepEqual(listener.tls?.alpnProtocols, ['http/1.1']);
    listener.reconfigure({ router: next, tls: null });
    assert.equal(listener.tls, null);
  });

  it('without ALPN the TLS settings are kept as given', () => {
    const given = certs();
    const listener = pipelineListener(LISTENER, context({ tls: given }), { module, maxOpeningBytes: 1 });
    assert.equal(listener.tls, given);
  });
});
