// The RingProbe: a test-and-benchmark-only driver of a byte ring from native threads, in its own addon
// (test/native/ring_probe.cc, build target lockstep_test) so that the shipped addon carries no test code.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** What a {@link RingProbe} run measured (test/native/ring_probe.cc). */
export interface RingProbeResult {
  /** Bytes the native end moved: produced (produce) or consumed (consume, pipe). */
  bytes: number;
  /** Lane hash of those bytes (test/helpers/ring-stream.ts computes the same); 0 when not checking. */
  checksum: number;
  /** Times a native end found the ring full (producer) or empty (consumer) and slept. */
  waits: number;
  producerWaits: number;
  consumerWaits: number;
  producerChecksum: number;
  consumerChecksum: number;
  /** First stream offset where consumed bytes differed from the seed's stream, or -1. */
  mismatchAt: number;
  /** From the start of the run to the last native end's last byte. */
  seconds: number;
}

/** Options of a {@link RingProbe} run. */
export interface RingProbeRunOptions {
  /** Where head and tail start (produce, pipe; default 0). For consume the ByteRingWriter sets it. */
  startIndex?: number;
  /** Every push/pop asks for maxChunk bytes instead of a random 1..maxChunk (default false). */
  fixedChunk?: boolean;
  /** Hash the bytes and, consuming, verify them against the stream (default true; off for throughput). */
  check?: boolean;
}

/**
 * Test-and-benchmark-only driver of a ring from native threads. The doorbell is called (coalesced,
 * on the JS thread) after the native end makes progress and when the run finishes; JS calls kick()
 * after it reads or writes the ring, which wakes a native end sleeping for data or space.
 */
export interface RingProbe {
  /** Initialises the ring (head = tail = startIndex) and produces the seed's stream natively in chunks of 1..maxChunk. */
  produce(totalBytes: number, seed: number, maxChunk: number, options?: RingProbeRunOptions): void;
  /** Consumes natively (pops of 1..maxChunk) from a ring a ByteRingWriter initialised, verifying the seed's stream. */
  consume(totalBytes: number, seed: number, maxChunk: number, options?: Omit<RingProbeRunOptions, 'startIndex'>): void;
  /** Both ends native, on two threads (the FT logging path's shape). */
  pipe(totalBytes: number, seed: number, maxChunk: number, options?: RingProbeRunOptions): void;
  kick(): void;
  done(): boolean;
  /** null while running. */
  result(): RingProbeResult | null;
  /** Reaps a finished run (throws while running) and returns its result. */
  join(): RingProbeResult;
  /** Stops a run early, joins, and releases the ring and the doorbell. */
  close(): void;
}

/** The addon's RingProbe class. */
export interface RingProbeConstructor {
  new (ring: Uint8Array, doorbell: () => void): RingProbe;
}

/** The package root (the folder holding binding.gyp) above this file, compiled under bench/build or not. */
function packageRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no binding.gyp above ${fileURLToPath(import.meta.url)}`);
  }
}

/**
 * Path of the test-only addon (target lockstep_test in binding.gyp; never part of lockstep.node).
 * `LOCKSTEP_TEST_ADDON_PATH` overrides it (the sanitizer build, as LOCKSTEP_ADDON_PATH does the main one).
 */
export const TEST_ADDON_PATH = process.env['LOCKSTEP_TEST_ADDON_PATH'] || join(packageRoot(), 'build', 'Release', 'test', 'lockstep_test.node');

/** The RingProbe class of the test-only addon (tests and benchmarks only). */
export function ringProbeClass(): RingProbeConstructor {
  return (createRequire(import.meta.url)(TEST_ADDON_PATH) as { RingProbe: RingProbeConstructor }).RingProbe;
}
