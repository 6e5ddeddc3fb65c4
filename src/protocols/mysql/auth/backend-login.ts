/**
 * The proxy's own login to a MySQL backend with the listener's
 * `backendUser` (proxy-side authentication): mysql_native_password and
 * caching_sha2_password (fast path, or full authentication with the
 * server's RSA key, since the proxy→backend leg is plaintext), following
 * the server's AuthSwitchRequest. Returns the server's OK payload, which
 * the client then gets as the answer to its own login.
 */
import type { Socket } from 'node:net';
import type { BackendReader } from '../../../core/backend-reader.ts';
import type { Deadline } from '../../../core/deadline.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import { MysqlReplyError } from '../errors.ts';
import { backendCapabilities } from '../capabilities.ts';
import {
  AUTH_MORE_DATA_HEADER,
  AUTH_SWITCH_HEADER,
  ERR_HEADER,
  OK_HEADER,
  Reader,
  buildHandshakeResponse,
  encodePacket,
  errPacket,
  packetParser,
  parseErr,
  parseGreeting,
} from '../packets.ts';
import type { HandshakeResponse, Packet } from '../packets.ts';
import { CACHING_SHA2, NATIVE_PASSWORD, SHA2_FAST_AUTH_SUCCESS, SHA2_PERFORM_FULL_AUTH, SHA2_REQUEST_PUBLIC_KEY, rsaEncryptPassword, token } from './tokens.ts';
import type { PasswordPlugin } from './tokens.ts';

const readBackendPacket = packetParser(64 * 1024, 'backend');

export interface BackendCredentials {
  readonly user: string;
  readonly password: string;
}

/**
 * Logs in on `backend` as `credentials`, for the client whose handshake
 * was `client` (its database, character set, capabilities, attributes).
 * `clientSeq` is the sequence id an ERR to the client must carry.
 */
export async function loginToBackend(
  backend: Socket,
  reader: BackendReader,
  deadline: Deadline,
  late: () => PolyproxyError,
  client: HandshakeResponse,
  credentials: BackendCredentials,
  clientSeq: number,
): Promise<Buffer> {
  const read = (): Promise<Packet> => deadline.wait(reader.read(readBackendPacket), late);
  const first = await read();
  if (first.payload[0] === ERR_HEADER) {
    const info = parseErr(first.payload);
    const packet = errPacket(clientSeq, info.code, info.sqlState ?? (info.code === 1040 ? '08004' : 'HY000'), info.message);
    throw new MysqlReplyError('UNAVAILABLE', `backend refused the connection: ${info.code} ${info.message}`, packet, { source: 'backend' });
  }
  const greeting = parseGreeting(first.payload);
  const capabilities = backendCapabilities(client, greeting);
  let plugin: PasswordPlugin = greeting.plugin === CACHING_SHA2 ? CACHING_SHA2 : NATIVE_PASSWORD;
  let scramble = greeting.scramble;
  let seq = 1;
  const send = (payload: Buffer): void => {
    backend.write(encodePacket(seq, payload));
    seq = (seq + 1) & 0xff;
  };
  send(
    buildHandshakeResponse({
      capabilities,
      maxPacket: client.maxPacket,
      charset: client.charset,
      user: credentials.user,
      authResponse: token(plugin, credentials.password, scramble),
      database: client.database,
      plugin,
      rawAttributes: client.rawAttributes,
    }),
  );
  let awaitingKey = false;
  while (true) {
    const packet = await read();
    seq = (packet.seq + 1) & 0xff;
    const payload = packet.payload;
    const header = payload[0];
    if (header === OK_HEADER) return payload;
    if (header === ERR_HEADER) {
      // The server's own refusal (unknown database, backendUser refused...), re-sequenced for the client.
      const info = parseErr(payload);
      throw new MysqlReplyError('FORBIDDEN', `backend refused the login of ${credentials.user}: ${info.code} ${info.message}`, encodePacket(clientSeq, payload), { source: 'backend' });
    }
    if (header === AUTH_SWITCH_HEADER) {
      const r = new Reader(payload, 'auth switch request', 1, 'backend');
      const name = r.zstring('auth plugin name').toString('latin1');
      if (name !== NATIVE_PASSWORD && name !== CACHING_SHA2) {
        throw new PolyproxyError('PROTOCOL', `the backend asks for the auth plugin ${name}, which the proxy's backendUser login does not speak`, { source: 'backend' });
      }
      plugin = name;
      scramble = Buffer.from(r.bytes(r.left, 'auth plugin data'));
      send(token(plugin, credentials.password, scramble));
      continue;
    }
    if (header === AUTH_MORE_DATA_HEADER && plugin === CACHING_SHA2) {
      if (awaitingKey) {
        send(rsaEncryptPassword(credentials.password, scramble, payload.subarray(1)));
        awaitingKey = false;
        continue;
      }
      if (payload.length === 2 && payload[1] === SHA2_FAST_AUTH_SUCCESS) continue;
      if (payload.length === 2 && payload[1] === SHA2_PERFORM_FULL_AUTH) {
        send(Buffer.from([SHA2_REQUEST_PUBLIC_KEY]));
        awaitingKey = true;
        continue;
      }
    }
    throw new PolyproxyError('PROTOCOL', `unexpected packet 0x${(header ?? 0).toString(16)} during the backend login`, { source: 'backend' });
  }
}
