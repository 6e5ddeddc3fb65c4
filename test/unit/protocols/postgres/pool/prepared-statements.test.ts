/** The statement registry: one server-side name per text and types, references counted, per-client names. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ClientStatements, StatementRegistry } from '../../../../../src/protocols/postgres/pool/prepared-statements.ts';

function parseBody(name: string, sql: string): { body: Buffer; nameEnd: number } {
  const body = Buffer.from(`${name}\0${sql}\0\0\0`);
  return { body, nameEnd: name.length };
}

describe('prepared statements', () => {
  it('the same text under two client names shares one server name; the Parse body carries it', () => {
    const registry = new StatementRegistry();
    const a = parseBody('s1', 'select 1');
    const b = parseBody('other', 'select 1');
    const s1 = registry.acquire(a.body, a.nameEnd, a.body.length);
    const s2 = registry.acquire(b.body, b.nameEnd, b.body.length);
    assert.equal(s1, s2);
    assert.equal(s1.refs, 2);
    assert.match(s1.serverName, /^pp_/);
    assert.deepEqual(s1.parseBody, Buffer.from(`${s1.serverName}\0select 1\0\0\0`));
    const c = parseBody('s1', 'select 2');
    assert.notEqual(registry.acquire(c.body, c.nameEnd, c.body.length).serverName, s1.serverName);
  });

  it('clients define, replace and close by their own names; the last reference drops the entry', () => {
    const registry = new StatementRegistry();
    const client = new ClientStatements(registry);
    const p = parseBody('s', 'select 1');
    const st = registry.acquire(p.body, p.nameEnd, p.body.length);
    client.define('s', st);
    assert.equal(client.get('s'), st);
    assert.equal(registry.size, 1);
    assert.equal(client.close('nope'), false);
    assert.equal(client.close('s'), true);
    assert.equal(registry.size, 0);
    const again = registry.acquire(p.body, p.nameEnd, p.body.length);
    client.define('x', again);
    client.clear();
    assert.equal(registry.size, 0);
    assert.equal(client.size, 0);
  });
});
