/**
 * The proxy logs in to a PostgreSQL server as a client would, on a socket
 * that is already connected: StartupMessage (protocol 3.0), then whatever
 * the server asks — nothing (trust), a cleartext password, md5, or
 * SCRAM-SHA-256 (RFC 5802/7677, no channel binding, the server's signature
 * verified) — and the ParameterStatus / BackendKeyData messages up to
 * ReadyForQuery. The server's ErrorResponse rejects with its fields kept
 * (PostgresServerError) so the caller can forward the SQLSTATE.
 *
 * Used by the postgres listener with proxy-side authentication (a
 * dedicated server connection per client), by the pools, and by the auth
 * query.
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { BackendReader } from '../../../core/backend-reader.ts';
import { Deadline } from '../../../core/deadline.ts';
import { PolyproxyError } from '../../../core/errors.ts';
import {
  AUTH_CLEARTEXT,
  AUTH_MD5,
  AUTH_OK,
  AUTH_SASL,
  AUTH_SASL_CONTINUE,
  AUTH_SASL_FINAL,
  MSG_AUTH,
  MSG_BACKEND_KEY,
  MSG_ERROR,
  MSG_NEGOTIATE,
  MSG_NOTICE,
  MSG_PARAMETER_STATUS,
  MSG_PASSWORD,
  MSG_READY,
  message,
  messageParser,
  parseFields,
  parseMechanisms,
  passwordMessage,
  readCString,
  saslInitialResponse,
  startupMessage,
} from './messages.ts';
import type { Message } from './messages.ts';
import { SCRAM_SHA_256, ScramError, equalBytes, hmac, keysOf, md5Response, md5Secret, parseServerFinal, parseServerFirst, saltedPassword, sha256, xor } from './scram.ts';
import { PostgresServerError } from './server-error.ts';
import type { BackendCredentials, BackendLoginOptions, BackendLoginResult } from './types.ts';

/** Authentication messages are small; a server's ErrorResponse or ParameterStatus too. */
const MAX_LOGIN_MESSAGE = 64 * 1024;
const readMessage = messageParser(MAX_LOGIN_MESSAGE, 'backend');

/** A failure of the login that is not the server's ErrorResponse: it broke the protocol, or asked for what the credentials cannot give. */
function loginError(message: string): PolyproxyError {
  return new PolyproxyError('BACKEND_UNREACHABLE', `login to the server failed: ${message}`, { source: 'backend' });
}

/** Credentials that cannot answer the server's question: the proxy's configuration, not the server's health. */
function credentialsError(message: string): PolyproxyError {
  return new PolyproxyError('INTERNAL', `login to the server failed: ${message}`, { source: 'internal' });
}

/**
 * Logs in on `socket` (connected, nothing sent yet). Resolves once the
 * server sent ReadyForQuery; the socket is then paused with no listener of
 * ours left on it. Rejects with PostgresServerError when the server refuses
 * (ErrorResponse), PolyproxyError otherwise (TIMEOUT past `timeoutMs`).
 */
export async function backendLogin(socket: Socket, options: BackendLoginOptions): Promise<BackendLoginResult> {
  const reader = new BackendReader(socket, 'the login');
  const deadline = options.timeoutMs > 0 ? new Deadline(options.timeoutMs) : null;
  const late = (): PolyproxyError => new PolyproxyError('TIMEOUT', `the server did not complete the login within ${options.timeoutMs} ms`, { source: 'backend' });
  const next = (): Promise<Message> => (deadline === null ? reader.read(readMessage) : deadline.wait(reader.read(readMessage), late));
  try {
    socket.write(startupMessage(options.user, options.database, options.params));
    const sasl = new ScramClient(options.credentials);
    const parameters = new Map<string, string>();
    let processId = 0;
    let secretKey: Buffer | null = null;
    let authenticated = false;
    while (true) {
      const msg = await next();
      switch (msg.type) {
        case MSG_AUTH: {
          if (authenticated) throw loginError('authentication request after AuthenticationOk');
          if (msg.body.length < 4) throw loginError('short authentication request');
          const code = msg.body.readUInt32BE(0);
          const data = msg.body.subarray(4);
          const answer = answerAuth(code, data, options, sasl);
          if (answer === null) authenticated = true;
          else if (answer.length > 0) socket.write(answer);
          break;
        }
        case MSG_PARAMETER_STATUS: {
          const name = readCString(msg.body, 0);
          const value = name === undefined ? undefined : readCString(msg.body, name.next);
          if (name === undefined || value === undefined) throw loginError('malformed ParameterStatus');
          parameters.set(name.value, value.value);
          break;
        }
        case MSG_BACKEND_KEY:
          if (msg.body.length < 8 || msg.body.length > 4 + 256) throw loginError('malformed BackendKeyData');
          processId = msg.body.readUInt32BE(0);
          secretKey = Buffer.from(msg.body.subarray(4));
          break;
        case MSG_ERROR: {
          const fields = parseFields(msg.body);
          if (fields === undefined) throw loginError('malformed ErrorResponse');
          throw new PostgresServerError(fields, msg.body);
        }
        case MSG_NOTICE:
        case MSG_NEGOTIATE:
          // A notice means nothing to the login; NegotiateProtocolVersion only lists options we did not send.
          break;
        case MSG_READY:
          if (!authenticated) throw loginError('ReadyForQuery before AuthenticationOk');
          if (!sasl.finished) throw loginError('the server skipped the end of the SCRAM exchange');
          socket.pause();
          return { parameters, processId, secretKey: secretKey ?? Buffer.alloc(0), leftover: reader.leftover() };
        default:
          throw loginError(`unexpected message ${JSON.stringify(String.fromCharCode(msg.type))} during the login`);
      }
    }
  } finally {
    deadline?.clear();
    reader.dispose();
  }
}

/** The reply to one authentication request: bytes to send, empty to send nothing, null for AuthenticationOk. */
function answerAuth(code: number, data: Buffer, options: BackendLoginOptions, sasl: ScramClient): Buffer | null {
  const credentials = options.credentials;
  switch (code) {
    case AUTH_OK:
      if (sasl.started && !sasl.finished) throw loginError('AuthenticationOk before the SCRAM exchange finished');
      return null;
    case AUTH_CLEARTEXT:
      if (credentials.kind !== 'password') throw credentialsError(`the server asks for a cleartext password and the proxy has ${describe(credentials)} for user "${options.user}"`);
      return passwordMessage(credentials.password);
    case AUTH_MD5: {
      if (data.length !== 4) throw loginError('malformed md5 request');
      if (credentials.kind === 'password') return passwordMessage(md5Response(md5Secret(credentials.password, options.user), data));
      if (credentials.kind === 'md5-hash') return passwordMessage(md5Response(credentials.hash, data));
      throw credentialsError(`the server asks for md5 and the proxy has ${describe(credentials)} for user "${options.user}" (md5 needs the password or its md5 secret)`);
    }
    case AUTH_SASL: {
      const mechanisms = parseMechanisms(data);
      if (mechanisms === undefined) throw loginError('malformed SASL mechanism list');
      if (!mechanisms.includes(SCRAM_SHA_256)) throw loginError(`the server offers no SASL mechanism the proxy supports (${mechanisms.join(', ')})`);
      return sasl.first(options.user);
    }
    case AUTH_SASL_CONTINUE:
      return sasl.final(data.toString('utf8'));
    case AUTH_SASL_FINAL:
      sasl.verify(data.toString('utf8'));
      return Buffer.alloc(0);
    default:
      throw loginError(`the server asks for an authentication method the proxy does not support (code ${code})`);
  }
}

function describe(credentials: BackendCredentials): string {
  switch (credentials.kind) {
    case 'none':
      return 'no password';
    case 'password':
      return 'a password';
    case 'scram-keys':
      return 'only SCRAM keys';
    case 'md5-hash':
      return 'only an md5 secret';
  }
}

/** The client side of one SCRAM-SHA-256 exchange. */
class ScramClient {
  readonly #credentials: BackendCredentials;
  #nonce = '';
  #clientFirstBare = '';
  #serverKey: Buffer | null = null;
  #authMessage = '';
  started = false;
  finished = true;

  constructor(credentials: BackendCredentials) {
    this.#credentials = credentials;
  }

  first(user: string): Buffer {
    const credentials = this.#credentials;
    if (credentials.kind !== 'password' && credentials.kind !== 'scram-keys') {
      throw credentialsError(`the server asks for SCRAM-SHA-256 and the proxy has ${describe(credentials)} for user "${user}"`);
    }
    if (this.started) throw loginError('a second SASL exchange');
    this.started = true;
    this.finished = false;
    this.#nonce = randomBytes(18).toString('base64');
    // PostgreSQL takes the user from the startup packet; libpq sends an empty one.
    this.#clientFirstBare = `n=,r=${this.#nonce}`;
    return saslInitialResponse(SCRAM_SHA_256, Buffer.from(`n,,${this.#clientFirstBare}`));
  }

  final(serverFirstText: string): Buffer {
    if (!this.started || this.#serverKey !== null) throw loginError('unexpected SASLContinue');
    const serverFirst = scram(() => parseServerFirst(serverFirstText));
    if (!serverFirst.nonce.startsWith(this.#nonce) || serverFirst.nonce.length === this.#nonce.length) throw loginError('the server\'s SCRAM nonce does not extend the proxy\'s');
    const credentials = this.#credentials;
    let clientKey: Buffer;
    if (credentials.kind === 'password') {
      const keys = keysOf(saltedPassword(credentials.password, serverFirst.salt, serverFirst.iterations));
      clientKey = keys.clientKey;
      this.#serverKey = keys.serverKey;
    } else if (credentials.kind === 'scram-keys') {
      clientKey = credentials.clientKey;
      this.#serverKey = credentials.serverKey;
    } else {
      throw loginError('SCRAM without a password or keys');
    }
    const withoutProof = `c=biws,r=${serverFirst.nonce}`;
    this.#authMessage = `${this.#clientFirstBare},${serverFirstText},${withoutProof}`;
    const proof = xor(clientKey, hmac(sha256(clientKey), this.#authMessage));
    return message(MSG_PASSWORD, Buffer.from(`${withoutProof},p=${proof.toString('base64')}`));
  }

  verify(serverFinalText: string): void {
    const serverKey = this.#serverKey;
    if (serverKey === null || this.finished) throw loginError('unexpected SASLFinal');
    const answer = scram(() => parseServerFinal(serverFinalText));
    if ('error' in answer) throw loginError(`the server ended the SCRAM exchange: ${answer.error}`);
    if (!equalBytes(answer.signature, hmac(serverKey, this.#authMessage))) throw loginError('the server\'s SCRAM signature is wrong: it does not know the password');
    this.finished = true;
  }
}

function scram<T>(parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    if (err instanceof ScramError) throw loginError(`malformed SCRAM message from the server: ${err.message}`);
    throw err;
  }
}
