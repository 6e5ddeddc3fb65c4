/**
 * `polyproxy demo`: the proxy plus embedded backends, so a new user sees
 * routing work with nothing else installed. Two tiny PostgreSQL-speaking
 * servers (tenants "alpha" and "beta") and a TCP echo server.
 */
import net from 'node:net';
import { parseConfig } from '../config/load.ts';
import { run } from '../supervisor/run.ts';
import { startPgDemoServer } from './pg-demo-server.ts';

const PG_PORT = Number(process.env.POLYPROXY_DEMO_PG_PORT ?? 6432);
const TCP_PORT = Number(process.env.POLYPROXY_DEMO_TCP_PORT ?? 7000);
const ADMIN_PORT = Number(process.env.POLYPROXY_DEMO_ADMIN_PORT ?? 9900);

export async function runDemo(): Promise<number> {
  // At once, before anything binds: the first thing a new user sees.
  process.stderr.write('polyproxy demo: starting two demo PostgreSQL backends, a TCP echo server and the proxy…\n');
  const alpha = await startPgDemoServer({ name: 'alpha' });
  const beta = await startPgDemoServer({ name: 'beta' });
  const echo = net.createServer((socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const echoPort = (echo.address() as net.AddressInfo).port;

  const config = parseConfig(
    {
      workers: 1,
      logLevel: process.env.POLYPROXY_LOG_LEVEL ?? 'info',
      shutdownTimeoutSeconds: 2,
      security: { allowBackends: ['127.0.0.0/8'] },
      admin: { host: '127.0.0.1', port: ADMIN_PORT },
      routes: {
        alpha: `127.0.0.1:${alpha.port}`,
        beta: `127.0.0.1:${beta.port}`,
        '*.tenants': [`127.0.0.1:${alpha.port}`, `127.0.0.1:${beta.port}`],
      },
      listeners: [
        { name: 'pg', protocol: 'postgres', host: '127.0.0.1', port: PG_PORT },
        { name: 'echo', protocol: 'tcp', host: '127.0.0.1', port: TCP_PORT, backend: `127.0.0.1:${echoPort}` },
      ],
    },
    process.cwd(),
    'demo',
  );
  const running = await run(config, { reload: null });
  const pg = running.bound.find((b) => b.name === 'pg');
  const tcp = running.bound.find((b) => b.name === 'echo');
  process.stderr.write(`
polyproxy demo is running (Ctrl-C to stop).

Dashboard: http://127.0.0.1:${running.admin?.port}/   (metrics at /metrics, JSON at /api/stats)

PostgreSQL on 127.0.0.1:${pg?.port}: databases "alpha" and "beta" route to two different
demo backends, "*.tenants" is balanced over both, anything else is refused.
  psql "host=127.0.0.1 port=${pg?.port} user=demo dbname=alpha" -c "select current_database()"
  psql "host=127.0.0.1 port=${pg?.port} user=demo dbname=beta"  -c "select 'hi'"
  psql "host=127.0.0.1 port=${pg?.port} user=demo dbname=x.tenants" -c "select 'which backend?'"   # twice: one backend, then the other
  psql "host=127.0.0.1 port=${pg?.port} user=demo dbname=nope"   # refused: FATAL: database "nope" is not routed (SQLSTATE 3D000)
  node -e "const c=new (require('pg').Client)('postgres://demo@127.0.0.1:${pg?.port}/alpha');c.connect().then(()=>c.query('select 1')).then(r=>{console.log(r.rows);c.end()})"

TCP echo on 127.0.0.1:${tcp?.port}:
  node -e "const s=require('net').connect(${tcp?.port},'127.0.0.1',()=>s.end('hello\\n'));s.pipe(process.stdout)"

Logs (JSON) follow on stdout; each closed session prints its bytes and duration.
`);
  return -1;
}
