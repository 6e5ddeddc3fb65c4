/**
 * What the client sent while it had no server connection (the start of its
 * next transaction, held by the pooled session): may it run on a replica?
 * Every Query, Parse and Bind in the held bytes is classified (a Bind by its
 * named statement's text), not only the first: whatever is held goes to the
 * one server chosen, pipelined messages included.
 *
 * The answer waits ('wait') until the held bytes hold a whole exchange (a
 * Sync, a Flush or a Query) unless something already sends them to the primary: a
 * driver flushes Parse/Bind/Execute and Sync together, so the next read
 * usually completes it.
 */
import type { PostgresClassifier, SessionPin } from './classify.ts';

export type HeldRoute = 'wait' | 'read' | 'read-only-begin' | 'primary';

export interface HeldVerdict {
  route: HeldRoute;
  /** Session state the held statements create (pins the session to the primary). */
  pins: readonly SessionPin[];
}

const T_QUERY = 0x51;
const T_PARSE = 0x50;
const T_BIND = 0x42;
const T_SYNC = 0x53;
const T_DESCRIBE = 0x44;
const T_EXECUTE = 0x45;
const T_CLOSE = 0x43;
const T_FLUSH = 0x48;

const NO_PINS: readonly SessionPin[] = [];

/** The text of a statement the client prepared earlier (by its own name); undefined when it has none. */
export type StatementText = (name: string) => string | undefined;

function cstringEnd(buf: Buffer, from: number, end: number): number {
  const at = buf.indexOf(0, from);
  return at < 0 || at >= end ? -1 : at;
}

/** Classifies `held[0, length)`, which starts at a message boundary. */
export function classifyHeld(held: Buffer, length: number, classifier: PostgresClassifier, statementText: StatementText): HeldVerdict {
  let at = 0;
  let complete = false;
  let readOnlyBegin = false;
  let parsed = false;
  let pins: SessionPin[] | null = null;
  let primary = false;
  while (at + 5 <= length) {
    const type = held[at] as number;
    const size = held.readInt32BE(at + 1);
    if (size < 4) return { route: 'primary', pins: pins ?? NO_PINS }; // malformed: the session refuses it on the primary
    const end = at + 1 + size;
    if (end > length) break;
    const start = at + 5;
    let text: string | undefined;
    switch (type) {
      case T_QUERY: {
        const textEnd = cstringEnd(held, start, end);
        text = held.toString('utf8', start, textEnd < 0 ? end : textEnd);
        complete = true;
        break;
      }
      case T_PARSE: {
        const nameEnd = cstringEnd(held, start, end);
        const textEnd = nameEnd < 0 ? -1 : cstringEnd(held, nameEnd + 1, end);
        if (textEnd < 0) return { route: 'primary', pins: pins ?? NO_PINS };
        text = held.toString('utf8', nameEnd + 1, textEnd);
        parsed = true;
        break;
      }
      case T_BIND: {
        const portalEnd = cstringEnd(held, start, end);
        const nameEnd = portalEnd < 0 ? -1 : cstringEnd(held, portalEnd + 1, end);
        if (nameEnd < 0) return { route: 'primary', pins: pins ?? NO_PINS };
        if (nameEnd === portalEnd + 1) {
          // The unnamed statement: only one Parsed in these bytes is known (classified there).
          if (!parsed) primary = true;
          break;
        }
        text = statementText(held.toString('utf8', portalEnd + 1, nameEnd));
        // A name not prepared before: Parsed in these bytes (classified there), or the server will refuse it.
        if (text === undefined && !parsed) primary = true;
        break;
      }
      case T_SYNC:
      case T_FLUSH: // a client may wait for a Parse/Describe answer after a Flush, without Sync
        complete = true;
        break;
      case T_DESCRIBE:
      case T_EXECUTE:
      case T_CLOSE:
        break;
      default:
        // FunctionCall, COPY data, Terminate...: the primary.
        primary = true;
    }
    if (text !== undefined) {
      const verdict = classifier.classify(text);
      if (verdict.pins.length > 0) (pins ??= []).push(...verdict.pins);
      if (verdict.route === 'primary') primary = true;
      else if (verdict.route === 'read-only-begin') readOnlyBegin = true;
    }
    if (primary) return { route: 'primary', pins: pins ?? NO_PINS };
    at = end;
  }
  if (pins !== null) return { route: 'primary', pins };
  if (!complete) return { route: 'wait', pins: NO_PINS };
  return { route: readOnlyBegin ? 'read-only-begin' : 'read', pins: NO_PINS };
}

/** The query text of a Parse body as the pool stores it (server name, NUL, text, NUL, parameter types). */
export function parseBodyText(parseBody: Buffer): string | undefined {
  const nameEnd = parseBody.indexOf(0);
  if (nameEnd < 0) return undefined;
  const textEnd = parseBody.indexOf(0, nameEnd + 1);
  return textEnd < 0 ? undefined : parseBody.toString('utf8', nameEnd + 1, textEnd);
}
