/** Binds a listening server the way every listener does (shared with sibling workers when reusePort). */
import type { AddressInfo, Server } from 'node:net';

export function listenServer(server: Server, host: string, port: number, reusePort: boolean): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, reusePort, backlog: 4096 }, () => {
      server.removeListener('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
