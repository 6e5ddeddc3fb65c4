/** Parameter tracking: what a server connection needs to run as the client expects, startup parameters, read-back rows. */
import assert from 'node:assert/strict';
import { describe, it, test } from 'node:test';
import { READ_BACK_QUERY, UNREPORTED, fingerprint, inStep, literal, readBackRow, replayStatements, startupParameters, trackedName } from '../../../../../src/protocols/postgres/pool/parameters.ts';
import type { ParameterValues } from '../../../../../src/protocols/postgres/pool/parameters.ts';

describe('parameters', () => {
  it('tracked names are case-insensitive and canonical', () => {
    assert.equal(trackedName('datestyle'), 'DateStyle');
    assert.equal(trackedName('SEARCH_PATH'), 'search_path');
    assert.equal(trackedName('geqo'), undefined);
  });

  it('literals are safe whatever standard_conforming_strings says', () => {
    assert.equal(literal("it's"), "'it''s'");
    assert.equal(literal('a\\b'), "E'a\\\\b'");
  });

  it('replay: set_config for values, RESET for defaults, nothing when in step; the server map is updated', () => {
    const client = new Map<string, string | null>([['application_name', 'app'], ['search_path', 'x, public'], ['TimeZone', 'UTC'], ['statement_timeout', null]]);
    const server = new Map<string, string | null>([['application_name', ''], ['search_path', null], ['TimeZone', 'UTC'], ['statement_timeout', '5s']]);
    assert.equal(inStep(client, server), false);
    assert.equal(
      replayStatements(client, server),
      "SELECT pg_catalog.set_config('application_name', 'app', false), pg_catalog.set_config('search_path', 'x, public', false); RESET statement_timeout",
    );
    assert.equal(inStep(client, server), true);
    assert.equal(replayStatements(client, server), null);
    // A value the server holds that the client never set goes back to default.
    server.set('lock_timeout', '1s');
    assert.equal(replayStatements(client, server), 'RESET lock_timeout');
  });

  it('startup parameters: tracked ones kept, options -c parsed, others refused', () => {
    const ok = startupParameters(new Map([['user', 'u'], ['database', 'd'], ['application_name', 'psql'], ['client_encoding', 'UTF8'], ['options', '-c search_path=a,b --statement-timeout=5s -cDateStyle=ISO']]));
    assert.ok(typeof ok !== 'string');
    assert.deepEqual(Object.fromEntries(ok), { application_name: 'psql', client_encoding: 'UTF8', search_path: 'a,b', statement_timeout: '5s', DateStyle: 'ISO' });
    const fallback = startupParameters(new Map([['user', 'u'], ['fallback_application_name', 'pgbench']]));
    assert.ok(typeof fallback !== 'string');
    assert.equal(fallback.get('application_name'), 'pgbench');
    assert.equal(startupParameters(new Map([['user', 'u'], ['geqo', 'off']])), 'unsupported startup parameter: geqo');
    assert.equal(startupParameters(new Map([['user', 'u'], ['options', '-c geqo=off']])), 'unsupported startup parameter in options: geqo');
    assert.equal(startupParameters(new Map([['user', 'u'], ['replication', 'database']])), 'unsupported startup parameter: replication');
    assert.equal(startupParameters(new Map([['user', 'u'], ['options', '-X']])), 'unsupported startup parameter in options: -X');
  });

  it('read-back: one column per unreported parameter, NULL as default', () => {
    assert.match(READ_BACK_QUERY, /^SELECT pg_catalog\.current_setting\('search_path'\), /);
    const values = UNREPORTED.map((name, i) => (i === 1 ? null : `v-${name}`));
    const parts: Buffer[] = [Buffer.from([0, values.length])];
    for (const v of values) {
      const len = Buffer.alloc(4);
      len.writeInt32BE(v === null ? -1 : Buffer.byteLength(v));
      parts.push(len);
      if (v !== null) parts.push(Buffer.from(v));
    }
    const body = Buffer.concat(parts);
    const target = new Map<string, string | null>();
    readBackRow(body, 0, body.length, target, new Map([['statement_timeout', 'v-statement_timeout']]));
    assert.equal(target.get('search_path'), 'v-search_path');
    assert.equal(target.get(UNREPORTED[1] as string), null);
    assert.equal(target.get('statement_timeout'), null, 'equal to the default: null');
  });
});

test('fingerprint: equal exactly when replayStatements finds nothing to replay', () => {
  const a: ParameterValues = new Map([['application_name', 'pgbench'], ['search_path', null]]);
  const b: ParameterValues = new Map([['application_name', 'pgbench']]);
  assert.equal(fingerprint(a), fingerprint(b));
  assert.equal(replayStatements(a, new Map(b)), null);
  const c: ParameterValues = new Map([['application_name', 'pgbench'], ['search_path', 'x']]);
  assert.notEqual(fingerprint(a), fingerprint(c));
  assert.notEqual(replayStatements(a, new Map(c)), null);
  // A value is not confused with the default nor with another name's value.
  assert.notEqual(fingerprint(new Map([['TimeZone', '-']])), fingerprint(new Map()));
  assert.notEqual(fingerprint(new Map([['TimeZone', 'UTC']])), fingerprint(new Map([['DateStyle', 'UTC']])));
});
