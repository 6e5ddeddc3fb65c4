/** The capability flags the proxy's HandshakeResponse to a backend carries. */
import { PolyproxyError } from '../../core/errors.ts';
import {
  CLIENT_COMPRESS,
  CLIENT_CONNECT_ATTRS,
  CLIENT_CONNECT_WITH_DB,
  CLIENT_PLUGIN_AUTH,
  CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA,
  CLIENT_PROTOCOL_41,
  CLIENT_SECURE_CONNECTION,
  CLIENT_SSL,
  FRAMING_CAPABILITIES,
} from './packets.ts';
import type { Greeting, HandshakeResponse } from './packets.ts';

/**
 * The flags the backend gets: what the client chose, minus what the
 * plaintext leg cannot carry, and only what the backend offers. Flags that
 * change the command phase's framing must then still match the client's.
 */
export function backendCapabilities(client: HandshakeResponse, greeting: Greeting): number {
  const server = greeting.capabilities;
  if ((server & CLIENT_PROTOCOL_41) === 0 || (server & CLIENT_SECURE_CONNECTION) === 0) {
    throw new PolyproxyError('PROTOCOL', `the backend (${greeting.serverVersion}) does not speak protocol 4.1 with secure authentication`, { source: 'backend' });
  }
  const wanted = client.capabilities & ~(CLIENT_SSL | CLIENT_COMPRESS);
  const missing = wanted & FRAMING_CAPABILITIES & ~server;
  if (missing !== 0) {
    throw new PolyproxyError('PROTOCOL', `the backend (${greeting.serverVersion}) lacks capabilities the client chose: 0x${(missing >>> 0).toString(16)}`, { source: 'backend' });
  }
  let caps = wanted & server;
  if (client.database === '') caps &= ~CLIENT_CONNECT_WITH_DB;
  if (client.rawAttributes === null) caps &= ~CLIENT_CONNECT_ATTRS;
  // The proxy writes the auth response itself: pick the encoding the backend reads.
  caps = (caps & ~CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) | (server & (CLIENT_PLUGIN_AUTH | CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA));
  return caps >>> 0;
}
