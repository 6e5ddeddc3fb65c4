/**
 * Raw TCP: no opening to read. Every connection is the listener's own
 * resource and goes to its fixed backend (balanced when it is a list).
 */
import type { ProtocolModule } from '../../core/protocol.ts';

export function createTcpProtocol(listenerName: string): ProtocolModule {
  const opening = { resourceId: listenerName, replay: null };
  return {
    name: 'tcp',
    identify: () => Promise.resolve(opening),
    // Raw TCP has no way to carry an error: close.
    encodeError: () => null,
  };
}
