// The GDB remote server on TCP: one debugger connection at a time, framing (packet.ts) around a
// GdbSession. Binds only the address it is given; a peer that sends garbage gets error replies or
// `-`, and a peer that goes away ends the session like a kill.
import { EventEmitter } from 'node:events';
import { createServer, type Server, type Socket } from 'node:net';
import { ListenError } from '../errors.js';
import { PacketReader, encodePacket, encodeRunLength } from './packet.js';
import { GdbSession, type SessionEnd } from './session.js';
import type { DebugTarget } from './target.js';

export interface GdbServerEvents {
  /** A debugger connected (its address). */
  connect: [peer: string];
  /** The session ended: the debugger killed, detached, or closed the connection ('close'). */
  end: [how: SessionEnd | 'close'];
}

/**
 * Serves one DebugTarget to gdb. Start it with {@link listen}; it takes one connection, and further
 * ones are refused while a session is open.
 */
export class GdbServer extends EventEmitter<GdbServerEvents> {
  readonly #target: DebugTarget;
  readonly #server: Server;
  #socket: Socket | undefined;
  #ended = false;

  constructor(target: DebugTarget) {
    super();
    this.#target = target;
    this.#server = createServer((s) => this.#accept(s));
  }

  /** Listens on host:port (port 0: any free port); resolves with the port bound. */
  listen(host: string, port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const address = `${host}:${port}`;
        const code = err.code === 'EADDRINUSE' ? 'ERR_LOCKSTEP_LISTEN_IN_USE' : 'ERR_LOCKSTEP_LISTEN_FAILED';
        reject(new ListenError(code, 'the gdb server (--gdb)', address, `the gdb server cannot listen on ${address}: ${err.code ?? err.message}`, { cause: err }));
      };
      this.#server.once('error', onError);
      this.#server.listen({ host, port, exclusive: true }, () => {
        this.#server.off('error', onError);
        const a = this.#server.address();
        resolve(typeof a === 'object' && a ? a.port : port);
      });
    });
  }

  /** Stops listening and drops the connection. */
  close(): void {
    this.#server.close();
    this.#socket?.destroy();
  }

  #accept(socket: Socket): void {
    if (this.#socket || this.#ended) {
      socket.destroy();
      return;
    }
    this.#socket = socket;
    socket.setNoDelay(true);
    this.emit('connect', `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`);
    const session = new GdbSession(this.#target);
    const reader = new PacketReader();
    const queue: Uint8Array[] = [];
    let busy = false;
    let finished = false;
    const finish = (how: SessionEnd | 'close') => {
      if (finished) return;
      finished = true;
      this.#ended = true;
      this.#server.close();
      // A run in progress stops: nobody is left to see it.
      if (how === 'close') this.#target.interrupt();
      this.emit('end', how);
    };
    const send = (reply: string | Uint8Array) => {
      const body = typeof reply === 'string' ? encodeRunLength(new TextEncoder().encode(reply)) : reply;
      if (!socket.destroyed) socket.write(encodePacket(body));
    };
    const pump = async () => {
      if (busy) return;
      busy = true;
      while (queue.length > 0 && !finished) {
        const reply = await session.handle(queue.shift()!);
        if (reply !== undefined) send(reply);
        if (session.end) {
          const how = session.end;
          socket.end();
          finish(how);
        }
      }
      busy = false;
    };
    socket.on('data', (chunk: Buffer) => {
      for (const ev of reader.push(chunk)) {
        if (ev.kind === 'interrupt') session.interrupt();
        else if (ev.kind === 'bad') {
          if (!session.noAck) socket.write('-');
          else if (ev.reason === 'too-long') send('E01');
        } else if (ev.kind === 'packet') {
          if (!session.noAck) socket.write('+');
          queue.push(ev.data);
        }
      }
      void pump();
    });
    socket.on('error', () => socket.destroy());
    socket.on('close', () => finish('close'));
  }
}

/**
 * Serves `target` on host:port until the debugger kills, detaches or goes away. `onListening` gets the
 * port bound (useful with port 0); the promise resolves with how the session ended.
 */
export async function serveGdb(target: DebugTarget, host: string, port: number, onListening: (port: number) => void): Promise<SessionEnd | 'close'> {
  const server = new GdbServer(target);
  const ended = new Promise<SessionEnd | 'close'>((resolve) => server.once('end', resolve));
  const bound = await server.listen(host, port);
  onListening(bound);
  try {
    return await ended;
  } finally {
    server.close();
  }
}
