// A logging-channel proxy for tests that cuts a connection at one chosen frame of the source: it forwards
// the source's frames one by one (src/protocol/frame.ts: a 20-byte header, the payload, a CRC trailer on
// HELLO and AUTH, an HMAC trailer otherwise) until `hits` says the next frame is the one; that frame and
// everything after it are dropped. Then the connection is destroyed on both sides (`reset`) or left open
// with nothing forwarded either way (`stall`: a cut cable). Connections after the first pass whole
// (`later: 'pass'`) or, once the cut happened, carry nothing at all (`later: 'blocked'`: a partition that
// lasts).
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { CRC_TRAILER_BYTES, HEADER_BYTES, HMAC_TRAILER_BYTES, OFF_LENGTH, OFF_TYPE } from '../../src/protocol/frame.js';
import { MessageType } from '../../src/protocol/messages.js';

/**
 * Splits a logging-channel byte stream into whole frames: `onFrame` gets each frame's type, payload and
 * bytes (header and trailer included); returning false stops the splitter for good (later bytes are
 * dropped).
 */
export function frameSplitter(onFrame: (type: number, payload: Buffer, whole: Buffer) => boolean | void): (d: Buffer) => void {
  let pending = Buffer.alloc(0);
  let stopped = false;
  return (d) => {
    if (stopped) return;
    pending = Buffer.concat([pending, d]);
    while (pending.length >= HEADER_BYTES) {
      const type = pending[OFF_TYPE]!;
      const length = pending.readUInt32BE(OFF_LENGTH);
      const trailer = type === MessageType.HELLO || type === MessageType.AUTH ? CRC_TRAILER_BYTES : HMAC_TRAILER_BYTES;
      const size = HEADER_BYTES + length + trailer;
      if (pending.length < size) return;
      if (onFrame(type, pending.subarray(HEADER_BYTES, HEADER_BYTES + length), pending.subarray(0, size)) === false) {
        stopped = true;
        return;
      }
      pending = pending.subarray(size);
    }
  };
}

export interface CuttingProxyOptions {
  /** Whether the source's next frame (its type and payload) is the one to cut at. */
  hits: (type: number, payload: Buffer) => boolean;
  how?: 'reset' | 'stall';
  later?: 'pass' | 'blocked';
}

export interface CuttingProxy {
  port: number;
  /** The cut happened. */
  cut: () => boolean;
  /** Connections taken so far. */
  connections: () => number;
  close: () => void;
}

export async function cuttingProxy(source: { host: string; port: number }, o: CuttingProxyOptions): Promise<CuttingProxy> {
  const how = o.how ?? 'reset';
  const later = o.later ?? 'pass';
  const sockets = new Set<Socket>();
  let cut = false;
  let connections = 0;
  const server = createServer((fromTarget) => {
    const first = ++connections === 1;
    const toSource = connect(source.port, source.host);
    sockets.add(fromTarget).add(toSource);
    for (const s of [fromTarget, toSource]) s.on('error', () => undefined);
    // Nothing crosses a connection that is cut, nor (blocked) any connection after the cut.
    const blocked = () => cut && (first || later === 'blocked');
    fromTarget.on('data', (d: Buffer) => {
      if (!blocked()) toSource.write(d);
    });
    // A close crosses too, except through a lasting partition.
    const partitioned = () => cut && later === 'blocked';
    fromTarget.on('close', () => {
      if (!partitioned()) toSource.destroy();
    });
    toSource.on('close', () => {
      if (!partitioned()) fromTarget.destroy();
    });
    if (!first) {
      toSource.on('data', (d: Buffer) => {
        if (!blocked()) fromTarget.write(d);
      });
      return;
    }
    toSource.on('data', frameSplitter((type, payload, whole) => {
      if (o.hits(type, payload)) {
        cut = true;
        if (how === 'reset') {
          fromTarget.destroy();
          toSource.destroy();
        }
        return false;
      }
      fromTarget.write(whole);
      return true;
    }));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    cut: () => cut,
    connections: () => connections,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
