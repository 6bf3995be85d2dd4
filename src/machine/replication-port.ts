// The replication port: the one typed seam between a Machine and what records, replays and replicates it
// (src/log, src/ft). Output gate, release, shadow outputs, go-live, pre-copy, throttle, replay feed and
// the native page-record format live here; nothing outside src/machine/ touches the raw addon.
import { ReplicationError } from '../errors.js';
import { type NativeLinkFigures, type NativeMachine, type NativeOutputs } from '../native/addon.js';
import { internal, type Machine } from './machine.js';

/** Bytes of a guest RAM page (the unit of dirty tracking and of the clone). */
export const PAGE_SIZE = 4096;
/** Bytes of one native page record: `[u32 little-endian page index][PAGE_SIZE bytes]`. */
export const PAGE_RECORD_BYTES = 4 + PAGE_SIZE;

/** One guest RAM page: its index (4 KiB pages from 0x8000_0000) and contents. */
export interface PageRecord {
  index: number;
  data: Uint8Array;
}

/** Outputs the output rule released (or a go-live re-emitted); already emitted as machine events. */
export interface ReleasedOutputs {
  console: Uint8Array;
  /** Frames for the host to send (a machine whose network the host drives). */
  frames: Uint8Array[];
  /** Frames the machine sent to its own network device (tap, udp back-ends) instead. */
  deviceFrames: number;
  /** Disk requests handed to the disk. */
  blocks: number;
}

/** How a recording ended (the log's end record); the values are native/log/event.h's EndReason. */
export const END_REASONS = { exit: 0, trap: 1, halted: 2, budget: 3, stopped: 4 } as const;
export type EndReason = keyof typeof END_REASONS;

/**
 * Replication access to one machine. Every output this port releases is also emitted on the machine
 * (`console`, `frame`), so callers only decide when, never how.
 *
 * ```ts
 * const port = replicationPort(machine);
 * port.closeGate();                 // outputs wait for the log behind them
 * port.release(ackedLsn);           // …and leave once the secondary holds it
 * ```
 */
export class ReplicationPort {
  readonly machine: Machine;
  readonly #native: NativeMachine;
  readonly #m: Machine[typeof internal];

  /** @internal Use {@link replicationPort}. */
  constructor(machine: Machine) {
    this.machine = machine;
    this.#m = machine[internal];
    this.#native = this.#m.native;
  }

  // ---- the log ring and the doorbell ---------------------------------------------------------------

  /** Calls `fn` on every doorbell (after the console drained, before a finished run settles). */
  onDoorbell(fn: () => void): void {
    this.#m.addDrain(fn);
  }
  offDoorbell(fn: () => void): void {
    this.#m.removeDrain(fn);
  }
  /** The host took bytes out of a ring: wakes a vCPU waiting for ring space. */
  ringDrained(): void {
    this.#native.consoleDrained();
  }

  // ---- recording and replay -------------------------------------------------------------------------

  /**
   * Records from the machine's current state on into `logRing` (a typed array over a SharedArrayBuffer).
   * @throws MachineStateError (`ERR_LOCKSTEP_MACHINE_BUSY` / `_CLOSED`)
   */
  startRecording(logRing: Uint8Array, hashInterval: number): void {
    this.#native.startRecording(logRing, hashInterval);
  }
  /**
   * Seals the recording with a final state hash and an end record. False: the final batch did not fit the
   * ring (nothing before it was lost); the machine is back in plain mode either way.
   */
  finishRecording(reason: EndReason, code: number): boolean {
    return this.#native.finishRecording(END_REASONS[reason], code);
  }
  /**
   * Replays from here on: inputs come only from batches given to {@link feed}.
   * @throws MachineStateError (`ERR_LOCKSTEP_MACHINE_BUSY` / `_CLOSED`)
   */
  startReplay(resumeAt?: bigint): void {
    if (resumeAt === undefined) this.#native.startReplay();
    else this.#native.startReplay(resumeAt);
  }
  /** Hands one batch to the replayer (copied; any time, also while the machine runs). */
  feed(batch: Uint8Array): void {
    this.#native.feed(batch);
  }
  /** No more batches: running past the last one ends the replay. */
  endOfLog(): void {
    this.#native.endOfLog();
  }

  // ---- the output gate (primary) and shadow outputs (secondary) --------------------------------------

  /** Holds every output from now on, tagged with the lsn of the batch that must be acknowledged first. */
  closeGate(): void {
    this.#native.setGate(true);
  }
  /** Opens the gate: everything held leaves now. */
  openGate(): ReleasedOutputs {
    return this.#emit(this.#native.setGate(false));
  }
  /** Lets out the held outputs whose batches up to `lsn` are acknowledged. */
  release(lsn: bigint): ReleasedOutputs {
    return this.#emit(this.#native.release(lsn));
  }
  /** Outputs held (primary) or kept for a go-live (secondary) right now; 0 once the machine is closed. */
  held(): number {
    return this.machine.closed ? 0 : this.#native.held();
  }
  /** Secondary: keep what the replay suppresses, for a go-live to re-emit. */
  setShadow(on: boolean): void {
    this.#native.setShadow(on);
  }
  /** Secondary: the primary released through `lsn`; kept outputs up to it are dropped. */
  shadowRelease(lsn: bigint): void {
    this.#native.shadowRelease(lsn);
  }
  /**
   * Secondary go-live (the log replayed to its end, the machine idle): the devices go live and the kept
   * outputs after `releasedLsn` (all of them without one) are re-emitted.
   * @throws ReplicationError `ERR_LOCKSTEP_REPLICATION_GO_LIVE` when not replaying or not at the log's end
   */
  goLive(releasedLsn: bigint | undefined): ReleasedOutputs {
    return this.#emit(this.#native.goLive(releasedLsn === undefined || releasedLsn < 0n ? U64_MAX : releasedLsn));
  }
  /** Sends a RARP broadcast from the guest's MAC on the tap device so switches learn its new port. */
  announce(): void {
    this.#native.announce();
  }

  // ---- progress and lag control -----------------------------------------------------------------------

  /** Instructions retired (at the last slice end while running; exact when idle). */
  progress(): bigint {
    return this.#native.progress();
  }
  /** Lag control: the vCPU sleeps `ratio` (0..0.95) of each slice. */
  setThrottle(ratio: number): void {
    this.#native.setThrottle(ratio);
  }

  // ---- the clone ----------------------------------------------------------------------------------------

  /**
   * One pre-copy round: every page written since the previous round (the first round: every page ever
   * written). On a running machine the vCPU thread copies a bounded chunk per slice and `send` gets them
   * as they come; on an idle one the whole round at once. Ends early when `cancelled()` turns true. A run
   * that ends mid-round (stopped, budget, exit) has the rest copied directly; a machine closed mid-round
   * ends the round with what was sent. Resolves with the number of pages sent.
   */
  precopyRound(first: boolean, send: (pages: PageRecord[]) => void, cancelled: () => boolean): Promise<number> {
    if (!this.machine.running) {
      const pages = this.copyPages(first);
      send(pages);
      return Promise.resolve(pages.length);
    }
    return new Promise<number>((resolve) => {
      let n = 0;
      let over = false;
      const end = () => {
        over = true;
        this.offDoorbell(take);
        this.machine.off('close', end);
        resolve(n);
      };
      const take = () => {
        if (over) return;
        const { pages, done } = this.#native.takePrecopy();
        if (pages.length > 0) {
          const records = parsePageRecords(pages);
          send(records);
          n += records.length;
        }
        if (done || cancelled()) return end();
        if (!this.machine.running) {
          // The guest stopped mid-round (it ended or was paused): copy the rest directly.
          const rest = this.copyPages(first);
          send(rest);
          n += rest.length;
          return end();
        }
        // The doorbell of a run that ended rings before the run settles (see MachineInternals.addDrain), and
        // no other follows: look again once it has settled, or the round would wait for ever.
        queueMicrotask(() => {
          if (!over && !this.machine.running && !this.machine.closed) take();
        });
      };
      this.onDoorbell(take);
      this.machine.once('close', end);
      if (!this.#native.precopyStart(first)) end();
    });
  }
  /** Idle: a whole pre-copy round at once (the final stop-and-copy). */
  copyPages(first: boolean): PageRecord[] {
    return parsePageRecords(this.#native.copyPages(first));
  }
  /**
   * Idle: writes clone pages into RAM, all or nothing.
   * @throws ReplicationError `ERR_LOCKSTEP_REPLICATION_PAGES` naming the first bad record
   */
  writePages(pages: readonly PageRecord[]): void {
    this.#native.writePages(encodePageRecords(pages));
  }
  /** Idle: the hart, CSRs, counters, devices and clock without RAM (the clone's final state). */
  cloneState(): Uint8Array {
    return this.#native.snapshot(false);
  }
  /** 64 KiB disk chunks written since the previous call (first: all, and tracking starts). */
  takeDiskDirty(first: boolean): Uint32Array {
    return this.#native.takeDiskDirty(first);
  }
  /** Idle: virtio-blk requests not yet completed. */
  diskInFlight(): number {
    return this.#native.diskInFlight();
  }
  /**
   * Syncs (fdatasync) the disk image has had, any time while the machine is open. A replaying secondary
   * with a separate disk owes its flushes and syncs once at go-live (native/machine/block_file.h).
   */
  diskSyncs(): number {
    return this.#native.diskSyncs();
  }

  // ---- the native data path ------------------------------------------------------------------------------

  /**
   * Hands `connection` to a native link. Sender: the machine records (startRecording first); the link
   * reads the log ring from its first batch. Receiver: the machine replays and is idle (startReplay
   * first); batches arrive through a ring of `replayRingBytes` (default 8 MiB).
   * @throws ReplicationError `ERR_LOCKSTEP_REPLICATION_LINK`
   */
  startLink(role: 'sender' | 'receiver', connection: LinkConnection, handlers: LinkHandlers, replayRingBytes?: number): ReplicationLink {
    return new ReplicationLink(this, this.#native, role, connection, handlers, replayRingBytes);
  }
  /** The output rule's added latencies (ms), each release's oldest output, since the last call. */
  releaseDelays(): Float64Array {
    return this.machine.closed ? new Float64Array(0) : this.#native.releaseDelays();
  }
  /** Bytes the log ring could take now (a native link frees them as it sends). */
  logFree(): number {
    return this.machine.closed ? 0 : this.#native.logFree();
  }
  /** Nobody reads the recording's log any more (a native link that stopped or never started): it is discarded as it is made. */
  abandonLog(): void {
    if (!this.machine.closed) this.#native.abandonLog();
  }
  /** @internal Emits outputs a native link released. */
  emitReleased(o: NativeOutputs): void {
    this.#emit(o);
  }

  #emit(o: NativeOutputs): ReleasedOutputs {
    this.#m.emitOutputs(o);
    return o;
  }
}

const U64_MAX = (1n << 64n) - 1n;

/**
 * An authenticated logging connection a native data path can take over (what
 * `Channel.handOver` in src/protocol gives): the socket, both keys, the next sequence each way, and the
 * bytes already read past the last frame JavaScript decoded.
 */
export interface LinkConnection {
  fd: number;
  sendKey: Uint8Array;
  recvKey: Uint8Array;
  sendSequence: bigint;
  recvSequence: bigint;
  maxPayload: number;
  leftover: Uint8Array;
}

/** How a native link ended. */
export interface LinkEnd {
  /** "none" for an orderly end (a BYE, a finish, a stop); else the channel error (malformed, auth, closed…). */
  error: string;
  message: string;
  /** The peer said BYE (with `byeReason`). */
  bye: boolean;
  byeReason: string;
}

export interface LinkHandlers {
  /** A message the native data path leaves to the host (CONTROL, GO_LIVE, CLONE_DONE…): its type code and payload. */
  message(type: number, payload: Uint8Array): void;
  /** The channel ended (once). */
  end(end: LinkEnd): void;
}

export type LinkFigures = NativeLinkFigures;

/**
 * The log's data path on a native thread (native/runner/replication_link.h): after the handshake the
 * connection belongs to it. As sender (the primary) it frames the recording's batches straight from the
 * log ring and every ACK releases the output gate without JavaScript; as receiver (the secondary) it
 * verifies LOG frames into the replayer's ring and acknowledges them. JavaScript sees messages, released
 * console bytes and host frames (emitted as machine events, as {@link ReplicationPort.release} does),
 * and the end — at the doorbell's pace, never per batch.
 */
export class ReplicationLink {
  readonly role: 'sender' | 'receiver';
  readonly #native: NativeMachine;
  readonly #port: ReplicationPort;
  readonly #handlers: LinkHandlers;
  #stopped = false;
  #ended = false;
  readonly #poll = () => this.poll();

  /** @internal Use {@link ReplicationPort.startLink}. */
  constructor(port: ReplicationPort, native: NativeMachine, role: 'sender' | 'receiver', connection: LinkConnection, handlers: LinkHandlers, replayRingBytes?: number) {
    this.role = role;
    this.#port = port;
    this.#native = native;
    this.#handlers = handlers;
    native.linkStart({ role, ...connection, ...(replayRingBytes ? { replayRingBytes } : {}) });
    port.onDoorbell(this.#poll);
  }

  /** Queues a message after the log published so far. False once the link ended or stopped. */
  send(type: number, payload: Uint8Array): boolean {
    if (this.#stopped || this.#port.machine.closed) return false;
    return this.#native.linkSend(type, payload);
  }
  /** Receiver: an ACK with the replay's progress now (lag control), even without new log. */
  report(): void {
    if (!this.#stopped && !this.#port.machine.closed) this.#native.linkReport();
  }
  /** Sends what is queued and all log published so far, then ends once the peer closes its side. */
  finish(): void {
    if (!this.#stopped && !this.#port.machine.closed) this.#native.linkFinish();
  }
  /** Stops the thread and closes the connection (no BYE); the log ring has no reader any more. Idempotent. */
  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#port.offDoorbell(this.#poll);
    if (!this.#port.machine.closed) this.#native.linkStop();
  }
  get stopped(): boolean {
    return this.#stopped;
  }
  /** Counters; undefined once the machine is closed. */
  figures(): LinkFigures | undefined {
    return this.#port.machine.closed ? undefined : this.#native.linkFigures();
  }
  /** Takes what the link has for the host (also called on every doorbell). */
  poll(): void {
    if (this.#stopped || this.#port.machine.closed) return;
    for (;;) {
      const ev = this.#native.linkTake();
      if (!ev) return;
      if (ev.console.length > 0 || ev.frames.length > 0) {
        this.#port.emitReleased(ev);
        // Emitted (the events' handlers ran): only now may their positions be announced as released.
        this.#native.linkEmitted();
      }
      for (const m of ev.messages) {
        if (this.#stopped) return;
        this.#handlers.message(m.type, m.payload);
      }
      if (ev.ended && !this.#ended) {
        this.#ended = true;
        this.#handlers.end(ev.ended);
      }
    }
  }
}

/** The replication port of `machine`. */
export function replicationPort(machine: Machine): ReplicationPort {
  return new ReplicationPort(machine);
}

/** Native page records (`[u32 index][4096 bytes]`…) → page records (views into `buf`, no copy). */
export function parsePageRecords(buf: Uint8Array): PageRecord[] {
  const out: PageRecord[] = [];
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  for (let at = 0; at + PAGE_RECORD_BYTES <= buf.length; at += PAGE_RECORD_BYTES) {
    out.push({ index: dv.getUint32(at, true), data: buf.subarray(at + 4, at + PAGE_RECORD_BYTES) });
  }
  return out;
}

/** Page records → the native layout. A page whose data is not {@link PAGE_SIZE} bytes: `ERR_LOCKSTEP_REPLICATION_PAGES`. */
export function encodePageRecords(pages: readonly PageRecord[]): Uint8Array {
  const out = new Uint8Array(pages.length * PAGE_RECORD_BYTES);
  const dv = new DataView(out.buffer);
  pages.forEach((p, i) => {
    if (p.data.length !== PAGE_SIZE) throw new ReplicationError('ERR_LOCKSTEP_REPLICATION_PAGES', `page ${p.index} (record ${i}) has ${p.data.length} bytes, not ${PAGE_SIZE}`);
    dv.setUint32(i * PAGE_RECORD_BYTES, p.index, true);
    out.set(p.data, i * PAGE_RECORD_BYTES + 4);
  });
  return out;
}
