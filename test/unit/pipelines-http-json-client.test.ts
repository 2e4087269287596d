/**
 * pipelines/lib/http-json-client.ts against small real servers on 127.0.0.1:
 * node:http ones (keep-alive, chunked, Connection: close) and raw node:net
 * ones for the answers node:http would never give (1xx, body until close,
 * a kept-alive socket closed under a request).
 */
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpJsonClient, HttpStatusError } from '../../pipelines/lib/http-json-client.js';

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const fn of cleanups.splice(0).reverse()) await fn();
});

interface Counted {
  url: string;
  /** Connections accepted so far. */
  connections: () => number;
  /** Most connections open at once. */
  peak: () => number;
}

/** A node:http server; `handler` answers; counts connections. */
async function httpServer(handler: http.RequestListener): Promise<Counted> {
  const server = http.createServer(handler);
  let connections = 0;
  let open = 0;
  let peak = 0;
  server.on('connection', (socket) => {
    connections++;
    peak = Math.max(peak, ++open);
    socket.on('close', () => open--);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, peak: () => peak };
}

/** A raw TCP server: `onRequest(socket, n)` is called for each request head, n counting per connection. */
async function rawServer(onRequest: (socket: net.Socket, n: number) => void): Promise<Counted> {
  const sockets = new Set<net.Socket>();
  let connections = 0;
  const server = net.createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buffered = '';
    let n = 0;
    socket.setEncoding('latin1');
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      let end;
      while ((end = buffered.indexOf('\r\n\r\n')) !== -1) {
        buffered = buffered.slice(end + 4);
        onRequest(socket, ++n);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.destroy();
      }),
  );
  const { port } = server.address() as net.AddressInfo;
  return { url: `http://127.0.0.1:${port}`, connections: () => connections, peak: () => 0 };
}

function newClient(options: ConstructorParameters<typeof HttpJsonClient>[0] = {}): HttpJsonClient {
  const client = new HttpJsonClient(options);
  cleanups.push(() => client.closeIdle());
  return client;
}

const json = (body: unknown, extra: Record<string, string> = {}): http.RequestListener => (_req, res) => {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...extra });
  res.end(text);
};

describe('HttpJsonClient', () => {
  it('reuses kept-alive connections', async () => {
    const server = await httpServer((req, res) => json({ path: req.url })(req, res));
    const client = newClient();
    for (let i = 0; i < 5; i++) expect(await client.getJson(`${server.url}/a?i=${i}`)).toEqual({ path: `/a?i=${i}` });
    expect(server.connections()).toBe(1);
    await Promise.all(Array.from({ length: 10 }, (_, i) => client.getJson(`${server.url}/b?i=${i}`)));
    const afterBurst = server.connections();
    expect(afterBurst).toBeLessThanOrEqual(10);
    await Promise.all(Array.from({ length: 10 }, (_, i) => client.getJson(`${server.url}/c?i=${i}`)));
    expect(server.connections()).toBe(afterBurst);
  });

  it('reads chunked answers and UTF-8 split anywhere', async () => {
    const server = await httpServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' }); // no length: node:http sends it chunked
      const bytes = Buffer.from(JSON.stringify({ unit: '°C', list: Array.from({ length: 300 }, (_, i) => i) }));
      for (let i = 0; i < bytes.length; i += 7) res.write(bytes.subarray(i, i + 7));
      res.end();
    });
    const client = newClient();
    const answer = (await client.getJson(server.url)) as { unit: string; list: number[] };
    expect(answer.unit).toBe('°C');
    expect(answer.list).toHaveLength(300);
    expect(await client.getJson(server.url)).toEqual(answer);
    expect(server.connections()).toBe(1);
  });

  it('does not reuse a connection the server closes', async () => {
    const server = await httpServer(json({ ok: true }, { connection: 'close' }));
    const client = newClient();
    expect(await client.getJson(server.url)).toEqual({ ok: true });
    expect(await client.getJson(server.url)).toEqual({ ok: true });
    expect(server.connections()).toBe(2);
  });

  it('skips 1xx answers and reads a body that ends with the connection', async () => {
    const server = await rawServer((socket) => {
      socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      socket.end('HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{"until":"close"}');
    });
    const client = newClient();
    expect(await client.getJson(server.url)).toEqual({ until: 'close' });
    expect(await client.getJson(server.url)).toEqual({ until: 'close' });
  });

  it('sends a request again, once, when a kept-alive connection was closed under it', async () => {
    // Answers the first request of each connection, hangs up on the second.
    const server = await rawServer((socket, n) => {
      if (n === 1) socket.write('HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{"n":1}\n');
      else socket.destroy();
    });
    const client = newClient();
    expect(await client.getJson(server.url)).toEqual({ n: 1 });
    expect(await client.getJson(server.url)).toEqual({ n: 1 });
    expect(server.connections()).toBe(2);
  });

  it('fails on a connection closed without an answer, when it was not a reuse', async () => {
    const server = await rawServer((socket) => socket.destroy());
    await expect(newClient().getJson(server.url)).rejects.toThrow(/closed before the answer|ECONNRESET/);
  });

  it('rejects non-2xx with HttpStatusError, and bodies that are not JSON', async () => {
    const server = await httpServer((req, res) => {
      if (req.url === '/text') {
        res.end('not json');
        return;
      }
      res.writeHead(503, { 'content-type': 'text/plain' });
      res.end('down for maintenance ' + 'x'.repeat(500));
    });
    const client = newClient();
    const err = await client.getJson(`${server.url}/x`).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(HttpStatusError);
    expect((err as HttpStatusError).status).toBe(503);
    expect((err as HttpStatusError).body).toMatch(/^down for maintenance x+$/);
    expect((err as HttpStatusError).body.length).toBe(200);
    await expect(client.getJson(`${server.url}/text`)).rejects.toThrow(/invalid JSON: not json/);
    await expect(client.getJson('ftp://127.0.0.1/')).rejects.toThrow(/unsupported URL scheme/);
  });

  it('refuses answers over maxBodyBytes', async () => {
    const server = await httpServer(json({ big: 'y'.repeat(5000) }));
    await expect(newClient({ maxBodyBytes: 1000 }).getJson(server.url)).rejects.toThrow(/over 1000 bytes/);
  });

  it('keeps to maxSockets, queueing the rest', async () => {
    const server = await httpServer((req, res) => setTimeout(() => json({ url: req.url })(req, res), 50));
    const client = newClient({ maxSockets: 2 });
    const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => client.getJson(`${server.url}/${i}`)));
    expect(answers).toEqual(Array.from({ length: 8 }, (_, i) => ({ url: `/${i}` })));
    expect(server.peak()).toBeLessThanOrEqual(2);
  });

  it('times out, frees the socket, and carries on', async () => {
    const server = await httpServer((req, res) => {
      if (req.url === '/hang') return; // never answers
      json({ ok: true })(req, res);
    });
    const client = newClient({ maxSockets: 1 });
    const hang = client.getJson(`${server.url}/hang`, { timeoutMs: 100 });
    const queued = client.getJson(`${server.url}/ok`, { timeoutMs: 2000 });
    await expect(hang).rejects.toThrow(/timed out after 100 ms/);
    expect(await queued).toEqual({ ok: true });
    // A request that times out while still queued is never sent.
    const hang2 = client.getJson(`${server.url}/hang`, { timeoutMs: 200 });
    const gaveUp = client.getJson(`${server.url}/never-sent`, { timeoutMs: 50 });
    await expect(gaveUp).rejects.toThrow(/timed out after 50 ms/);
    await expect(hang2).rejects.toThrow(/timed out/);
    expect(await client.getJson(`${server.url}/ok`)).toEqual({ ok: true });
  });

  it('stops on abort', async () => {
    const server = await httpServer(() => {});
    const client = newClient();
    const controller = new AbortController();
    const pending = client.getJson(server.url, { signal: controller.signal });
    setTimeout(() => controller.abort(new Error('user gave up')), 20);
    await expect(pending).rejects.toThrow('user gave up');
    await expect(client.getJson(server.url, { signal: AbortSignal.abort(new Error('already')) })).rejects.toThrow('already');
  });

  it('reports a refused connection', async () => {
    const server = await httpServer(json({}));
    const url = server.url;
    await cleanups.pop()!(); // close it
    await expect(newClient().getJson(url)).rejects.toThrow(/ECONNREFUSED/);
  });
});
