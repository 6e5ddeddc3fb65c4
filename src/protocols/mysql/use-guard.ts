/**
 * The relay's client filter for MySQL sessions: a session stays on the
 * backend it was routed to, so a command that switches to a database the
 * router places elsewhere (COM_INIT_DB, `USE`, COM_CHANGE_USER) is answered
 * with an ERR packet instead of reaching the backend.
 *
 * Per chunk it only walks packet headers (no allocation): a command packet
 * (sequence id 0) whose command names a database is inspected in place when
 * it is whole in the chunk. One that spans chunks is collected (up to
 * COLLECT_LIMIT) and inspected once complete. A query larger than that is
 * forwarded as it streams and scanned on the way; a `USE` inside it ends
 * the session with an ERR before the packet's last byte reaches the
 * backend (so the server never runs it).
 *
 * A database to check pauses the client while the router answers (its
 * cache makes that immediate for known ids); the switch is allowed only
 * when the database routes to the session's endpoint.
 */
import type { Endpoint } from '../../core/endpoint.ts';
import { PolyproxyError, toPolyproxyError } from '../../core/errors.ts';
import type { RouteLookup } from '../../core/protocol.ts';
import type { ClientFilter, Relay } from '../../core/relay.ts';
import { UseScanner, inspectCommand, isCheckedCommand } from './commands.ts';
import type { CommandCheck } from './commands.ts';
import { OTHER_BACKEND, encodeFailure } from './errors.ts';
import { COM_QUERY, COM_STMT_PREPARE, MAX_PAYLOAD, errPacket } from './packets.ts';

/** Largest command packet collected whole before it is inspected. */
export const COLLECT_LIMIT = 1024 * 1024;

const USE_IN_LARGE_QUERY = `USE inside a query larger than ${COLLECT_LIMIT} bytes is not allowed through the proxy`;

export class UseGuard implements ClientFilter {
  readonly #capabilities: number;
  #endpoint: Endpoint | null = null;
  #lookup: RouteLookup | null = null;
  readonly #scanner = new UseScanner();
  /** Header (+ command byte) of a packet whose start straddles chunks. */
  readonly #prefix = Buffer.alloc(5);
  #prefixFill = 0;
  /** Payload bytes of the current packet still to pass. */
  #remaining = 0;
  /** The current packet is a streamed (too large to collect) query being scanned. */
  #streaming = false;
  /** The previous packet had the maximum length: the next one continues the same command. */
  #continues = false;
  /** A command packet being collected, and how much of it has arrived. */
  #collect: Buffer | null = null;
  #collectFill = 0;
  /** A decision is pending: chunks wait here and the client is paused. */
  #holding = false;
  #queue: Buffer[] = [];

  constructor(capabilities: number) {
    this.#capabilities = capabilities;
  }

  /** Called once the backend is connected (Opening.onConnected). */
  connected(endpoint: Endpoint, lookup: RouteLookup): void {
    this.#endpoint = endpoint;
    this.#lookup = lookup;
  }

  push(relay: Relay, chunk: Buffer): boolean {
    if (this.#holding) {
      this.#queue.push(chunk);
      return false;
    }
    return this.#walk(relay, chunk);
  }

  /** Walks one chunk; forwards what may pass. Returns false to pause the client. */
  #walk(relay: Relay, chunk: Buffer): boolean {
    const length = chunk.length;
    let at = 0;
    let flushFrom = 0;
    let ok = true;
    while (at < length) {
      const collect = this.#collect;
      if (collect !== null) {
        const take = Math.min(collect.length - this.#collectFill, length - at);
        chunk.copy(collect, this.#collectFill, at, at + take);
        this.#collectFill += take;
        at += take;
        flushFrom = at;
        if (this.#collectFill < collect.length) continue;
        this.#collect = null;
        const check = inspectCommand(collect.subarray(4), this.#capabilities, this.#scanner);
        if (check !== null) return this.#hold(relay, collect, check, chunk.subarray(at));
        ok = relay.writeToBackend(collect);
        continue;
      }
      if (this.#remaining > 0) {
        const take = Math.min(this.#remaining, length - at);
        this.#remaining -= take;
        if (this.#streaming) {
          this.#scanner.feed(chunk, at, at + take);
          if (this.#remaining === 0 && !this.#continues) this.#scanner.finish();
          if (this.#scanner.found !== null || this.#scanner.dynamic) {
            // Bytes before this chunk's part of the query may pass; the rest never will.
            if (at > flushFrom) relay.writeToBackend(chunk.subarray(flushFrom, at));
            this.#refuseAndEnd(relay, USE_IN_LARGE_QUERY);
            return false;
          }
          if (this.#remaining === 0 && !this.#continues) this.#streaming = false;
        }
        at += take;
        continue;
      }
      // A packet starts: header (4 bytes), then for commands the command byte.
      let headerAt = at;
      let need = 4;
      if (this.#prefixFill > 0 || length - at < 5) {
        // Straddles chunks (rare): assemble the prefix in #prefix.
        if (this.#prefixFill === 0 && at > flushFrom) {
          ok = relay.writeToBackend(chunk.subarray(flushFrom, at));
        }
        while (this.#prefixFill < 4 && at < length) this.#prefix[this.#prefixFill++] = chunk[at++] as number;
        flushFrom = at;
        if (this.#prefixFill < 4) break;
        if (this.#prefix[3] === 0 && !this.#continues && this.#prefix.readUIntLE(0, 3) > 0) {
          need = 5;
          if (this.#prefixFill < 5) {
            if (at >= length) break;
            this.#prefix[this.#prefixFill++] = chunk[at++] as number;
            flushFrom = at;
          }
        }
        const payloadLength = this.#prefix.readUIntLE(0, 3);
        const prefix = Buffer.from(this.#prefix.subarray(0, this.#prefixFill));
        this.#prefixFill = 0;
        const command = need === 5 ? (prefix[4] as number) : -1;
        if (command >= 0 && isCheckedCommand(command)) {
          if (payloadLength + 4 > COLLECT_LIMIT) {
            if (command !== COM_QUERY && command !== COM_STMT_PREPARE) {
              this.#refuseAndEnd(relay, 'command too large');
              return false;
            }
            ok = relay.writeToBackend(prefix);
            this.#startStreaming(payloadLength - 1);
            continue;
          }
          this.#collect = Buffer.allocUnsafe(4 + payloadLength);
          prefix.copy(this.#collect, 0);
          this.#collectFill = prefix.length;
          continue;
        }
        if (this.#packetPasses(payloadLength, prefix.length - 4)) {
          this.#refuseAndEnd(relay, USE_IN_LARGE_QUERY);
          return false;
        }
        ok = relay.writeToBackend(prefix);
        continue;
      }
      // Fast path: the prefix is in this chunk.
      const payloadLength = chunk.readUIntLE(headerAt, 3);
      const seq = chunk[headerAt + 3] as number;
      headerAt += 4;
      if (seq !== 0 || this.#continues || payloadLength === 0 || !isCheckedCommand(chunk[headerAt] as number)) {
        at = headerAt;
        if (this.#packetPasses(payloadLength, 0)) {
          this.#refuseAndEnd(relay, USE_IN_LARGE_QUERY);
          return false;
        }
        continue;
      }
      const packetStart = at;
      const packetEnd = headerAt + payloadLength;
      if (packetEnd <= length) {
        const check = inspectCommand(chunk.subarray(headerAt, packetEnd), this.#capabilities, this.#scanner);
        at = packetEnd;
        if (check === null) continue;
        if (packetStart > flushFrom) relay.writeToBackend(chunk.subarray(flushFrom, packetStart));
        return this.#hold(relay, chunk.subarray(packetStart, packetEnd), check, chunk.subarray(packetEnd));
      }
      if (payloadLength + 4 > COLLECT_LIMIT) {
        if (chunk[headerAt] !== COM_QUERY && chunk[headerAt] !== COM_STMT_PREPARE) {
          if (packetStart > flushFrom) relay.writeToBackend(chunk.subarray(flushFrom, packetStart));
          this.#refuseAndEnd(relay, 'command too large');
          return false;
        }
        at = headerAt + 1;
        this.#startStreaming(payloadLength - 1);
        continue;
      }
      if (packetStart > flushFrom) ok = relay.writeToBackend(chunk.subarray(flushFrom, packetStart));
      const started = Buffer.allocUnsafe(4 + payloadLength);
      chunk.copy(started, 0, packetStart, length);
      this.#collect = started;
      this.#collectFill = length - packetStart;
      at = flushFrom = length;
    }
    if (at > flushFrom) ok = relay.writeToBackend(flushFrom === 0 && at === length ? chunk : chunk.subarray(flushFrom, at));
    return ok;
  }

  /**
   * A packet that is not inspected here: its payload passes (`consumed`
   * bytes of it already did). Returns true when it ends a streamed query
   * whose last statement is a USE (the query ended exactly on a packet
   * boundary), which must be refused.
   */
  #packetPasses(payloadLength: number, consumed: number): boolean {
    this.#remaining = payloadLength - consumed;
    this.#continues = payloadLength === MAX_PAYLOAD;
    if (this.#streaming && this.#remaining === 0 && !this.#continues) {
      this.#scanner.finish();
      this.#streaming = false;
      return this.#scanner.found !== null || this.#scanner.dynamic;
    }
    return false;
  }

  #startStreaming(remaining: number): void {
    this.#scanner.reset();
    this.#streaming = true;
    this.#remaining = remaining;
    this.#continues = remaining + 1 === MAX_PAYLOAD;
  }

  /** Holds `packet` (and `rest`, the chunk after it) while the databases it names are checked. */
  #hold(relay: Relay, packet: Buffer, check: Exclude<CommandCheck, null>, rest: Buffer): boolean {
    this.#holding = true;
    if (rest.length > 0) this.#queue.unshift(rest);
    const seq = ((packet[3] as number) + 1) & 0xff;
    this.#decide(check).then(
      (refusal) => this.#decided(relay, packet, refusal, seq),
      (err: unknown) => this.#decided(relay, packet, encodeFailure(toPolyproxyError(err), undefined, seq, true), seq),
    );
    return false;
  }

  /** Resolves to null to let the command pass, or to the ERR packet that answers it. */
  async #decide(check: Exclude<CommandCheck, null>): Promise<Buffer | null> {
    const replySeq = 1;
    if ('malformed' in check) return encodeFailure(new PolyproxyError('PROTOCOL', check.malformed, { source: 'client' }), undefined, replySeq, true);
    const endpoint = this.#endpoint;
    const lookup = this.#lookup;
    for (const database of check.databases) {
      if (endpoint === null || lookup === null) return errPacket(replySeq, OTHER_BACKEND.code, OTHER_BACKEND.sqlState, `Access denied to database '${database}': the session cannot be routed`);
      let endpoints: readonly Endpoint[];
      try {
        endpoints = await lookup(database);
      } catch (err) {
        return encodeFailure(toPolyproxyError(err), database, replySeq, true);
      }
      if (!endpoints.some((e) => e.label === endpoint.label)) {
        return errPacket(replySeq, OTHER_BACKEND.code, OTHER_BACKEND.sqlState, `Access denied to database '${database}' on this connection: it routes to another backend (reconnect with that database)`);
      }
    }
    return null;
  }

  #decided(relay: Relay, packet: Buffer, refusal: Buffer | null, seq: number): void {
    if (relay.done || relay.backend.destroyed || relay.client.destroyed) return;
    let ok = true;
    if (refusal === null) {
      if (!relay.backend.writableEnded) ok = relay.writeToBackend(packet);
    } else {
      // The answer follows the command's sequence id.
      refusal[3] = seq;
      relay.bytesOut += refusal.length;
      relay.client.write(refusal);
    }
    this.#holding = false;
    while (this.#queue.length > 0 && !this.#holding) {
      const next = this.#queue.shift() as Buffer;
      ok = this.#walk(relay, next) && ok;
    }
    if (!this.#holding && ok) relay.client.resume();
  }

  /** Answers with an ERR and ends the session: part of the command already reached the backend. */
  #refuseAndEnd(relay: Relay, message: string): void {
    if (relay.reason === null) relay.reason = 'refused-command';
    this.#holding = true;
    const refusal = errPacket(1, OTHER_BACKEND.code, OTHER_BACKEND.sqlState, message);
    relay.bytesOut += refusal.length;
    relay.backend.destroy();
    relay.client.end(refusal);
  }
}
