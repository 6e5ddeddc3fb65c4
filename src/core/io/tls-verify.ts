/**
 * The OpenSSL verdict on a TLS peer's certificate chain. Node computes
 * `authorized` only for sockets a tls.Server created, not for a TLSSocket
 * wrapped around an existing connection (STARTTLS-style upgrades), so this
 * asks the socket's handle directly, as tls.Server does (lib/_tls_wrap.js
 * onServerSocketSecure). Where a Node's handle has no `verifyError`, it
 * falls back to `authorized`.
 */
import type { TLSSocket } from 'node:tls';

/** Null when the chain verified; else why not. No certificate counts as an error ('none presented'). */
export function tlsVerifyError(socket: TLSSocket): string | null {
  const handle = (socket as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle;
  if (typeof handle?.verifyError !== 'function') return socket.authorized ? null : 'certificate could not be verified';
  const err = handle.verifyError();
  if (err === null || err === undefined) return null;
  return err.code === 'UNABLE_TO_GET_ISSUER_CERT' && Object.keys(socket.getPeerCertificate() ?? {}).length === 0 ? 'none presented' : (err.code ?? err.message);
}
