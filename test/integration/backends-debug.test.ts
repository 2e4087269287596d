import { it } from 'vitest';
import { createServer, type Socket, type AddressInfo } from 'node:net';
import { builtinBackends } from '../../src/backends/index.js';
import { silentLogger } from '../../src/log.js';
it('debug', async () => {
  const sockets = new Set<Socket>();
  const silent = createServer((s) => void sockets.add(s.on('error', () => undefined)));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as AddressInfo).port;
  const ctx = { typology: 't', processIndex: 0, mode: 'batch' as const, writeLine: () => undefined, log: silentLogger() };
  for (const [name, url] of [['postgres', `postgres://postgres@127.0.0.1:${port}/test`], ['mysql', `mysql://root@127.0.0.1:${port}/test`], ['redis', `redis://127.0.0.1:${port}`]]) {
    const b = await builtinBackends().get(name!)!({ url, table: 't' }, ctx);
    const t0 = performance.now();
    const e = await b.open().catch((e) => e);
    console.log(name, Math.round(performance.now() - t0), e?.message);
  }
  for (const s of sockets) s.destroy();
  silent.close();
}, 60000);
