// A fault-injecting TCP proxy for tests: forwards 127.0.0.1:<port> to a target and can partition the
// link (stop forwarding in both directions without closing anything, as a cut cable or a dead switch
// would), isolate it (not even a close gets through), heal it, or reset every connection.
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<{ a: Socket; b: Socket }>();
  #partitioned = false;
  #isolated = false;
  port = 0;
  /** Bytes that the partition swallowed. */
  dropped = 0;

  private constructor(server: Server) {
    this.#server = server;
  }

  static async start(targetHost: string, targetPort: number): Promise<TcpProxy> {
    let proxy!: TcpProxy;
    const server = createServer((a) => {
      const b = connect(targetPort, targetHost);
      const pair = { a, b };
      proxy.#pairs.add(pair);
      const pipe = (from: Socket, to: Socket) =>
        from.on('data', (d: Buffer) => {
          if (proxy.#partitioned) proxy.dropped += d.length;
          else to.write(d);
        });
      pipe(a, b);
      pipe(b, a);
      const end = () => {
        // Isolated: a close is not passed on either (the far side hears nothing, as across a cut cable).
        if (proxy.#isolated) return;
        proxy.#pairs.delete(pair);
        a.destroy();
        b.destroy();
      };
      a.on('close', end).on('error', end);
      b.on('close', end).on('error', end);
    });
    proxy = new TcpProxy(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    proxy.port = (server.address() as { port: number }).port;
    return proxy;
  }

  /** Silently drops everything in both directions from now on (connections stay open). */
  partition(): void {
    this.#partitioned = true;
  }
  /** As {@link partition}, and a close of either side is not passed on: the other side hears nothing at all. */
  isolate(): void {
    this.#partitioned = true;
    this.#isolated = true;
  }
  heal(): void {
    this.#partitioned = false;
  }
  /** Stops reading in both directions (nothing is lost: TCP back-pressure builds up) until {@link flow}. */
  stall(): void {
    for (const { a, b } of this.#pairs) {
      a.pause();
      b.pause();
    }
  }
  flow(): void {
    for (const { a, b } of this.#pairs) {
      a.resume();
      b.resume();
    }
  }
  /** Resets every proxied connection. */
  reset(): void {
    this.#isolated = false;
    for (const { a, b } of this.#pairs) {
      a.destroy();
      b.destroy();
    }
  }
  get connections(): number {
    return this.#pairs.size;
  }

  async close(): Promise<void> {
    this.reset();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
