/**
 * PostgreSQL frontend startup packets and the backend's first messages,
 * as pure functions over buffers (no sockets). Protocol reference:
 * https://www.postgresql.org/docs/current/protocol-message-formats.html
 */
import { PolyproxyError } from '../../core/errors.ts';

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** PostgreSQL's own limit (MAX_STARTUP_PACKET_LENGTH in pqcomm.h). */
export const MAX_STARTUP_PACKET = 10000;

export type StartupPacket =
  | { readonly type: 'ssl' }
  | { readonly type: 'gssenc' }
  | { readonly type: 'cancel'; readonly key: string; readonly raw: Buffer }
  | { readonly type: 'startup'; readonly version: number; readonly params: ReadonlyMap<string, string>; readonly raw: Buffer };

function protocolError(message: string): PolyproxyError {
  return new PolyproxyError('PROTOCOL', message, { source: 'client' });
}

/**
 * Recognises one startup-phase packet (no type byte: int32 length, int32
 * code, body). Returns undefined until the whole packet is buffered.
 */
export function parseStartupPacket(buf: Buffer): { value: StartupPacket; consumed: number } | undefined {
  if (buf.length < 4) return undefined;
  const length = buf.readUInt32BE(0);
  if (length < 8 || length > MAX_STARTUP_PACKET) throw protocolError(`invalid startup packet length ${length}`);
  if (buf.length < length) {
    // Fail early on a bad code rather than waiting for bytes that will never make sense.
    if (buf.length >= 8) checkCode(buf.readUInt32BE(4), length);
    return undefined;
  }
  const code = buf.readUInt32BE(4);
  checkCode(code, length);
  const raw = Buffer.from(buf.subarray(0, length)); // copy: the caller's buffer is reused
  switch (code) {
    case SSL_REQUEST_CODE:
      return { value: { type: 'ssl' }, consumed: length };
    case GSSENC_REQUEST_CODE:
      return { value: { type: 'gssenc' }, consumed: length };
    case CANCEL_REQUEST_CODE:
      // pid (int32) + secret key (4 bytes in 3.0, up to 256 in 3.2)
      return { value: { type: 'cancel', key: raw.subarray(8).toString('hex'), raw }, consumed: length };
    default:
      return { value: { type: 'startup', version: code, params: parseParams(raw), raw }, consumed: length };
  }
}

function checkCode(code: number, length: number): void {
  if (code === SSL_REQUEST_CODE || code === GSSENC_REQUEST_CODE) {
    if (length !== 8) throw protocolError(`invalid length ${length} for an SSL/GSS request`);
    return;
  }
  if (code === CANCEL_REQUEST_CODE) {
    if (length < 16 || length > 8 + 4 + 256) throw protocolError(`invalid length ${length} for a cancel request`);
    return;
  }
  const major = code >>> 16;
  if (major !== 3) throw protocolError(`unsupported frontend protocol ${major}.${code & 0xffff}: server supports 3.0 to 3.2`);
}

/** key\0value\0 ... \0 — the final lone terminator is required. */
function parseParams(raw: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let at = 8;
  const end = raw.length;
  while (true) {
    if (at >= end) throw protocolError('startup packet is not terminated');
    if (raw[at] === 0) {
      if (at !== end - 1) throw protocolError('unexpected bytes after the startup parameters');
      break;
    }
    const keyEnd = raw.indexOf(0, at);
    if (keyEnd < 0 || keyEnd >= end) throw protocolError('startup parameter name is not terminated');
    const valueEnd = raw.indexOf(0, keyEnd + 1);
    if (valueEnd < 0 || valueEnd >= end) throw protocolError('startup parameter value is not terminated');
    const name = raw.toString('utf8', at, keyEnd);
    // PostgreSQL keeps a repeated parameter's last value; a server or pooler behind the proxy
    // that keeps the first would open a database the proxy did not route by: refuse repeats.
    if (params.has(name)) throw protocolError(`startup parameter "${name}" given more than once`);
    params.set(name, raw.toString('utf8', keyEnd + 1, valueEnd));
    at = valueEnd + 1;
  }
  if (!params.has('user') || params.get('user') === '') throw protocolError('no PostgreSQL user name specified in startup packet');
  return params;
}

/**
 * Follows the backend's messages from the start of a session until
 * ReadyForQuery or ErrorResponse, and reports the BackendKeyData it carries.
 * Incremental: messages may be split anywhere across chunks.
 */
export class BackendKeyScanner {
  #header = Buffer.alloc(5);
  #headerFill = 0;
  #type = 0;
  #remaining = 0;
  #key: Buffer | null = null;
  #keyFill = 0;
  /** Hex of pid + secret, once seen. */
  key: string | null = null;
  done = false;

  /** Consumes one chunk; returns true once the scan is finished. */
  push(chunk: Buffer): boolean {
    let at = 0;
    while (at < chunk.length && !this.done) {
      if (this.#remaining === 0 && this.#headerFill < 5) {
        const take = Math.min(5 - this.#headerFill, chunk.length - at);
        chunk.copy(this.#header, this.#headerFill, at, at + take);
        this.#headerFill += take;
        at += take;
        if (this.#headerFill < 5) break;
        this.#type = this.#header[0] as number;
        const length = this.#header.readUInt32BE(1);
        if (length < 4) {
          this.done = true; // not a PostgreSQL stream we understand: stop watching
          break;
        }
        this.#remaining = length - 4;
        if (this.#type === 0x4b /* K */) {
          if (this.#remaining < 8 || this.#remaining > 4 + 256) {
            this.done = true;
            break;
          }
          this.#key = Buffer.alloc(this.#remaining);
          this.#keyFill = 0;
        }
        if (this.#remaining === 0) this.#messageEnd();
        continue;
      }
      const take = Math.min(this.#remaining, chunk.length - at);
      if (this.#key !== null) {
        chunk.copy(this.#key, this.#keyFill, at, at + take);
        this.#keyFill += take;
      }
      this.#remaining -= take;
      at += take;
      if (this.#remaining === 0) this.#messageEnd();
    }
    return this.done;
  }

  #messageEnd(): void {
    this.#headerFill = 0;
    if (this.#key !== null) {
      this.key = this.#key.toString('hex');
      this.#key = null;
    }
    // ReadyForQuery or a fatal ErrorResponse end the startup phase.
    if (this.#type === 0x5a /* Z */ || this.#type === 0x45 /* E */) this.done = true;
  }
}
