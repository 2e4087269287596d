import type { Redis } from 'ioredis';
import type { Backend, BackendContext, BackendFactory } from './types.js';
import { BackendError, causeText, configError, encodeFailed, unreachable, writeFailed } from './backend-error.js';
import { toJson } from './json-line.js';
import { optionalString } from './options.js';
import { ConnectedBackend } from './connected-backend.js';

/**
 * Options of the `redis` bocca.
 * - `url` (default `redis://127.0.0.1:6379`): `redis://[user:pass@]host:port[/db]` or `rediss://…`.
 * - `key` (default `rezina:<typology>`): the list or stream written to.
 * - `type` (default `list`): `list` → RPUSH of JSON strings; `stream` → XADD key * data <json>.
 */
export interface RedisBackendOptions {
  readonly url: string;
  readonly key: string;
  readonly type: 'list' | 'stream';
}

const NAME = 'redis';
const DEFAULT_URL = 'redis://127.0.0.1:6379';
const CONNECT_TIMEOUT_MS = 5_000;
/** A command with no answer after this long fails the write instead of hanging it. */
const COMMAND_TIMEOUT_MS = 10_000;

/**
 * Items as JSON strings (json-line.ts encoding). A write(batch) is one RPUSH of
 * all items (atomic by itself) or one MULTI of XADDs. ioredis' own reconnect
 * loop and offline queue are off: a Redis that is down makes open/write throw
 * within the connect timeout, and the next write connects once again.
 */
export const createRedisBackend: BackendFactory = async (options, context: BackendContext): Promise<Backend> => {
  const type = optionalString(NAME, options, 'type') ?? 'list';
  if (type !== 'list' && type !== 'stream') throw configError(NAME, `option "type" must be "list" or "stream", got ${JSON.stringify(type)}`);
  const opts: RedisBackendOptions = {
    url: optionalString(NAME, options, 'url') ?? DEFAULT_URL,
    key: optionalString(NAME, options, 'key') ?? `rezina:${context.typology}`,
    type,
  };
  // Drivers load on first use: every stage process imports this registry, few of them write to Redis.
  const { Redis: RedisClient } = await import('ioredis');
  return new RedisBackend(opts, context, RedisClient);
};

class RedisBackend extends ConnectedBackend<Redis> {

  constructor(
    private readonly opts: RedisBackendOptions,
    private readonly context: BackendContext,
    private readonly RedisClient: typeof Redis,
  ) {
    super(NAME, whereOf(opts.url));
  }

  protected async end(client: Redis): Promise<void> {
    // QUIT lets the server answer what was sent before; disconnect if it cannot.
    await client.quit().catch(() => client.disconnect());
  }

  protected override usable(client: Redis): boolean {
    return client.status === 'ready';
  }

  protected override discard(client: Redis): void {
    client.disconnect();
  }

  protected async connect(): Promise<Redis> {
    const client = new this.RedisClient(this.opts.url, {
      lazyConnect: true,
      connectTimeout: CONNECT_TIMEOUT_MS,
      commandTimeout: COMMAND_TIMEOUT_MS,
      // No reconnect loop and no queue that grows while Redis is away: fail now, the stage runtime retries.
      retryStrategy: () => null,
      reconnectOnError: () => false,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      autoResubscribe: false,
    });
    // ioredis reports connection trouble as 'error' events; without a listener it prints them.
    client.on('error', (err: unknown) => this.context.log.debug({ err: causeText(err), backend: NAME, where: this.where }, 'backend connection error'));
    // connectTimeout covers only the TCP connect; a server that accepts and never answers the
    // ready check would hold connect() for much longer, so the whole handshake gets one deadline.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no answer within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    });
    try {
      await Promise.race([client.connect(), deadline]);
    } catch (err) {
      client.disconnect();
      throw unreachable(NAME, this.where, err);
    } finally {
      clearTimeout(timer);
    }
    this.current = client;
    return client;
  }

  protected async writeNow(items: readonly unknown[]): Promise<void> {
    let lines: string[];
    try {
      lines = items.map((item) => toJson(item));
    } catch (err) {
      throw encodeFailed(NAME, this.where, `an item cannot be written as JSON: ${causeText(err)}`, err);
    }
    const client = await this.connection();
    try {
      if (this.opts.type === 'list') {
        await client.rpush(this.opts.key, ...lines);
      } else {
        const multi = client.multi();
        for (const line of lines) multi.xadd(this.opts.key, '*', 'data', line);
        const results = await multi.exec();
        if (!results) throw new Error('transaction aborted');
        const failed = results.find(([err]) => err);
        if (failed) throw failed[0];
      }
    } catch (err) {
      throw this.failure(client, err);
    }
  }

  private failure(client: Redis, err: unknown): BackendError {
    if (err instanceof BackendError) return err;
    // A reply error (WRONGTYPE: the key holds another type, OOM…) comes from a live server.
    if (err instanceof Error && err.name === 'ReplyError' && client.status === 'ready') {
      const wrongType = err.message.startsWith('WRONGTYPE');
      return writeFailed(NAME, `${this.where} key ${JSON.stringify(this.opts.key)}`, err, !wrongType);
    }
    if (this.current === client) this.current = undefined;
    client.disconnect();
    return unreachable(NAME, this.where, err);
  }
}

/** host:port for messages, never the password. */
function whereOf(url: string): string {
  try {
    const u = new URL(url);
    return `${u.hostname || '127.0.0.1'}:${u.port || '6379'}`;
  } catch {
    return 'the configured url';
  }
}
