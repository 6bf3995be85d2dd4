// A fault-injecting TCP proxy for tests: forwards 127.0.0.1:<port> to a target and can partition the
// link (stop forwarding in both directions without closing anything, as a cut cable or a dead switch
// would), heal it, or reset every connection.
import { createServer, connect, type Server, type Socket } from 'node:net';

export class TcpProxy {
  readonly #server: Server;
  readonly #pairs = new Set<{ a: Socket; b: Socket }>();
  #partitioned = false;
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
