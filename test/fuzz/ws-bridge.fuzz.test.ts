/**
 * Fuzzing the ws-bridge ClientId parser (issue 15): on any request target
 * it agrees with its documented grammar (the first path segment, RFC 3986
 * `pchar`s, 1..256 characters, not a dot segment, at most a trailing '/'
 * before the query or fragment), and an accepted id, appended to the API
 * URL, stays one path segment under that URL for a WHATWG URL parser.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MAX_CLIENT_ID_LENGTH, parseClientId } from '../../src/protocols/ws-bridge/client-id.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

const UNRESERVED_AND_SUB_DELIMS = new Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=:@");
const HEX = new Set('0123456789abcdefABCDEF');

/** RFC 3986 3.3: segment-nz = 1*pchar; pchar = unreserved / pct-encoded / sub-delims / ":" / "@". */
function isSegment(id: string): boolean {
  if (id === '') return false;
  for (let i = 0; i < id.length; i++) {
    const c = id[i] as string;
    if (c === '%') {
      if (!HEX.has(id[i + 1] ?? '') || !HEX.has(id[i + 2] ?? '')) return false;
      i += 2;
    } else if (!UNRESERVED_AND_SUB_DELIMS.has(c)) return false;
  }
  return true;
}

/** A dot segment, written plainly or percent-encoded (RFC 3986 5.2.4, WHATWG URL "single-dot / double-dot segment"). */
function isDotSegment(id: string): boolean {
  const decoded = id.replace(/%2e/gi, '.');
  return decoded === '.' || decoded === '..';
}

function referenceClientId(target: string | undefined): string | null {
  if (target === undefined || !target.startsWith('/')) return null;
  const path = target.split(/[?#]/, 1)[0] as string;
  const segments = path.slice(1).split('/');
  if (segments.length > 2 || (segments.length === 2 && segments[1] !== '')) return null;
  const id = segments[0] as string;
  return id.length <= MAX_CLIENT_ID_LENGTH && isSegment(id) && !isDotSegment(id) ? id : null;
}

const pieces = fc.constantFrom('/', '//', '?', '#', '%', '%2e', '%2E', '.', '..', '%41', '%zz', 'a', 'Z9', '-._~', "!$&'()*+,;=", ':@', ' ', '"', '<', 'é', '\u{1f600}', '\\', '[', ']');
const target = fc.oneof(
  fc.array(pieces, { maxLength: 10 }).map((parts) => parts.join('')),
  fc.tuple(fc.constantFrom('/', '', '*', 'http://h/'), fc.array(pieces, { maxLength: 8 })).map(([start, parts]) => start + parts.join('')),
  fc.tuple(fc.integer({ min: MAX_CLIENT_ID_LENGTH - 2, max: MAX_CLIENT_ID_LENGTH + 2 }), fc.constantFrom('', '/', '?x')).map(([n, tail]) => `/${'x'.repeat(n)}${tail}`),
  text(0, 20),
);

describe('ws-bridge ClientId', () => {
  it('accepts exactly what the documented grammar accepts, and nothing else', (t) => {
    fuzz(
      t,
      fc.property(fc.option(target, { nil: undefined }), (value) => {
        assert.equal(parseClientId(value), referenceClientId(value));
      }),
    );
  });

  it('an accepted id is one path segment under the API URL, as sent, and reads back the same from any target form', (t) => {
    fuzz(
      t,
      fc.property(target, fc.constantFrom('', '/', '?q=/x', '#f', '/?a#b'), (value, tail) => {
        const id = parseClientId(`/${value.replace(/^\/+/, '')}`);
        fc.pre(id !== null);
        const url = new URL(`http://api.example/clients/${id}`);
        assert.equal(url.pathname, `/clients/${id}`);
        assert.equal(parseClientId(`/${id}${tail}`), id);
      }),
    );
  });
});
