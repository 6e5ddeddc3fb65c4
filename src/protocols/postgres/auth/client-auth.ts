/**
 * The proxy as the PostgreSQL server a client authenticates to: the
 * challenge a pg_hba method would send (SCRAM-SHA-256, md5, or a
 * cleartext password over TLS), checked against the user's secret. Wrong
 * password, unknown user and a secret the method cannot use all end the
 * same way, with PostgreSQL's own 28P01 message; an unknown user runs a
 * full fake SCRAM exchange with a salt fixed per user name, so nothing
 * tells users apart.
 *
 * On success it returns what to log in to the backend with: the password
 * when the proxy has one (configured, or sent in cleartext), the md5
 * secret, or — for a SCRAM verifier — the client's own ClientKey
 * recovered from its proof (PgBouncer's pass-through): ClientKey =
 * ClientProof XOR HMAC(StoredKey, AuthMessage), checked by
 * H(ClientKey) = StoredKey. The caller sends AuthenticationOk once the
 * backend side is ready.
 */
import { randomBytes } from 'node:crypto';
import type { OpeningParser } from '../../../core/client-connection.ts';
import type { TlsInfo } from '../../../core/resolver.ts';
import { PostgresAuthError, passwordFailed, protocolViolation } from './auth-error.ts';
import {
  AUTH_CLEARTEXT,
  AUTH_MD5,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  MSG_PASSWORD,
  authMessage,
  authSasl,
  messageParser,
  parsePasswordMessage,
  parseSaslInitialResponse,
} from './messages.ts';
import type { Message } from './messages.ts';
import { DEFAULT_ITERATIONS, SCRAM_SHA_256, ScramError, equalBytes, hmac, keysOf, md5Response, md5Secret, parseClientFinal, parseClientFirst, saltedPassword, sha256, xor } from './scram.ts';
import { mockSalt, verifierOfPassword } from './secrets.ts';
import type { AuthMethod, AuthenticatedClient, BackendCredentials, ScramVerifier, SecretLookup, UserEntry } from './types.ts';

/** The client side as authentication needs it (core's ClientConnection is one). */
export interface ClientIO {
  read<T>(parse: OpeningParser<T>): Promise<T>;
  write(bytes: Buffer): void;
  /** Set once the connection is encrypted. */
  readonly tls: TlsInfo | undefined;
}

/** The listener's settings for client authentication (config.ts `auth`, prepared once). */
export interface ClientAuthSettings {
  readonly method: AuthMethod;
  /** Keys the fake salt of unknown users (secrets.ts mockSalt): stable across workers and restarts. */
  readonly mockKey: string;
}

/** The client's StartupMessage as parse.ts gives it. */
export interface ClientStartup {
  readonly params: ReadonlyMap<string, string>;
}

/** PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: a longer password or SASL message is refused. */
const MAX_AUTH_MESSAGE = 65535;
const readAuthMessage = messageParser(MAX_AUTH_MESSAGE + 4, 'client');

/**
 * Authenticates the client that sent `startup`, reading its answers from
 * `io`. `lookup` finds the user's secret (null: unknown user). Rejects with
 * PostgresAuthError (28P01, 28000, 08P01) or the client's disconnect.
 */
export async function authenticateClient(io: ClientIO, startup: ClientStartup, settings: ClientAuthSettings, lookup: SecretLookup): Promise<AuthenticatedClient> {
  const user = startup.params.get('user') ?? '';
  const database = startup.params.get('database') || user;
  const params = new Map<string, string>();
  for (const [key, value] of startup.params) if (key !== 'user' && key !== 'database' && !key.startsWith('_pq_.')) params.set(key, value);
  const done = (credentials: BackendCredentials): AuthenticatedClient => ({ user, database, params, credentials });

  if (settings.method === 'password' && io.tls === undefined) {
    // As a `hostssl ... password` line would: cleartext passwords only travel encrypted.
    throw new PostgresAuthError('28000', `password authentication for user "${user}" requires an SSL connection`);
  }
  const entry = await lookup(user);
  const secret = entry?.secret;
  if (settings.method === 'password') return done(await cleartext(io, user, entry));
  if (settings.method === 'md5' && secret?.kind !== 'scram') {
    // md5 where the secret allows it (PostgreSQL: an md5 line with a SCRAM verifier uses SCRAM); unknown users get md5 too.
    return done(await md5(io, user, entry));
  }
  let verifier: ScramVerifier | null = null;
  if (secret?.kind === 'scram') verifier = secret.verifier;
  else if (secret?.kind === 'password') verifier = verifierOfPassword(secret.password);
  // An md5 secret cannot serve SCRAM: like an unknown user, a fake exchange that fails.
  const clientKey = await scram(io, verifier ?? mockVerifier(settings.mockKey, user));
  if (verifier === null || entry === null || clientKey === null) throw passwordFailed(user);
  if (entry.backendPassword !== undefined) return done({ kind: 'password', password: entry.backendPassword });
  if (secret?.kind === 'password') return done({ kind: 'password', password: secret.password });
  return done({ kind: 'scram-keys', clientKey, serverKey: verifier.serverKey });
}

async function readPassword(io: ClientIO, expected: string): Promise<Buffer> {
  const msg: Message = await io.read(readAuthMessage);
  if (msg.type !== MSG_PASSWORD) throw protocolViolation(`expected ${expected} response, got message type ${msg.type}`);
  return msg.body;
}

async function cleartext(io: ClientIO, user: string, entry: UserEntry | null): Promise<BackendCredentials> {
  io.write(authMessage(AUTH_CLEARTEXT));
  const password = parsePasswordMessage(await readPassword(io, 'password'));
  if (password === undefined) throw protocolViolation('invalid password packet size');
  if (password.length === 0) throw passwordFailed(user); // PostgreSQL: "empty password returned by client"
  const secret = entry?.secret;
  let ok = false;
  if (secret?.kind === 'password') ok = equalBytes(Buffer.from(password), Buffer.from(secret.password));
  else if (secret?.kind === 'md5') ok = equalBytes(Buffer.from(md5Secret(password, user)), Buffer.from(secret.hash));
  else if (secret?.kind === 'scram') {
    const { clientKey, serverKey } = keysOf(saltedPassword(password, secret.verifier.salt, secret.verifier.iterations));
    ok = equalBytes(sha256(clientKey), secret.verifier.storedKey) && equalBytes(serverKey, secret.verifier.serverKey);
  }
  if (!ok || entry === null) throw passwordFailed(user);
  return { kind: 'password', password: entry.backendPassword ?? password };
}

async function md5(io: ClientIO, user: string, entry: UserEntry | null): Promise<BackendCredentials> {
  const salt = randomBytes(4);
  io.write(authMessage(AUTH_MD5, salt));
  const answer = parsePasswordMessage(await readPassword(io, 'password'));
  if (answer === undefined) throw protocolViolation('invalid password packet size');
  const secret = entry?.secret;
  let stored: string | null = null;
  if (secret?.kind === 'password') stored = md5Secret(secret.password, user);
  else if (secret?.kind === 'md5') stored = secret.hash;
  if (stored === null || entry === null || !equalBytes(Buffer.from(answer), Buffer.from(md5Response(stored, salt)))) throw passwordFailed(user);
  if (entry.backendPassword !== undefined) return { kind: 'password', password: entry.backendPassword };
  return secret?.kind === 'password' ? { kind: 'password', password: secret.password } : { kind: 'md5-hash', hash: stored };
}

/** The verifier of an unknown user: a fixed salt per name, keys nobody can match. */
function mockVerifier(key: string, user: string): ScramVerifier {
  const salt = mockSalt(key, user);
  const random = randomBytes(32);
  return { iterations: DEFAULT_ITERATIONS, salt, storedKey: random, serverKey: random };
}

function malformed(detail: string): PostgresAuthError {
  return protocolViolation(`malformed SCRAM message: ${detail}`);
}

/** One SCRAM-SHA-256 exchange as the server; resolves the client's ClientKey, or null when the proof is wrong. */
async function scram(io: ClientIO, verifier: ScramVerifier): Promise<Buffer | null> {
  io.write(authSasl([SCRAM_SHA_256]));
  const initial = parseSaslInitialResponse(await readPassword(io, 'SASL'));
  if (initial === undefined) throw malformed('invalid SASLInitialResponse');
  if (initial.mechanism !== SCRAM_SHA_256) throw protocolViolation('client selected an invalid SASL authentication mechanism');
  if (initial.data === null) throw malformed('the client sent no client-first-message');
  const first = parse(() => parseClientFirst(initial.data?.toString('utf8') ?? ''));
  if (first.cbindFlag === 'p') throw malformed('The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.');
  const nonce = first.nonce + randomBytes(18).toString('base64');
  const serverFirst = `r=${nonce},s=${verifier.salt.toString('base64')},i=${verifier.iterations}`;
  io.write(authMessage(AUTH_SASL_CONTINUE, Buffer.from(serverFirst)));
  const responseText = (await readPassword(io, 'SASL')).toString('utf8');
  const final = parse(() => parseClientFinal(responseText));
  if (final.channelBinding !== Buffer.from(first.gs2Header).toString('base64')) throw protocolViolation('SCRAM channel binding check failed');
  if (final.nonce !== nonce) throw malformed('The client-final-message nonce does not match.');
  const authMessageText = `${first.bare},${serverFirst},${final.withoutProof}`;
  const clientKey = xor(final.proof, hmac(verifier.storedKey, authMessageText));
  if (!equalBytes(sha256(clientKey), verifier.storedKey)) return null;
  io.write(authMessage(AUTH_SASL_FINAL, Buffer.from(`v=${hmac(verifier.serverKey, authMessageText).toString('base64')}`)));
  return clientKey;
}

function parse<T>(run: () => T): T {
  try {
    return run();
  } catch (err) {
    if (err instanceof ScramError) throw malformed(err.message);
    throw err;
  }
}
