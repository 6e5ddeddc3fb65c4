/**
 * TLS to HTTP/2 backends (Route.tls with `protocol: 'h2'`): the TCP
 * connection dial.ts made is wrapped in a TLS client that offers only ALPN
 * `h2` (RFC 9113 §3.2: HTTP/2 over TLS is chosen by ALPN; a backend that
 * picks nothing or http/1.1 cannot carry the stream), sends SNI and checks
 * the certificate against the route's CA or the system's, with the name
 * from `servername` or else the endpoint's host (an IP address is checked
 * against the certificate's IP entries, and sent without SNI, RFC 6066 §3).
 */
import { isIP } from 'node:net';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import type { Endpoint } from '../../../core/endpoint.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import type { BackendTls } from '../../../core/resolver.ts';

const ALPN_H2 = ['h2'];
const ALPN_HTTP1 = ['http/1.1'];

/** A key telling TLS settings apart in the session pool ('' for h2c). */
export function tlsKey(config: true | BackendTls | undefined): string {
  if (config === undefined) return '';
  if (config === true) return '|tls';
  return `|tls|${config.servername ?? ''}|${config.rejectUnauthorized === false ? 0 : 1}|${config.ca === undefined ? '' : String(caIds(config.ca))}`;
}

/** Small ids for CA texts, so pool keys stay short (the same text gets the same id for the process's life). */
const caIdByText = new Map<string, number>();
function caIds(ca: string): number {
  let id = caIdByText.get(ca);
  if (id === undefined) {
    id = caIdByText.size + 1;
    caIdByText.set(ca, id);
  }
  return id;
}

/**
 * The TLS handshake over `socket`; resolves with the TLS socket once the
 * certificate verified and ALPN chose h2 (`protocol` 'h2'), or for
 * 'http/1.1' (the ws-bridge's API client) once the server chose http/1.1
 * or nothing (a server without ALPN speaks HTTP/1.1 over TLS).
 */
export function upgradeToTls(socket: Socket, endpoint: Endpoint, config: true | BackendTls, timeoutMs: number, protocol: 'h2' | 'http/1.1' = 'h2'): Promise<tls.TLSSocket> {
  const options = config === true ? {} : config;
  const host = endpoint.type === 'unix' ? 'localhost' : endpoint.host;
  const servername = options.servername ?? (isIP(host) === 0 ? host : undefined);
  return new Promise((resolve, reject) => {
    const secure = tls.connect({
      socket,
      host,
      ...(servername === undefined ? {} : { servername }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      rejectUnauthorized: options.rejectUnauthorized !== false,
      ALPNProtocols: protocol === 'h2' ? ALPN_H2 : ALPN_HTTP1,
    });
    const fail = (why: string, cause?: unknown): void => {
      clearTimeout(timer);
      secure.destroy();
      reject(new PolyproxyError('BACKEND_UNREACHABLE', `TLS to ${endpoint.label} failed: ${why}`, { source: 'backend', cause }));
    };
    const timer = setTimeout(fail, timeoutMs, `no handshake within ${timeoutMs} ms`);
    secure.once('secureConnect', () => {
      if (protocol === 'h2' ? secure.alpnProtocol !== 'h2' : secure.alpnProtocol !== false && secure.alpnProtocol !== 'http/1.1') {
        fail(`the backend did not choose ${protocol} in ALPN (${secure.alpnProtocol === false ? 'no protocol' : secure.alpnProtocol})`);
        return;
      }
      clearTimeout(timer);
      secure.removeAllListeners('error');
      resolve(secure);
    });
    secure.once('error', (err: Error) => fail(err.message, err));
  });
}
