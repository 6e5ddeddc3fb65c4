/**
 * Fuzzing the read/write classifier of the PostgreSQL split (issue 17):
 * it never throws and answers one of its routes for any text; generated
 * queries built only from read-only parts are reads; and the same queries
 * with a data-modifying statement, a data-modifying CTE, a row lock or a
 * call of a function not on the read-only list spliced in anywhere are
 * never reads.
 */
import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import fc from 'fast-check';
import { PostgresClassifier, loadPostgresParser } from '../../src/protocols/postgres/split/classify.ts';
import { fuzz, text } from '../helpers/fuzz.ts';

const classifier = new PostgresClassifier({ readOnlyFunctions: ['app.pure'] });

const column = fc.constantFrom('a', 'b', 't.a', 'id');
const pureFunction = fc.constantFrom('lower', 'upper', 'abs', 'length', 'coalesce', 'pg_catalog.lower', 'app.pure', 'md5');
const unknownFunction = fc.constantFrom('nextval', 'setval', 'pg_advisory_lock', 'set_config', 'pg_notify', 'lo_import', 'dblink_exec', 'user_fn', 'app.impure', 'public.lower', 'txid_current');

/** A read-only expression, with `hole` to splice something in at a random depth. */
function expression(hole: fc.Arbitrary<string> | null): fc.Arbitrary<string> {
  const { expr } = fc.letrec<{ expr: string }>((tie) => ({
    expr: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      ...(hole === null ? [] : [hole]),
      fc.integer({ min: -1000, max: 1000 }).map(String),
      column,
      fc.tuple(pureFunction, tie('expr')).map(([f, e]) => `${f}(${e})`),
      fc.tuple(tie('expr'), fc.constantFrom('+', '-', '*', '=', '<'), tie('expr')).map(([l, op, r]) => `(${l} ${op} ${r})`),
      tie('expr').map((e) => `(select ${e} from u limit 1)`),
      fc.tuple(tie('expr'), tie('expr')).map(([c, e]) => `case when ${c} then ${e} else 0 end`),
    ),
  }));
  return expr;
}

/** `select <list> from t where <where>`, the list with `extra` inserted at a random place, maybe wrapped in a CTE. */
function query(expr: fc.Arbitrary<string>, extra: fc.Arbitrary<string> | null, cte: boolean): fc.Arbitrary<string> {
  return fc.tuple(fc.array(expr, { minLength: 1, maxLength: 4 }), expr, extra ?? fc.constant(null), fc.nat(), fc.boolean()).map(([list, where, added, at, wrap]) => {
    if (added !== null) list.splice(at % (list.length + 1), 0, added);
    const body = `select ${list.join(', ')} from t where ${where}`;
    return cte && wrap ? `with w as (${body}) select * from w` : body;
  });
}

const pureQuery = query(expression(null), null, true);

const poisonExpression = fc.oneof(
  fc.tuple(unknownFunction, expression(null)).map(([f, e]) => `${f}(${e})`),
  fc.constant('(select a from t for update)'),
  fc.constant('(select a from t for key share)'),
);

/** A query with a poison surely in it (and maybe more, deeper). */
const poisonedQuery = fc.oneof(
  query(expression(poisonExpression), poisonExpression, true),
  fc.tuple(pureQuery, fc.constantFrom('insert into t values (1)', 'update t set a = 1', 'delete from t', 'select 1 into x', 'lock t', 'copy t from stdin', 'set x = 1', 'call p()')).map(([q, w]) => `${q}; ${w}`),
  fc.tuple(query(expression(null), null, false), fc.constantFrom('insert into t values (1) returning a', 'update t set a = 1 returning a', 'delete from t returning a')).map(([q, w]) => `with m as (${w}) ${q}`),
  fc.tuple(pureQuery, fc.constantFrom('for update', 'for share', 'for no key update', 'for key share')).map(([q, lock]) => `select * from (${q}) s ${lock}`),
);

describe('postgres read/write classifier', () => {
  before(() => loadPostgresParser());

  it('never throws and always answers a route', (t) => {
    fuzz(
      t,
      fc.property(fc.oneof(text(0, 200), fc.array(fc.oneof(fc.constantFrom('select', 'with', 'for update', ';', '(', ')', "'", '$$', 'nextval(', 'into', 'from t', 'begin read only'), text(0, 8)), { maxLength: 16 }).map((p) => p.join(' '))), (sql) => {
        const result = classifier.classify(sql);
        assert.ok(['read', 'read-only-begin', 'primary'].includes(result.route));
      }),
    );
  });

  it('queries built from read-only parts are reads', (t) => {
    fuzz(
      t,
      fc.property(pureQuery, (sql) => {
        const result = classifier.classify(sql);
        assert.equal(result.route, 'read', `${sql}: ${result.reason}`);
      }),
    );
  });

  it('a data-modifying statement, data-modifying CTE, row lock or unlisted function is never a read', (t) => {
    fuzz(
      t,
      fc.property(poisonedQuery, (sql) => {
        const result = classifier.classify(sql);
        assert.equal(result.route, 'primary', sql);
        assert.doesNotMatch(result.reason, /^parse error/, sql);
      }),
    );
  });
});
