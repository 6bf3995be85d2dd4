// Loads the C++ addon (node-gyp-build through createRequire: ESM cannot import .node files) and
// types its surface. Nothing else in src/ touches the addon object directly.
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { AddonLoadError, nativeError } from '../errors.js';

/** A finished run as the vCPU thread reports it. */
export interface NativeReport {
  kind: 'budget' | 'exit' | 'trap' | 'halted' | 'stopped' | 'divergence' | 'end-of-log' | 'debug';
  code: number;
  via: 'none' | 'finisher' | 'semihosting' | 'htif';
  cause: number;
  pc: number;
  /** kind 'exit'/'trap': as named; kind 'debug': cause is the hit (DebugState::Hit), tval its address. */
  tval: number;
  reason: string;
  /** kind 'divergence': what differed. */
  divergence: string;
  /** kind 'end-of-log': the recorded end reason (EndReason), or -1 without an end record. */
  endReason: number;
  endCode: number;
  /** A replay run: logEnded and finalHash say how much of the log it verified (see ReplayCheck). */
  replayed: boolean;
  logEnded: boolean;
  finalHash: boolean;
}

/** Outputs released by the output rule (or re-emitted at go-live). */
export interface NativeOutputs {
  console: Uint8Array;
  /** Frames for the host to send (a machine whose network the host drives). */
  frames: Uint8Array[];
  /** Frames the machine sent to its own network device (tap, udp back-ends) instead. */
  deviceFrames: number;
  /** Disk requests handed to the disk. */
  blocks: number;
}

/**
 * The addon's NativeMachine (native/binding/addon.cc). All methods but stop/input/busy/close throw while
 * running. Every error it throws on purpose is a coded LockstepError built by {@link nativeError}.
 */
export interface NativeMachine {
  writeMemory(addr: number, data: Uint8Array): void;
  readMemory(addr: number, length: number): Uint8Array;
  getPc(): number;
  setPc(pc: number): void;
  getRegisters(): Uint32Array;
  setRegister(index: number, value: number): void;
  /** null: no such CSR. */
  getCsr(csr: number): number | null;
  setCsr(csr: number, value: number): boolean;
  getPrivilege(): number;
  getCounters(): [bigint, bigint];
  setTohost(addr: number): void;
  run(targetInstret: bigint): void;
  stop(): void;
  input(data: Uint8Array): void;
  consoleDrained(): void;
  takeReport(): NativeReport | null;
  busy(): boolean;
  close(): void;
  /** Throws ERR_LOCKSTEP_MACHINE_BUSY/_CLOSED. */
  startRecording(logRing: Uint8Array, hashInterval: number): void;
  finishRecording(reason: number, code: number): boolean;
  /** resumeAt: the instret of the snapshot (taken while replaying the same log) the machine was restored from. */
  startReplay(resumeAt?: bigint): void;
  /** null detaches the debugger; watches are (address, length, on: 1 loads, 2 stores, 3 both) triples. */
  /** null: nothing is mapped at va (see Cpu::debug_translate). */
  translate(va: number): number | null;
  setDebug(breakpoints: Uint32Array | null, watches?: Uint32Array, step?: boolean, resumePc?: number, resumeInstret?: bigint): void;
  feed(batch: Uint8Array): void;
  endOfLog(): void;
  stateHash(): bigint;
  snapshot(includeRam?: boolean): Uint8Array;
  /** Throws ERR_LOCKSTEP_SNAPSHOT_CORRUPT/_VERSION/_MISMATCH (the machine is then unchanged). */
  restore(snapshot: Uint8Array): void;
  takeDirtyPages(): Uint32Array;
  takeFrames(): Uint8Array[];
  netInput(frame: Uint8Array): void;
  suppressedOutputs(): number;
  /** Host-side virtio-net receive counters; callable while a run is in progress. */
  netStats(): { queued: number; delivered: number; deliveredBytes: number; dropped: number };
  // Fault tolerance (native/runner/vcpu_thread.h).
  setGate(closed: boolean): NativeOutputs;
  release(lsn: bigint): NativeOutputs;
  setShadow(on: boolean): void;
  shadowRelease(lsn: bigint): void;
  /** Throws ERR_LOCKSTEP_REPLICATION_GO_LIVE when not replaying or the log was not replayed to its end. */
  goLive(released: bigint): NativeOutputs;
  held(): number;
  /** Console bytes the guest wrote, counted from where the numbering was set to start. */
  consolePosition(): bigint;
  setConsolePosition(position: bigint): void;
  progress(): bigint;
  watchdogPets(): bigint;
  jitStats(): { blocks: number; invalidated: number; flushes: number; entries: number; instructions: number; translatedBlocks: number; translatedEntries: number; translatedInstructions: number } | null;
  setThrottle(ratio: number): void;
  precopyStart(first: boolean): boolean;
  takePrecopy(): { pages: Uint8Array; done: boolean };
  copyPages(first: boolean): Uint8Array;
  /** Throws ERR_LOCKSTEP_REPLICATION_PAGES naming the first bad record (nothing is written then). */
  writePages(pages: Uint8Array): void;
  announce(): void;
  takeDiskDirty(first: boolean): Uint32Array;
  diskInFlight(): number;
  diskSyncs(): number;
  // The replication link (native/runner/replication_link.h).
  /** Throws ERR_LOCKSTEP_REPLICATION_LINK. */
  linkStart(options: NativeLinkOptions): void;
  linkSend(type: number, payload: Uint8Array): boolean;
  linkReport(): void;
  linkFinish(): void;
  linkStop(): void;
  linkTake(): NativeLinkEvents | undefined;
  /** The outputs of every linkTake() so far were emitted: their positions may be announced as released. */
  linkEmitted(): void;
  linkFigures(): NativeLinkFigures | undefined;
  /** The output rule's added latencies (ms) since the last call. */
  releaseDelays(): Float64Array;
  logFree(): number;
  abandonLog(): void;
  // The udp network back-end (native/machine/net/udp.h).
  /** Any time. Throws ListenError (ERR_LOCKSTEP_LISTEN_IN_USE/_FAILED), or OptionError when a back-end is attached. */
  udpAttach(forwards: { host: string; hostPort: number; guestPort: number }[], guestMac: Uint8Array): { id: number; ports: number[] };
  /** null: back-end `id` is not attached (closed, or the machine closed). */
  udpStats(id: number): { toGuest: number; truncated: number; refused: number; toClients: number; ignoredFrames: number } | null;
  udpDetach(id: number): void;
}

export interface NativeLinkOptions {
  role: 'sender' | 'receiver';
  /** The connected socket's descriptor; the link duplicates it. */
  fd: number;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  sendSequence: bigint;
  recvSequence: bigint;
  maxPayload: number;
  /** Bytes read past the last frame the handshake or JavaScript decoded. */
  leftover: Uint8Array;
  replayRingBytes?: number;
}

export interface NativeLinkEvents extends NativeOutputs {
  messages: { type: number; payload: Uint8Array }[];
  /** The channel ended: `error` is its ChannelError name ("none" for an orderly end). */
  ended?: { error: string; message: string; bye: boolean; byeReason: string };
}

export interface NativeLinkFigures {
  ackedLsn1: bigint;
  logLsn1: bigint;
  releasedLsn1: bigint;
  /** Primary: lsn + 1 up to which every released output has left this process (what may be announced). */
  emittedLsn1: bigint;
  ackInstret: bigint;
  /** Milliseconds since the peer was last heard from (-1: never). */
  heardAgoMs: number;
  ackRttMs: number;
  bytesSent: number;
  bytesReceived: number;
  logBytes: number;
  logBatches: number;
  logFrames: number;
  acks: number;
  /** Sender: the log bytes the last ACK said were received. */
  ackBytes: number;
  wakeups: number;
  ended: boolean;
}

export interface NativeMachineConstructor {
  new (options: { ramSize: number; realClock: boolean; clockStepTicks?: number; rng?: boolean; net?: boolean; mac?: Uint8Array; disk?: string; diskSeparate?: boolean; diskLock?: boolean; tap?: string; cmdline?: string; jit?: boolean }, consoleRing: Uint8Array, doorbell: () => void): NativeMachine;
}

export interface Addon {
  NativeMachine: NativeMachineConstructor;
  /** Hands the addon the JS-owned error factory (once, at load). */
  setErrorFactory(makeError: (code: string, message: string, field?: string, cause?: string) => Error): void;
  abiVersion: number;
}

/** The package root: the nearest folder above this file holding binding.gyp. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw new AddonLoadError(`cannot find the lockstep package root (binding.gyp) above ${fileURLToPath(import.meta.url)}`);
}

let cached: Addon | undefined;

/** The loaded addon (loaded once). `LOCKSTEP_ADDON_PATH` overrides the search (sanitizer builds). */
export function addon(): Addon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const override = process.env['LOCKSTEP_ADDON_PATH'];
  let root = '';
  try {
    if (override) {
      cached = require(override) as Addon;
    } else {
      root = packageRoot();
      // By name: build/Release also holds the test-only addon (lockstep_test.node), and node-gyp-build
      // takes whichever .node file it lists first there. Prebuilds still go through node-gyp-build.
      const local = join(root, 'build', 'Release', 'lockstep.node');
      // Then the package's prebuilds (native/prebuilds/<platform>-<arch>/, see native/prebuild.mjs);
      // node-gyp-build is required only then (it loads node:os and reads directories).
      cached = (existsSync(local) ? require(local) : (require('node-gyp-build') as (dir: string) => unknown)(join(root, 'native'))) as Addon;
    }
  } catch (err) {
    const where = override ? override : `${join(root, 'build', 'Release', 'lockstep.node')} or native/prebuilds/${process.platform}-${process.arch}`;
    throw new AddonLoadError(
      `the lockstep native addon could not be loaded from ${where}: ${(err as Error).message}. ` +
        'Build it with `npm install` (or `npx node-gyp rebuild`) in the package folder; it needs python3, make and a C++20 compiler.',
      { cause: err },
    );
  }
  if (cached.abiVersion !== 2) {
    const v = cached.abiVersion;
    cached = undefined;
    throw new AddonLoadError(`the lockstep addon has ABI version ${v}, this code expects 2: rebuild it with \`npx node-gyp rebuild\``);
  }
  cached.setErrorFactory(nativeError);
  return cached;
}
