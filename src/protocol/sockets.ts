import { Dealer, Router } from 'zeromq';
import { decode, encode } from './codec.js';

/** The only place that touches zeromq. Both endpoints serialize sends (zeromq v6 allows one send in progress). */

export interface Incoming {
  /** Routing id of the sender (router side only; '' on a dealer). */
  peer: string;
  header: { k: string } & Record<string, unknown>;
  payloads: Buffer[];
}

export interface SocketLimits {
  /** Largest message accepted, bytes; bigger ones are dropped by ZeroMQ itself. Default 256 MiB. */
  maxMessageBytes?: number;
}

const DEFAULT_MAX_MESSAGE = 256 * 1024 * 1024;

type Frames = Array<Buffer | string>;

/** Queues outgoing multipart messages and sends them one at a time. */
class Outbox {
  private queue: Frames[] = [];
  private sending = false;
  private closed = false;
  constructor(
    private readonly sendFn: (frames: Frames) => Promise<void>,
    private readonly onError: (err: unknown) => void,
  ) {}

  push(frames: Frames): void {
    if (this.closed) return;
    this.queue.push(frames);
    if (!this.sending) void this.flush();
  }

  get size(): number {
    return this.queue.length;
  }

  close(): void {
    this.closed = true;
    this.queue = [];
  }

  private async flush(): Promise<void> {
    this.sending = true;
    try {
      while (this.queue.length > 0 && !this.closed) {
        const frames = this.queue.shift()!;
        try {
          await this.sendFn(frames);
        } catch (err) {
          if (this.closed) return;
          this.onError(err);
        }
      }
    } finally {
      this.sending = false;
    }
  }
}

/** Decodes one multipart message; returns an error string for garbage. */
function parse(frames: Buffer[], withPeer: boolean): Incoming | string {
  const peer = withPeer ? frames[0]!.toString('utf8') : '';
  const rest = withPeer ? frames.slice(1) : frames;
  if (rest.length === 0) return 'empty message';
  let header: unknown;
  try {
    header = decode(rest[0]!);
  } catch (err) {
    return `undecodable header (${(err as Error).message})`;
  }
  if (header === null || typeof header !== 'object' || typeof (header as { k?: unknown }).k !== 'string') {
    return 'header is not a message';
  }
  return { peer, header: header as Incoming['header'], payloads: rest.slice(1) };
}

/** Decoded messages until the socket closes; garbage is counted and reported, never thrown. */
async function* receive(
  socket: Router | Dealer,
  withPeer: boolean,
  countGarbage: () => void,
  onError: (what: string, err: unknown) => void,
): AsyncGenerator<Incoming> {
  try {
    for await (const frames of socket) {
      const msg = parse(frames, withPeer);
      if (typeof msg === 'string') {
        countGarbage();
        onError('receive', new Error(msg));
        continue;
      }
      yield msg;
    }
  } catch (err) {
    if (!socket.closed) throw err;
  }
}

export class RouterEndpoint {
  private readonly socket: Router;
  private readonly outbox: Outbox;
  /** Count of messages that could not be decoded (garbage on the socket). */
  garbage = 0;

  constructor(private readonly onError: (what: string, err: unknown) => void, limits: SocketLimits = {}) {
    this.socket = new Router({
      mandatory: false,
      handover: true,
      linger: 200,
      sendHighWaterMark: 200_000,
      receiveHighWaterMark: 200_000,
      maxMessageSize: limits.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
    });
    this.outbox = new Outbox((f) => this.socket.send(f), (err) => onError('send', err));
  }

  /** Binds `tcp://host:port` (port 0 = OS-assigned) and returns the actual port. */
  async bind(host: string, port: number): Promise<number> {
    await this.socket.bind(`tcp://${host}:${port}`);
    const endpoint = this.socket.lastEndpoint ?? '';
    return Number(endpoint.slice(endpoint.lastIndexOf(':') + 1));
  }

  send(peer: string, header: object, ...payloads: Buffer[]): void {
    this.outbox.push([peer, encode(header), ...payloads]);
  }

  /** Yields decoded messages until the socket closes; garbage is counted and reported, never thrown. */
  messages(): AsyncGenerator<Incoming> {
    return receive(this.socket, true, () => this.garbage++, this.onError);
  }

  close(): void {
    this.outbox.close();
    if (!this.socket.closed) this.socket.close();
  }
}

export class DealerEndpoint {
  private readonly socket: Dealer;
  private readonly outbox: Outbox;
  garbage = 0;

  constructor(
    routingId: string,
    private readonly onError: (what: string, err: unknown) => void,
    limits: SocketLimits = {},
  ) {
    this.socket = new Dealer({
      routingId,
      linger: 200,
      sendHighWaterMark: 100_000,
      receiveHighWaterMark: 100_000,
      reconnectInterval: 100,
      reconnectMaxInterval: 1000,
      maxMessageSize: limits.maxMessageBytes ?? DEFAULT_MAX_MESSAGE,
    });
    this.outbox = new Outbox((f) => this.socket.send(f), (err) => onError('send', err));
  }

  connect(address: string): void {
    this.socket.connect(address.startsWith('tcp://') ? address : `tcp://${address}`);
  }

  send(header: object, ...payloads: Buffer[]): void {
    this.outbox.push([encode(header), ...payloads]);
  }

  get pendingSends(): number {
    return this.outbox.size;
  }

  messages(): AsyncGenerator<Incoming> {
    return receive(this.socket, false, () => this.garbage++, this.onError);
  }

  close(): void {
    this.outbox.close();
    if (!this.socket.closed) this.socket.close();
  }
}
