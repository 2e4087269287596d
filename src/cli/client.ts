import crypto from 'node:crypto';
import { TransportError, RezinaError, type Diagnostic } from '../errors.js';
import { DealerEndpoint } from '../protocol/sockets.js';

/** Sends one request to a master and waits for the answer. */
export async function request(master: string, command: string, args: Record<string, unknown> = {}, timeoutMs = 10_000): Promise<unknown> {
  const socket = new DealerEndpoint(`c:${crypto.randomBytes(6).toString('hex')}`, () => {});
  socket.connect(master);
  const id = 1;
  socket.send({ k: 'c.request', id, command, args });
  const timer = setTimeout(() => socket.close(), timeoutMs);
  try {
    for await (const msg of socket.messages()) {
      const h = msg.header as { k: string; id?: number; ok?: boolean; result?: unknown; error?: string; code?: string; diagnostics?: Diagnostic[] };
      if (h.k !== 'c.response' || h.id !== id) continue;
      if (h.ok) return h.result;
      const err = new RezinaError(h.code ?? 'E_MASTER', h.error ?? 'the master refused the request', { exitCode: ['E_CONFIG', 'E_USAGE', 'E_NOT_FOUND', 'E_CONFLICT'].includes(h.code ?? '') ? 2 : 1 });
      (err as RezinaError & { diagnostics?: Diagnostic[] }).diagnostics = h.diagnostics;
      throw err;
    }
    throw new TransportError(`no answer from the master at ${master} within ${timeoutMs / 1000} s (is \`rezina master\` running there?)`);
  } finally {
    clearTimeout(timer);
    socket.close();
  }
}
