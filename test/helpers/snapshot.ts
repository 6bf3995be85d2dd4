// Snapshot surgery for tests and the fuzzer: the field offsets of the version-4 format (see the layout
// comment in native/machine/snapshot.cc) and resealing its CRC32C after an edit, so that what is tested
// is the field validation behind the checksum, not the checksum itself.
import { crc32c } from '../../src/log/crc32c.js';

/** Bytes of the checksum at the end of a snapshot. */
export const SNAPSHOT_CHECKSUM = 4;
/** Offsets of fixed fields (the header, then the hart). */
export const SNAP = {
  version: 8,
  ramSize: 12,
  flags: 16,
  cpu: 24,
  /** priv u8, after x1..x31 and pc. */
  priv: 24 + 31 * 4 + 4,
} as const;
/** The supervisor section: 10 CSRs, 16 pmpcfg bytes, 16 pmpaddr registers. */
const SUPERVISOR_BYTES = 10 * 4 + 16 + 16 * 4;
/** Size of each section before the virtio transports, for a snapshot with an empty UART receive FIFO. */
const CPU_BYTES = 31 * 4 + 4 + 4 + 8 + 8 + 9 * 4 + 8 + 8 + SUPERVISOR_BYTES;
const MACHINE_BYTES = 4 + 8 * 4 + 4 * 3 + 8;
const UART_BYTES = 8 + 4; // + rx bytes
const PLIC_BYTES = 4 * (96 + 3 * 3 + 2 * 3 + 2);
/** One virtio transport: 7 registers, then 2 queues of 33 bytes. */
export const VIRTIO_TRANSPORT_BYTES = 32 + 2 * 33;

/** Offset of virtio slot `slot`'s queue `q` (its u32 QueueNum; the ready byte follows). */
export function virtioQueueOffset(snapshot: Uint8Array, slot: number, q: number): number {
  const uartRx = new DataView(snapshot.buffer, snapshot.byteOffset).getUint32(SNAP.cpu + CPU_BYTES + MACHINE_BYTES + 8, true);
  const virtio = SNAP.cpu + CPU_BYTES + MACHINE_BYTES + UART_BYTES + uartRx + PLIC_BYTES;
  return virtio + slot * VIRTIO_TRANSPORT_BYTES + 32 + q * 33;
}

/** Recomputes the trailing CRC32C in place after an edit; returns the same array. */
export function resealSnapshot(s: Uint8Array): Uint8Array {
  new DataView(s.buffer, s.byteOffset, s.byteLength).setUint32(s.length - SNAPSHOT_CHECKSUM, crc32c(s.subarray(0, s.length - SNAPSHOT_CHECKSUM)), true);
  return s;
}
