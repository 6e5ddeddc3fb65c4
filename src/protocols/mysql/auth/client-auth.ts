/**
 * Proxy-side authentication of a MySQL client (listener `auth`): the proxy
 * is the server. It checks the client's answer to its greeting's scramble
 * against the configured users, switching the client to the listener's
 * plugin when it answered with another.
 *
 * caching_sha2_password as MySQL runs it: a fast path (scramble check) when
 * this proxy process has seen the user complete a full authentication with
 * the current password, else "perform full authentication": the password in
 * cleartext over TLS, or RSA-encrypted with the proxy's key (sent when the
 * client asks for it). Unknown users go through the same steps as known
 * ones, so the exchange does not tell which names exist.
 *
 * Refusals are MariaDB's: 1045 (28000) "Access denied for user 'x'@'host'
 * (using password: YES|NO)".
 */
import { generateKeyPairSync } from 'node:crypto';
import type { ClientConnection } from '../../../core/client-connection.ts';
import type { MysqlAuthConfig } from '../config.ts';
import { MysqlReplyError } from '../errors.ts';
import { AUTH_MORE_DATA_HEADER, CLIENT_PLUGIN_AUTH, buildAuthSwitchRequest, errPacket } from '../packets.ts';
import type { HandshakeResponse, Packet } from '../packets.ts';
import {
  CACHING_SHA2,
  NATIVE_PASSWORD,
  SHA2_FAST_AUTH_SUCCESS,
  SHA2_PERFORM_FULL_AUTH,
  SHA2_REQUEST_PUBLIC_KEY,
  cleartextPassword,
  rsaDecryptPassword,
  samePassword,
  tokenMatches,
} from './tokens.ts';

export const ER_ACCESS_DENIED = 1045;

/** The proxy's RSA key pair for caching_sha2_password without TLS. */
export interface RsaKeys {
  readonly publicKeyPem: string;
  readonly privateKeyPem: string;
}

/** A fresh 2048-bit key pair (made once per listener, when the listener is created). */
export function generateRsaKeys(): RsaKeys {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  return { publicKeyPem: publicKey, privateKeyPem: privateKey };
}

/** What client authentication needs from the handshake it runs inside. */
export interface AuthExchange {
  /** Sends one packet to the client with the next sequence id. */
  send(payload: Buffer): void;
  /** Reads the client's next packet (sequence checked). */
  read(): Promise<Packet>;
}

export class MysqlClientAuth {
  readonly #config: MysqlAuthConfig;
  readonly #keys: RsaKeys;
  /** caching_sha2_password's cache: user → the password a full authentication proved. */
  readonly #cache = new Map<string, string>();

  constructor(config: MysqlAuthConfig, keys: RsaKeys = generateRsaKeys()) {
    this.#config = config;
    this.#keys = keys;
  }

  get plugin(): string {
    return this.#config.plugin;
  }

  /**
   * Authenticates the client that sent `response` to a greeting carrying
   * `scramble`; throws a MysqlReplyError with the 1045 packet when it fails.
   */
  async authenticate(conn: ClientConnection, response: HandshakeResponse, scramble: Buffer, io: AuthExchange, nextSeq: () => number): Promise<void> {
    const wanted = this.#config.plugin;
    let answer = response.authResponse;
    const clientPlugin = (response.capabilities & CLIENT_PLUGIN_AUTH) !== 0 && response.plugin !== '' ? response.plugin : NATIVE_PASSWORD;
    if (clientPlugin !== wanted) {
      io.send(buildAuthSwitchRequest(wanted, scramble));
      answer = (await io.read()).payload;
    }
    const usingPassword = answer.length > 0;
    const user = Object.hasOwn(this.#config.users, response.user) ? this.#config.users[response.user] : undefined;
    let ok: boolean;
    if (wanted === NATIVE_PASSWORD) {
      ok = user !== undefined && tokenMatches(NATIVE_PASSWORD, user.password, scramble, answer);
    } else if (!usingPassword) {
      ok = false; // every configured user has a password
    } else if (user !== undefined && this.#cache.get(response.user) === user.password && tokenMatches(CACHING_SHA2, user.password, scramble, answer)) {
      io.send(Buffer.from([AUTH_MORE_DATA_HEADER, SHA2_FAST_AUTH_SUCCESS]));
      ok = true;
    } else {
      io.send(Buffer.from([AUTH_MORE_DATA_HEADER, SHA2_PERFORM_FULL_AUTH]));
      let reply = (await io.read()).payload;
      let password: string | null;
      if (conn.tls !== undefined) {
        password = cleartextPassword(reply);
      } else {
        if (reply.length === 1 && reply[0] === SHA2_REQUEST_PUBLIC_KEY) {
          io.send(Buffer.concat([Buffer.from([AUTH_MORE_DATA_HEADER]), Buffer.from(this.#keys.publicKeyPem, 'latin1')]));
          reply = (await io.read()).payload;
        }
        // Without TLS a password is accepted only RSA-encrypted (a client may know the key already).
        password = rsaDecryptPassword(reply, scramble, this.#keys.privateKeyPem);
      }
      ok = user !== undefined && password !== null && samePassword(password, user.password);
      if (ok && user !== undefined) this.#cache.set(response.user, user.password);
    }
    if (!ok) {
      const host = clientHost(conn.remoteAddress);
      const message = `Access denied for user '${response.user}'@'${host}' (using password: ${usingPassword ? 'YES' : 'NO'})`;
      throw new MysqlReplyError('FORBIDDEN', message, errPacket(nextSeq(), ER_ACCESS_DENIED, '28000', message), { source: 'client' });
    }
  }
}

/** The host part of the refusal, as MariaDB prints it: `localhost` for loopback, else the address. */
export function clientHost(address: string): string {
  const plain = address.startsWith('::ffff:') ? address.slice(7) : address;
  return plain === '127.0.0.1' || plain === '::1' ? 'localhost' : plain;
}
