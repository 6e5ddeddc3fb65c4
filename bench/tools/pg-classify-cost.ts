/**
 * Cost of classifying one PostgreSQL statement for the read/write split
 * (issue 17): `node bench/tools/pg-classify-cost.ts`. Cold = every string
 * new (parse + walk + cache insert); cached = the same string again.
 */
import { PostgresClassifier, loadPostgresParser } from '../../src/protocols/postgres/split/classify.ts';

const SHAPES: Record<string, (i: number) => string> = {
  'pgbench -S': (i) => `SELECT abalance FROM pgbench_accounts WHERE aid = ${i};`,
  'join + functions': (i) =>
    `SELECT o.id, lower(c.name), count(*) AS n, sum(l.qty * l.price) FROM orders o JOIN customers c ON c.id = o.customer_id JOIN lines l ON l.order_id = o.id WHERE o.created_at > now() - interval '7 days' AND o.id > ${i} GROUP BY o.id, c.name ORDER BY n DESC LIMIT 50`,
  'CTEs + subqueries': (i) =>
    `WITH recent AS (SELECT * FROM events WHERE ts > now() - interval '1 hour' AND kind IN ('a','b','c') AND id > ${i}), ranked AS (SELECT r.*, row_number() OVER (PARTITION BY r.user_id ORDER BY r.ts DESC) AS rn FROM recent r) SELECT u.id, u.email, coalesce(x.cnt, 0) AS cnt, (SELECT max(ts) FROM ranked WHERE ranked.user_id = u.id) AS last FROM users u LEFT JOIN (SELECT user_id, count(*) AS cnt FROM ranked WHERE rn <= 10 GROUP BY user_id) x ON x.user_id = u.id WHERE u.active AND u.id IN (SELECT user_id FROM memberships WHERE org_id = ${i % 97}) ORDER BY cnt DESC, u.id LIMIT 100 OFFSET 0`,
  'insert (write)': (i) => `INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (1, 1, ${i}, 10, CURRENT_TIMESTAMP)`,
};

await loadPostgresParser();
const N = 20_000;
for (const [name, make] of Object.entries(SHAPES)) {
  const classifier = new PostgresClassifier();
  for (let i = 0; i < 2000; i++) classifier.classify(make(-i - 1)); // warm the JIT
  let start = process.hrtime.bigint();
  for (let i = 0; i < N; i++) classifier.classify(make(i));
  const cold = Number(process.hrtime.bigint() - start) / 1000 / N;
  const same = make(7);
  start = process.hrtime.bigint();
  for (let i = 0; i < N * 10; i++) classifier.classify(same);
  const cached = Number(process.hrtime.bigint() - start) / 1000 / (N * 10);
  console.log(`${name.padEnd(24)} ${String(make(0).length).padStart(5)} chars  cold ${cold.toFixed(1).padStart(6)} µs  cached ${cached.toFixed(2).padStart(5)} µs  -> ${classifier.classify(same).route}`);
}
