// The test-only native channel addon (build/Release/lockstep_channel_test.node, binding.gyp's
// lockstep_channel_test target) with its types, and sealed-batch builders for feeding it.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BATCH_HEADER, BATCH_LENGTH, BATCH_LSN } from '../../src/log/format.js';

/** SHA-256 implementations, as native/channel/sha256.h numbers them. */
export const PORTABLE = 0;
export const SHA_NI = 1;

/** ChannelError codes (native/channel/frame.h) and their names. */
export const ChannelCode = { NONE: 0, MALFORMED: 1, AUTH: 2, OVERSIZED: 3, SEQUENCE: 4, CLOSED: 5, TRUNCATED: 6, LOCAL: 7 } as const;

export interface ChannelEnd { code: number; name: string; message: string }
export interface ChannelStats {
  bytesSent: number; bytesReceived: number; framesSent: number; framesReceived: number;
  logBytes: number; logFrames: number; logBatches: number; acks: number; ackInstret: number; wakeups: number; cpuNs: number;
}
export interface LoopbackResult {
  batches: number; bytes: number; ackedLsn1: number; releases: number; releaseFaults: number; ns: number; cpuSeconds: number; impl: string;
  ended: boolean; timedOut: boolean; consumerError?: string;
  sender: ChannelStats; receiver: ChannelStats; senderEnd: ChannelEnd; receiverEnd: ChannelEnd;
}
export interface ChannelTestAddon {
  implAvailable(impl: number): boolean;
  defaultImpl(): number;
  sha256(impl: number, data: Uint8Array, cuts?: number[]): Buffer;
  hmac(impl: number, key: Uint8Array, data: Uint8Array, cuts?: number[]): Buffer;
  hmacPair(impl: number, key: Uint8Array, a: Uint8Array, b: Uint8Array, cutA: number, cutB: number): [Buffer, Buffer];
  encodeFrame(key: Uint8Array, type: number, sequence: number, payload: Uint8Array): Buffer;
  decodeFrames(key: Uint8Array, firstSequence: number, maxPayload: number, bytes: Uint8Array):
    { frames: { type: number; sequence: number; payload: Buffer }[]; consumed: number; need?: number; error?: ChannelEnd };
  loopback(options: { batches?: number; minRecords?: number; maxRecords?: number; tcp?: boolean; impl?: number;
    maxLogFrame?: number; sinkBytes?: number; seed?: number; timeoutMs?: number; releaseEvery?: number; splitEvery?: number }): LoopbackResult;
  rawLoopback(options: { bytes?: number; tcp?: boolean; chunk?: number }): { bytes: number; ns: number; cpuSeconds: number };
  receiverFeed(options: { wire: Uint8Array; close?: boolean; impl?: number; firstLsn?: number; timeoutMs?: number }):
    { ended: boolean; end: ChannelEnd; sink: Buffer; reply: Buffer; logLsn1: number; stats: ChannelStats;
      /** Each time the receiver woke its ring's consumer: the position published then, and the bytes it had written back by then. */
      woke: { logLsn1: number; bytesSent: number }[] };
  senderFeed(options: { batches: Uint8Array; reply: Uint8Array; close?: boolean; impl?: number; maxLogFrame?: number;
    expectAcked?: number; timeoutMs?: number }): { ended: boolean; end: ChannelEnd; wire: Buffer; ackedLsn1: number; stats: ChannelStats };
  senderCoalesce(options: { first: Uint8Array; later: Uint8Array[]; ack?: Uint8Array; rider?: Uint8Array }):
    { framesInFlight: number; framesAfterRide: number; wire: Buffer; stats: ChannelStats };
  /** The key the primary seals with (and the secondary checks with), and the other direction's. */
  primaryKey: Buffer;
  secondaryKey: Buffer;
}

function root(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'binding.gyp'))) dir = dirname(dir);
  return dir;
}

let cached: ChannelTestAddon | undefined;
export function channelAddon(): ChannelTestAddon {
  // LOCKSTEP_CHANNEL_ADDON_PATH: the sanitizer build (test/sanitize/run.mjs).
  const path = process.env['LOCKSTEP_CHANNEL_ADDON_PATH'] || join(root(), 'build', 'Release', 'lockstep_channel_test.node');
  if (!existsSync(path)) throw new Error(`${path} is missing: build every binding.gyp target with \`npx node-gyp rebuild\``);
  cached ??= createRequire(import.meta.url)(path) as ChannelTestAddon;
  return cached;
}

/** One sealed batch as the log ring carries it: the 48-byte header (length, lsn; CRC left 0) and records. */
export function batch(lsn: number, records: Uint8Array): Buffer {
  const b = Buffer.alloc(BATCH_HEADER + records.length);
  b.writeUInt32LE(records.length, BATCH_LENGTH);
  b.writeBigUInt64LE(BigInt(lsn), BATCH_LSN);
  b.set(records, BATCH_HEADER);
  return b;
}
