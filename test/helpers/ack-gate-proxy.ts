// A logging-channel proxy for tests that makes a secondary stop acknowledging at a chosen point of the log:
// it forwards the primary's frames whole and reads them (src/protocol/frame.ts: a 20-byte header, the
// payload, a CRC trailer on HELLO and AUTH, an HMAC trailer otherwise); once a LOG frame's payload
// contains `marker` (log records carry a received frame's bytes as they are), nothing of the secondary
// reaches the primary any more (its ACKs, heartbeats and all), while the primary's frames still reach the
// secondary. The primary then holds every output from that batch on: the log behind them is at the
// secondary, the acknowledgement never arrives. `acknowledgedPast()` says whether the secondary has
// acknowledged (to the proxy) the frame with the marker, i.e. it holds that log. A close crosses both ways
// (the secondary hears of a SIGKILLed primary at once), after what was forwarded has been written.
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { MessageType } from '../../src/protocol/messages.js';
import { frameSplitter } from './cutting-proxy.js';

export interface AckGateProxy {
  port: number;
  /** A LOG frame with the marker went to the secondary; the secondary is not heard any more. */
  gated: () => boolean;
  /** The secondary acknowledged the LOG frame with the marker (the ACK was swallowed). */
  acknowledgedPast: () => boolean;
  close: () => void;
}

/** Byte offset of the first batch's lsn (u64, little-endian) in a LOG payload (native/log/event.h BatchLayout::kLsn). */
const BATCH_LSN = 8;


export async function ackGateProxy(primary: { host: string; port: number }, marker: Buffer): Promise<AckGateProxy> {
  const sockets = new Set<Socket>();
  let gatedAt: bigint | undefined; // the first batch lsn of the LOG frame with the marker
  let acked = false;
  const server = createServer((fromSecondary) => {
    const toPrimary = connect(primary.port, primary.host);
    sockets.add(fromSecondary).add(toPrimary);
    for (const s of [fromSecondary, toPrimary]) s.on('error', () => undefined);
    toPrimary.on(
      'data',
      frameSplitter((type, payload, whole) => {
        if (gatedAt === undefined && type === MessageType.LOG && payload.includes(marker)) gatedAt = payload.readBigUInt64LE(BATCH_LSN);
        fromSecondary.write(whole);
      }),
    );
    fromSecondary.on(
      'data',
      frameSplitter((type, payload, whole) => {
        if (gatedAt === undefined) {
          toPrimary.write(whole);
          return;
        }
        // ACK: u64 lsn (big-endian), the highest batch the secondary holds.
        if (type === MessageType.ACK && payload.readBigUInt64BE(0) >= gatedAt) acked = true;
      }),
    );
    fromSecondary.on('close', () => toPrimary.destroy());
    toPrimary.on('close', () => fromSecondary.end());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    gated: () => gatedAt !== undefined,
    acknowledgedPast: () => acked,
    close: () => {
      for (const s of sockets) s.destroy();
      server.close();
    },
  };
}
