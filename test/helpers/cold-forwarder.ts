/**
 * A resolver module (its source text) for cold-start tests of protocols
 * whose real server the test already runs: tenant `sleepyId` routes to a
 * port where nothing listens until its `wake()` is called; 300 ms later a
 * TCP forwarder to `targetPort` (the real server) comes up there. Tenant
 * `neverId` routes to a port that never wakes. Every other id passes to
 * the config's `routes` (the module answers null).
 */
export function coldResolverModule(options: { sleepyId: string; sleepyPort: number; targetPort: number; neverId: string; deadPort: number }): string {
  return `
import net from 'node:net';
let wakes = 0;
let server = null;
const sleepy = {
  endpoint: '127.0.0.1:${options.sleepyPort}',
  coldStart: {
    async wake() {
      wakes++;
      if (server !== null) return;
      setTimeout(() => {
        server = net.createServer((client) => {
          const backend = net.connect(${options.targetPort}, '127.0.0.1');
          client.on('error', () => backend.destroy());
          backend.on('error', () => client.destroy());
          client.pipe(backend).pipe(client);
        });
        server.listen(${options.sleepyPort}, '127.0.0.1');
      }, 300);
    },
  },
};
const never = { endpoint: '127.0.0.1:${options.deadPort}', coldStart: { async wake() {} } };
export default {
  resolve(id) {
    if (id === ${JSON.stringify(options.sleepyId)}) return sleepy;
    if (id === ${JSON.stringify(options.neverId)}) return never;
    return null;
  },
  stats() {
    return { wakes };
  },
};
`;
}
