/**
 * `getJson(url)` for tens of thousands of concurrent GETs from one process.
 *
 * Why not node:http's Agent: on a 2-core machine, with 15,000 kept-alive
 * requests in flight, http.get + Agent costs about 0.16 ms of CPU and 45 KB
 * of memory per request (and Agent looks sockets up by linear search, so it
 * gets slower the more sockets it holds); this client, plain HTTP/1.1 over
 * node:net with a socket pool, costs about 0.05 ms and 15 KB. `https:` URLs
 * go through node:https with a keep-alive Agent (the real Open-Meteo; speed
 * there is the network's).
 *
 * HTTP handled: status line, headers, bodies by Content-Length, chunked or
 * until close; 1xx interim answers skipped; `Connection: close` honoured.
 * One request per connection at a time (no pipelining). A kept-alive
 * connection the server closed just as it was reused is retried once on a
 * fresh connection (GET is idempotent).
 */
import net from 'node:net';
import https from 'node:https';
import { readFileSync } from 'node:fs';

export interface GetJsonOptions {
  /** Give up after this many ms (connect + answer). Default 10000. */
  timeoutMs?: number;
  /** Abort early. */
  signal?: AbortSignal;
}

export interface HttpJsonClientOptions {
  /**
   * Most sockets open at once, over all origins; further requests wait for a
   * free one. Default: REZINA_HTTP_MAX_SOCKETS, else the process's open-file
   * limit minus 1024 (Linux), else unlimited.
   */
  maxSockets?: number;
  /**
   * Most connections being established at once; more wait for one to
   * complete. A burst of thousands of connects overflows the server's accept
   * queue (Linux: net.core.somaxconn, often 4096), and each connect dropped
   * there costs a 1 s, then 3 s, then 7 s SYN retry. Default 256.
   */
  maxConnecting?: number;
  /** An idle kept-alive socket is closed after this many ms. Default 60000. */
  idleTimeoutMs?: number;
  /** Larger answers fail. Default 1 MiB. */
  maxBodyBytes?: number;
}

/** The server answered with a non-2xx status. */
export class HttpStatusError extends Error {
  readonly status: number;
  /** The first 200 characters of the answer's body. */
  readonly body: string;
  readonly url: string;
  constructor(status: number, body: string, url: string) {
    super(`${url} answered ${status}: ${body.slice(0, 200)}`);
    this.name = 'HttpStatusError';
    this.status = status;
    this.body = body.slice(0, 200);
    this.url = url;
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const MAX_HEAD_BYTES = 64 * 1024;
const CRLFCRLF = Buffer.from('\r\n\r\n');

interface Response {
  status: number;
  body: Buffer;
}

/** One request waiting for or using a connection. */
interface Exchange {
  readonly path: string;
  readonly hostHeader: string;
  readonly resolve: (r: Response) => void;
  readonly reject: (e: Error) => void;
  /** The connection carrying it, while it is carried. */
  conn: Connection | null;
  /** The caller gave up (timeout, abort): never send it, drop the connection carrying it. */
  abandoned: boolean;
  /** Already sent again after a kept-alive connection broke under it. */
  retried: boolean;
}

/** A kept-alive socket and the parser state of the answer it is reading. */
class Connection {
  readonly socket: net.Socket;
  readonly pool: Pool;
  exchange: Exchange | null = null;
  /** Requests this socket has carried, the current one included; > 1 means it was reused, which allows one retry. */
  uses = 0;
  dead = false;
  /** True once any byte of the current answer arrived (no retry after that). */
  answered = false;
  private chunks: Buffer[] = [];
  private bytes = 0;
  private status = 0;
  /** Bytes of body expected; -1 = read until close; -2 = chunked. */
  private bodyLength = -1;
  private bodyStart = -1;
  private keepAlive = true;
  private error: Error | null = null;
  private connecting = true;

  constructor(pool: Pool) {
    this.pool = pool;
    this.socket = net.connect({ host: pool.host, port: pool.port, noDelay: true });
    this.socket.once('connect', () => {
      this.connecting = false;
      this.pool.client.connectDone();
    });
    this.socket.on('data', (chunk: Buffer) => this.onData(chunk));
    this.socket.on('error', (err) => {
      this.error = err;
    });
    this.socket.on('timeout', () => this.socket.destroy()); // only armed while idle
    this.socket.on('close', () => this.onClose());
  }

  send(exchange: Exchange): void {
    this.exchange = exchange;
    exchange.conn = this;
    this.answered = false;
    this.uses++;
    this.socket.ref();
    this.socket.setTimeout(0);
    this.socket.write(
      `GET ${exchange.path} HTTP/1.1\r\nHost: ${exchange.hostHeader}\r\nAccept: application/json\r\nUser-Agent: rezina-examples\r\n\r\n`,
    );
  }

  /** Back to the pool: does not keep the process alive, closes itself when idle too long. */
  park(): void {
    this.socket.unref();
    this.socket.setTimeout(this.pool.client.idleTimeoutMs);
  }

  private onData(chunk: Buffer): void {
    if (!this.exchange) {
      // Bytes nobody asked for: the connection is out of step.
      this.socket.destroy();
      return;
    }
    this.answered = true;
    this.chunks.push(chunk);
    this.bytes += chunk.length;
    this.parse();
  }

  private parse(): void {
    for (;;) {
      let buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.bytes);
      this.chunks = [buf];
      if (this.bodyStart < 0) {
        const end = buf.indexOf(CRLFCRLF);
        if (end < 0) {
          if (buf.length > MAX_HEAD_BYTES) this.fail(new Error('answer head too large'));
          return;
        }
        if (!this.readHead(buf.toString('latin1', 0, end))) return;
        if (this.status < 200) {
          // 1xx interim answer: drop it and read the real one.
          buf = buf.subarray(end + 4);
          this.chunks = [buf];
          this.bytes = buf.length;
          this.bodyStart = -1;
          continue;
        }
        this.bodyStart = end + 4;
      }
      const body = buf.subarray(this.bodyStart);
      if (body.length > this.pool.client.maxBodyBytes + (this.bodyLength === -2 ? 64 * 1024 : 0)) {
        this.fail(new Error(`answer over ${this.pool.client.maxBodyBytes} bytes`));
        return;
      }
      if (this.bodyLength >= 0) {
        if (body.length < this.bodyLength) return;
        if (body.length > this.bodyLength) {
          this.fail(new Error('server sent more than Content-Length'));
          return;
        }
        this.finish(body);
      } else if (this.bodyLength === -2) {
        const decoded = decodeChunked(body);
        if (decoded === 'incomplete') return;
        if (decoded === 'invalid') {
          this.fail(new Error('malformed chunked answer'));
          return;
        }
        this.finish(decoded);
      }
      // bodyLength -1: the body ends when the socket closes (onClose).
      return;
    }
  }

  /** @returns false when the head was invalid (and the exchange failed). */
  private readHead(head: string): boolean {
    const m = /^HTTP\/1\.([01]) (\d{3})/.exec(head);
    if (!m) {
      this.fail(new Error(`malformed answer: ${JSON.stringify(head.slice(0, 60))}`));
      return false;
    }
    this.status = Number(m[2]);
    this.keepAlive = m[1] === '1';
    this.bodyLength = this.status === 204 || this.status === 304 ? 0 : -1;
    let start = head.indexOf('\r\n');
    while (start !== -1) {
      const next = head.indexOf('\r\n', start + 2);
      const line = head.slice(start + 2, next === -1 ? undefined : next);
      start = next;
      const colon = line.indexOf(':');
      if (colon <= 0) continue;
      const name = line.slice(0, colon).trim().toLowerCase();
      if (name === 'content-length') {
        const n = Number(line.slice(colon + 1).trim());
        if (!Number.isSafeInteger(n) || n < 0) {
          this.fail(new Error('malformed Content-Length'));
          return false;
        }
        if (this.bodyLength !== -2) this.bodyLength = n;
      } else if (name === 'transfer-encoding') {
        if (/\bchunked\b/i.test(line.slice(colon + 1))) this.bodyLength = -2;
      } else if (name === 'connection') {
        const value = line.slice(colon + 1).toLowerCase();
        if (/\bclose\b/.test(value)) this.keepAlive = false;
        else if (/\bkeep-alive\b/.test(value)) this.keepAlive = true;
      }
    }
    if (this.bodyLength === -1) this.keepAlive = false;
    return true;
  }

  private finish(body: Buffer): void {
    const exchange = this.exchange!;
    const status = this.status;
    this.reset();
    if (this.keepAlive && !this.dead) this.pool.release(this);
    else this.socket.destroy();
    exchange.resolve({ status, body });
  }

  private fail(err: Error): void {
    const exchange = this.exchange;
    this.reset();
    this.dead = true;
    this.socket.destroy();
    exchange?.reject(err);
  }

  /** The caller of the current exchange gave up: its answer can no longer be matched, so the socket goes. */
  abandon(): void {
    this.reset();
    this.dead = true;
    this.socket.destroy();
  }

  private reset(): void {
    if (this.exchange) this.exchange.conn = null;
    this.exchange = null;
    this.chunks = [];
    this.bytes = 0;
    this.bodyStart = -1;
    this.status = 0;
  }

  private onClose(): void {
    const wasDead = this.dead;
    this.dead = true;
    const exchange = this.exchange;
    if (exchange && !wasDead) {
      if (this.bodyStart >= 0 && this.bodyLength === -1) {
        // Body delimited by the close: this is its end.
        const buf = Buffer.concat(this.chunks, this.bytes).subarray(this.bodyStart);
        const status = this.status;
        this.reset();
        exchange.resolve({ status, body: buf });
      } else {
        this.reset();
        this.pool.onBroken(this, exchange, this.error);
      }
    }
    if (this.connecting) {
      this.connecting = false;
      this.pool.client.connectDone();
    }
    this.pool.client.freeSocketSlot();
  }
}

/** Sockets to one host:port, and the requests waiting for one. */
class Pool {
  readonly client: HttpJsonClient;
  readonly host: string;
  readonly port: number;
  /** Idle connections, most recently used last (LIFO keeps the warm ones warm). */
  private idle: Connection[] = [];
  /** Requests waiting for a connection, FIFO (array + head index: O(1) shift). */
  private queue: Exchange[] = [];
  private queueHead = 0;

  constructor(client: HttpJsonClient, host: string, port: number) {
    this.client = client;
    this.host = host;
    this.port = port;
  }

  /** Send on an idle connection, else on a new one if a socket slot is free, else queue. */
  dispatch(exchange: Exchange): void {
    let conn: Connection | undefined;
    while ((conn = this.idle.pop()) && conn.dead) {
      // closed while idle
    }
    if (conn) conn.send(exchange);
    else this.sendFresh(exchange, false);
  }

  /** On a new connection if a slot is free, else queued (first when `urgent`). */
  private sendFresh(exchange: Exchange, urgent: boolean): void {
    if (this.client.takeSocketSlot()) {
      new Connection(this).send(exchange);
      return;
    }
    if (urgent && this.queueHead > 0) this.queue[--this.queueHead] = exchange;
    else if (urgent) this.queue.unshift(exchange);
    else this.queue.push(exchange);
    this.client.waitForSlot(this);
  }

  /** The oldest queued request whose caller still waits, if any. */
  nextQueued(): Exchange | undefined {
    while (this.queueHead < this.queue.length) {
      const exchange = this.queue[this.queueHead];
      this.queue[this.queueHead++] = undefined as unknown as Exchange;
      if (this.queueHead > 1024 && this.queueHead * 2 > this.queue.length) {
        this.queue = this.queue.slice(this.queueHead);
        this.queueHead = 0;
      }
      if (!exchange.abandoned) return exchange;
    }
    return undefined;
  }

  /** A connection finished an answer and may be kept. */
  release(conn: Connection): void {
    const next = this.nextQueued();
    if (next) {
      conn.send(next);
      return;
    }
    if (this.client.othersWaitForSlot(this)) {
      // Another origin waits for a socket slot: this connection's goes to it.
      conn.dead = true;
      conn.socket.destroy();
      return;
    }
    conn.park();
    this.idle.push(conn);
  }

  /** A connection closed or failed before the answer to `exchange` was complete. */
  onBroken(conn: Connection, exchange: Exchange, error: Error | null): void {
    if (exchange.abandoned) return;
    if (conn.uses > 1 && !conn.answered && !exchange.retried) {
      // The server closed a kept-alive connection just as we reused it: once more, on a new one.
      exchange.retried = true;
      this.sendFresh(exchange, true);
      return;
    }
    exchange.reject(error ?? new Error(`connection to ${this.host}:${this.port} closed before the answer`));
  }

  closeIdle(): void {
    for (const conn of this.idle) conn.socket.destroy();
    this.idle = [];
  }
}

/** A GET-JSON client with kept-alive socket pools; one per process is the intent. */
export class HttpJsonClient {
  readonly maxSockets: number;
  readonly maxConnecting: number;
  readonly idleTimeoutMs: number;
  readonly maxBodyBytes: number;
  private readonly pools = new Map<string, Pool>();
  private open = 0;
  private connecting = 0;
  /** Pools with requests queued for lack of a socket slot, in the order they started waiting. */
  private readonly waitingPools = new Set<Pool>();
  private readonly httpsAgent: https.Agent;

  constructor(options: HttpJsonClientOptions = {}) {
    this.maxSockets = options.maxSockets ?? defaultMaxSockets();
    this.maxConnecting = options.maxConnecting ?? 256;
    this.idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
    this.maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    this.httpsAgent = new https.Agent({ keepAlive: true, maxSockets: this.maxSockets, timeout: this.idleTimeoutMs });
  }

  /**
   * GET `url` and parse the answer as JSON. Rejects with `HttpStatusError`
   * on a non-2xx answer, and with an Error on a timeout, abort, refused or
   * broken connection, or an answer that is not JSON.
   */
  async getJson(url: string, options: GetJsonOptions = {}): Promise<unknown> {
    const u = new URL(url);
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    let res: Response;
    if (u.protocol === 'http:') {
      res = await this.viaPool(u, timeoutMs, options.signal);
    } else if (u.protocol === 'https:') {
      res = await this.viaHttps(u, timeoutMs, options.signal);
    } else {
      throw new Error(`unsupported URL scheme ${JSON.stringify(u.protocol)} in ${url}`);
    }
    const text = res.body.toString('utf8');
    if (res.status < 200 || res.status > 299) throw new HttpStatusError(res.status, text, url);
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`${url} answered with invalid JSON: ${text.slice(0, 200)}`);
    }
  }

  /** Close every idle socket now (sockets in use close when their answer is in). */
  closeIdle(): void {
    for (const pool of this.pools.values()) pool.closeIdle();
  }

  private viaPool(u: URL, timeoutMs: number, signal: AbortSignal | undefined): Promise<Response> {
    const host = u.hostname.startsWith('[') ? u.hostname.slice(1, -1) : u.hostname;
    const port = u.port ? Number(u.port) : 80;
    const key = `${host}:${port}`;
    let pool = this.pools.get(key);
    if (!pool) {
      pool = new Pool(this, host, port);
      this.pools.set(key, pool);
    }
    const target = pool;
    return new Promise<Response>((resolve, reject) => {
      if (signal?.aborted) return reject(abortError(signal));
      let settled = false;
      const done = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        return true;
      };
      const exchange: Exchange = {
        path: `${u.pathname}${u.search}`,
        hostHeader: u.host,
        resolve: (r) => done() && resolve(r),
        reject: (e) => done() && reject(e),
        conn: null,
        abandoned: false,
        retried: false,
      };
      // A timeout or abort kills the socket carrying the request (a server
      // that does not answer would hold it forever); a request still queued
      // just never gets sent.
      const giveUp = (err: Error): void => {
        if (!done()) return;
        exchange.abandoned = true;
        exchange.conn?.abandon();
        reject(err);
      };
      const timer = setTimeout(() => giveUp(new Error(`GET ${u.href} timed out after ${timeoutMs} ms`)), timeoutMs);
      const onAbort = (): void => giveUp(abortError(signal!));
      signal?.addEventListener('abort', onAbort, { once: true });
      target.dispatch(exchange);
    });
  }

  private viaHttps(u: URL, timeoutMs: number, signal: AbortSignal | undefined): Promise<Response> {
    return new Promise((resolve, reject) => {
      const req = https.get(u, { agent: this.httpsAgent, signal, headers: { accept: 'application/json' } }, (res) => {
        const chunks: Buffer[] = [];
        let bytes = 0;
        res.on('data', (chunk: Buffer) => {
          bytes += chunk.length;
          if (bytes > this.maxBodyBytes) req.destroy(new Error(`answer over ${this.maxBodyBytes} bytes`));
          else chunks.push(chunk);
        });
        res.on('end', () => {
          clearTimeout(timer);
          resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) });
        });
        res.on('error', () => {}); // reported through req
      });
      const timer = setTimeout(() => req.destroy(new Error(`GET ${u.href} timed out after ${timeoutMs} ms`)), timeoutMs);
      req.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
  }

  /** @internal Count a new socket, if the limits allow one now. */
  takeSocketSlot(): boolean {
    if (this.open >= this.maxSockets || this.connecting >= this.maxConnecting) return false;
    this.open++;
    this.connecting++;
    return true;
  }

  /** @internal `pool` has queued requests and wants a new socket when the limits allow. */
  waitForSlot(pool: Pool): void {
    this.waitingPools.add(pool);
  }

  /** @internal */
  othersWaitForSlot(pool: Pool): boolean {
    return this.waitingPools.size > (this.waitingPools.has(pool) ? 1 : 0);
  }

  /** @internal A socket finished connecting (or failed to). */
  connectDone(): void {
    this.connecting--;
    this.pump();
  }

  /** @internal A socket closed. */
  freeSocketSlot(): void {
    this.open--;
    this.pump();
  }

  /** Open sockets for queued requests while the limits allow, pools taking turns. */
  private pump(): void {
    while (this.waitingPools.size > 0 && this.open < this.maxSockets && this.connecting < this.maxConnecting) {
      const pool: Pool = this.waitingPools.values().next().value!;
      this.waitingPools.delete(pool);
      const next = pool.nextQueued();
      if (!next) continue;
      this.waitingPools.add(pool); // to the back of the line; dropped once its queue is empty
      this.open++;
      this.connecting++;
      new Connection(pool).send(next);
    }
  }
}

function abortError(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  return reason instanceof Error ? reason : new Error('request aborted');
}

/**
 * Decode a complete chunked body, or say it is not complete yet.
 * Trailers are skipped.
 */
function decodeChunked(buf: Buffer): Buffer | 'incomplete' | 'invalid' {
  const parts: Buffer[] = [];
  let pos = 0;
  for (;;) {
    const lineEnd = buf.indexOf('\r\n', pos);
    if (lineEnd < 0) return 'incomplete';
    const sizeText = buf.toString('latin1', pos, lineEnd).split(';')[0].trim();
    if (!/^[0-9a-fA-F]+$/.test(sizeText)) return 'invalid';
    const size = parseInt(sizeText, 16);
    if (size === 0) {
      // Trailers end with an empty line.
      const end = buf.indexOf(CRLFCRLF, lineEnd);
      const bare = buf.length >= lineEnd + 4 && buf[lineEnd + 2] === 13 && buf[lineEnd + 3] === 10;
      if (!bare && end < 0) return 'incomplete';
      return Buffer.concat(parts);
    }
    const dataStart = lineEnd + 2;
    if (buf.length < dataStart + size + 2) return 'incomplete';
    parts.push(buf.subarray(dataStart, dataStart + size));
    pos = dataStart + size + 2;
  }
}

function defaultMaxSockets(): number {
  const fromEnv = Number(process.env.REZINA_HTTP_MAX_SOCKETS);
  if (Number.isInteger(fromEnv) && fromEnv > 0) return fromEnv;
  try {
    // Linux: "Max open files            20000                20000                files"
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = Number(line?.split(/\s{2,}/)[1]);
    // Leave room for the runtime's own descriptors (sockets to the master, logs, modules).
    if (Number.isInteger(soft) && soft > 0) return Math.max(64, soft - 1024);
  } catch {
    // not Linux: no known limit
  }
  return Infinity;
}
