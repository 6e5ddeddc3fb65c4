/**
 * The bounded wait for a raw TCP client's first bytes: resolves with what
 * the client sent first (one read's worth, at most `max` bytes) as soon as
 * anything arrives, or with an empty buffer when `timeoutMs` passes first
 * (server-speaks-first protocols: SMTP, MySQL, FTP...). Bytes past `max`,
 * and anything sent later, stay buffered in the ClientConnection and reach
 * the backend after these (ClientConnection.detach's leftover).
 */
import type { ClientConnection } from '../../core/client-connection.ts';

const EMPTY = Buffer.alloc(0);

export function readFirstBytes(conn: ClientConnection, timeoutMs: number, max: number): Promise<Buffer> {
  if (timeoutMs <= 0) return Promise.resolve(EMPTY);
  return new Promise<Buffer>((resolve, reject) => {
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      resolve(EMPTY);
    }, timeoutMs);
    // After the deadline the read stays registered in the connection (it has
    // no cancel); the first later chunk then settles it consuming nothing, so
    // those bytes stay buffered for the backend and the connection goes back
    // to its usual "no reader" bounds (pause past maxOpeningBytes).
    const parse = (buffered: Buffer): { value: Buffer; consumed: number } => {
      if (expired) return { value: EMPTY, consumed: 0 };
      const n = Math.min(buffered.length, max);
      return { value: buffered.subarray(0, n), consumed: n };
    };
    conn.read(parse).then(
      (bytes) => {
        clearTimeout(timer);
        resolve(bytes);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err as Error);
      },
    );
  });
}
