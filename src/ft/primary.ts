// The primary half of a fault-tolerant pair: runs the guest, records its inputs, streams the log to the
// secondary, releases outputs only behind acknowledged log (the output rule), slows down when the
// secondary lags, and clones a new secondary by pre-copy. Mirrors secondary.ts.
import { EventEmitter } from 'node:events';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { LockstepError } from '../errors.js';
import { Recorder } from '../log/recorder.js';
import { internal, type Machine } from '../machine/machine.js';
import type { RunResult } from '../machine/types.js';
import { ChannelServer, type Channel, type ChannelOptions, type Message } from '../protocol/channel.js';
import { RefusalLog } from '../observability/refusals.js';
import { ArbiterError, validateOwnerId, type Arbiter } from './arbiter.js';
import { claimEpoch, newOwnerId } from './claim.js';
import { publishPrimary } from './diagnostics.js';
import { batchLsn } from '../log/format.js';
import { FT_DEFAULTS, FailureDetector, LagController, describeStatus, pagesFromNative, type ProtectionStatus } from './control.js';

/** A pre-copy round with fewer dirty pages than this ends the pre-copy: the rest goes in the pause. */
const PRECOPY_CONVERGED_PAGES = 256;
const PRECOPY_MAX_ROUNDS = 8;
/** Pages per CLONE_PAGES message (1 MiB). */
const PAGES_PER_MESSAGE = 256;
/** Disk pre-copy: chunks are 64 KiB (the addon's tracking unit); a round with this few ends it. */
const DISK_CHUNK = 64 * 1024;
const DISK_CONVERGED_CHUNKS = 16;
/**
 * RELEASE notices go out at most this often: one per acknowledgement would double the channel's small
 * writes. Outputs released in the last few milliseconds before a failover may then be emitted twice.
 */
const RELEASE_NOTICE_MS = 5;

/** Options shared by both halves of a pair. */
export interface FtCommonOptions {
  /** Names the VM: the arbiter's key and the channel's handshake check. */
  vmId: string;
  /** Pre-shared key of the logging channel (at least 16 bytes). */
  key: Uint8Array;
  /** TLS with client certificates on the logging channel, in addition to the key. */
  tls?: ChannelOptions['tls'];
  /** The split-brain arbiter (both halves must use the same storage). */
  arbiter: Arbiter;
  /**
   * This side's owner token at the arbiter (default: a new one per instance from `newOwnerId`,
   * `<role>@<host>/<pid>#<boot id>.<random>`). Never give two processes the same token: the arbiter
   * counts a repeated claim by one token as that claimer's win.
   */
  owner?: string;
  heartbeatMs?: number;
  timeoutMs?: number;
}

export interface FtPrimaryOptions extends FtCommonOptions {
  /** A loaded machine that is not running (and not recording or replaying). */
  machine: Machine;
  /** Where secondaries connect (default 127.0.0.1, port 0 = any). */
  listen?: { host?: string; port?: number };
  /** The epoch this primary already holds (a secondary that went live); otherwise it claims the next one. */
  epoch?: number;
  lagTargetMs?: number;
  maxLagMs?: number;
  maxUnackedBytes?: number;
  /**
   * The output rule (default true). False releases outputs without waiting for the secondary: for
   * measuring its cost only — a failover may then lose or contradict what clients were told.
   */
  outputRule?: boolean;
  /** State hash interval of the log, in instructions (default 2^26). */
  hashInterval?: number;
  /** Sent to a joining secondary with the clone (e.g. the VM's configuration) for it to check. */
  meta?: Record<string, unknown>;
  /** Start without FT (status "disabled") until {@link FtPrimary.enable}. */
  disabled?: boolean;
  /**
   * Power the guest on protected: it starts running only once the first secondary is cloned and in
   * lockstep (as a VM turned on with FT starts both halves together), so even its boot is protected.
   */
  awaitSecondary?: boolean;
  /**
   * The primary's own disk image when disks are `separate` (each half has its own): a joining secondary's
   * image is then brought up to date by a disk pre-copy before the memory pre-copy.
   */
  separateDisk?: string;
  /** Bytes of the log ring between the vCPU thread and JavaScript (default 4 MiB; a power of two). */
  ringBytes?: number;
  /** How often to check that no newer epoch was claimed (default 1000 ms; 0 = never). */
  epochCheckMs?: number;
}

/** Figures of a running pair. */
export interface FtPrimaryStats {
  epoch: number;
  status: ProtectionStatus;
  /** Log bytes sent to the current secondary, and in all. */
  logBytes: number;
  /** Bytes per second over the last second. */
  logBandwidth: number;
  /** The secondary's execution lag (the "lockstep interval"), seconds. */
  lagSeconds: number;
  lagInstructions: number;
  unackedBytes: number;
  throttle: number;
  mips: number;
  failovers: number;
  lastAckLatencyMs: number;
  heldOutputs: number;
  /** Pause of the last clone's stop-and-copy, ms. */
  lastClonePauseMs: number | undefined;
  /** Connections the logging channel refused (failed handshakes, hostile peers). */
  rejectedConnections: number;
}

export interface CloneReport {
  rounds: number;
  pages: number;
  bytes: number;
  /** The guest was stopped this long for the final copy, ms. */
  pauseMs: number;
  /** Whole clone, from join to the first acknowledged batch, ms. */
  totalMs: number;
}

export interface FtPrimaryEvents {
  /** Protection status changed. */
  status: [status: ProtectionStatus];
  /** A new secondary is in lockstep. */
  cloned: [report: CloneReport];
  /** The secondary was lost (and this side won the arbiter and goes on alone). */
  'secondary-lost': [reason: string];
  /** The guest ended (exit, trap, halt); the secondary replays to the same end. */
  ended: [result: RunResult];
  /**
   * This side lost the arbiter (or handed over) and stopped for good. `error` is set when it was a
   * failure rather than a decision: `ERR_LOCKSTEP_FT_MACHINE_CLOSED` (the machine was closed under it).
   */
  halted: [reason: string, error?: FtError];
  /** Test failover finished: the secondary is the primary now, listening at `listen` if it said. */
  'handed-over': [info: { epoch: number; listen?: string }];
  /**
   * Something an operator should know (e.g. the output rule is off, the arbiter is unreachable). Refused
   * connections come here summarised: the first few of a burst, then one line per 10 s.
   */
  warning: [message: string];
  /** The logging channel refused a connection (every one; `warning` carries the summary). */
  rejected: [reason: string, remote: string];
  /** An output-rule release: how long the oldest released output waited, ms. */
  release: [delayMs: number];
  /** One acknowledgement's round trip (batch sent → ack received), ms. */
  ack: [latencyMs: number];
}

/** An FT operation was refused (wrong state) or failed. */
export class FtError extends LockstepError {
  constructor(code: 'ERR_LOCKSTEP_FT_STATE' | 'ERR_LOCKSTEP_FT_ARBITER' | 'ERR_LOCKSTEP_FT_CLONE' | 'ERR_LOCKSTEP_FT_MACHINE_CLOSED', message: string) {
    super(code, message);
  }
}

type Phase = 'idle' | 'alone' | 'cloning' | 'protected' | 'recovering' | 'disabled' | 'suspended' | 'ended' | 'halted';

/**
 * The primary VM of a fault-tolerant pair.
 *
 * ```ts
 * const p = new FtPrimary({ machine, vmId: 'kv1', key, arbiter: new FileArbiter({ dir }) });
 * const { port } = await p.start();   // secondaries join at port
 * p.on('status', (s) => console.log(describeStatus(s)));
 * ```
 */
export class FtPrimary extends EventEmitter<FtPrimaryEvents> {
  readonly machine: Machine;
  readonly vmId: string;
  readonly #o: Required<Omit<FtPrimaryOptions, 'tls' | 'epoch' | 'meta' | 'listen' | 'disabled' | 'awaitSecondary' | 'owner' | 'separateDisk' | 'ringBytes' | 'epochCheckMs'>> & FtPrimaryOptions;
  /** This incarnation's owner token at the arbiter (a promoted secondary's own). */
  readonly owner: string;
  /** Aborted by {@link #halt}: a halted side makes no further claim. */
  readonly #claimAbort = new AbortController();
  #epoch = 0;
  #phase: Phase = 'idle';
  #server: ChannelServer | undefined;
  #channel: Channel | undefined;
  #secondaryListen: string | undefined;
  #recorder: Recorder | undefined;
  #runLoop: Promise<void> | undefined;
  #pause: { fn: () => void; resolve: () => void; reject: (e: unknown) => void } | undefined;
  #hold = false; // the run loop must not restart the guest (hand-over, halt)
  #awaitSecondary = false; // the guest has not started yet: it waits for its first secondary
  #detector: FailureDetector | undefined;
  readonly #lag: LagController;
  #timer: NodeJS.Timeout | undefined;
  // Log stream to the current secondary.
  #sentLsn = -1n;
  #ackedLsn = -1n;
  #sentBytes = 0;
  #ackedBytes = 0;
  #totalLogBytes = 0;
  readonly #sentAt = new Map<bigint, number>();
  #queued: Uint8Array[] = []; // batches recorded before the clone's final state went out
  #cloneSent = false;
  #cloneStart = 0;
  #cloneReport: Omit<CloneReport, 'totalMs'> | undefined;
  #releasedLsn = -1n;
  #releaseSent = -1n;
  #releaseScheduled = false;
  #secondaryInstret = 0n;
  // Figures.
  #failovers = 0;
  #lastAckLatency = 0;
  #lastPause: number | undefined;
  #bw = { at: 0, bytes: 0, rate: 0 };
  #mips = { at: 0, instret: 0n, rate: 0 };
  #lagInstr = 0;
  #lagSec = 0;
  readonly #refusals = new RefusalLog({ what: 'logging channel', log: (line) => this.emit('warning', line) });
  readonly #onMachineClose = () => this.#machineClosed();

  /** @throws OptionError when `owner` is given but not a valid owner id. */
  constructor(options: FtPrimaryOptions) {
    super();
    if (options.owner !== undefined) validateOwnerId(options.owner);
    this.machine = options.machine;
    this.vmId = options.vmId;
    this.#o = {
      heartbeatMs: FT_DEFAULTS.heartbeatMs,
      timeoutMs: FT_DEFAULTS.timeoutMs,
      lagTargetMs: FT_DEFAULTS.lagTargetMs,
      maxLagMs: FT_DEFAULTS.maxLagMs,
      maxUnackedBytes: FT_DEFAULTS.maxUnackedBytes,
      outputRule: true,
      hashInterval: 2 ** 26,
      ...stripUndefined(options),
    };
    this.owner = options.owner ?? newOwnerId('primary');
    this.#lag = new LagController(this.#o.lagTargetMs, this.#o.maxLagMs);
    publishPrimary(this);
  }

  #address: { host: string; port: number } | undefined;
  /** Where secondaries join (once started). */
  get address(): { host: string; port: number } | undefined {
    return this.#address;
  }

  /** The epoch (fencing token) this primary holds. */
  get epoch(): number {
    return this.#epoch;
  }

  /** Protection status, as vSphere shows it. */
  get status(): ProtectionStatus {
    switch (this.#phase) {
      case 'protected':
        return { protected: true };
      case 'cloning':
      case 'idle':
        return { protected: false, reason: 'starting' };
      case 'alone':
      case 'recovering':
        return { protected: false, reason: 'needs-secondary' };
      case 'disabled':
        return { protected: false, reason: 'disabled' };
      case 'suspended':
        return { protected: false, reason: 'suspended' };
      default:
        return { protected: false, reason: 'vm-not-running' };
    }
  }

  /**
   * Claims the epoch (unless given one), listens for secondaries and starts the guest. Resolves with the
   * address secondaries join at.
   */
  async start(): Promise<{ host: string; port: number }> {
    if (this.#phase !== 'idle') throw new FtError('ERR_LOCKSTEP_FT_STATE', 'start(): already started');
    if (this.machine.closed) throw new FtError('ERR_LOCKSTEP_FT_MACHINE_CLOSED', 'start(): the machine is closed');
    if (this.#o.epoch !== undefined) {
      this.#epoch = this.#o.epoch;
    } else {
      const cur = await this.#o.arbiter.current(this.vmId);
      const want = (cur?.epoch ?? 0) + 1;
      const r = await this.#o.arbiter.claim(this.vmId, want, this.owner);
      if (!r.won) throw new FtError('ERR_LOCKSTEP_FT_ARBITER', `epoch ${want} of VM ${this.vmId} is held by ${r.holder.owner ?? 'someone else'}: another primary runs this VM`);
      this.#epoch = want;
    }
    if (!this.#o.outputRule) this.emit('warning', 'THE OUTPUT RULE IS OFF: outputs leave before the secondary holds the log behind them; a failover may lose or contradict them. For measurement only.');
    this.#server = new ChannelServer({ key: this.#o.key, vmId: this.vmId, role: 'primary', epoch: this.#epoch, ...(this.#o.tls ? { tls: this.#o.tls } : {}) });
    this.#server.on('channel', (ch: Channel) => this.#onJoin(ch));
    this.#server.on('rejected', (reason: string, remote: string) => {
      this.emit('rejected', reason, remote);
      this.#refusals.refused(remote, reason);
    });
    const addr = await this.#server.listen(this.#o.listen?.port ?? 0, this.#o.listen?.host ?? '127.0.0.1');
    this.#address = addr;
    if (this.machine.closed) {
      this.#machineClosed();
      return addr;
    }
    this.machine.once('close', this.#onMachineClose);
    this.#setPhase(this.#o.disabled ? 'disabled' : 'alone');
    this.#awaitSecondary = this.#o.awaitSecondary === true && !this.#o.disabled;
    this.#runLoop = this.#run();
    this.#timer = setInterval(() => this.#tick(), this.#o.heartbeatMs);
    this.#timer.unref();
    const every = this.#o.epochCheckMs ?? FT_DEFAULTS.epochCheckMs;
    if (every > 0) {
      this.#epochTimer = setInterval(() => void this.#checkEpoch(), every);
      this.#epochTimer.unref();
    }
    return addr;
  }

  #epochTimer: NodeJS.Timeout | undefined;
  #epochChecking = false;

  /**
   * Fencing from outside: a newer epoch than this primary's means someone else owns the VM now (a
   * secondary that went live without our noticing, or a manager about to restart the VM elsewhere). Then
   * halt, whatever is held stays held. An unreachable arbiter proves nothing and changes nothing.
   */
  async #checkEpoch(): Promise<void> {
    if (this.#epochChecking || this.#phase === 'recovering' || this.#phase === 'halted' || this.#phase === 'ended') return;
    this.#epochChecking = true;
    try {
      const mine = this.#epoch;
      const cur = await this.#o.arbiter.current(this.vmId);
      if (cur && cur.epoch > mine && this.#epoch === mine && (this.#phase as Phase) !== 'recovering') {
        this.#halt(`epoch ${cur.epoch} of VM ${this.vmId} was claimed by ${cur.owner ?? 'another side'}; this primary holds ${mine}`);
      }
    } catch {
      // unavailable: keep running (the arbiter is consulted again on the next tick and on any loss)
    } finally {
      this.#epochChecking = false;
    }
  }

  /** Live figures (log bandwidth, lag, throttle…). */
  stats(): FtPrimaryStats {
    return {
      epoch: this.#epoch,
      status: this.status,
      logBytes: this.#totalLogBytes,
      logBandwidth: this.#bw.rate,
      lagSeconds: this.#lagSec,
      lagInstructions: this.#lagInstr,
      unackedBytes: Math.max(0, this.#sentBytes - this.#ackedBytes),
      throttle: this.#lag.ratio,
      mips: this.#mips.rate,
      failovers: this.#failovers,
      lastAckLatencyMs: this.#lastAckLatency,
      heldOutputs: this.#phase === 'halted' || this.machine.closed ? 0 : this.machine[internal].native.held(),
      lastClonePauseMs: this.#lastPause,
      rejectedConnections: this.#refusals.total,
    };
  }

  /** Text status line. */
  describe(): string {
    return describeStatus(this.status);
  }

  // ---- operations --------------------------------------------------------------------------------

  /**
   * Test failover: stops the guest, waits until the secondary holds and acknowledges all of the log,
   * releases every output, and hands over. The secondary goes live; this side halts. Nothing is lost.
   */
  async testFailover(): Promise<void> {
    if (this.#phase !== 'protected' || !this.#channel) throw new FtError('ERR_LOCKSTEP_FT_STATE', `test failover needs a protected VM; it is ${this.describe()}`);
    const ch = this.#channel;
    this.#hold = true;
    await this.#pauseFor(() => {});
    this.#recorder?.resume();
    // Everything the guest did is in batches now (a stopped run seals its last batch).
    await this.#until(() => this.#ackedLsn >= this.#sentLsn || ch.closed, 10_000);
    if (ch.closed) {
      this.#hold = false;
      this.#resumeRun();
      throw new FtError('ERR_LOCKSTEP_FT_STATE', 'test failover: the secondary went away before it acknowledged the whole log');
    }
    this.#sendRelease(true);
    ch.send({ type: 'go-live', epoch: BigInt(this.#epoch + 1), reason: 'test failover' });
    const listen = this.#secondaryListen;
    this.emit('handed-over', listen === undefined ? { epoch: this.#epoch + 1 } : { epoch: this.#epoch + 1, listen });
    this.#halt('handed over to the secondary (test failover)');
  }

  /**
   * Test restart secondary: the secondary discards its VM and joins again (a fresh clone). The primary
   * runs alone meanwhile; nothing is lost.
   */
  restartSecondary(): void {
    if (!this.#channel || (this.#phase !== 'protected' && this.#phase !== 'cloning')) {
      throw new FtError('ERR_LOCKSTEP_FT_STATE', `restart secondary needs a secondary; the VM is ${this.describe()}`);
    }
    this.#channel.send({ type: 'control', op: 'restart' });
  }

  /** Turns FT off: the secondary is dismissed and none may join until {@link enable}. */
  async disable(): Promise<void> {
    await this.#dismiss('disabled', 'FT turned off');
  }
  /** Suspends FT (as vSphere's "Suspend Fault Tolerance"): like disable, shown as suspended. */
  async suspend(): Promise<void> {
    await this.#dismiss('suspended', 'FT suspended');
  }
  /** Turns FT (back) on: a secondary may join. */
  enable(): void {
    if (this.#phase === 'disabled' || this.#phase === 'suspended') this.#setPhase('alone');
  }
  /**
   * Migrate the secondary: the next secondary that joins replaces the current one (which is dismissed
   * when the newcomer has authenticated), then is cloned. Protection lapses for the clone's duration.
   */
  migrateSecondary(): void {
    if (this.#phase !== 'protected') throw new FtError('ERR_LOCKSTEP_FT_STATE', `migrate secondary needs a protected VM; it is ${this.describe()}`);
    this.#replaceNext = true;
  }
  #replaceNext = false;
  #waitingJoin: Channel | undefined;

  /** Stops everything: the guest, the channel, the listener. The secondary is dismissed (it will not go live). */
  async stop(): Promise<void> {
    if (this.#channel && !this.#channel.closed) this.#channel.send({ type: 'bye', reason: 'primary stopped' });
    this.#halt('stopped');
    await this.#runLoop;
    await this.#server?.close();
  }

  // ---- the guest -----------------------------------------------------------------------------------

  async #run(): Promise<void> {
    for (;;) {
      if (this.#hold || this.#awaitSecondary) {
        await new Promise<void>((r) => (this.#resumeRun = r));
        if (this.#phase === 'halted') return;
      }
      let r: RunResult;
      try {
        r = await this.machine.run();
      } catch (err) {
        this.#halt(`the machine failed: ${(err as Error).message}`);
        return;
      }
      if (r.kind === 'stopped') {
        const p = this.#pause;
        this.#pause = undefined;
        if (p) {
          try {
            p.fn();
            p.resolve();
          } catch (err) {
            p.reject(err);
          }
        }
        if (this.#phase === 'halted') return;
        continue;
      }
      // The guest ended: the log says so, the secondary replays to the same end.
      if (this.#recorder) {
        this.#recorder.finish(r);
        this.#recorder = undefined;
      }
      this.machine[internal].emitOutputs(this.machine[internal].native.setGate(false));
      this.#setPhase('ended');
      this.emit('ended', r);
      return;
    }
  }
  #resumeRun: () => void = () => {};

  /** Runs `fn` with the guest stopped (between runs); resumes it after unless held. */
  #pauseFor(fn: () => void): Promise<void> {
    if (!this.machine.running) {
      fn();
      return Promise.resolve();
    }
    return new Promise<void>((resolve, reject) => {
      this.#pause = { fn, resolve, reject };
      this.machine.stop();
    });
  }

  // ---- joining secondaries and the clone -------------------------------------------------------------

  #onJoin(ch: Channel): void {
    const refuse = (why: string) => {
      ch.send({ type: 'bye', reason: why });
      ch.close(why);
    };
    if (this.#phase === 'protected' && this.#replaceNext && this.#channel) {
      this.#replaceNext = false;
      const old = this.#channel;
      old.send({ type: 'bye', reason: 'replaced by a migrated secondary' });
      this.#dropSecondary();
      old.close('replaced');
      void this.#recover('secondary migrated', ch);
      return;
    }
    if (this.#phase === 'recovering') {
      // Still winning the next epoch after losing the previous secondary: take this one right after.
      this.#waitingJoin?.close('superseded by a newer secondary');
      this.#waitingJoin = ch;
      return;
    }
    if (this.#phase === 'disabled' || this.#phase === 'suspended') return refuse(`FT is ${this.#phase} for VM ${this.vmId}`);
    if (this.#phase !== 'alone') return refuse(`VM ${this.vmId} already has a secondary (or is ${this.#phase})`);
    void this.#clone(ch).catch((err: unknown) => {
      this.emit('warning', `clone failed: ${(err as Error).message}`);
      ch.close('clone failed');
    });
  }

  async #clone(ch: Channel): Promise<void> {
    const native = this.machine[internal].native;
    this.#channel = ch;
    this.#setPhase('cloning');
    this.#cloneStart = performance.now();
    this.#resetStream();
    this.#detector = new FailureDetector(this.#o.timeoutMs, performance.now());
    ch.on('message', (m: Message) => this.#onMessage(ch, m));
    ch.on('close', (reason: string) => {
      if (this.#channel === ch) void this.#recover(`the logging channel closed: ${reason}`);
    });
    const diskPath = this.#o.separateDisk;
    ch.send({
      type: 'clone-begin',
      meta: { vmId: this.vmId, memory: this.machine.memory, clock: this.machine.clock, epoch: this.#epoch, disk: diskPath ? 'separate' : 'shared', ...(this.#o.meta ?? {}) },
    });
    let rounds = 0;
    let pages = 0;
    let bytes = 0;
    let first = true;
    // Separate disks: iterative pre-copy of the image first (the disk tracks the chunks it writes).
    const diskFd = diskPath ? openSync(diskPath, 'r') : undefined;
    const diskBytes = diskFd === undefined ? 0 : fstatSync(diskFd).size;
    const sendChunks = (chunks: Uint32Array): number => {
      if (diskFd === undefined) return 0;
      let sent = 0;
      for (const c of chunks) {
        const offset = c * DISK_CHUNK;
        const len = Math.min(DISK_CHUNK, diskBytes - offset) & ~511;
        if (len <= 0) continue;
        const buf = Buffer.allocUnsafe(len);
        readSync(diskFd, buf, 0, len, offset);
        ch.send({ type: 'clone-disk', offset: BigInt(offset), data: buf });
        sent += len;
      }
      return sent;
    };
    try {
      if (diskFd !== undefined) {
        for (let r = 0, firstDisk = true; r < PRECOPY_MAX_ROUNDS; r++, firstDisk = false) {
          const chunks = native.takeDiskDirty(firstDisk);
          bytes += sendChunks(chunks);
          await new Promise((resolve) => setImmediate(resolve)); // let the guest and the socket breathe
          if (this.#channel !== ch) return;
          if (!firstDisk && chunks.length <= DISK_CONVERGED_CHUNKS) break;
        }
      }
      await this.#cloneMemory(ch, { rounds, pages, bytes, first }, sendChunks);
    } finally {
      if (diskFd !== undefined) closeSync(diskFd);
    }
  }

  async #cloneMemory(ch: Channel, c: { rounds: number; pages: number; bytes: number; first: boolean }, sendChunks: (chunks: Uint32Array) => number): Promise<void> {
    const native = this.machine[internal].native;
    let { rounds, pages, bytes, first } = c;
    const separate = this.#o.separateDisk !== undefined;
    // Iterative pre-copy while the guest runs.
    let previous = Infinity;
    for (;;) {
      const n = await this.#precopyRound(ch, first);
      if (this.#channel !== ch) return;
      rounds++;
      pages += n;
      bytes += n * 4100;
      first = false;
      if (this.#phase === 'ended' || this.#phase === 'halted') return this.#abandonClone(ch);
      if (n <= PRECOPY_CONVERGED_PAGES || rounds >= PRECOPY_MAX_ROUNDS) break;
      // Not converging (the guest dirties pages about as fast as they are sent): slow the guest down,
      // more each round, so the last dirty set — what the pause copies — shrinks (VMware's "stun during
      // page send"). Lifted after the stop-and-copy.
      if (rounds >= 2 && n > previous / 2) native.setThrottle(Math.min(0.95, 0.3 * (rounds - 1)));
      previous = n;
    }
    // Stop-and-copy: the pause covers copying the last dirty pages and the hart and devices, and starting
    // the log; sending happens after the guest runs again.
    if ((this.#phase as Phase) === 'ended' || (this.#phase as Phase) === 'halted') return this.#abandonClone(ch);
    let finalPages: Uint8Array = new Uint8Array(0);
    let state: Uint8Array = new Uint8Array(0);
    let consolePosition = 0n;
    let pauseMs = 0;
    for (let attempt = 0; ; attempt++) {
      let done = false;
      const t0 = performance.now();
      await this.#pauseFor(() => {
        // Separate disks: stop where no disk request is in flight, so no completion delivered after the
        // copy can refer to an image state the copy did not capture (bounded: then go ahead anyway; the
        // state hash would expose a difference).
        if (separate && attempt < 200 && native.diskInFlight() > 0) return;
        finalPages = native.copyPages(first);
        bytes += sendChunks(native.takeDiskDirty(false));
        state = native.snapshot(false);
        consolePosition = native.consolePosition(); // the secondary's console numbering continues from here
        this.#startRecording();
        done = true;
      });
      pauseMs = performance.now() - t0;
      if (done) {
        native.setThrottle(0); // lag control takes over from here
        break;
      }
      await sleep(1);
      if (this.#channel !== ch) return;
    }
    if (this.#channel !== ch) return;
    pages += finalPages.length / 4100;
    bytes += finalPages.length + state.length;
    this.#sendPages(ch, finalPages);
    const instret = native.progress();
    ch.send({ type: 'clone-final', state, meta: { instret: String(instret), epoch: this.#epoch, consolePosition: String(consolePosition) } });
    ch.send({ type: 'clone-done' });
    this.#cloneSent = true;
    for (const b of this.#queued) this.#sendBatch(ch, b);
    this.#queued = [];
    this.#lastPause = pauseMs;
    this.#cloneReport = { rounds: rounds + 1, pages, bytes, pauseMs };
  }

  /** The guest ended (or this side halted) during a clone: nothing to protect; the joiner is dismissed. */
  #abandonClone(ch: Channel): void {
    this.machine[internal].native.setThrottle(0);
    ch.send({ type: 'bye', reason: 'the guest ended during the clone' });
    if (this.#channel === ch) this.#dropSecondary();
    ch.close('the guest ended during the clone');
  }

  #sendPages(ch: Channel, buf: Uint8Array): void {
    const all = pagesFromNative(buf);
    for (let i = 0; i < all.length; i += PAGES_PER_MESSAGE) ch.send({ type: 'clone-pages', pageSize: 4096, pages: all.slice(i, i + PAGES_PER_MESSAGE) });
  }

  /** One pre-copy round; resolves with the number of pages it sent. */
  #precopyRound(ch: Channel, first: boolean): Promise<number> {
    const m = this.machine[internal];
    if (!this.machine.running) {
      const buf = m.native.copyPages(first);
      this.#sendPages(ch, buf);
      return Promise.resolve(buf.length / 4100);
    }
    return new Promise<number>((resolve) => {
      let n = 0;
      const take = () => {
        const { pages, done } = m.native.takePrecopy();
        if (pages.length > 0) {
          this.#sendPages(ch, pages);
          n += pages.length / 4100;
        }
        if (done || this.#channel !== ch || !this.machine.running) {
          m.removeDrain(take);
          if (!done && !this.machine.running) {
            // The guest stopped mid-round (it ended or we paused): copy the rest directly.
            const rest = m.native.copyPages(first);
            this.#sendPages(ch, rest);
            n += rest.length / 4100;
          }
          resolve(n);
        }
      };
      m.addDrain(take);
      if (!m.native.precopyStart(first)) {
        m.removeDrain(take);
        resolve(0);
      }
    });
  }

  #startRecording(): void {
    const native = this.machine[internal].native;
    this.#recorder = new Recorder(this.machine, { hashInterval: this.#o.hashInterval, ...(this.#o.ringBytes ? { ringBytes: this.#o.ringBytes } : {}) });
    this.#recorder.on('batch', (b) => this.#onBatch(b));
    if (this.#o.outputRule) native.setGate(true);
  }

  #onBatch(b: Uint8Array): void {
    const ch = this.#channel;
    if (!ch || ch.closed) return; // alone, or claiming the arbiter: the log goes nowhere
    if (!this.#cloneSent) {
      this.#queued.push(b.slice());
      return;
    }
    this.#sendBatch(ch, b);
  }

  #sendBatch(ch: Channel, b: Uint8Array): void {
    const lsn = batchLsn(b);
    this.#sentLsn = lsn;
    this.#sentAt.set(lsn, performance.now());
    this.#sentBytes += b.length;
    this.#totalLogBytes += b.length;
    // Batches read in one go (one doorbell) leave in one LOG frame: one HMAC and one write for all.
    this.#outbox.push(b);
    if (this.#outbox.length === 1) {
      queueMicrotask(() => {
        const group = this.#outbox;
        this.#outbox = [];
        if (ch.closed || group.length === 0) return;
        ch.sendLog(group.length === 1 ? group[0]! : Buffer.concat(group));
      });
    }
    if (this.#sentBytes - this.#ackedBytes > this.#o.maxUnackedBytes) this.#recorder?.pause(); // the ring fills, the guest stalls
  }
  #outbox: Uint8Array[] = [];

  #resetStream(): void {
    this.#sentLsn = -1n;
    this.#ackedLsn = -1n;
    this.#releasedLsn = -1n;
    this.#releaseSent = -1n;
    this.#sentBytes = 0;
    this.#ackedBytes = 0;
    this.#sentAt.clear();
    this.#queued = [];
    this.#cloneSent = false;
    this.#secondaryInstret = 0n;
    this.#replayRate = 0;
    this.#rateSample = { at: 0, instret: 0n, busy: false };
  }

  // ---- messages from the secondary -------------------------------------------------------------------

  #onMessage(ch: Channel, m: Message): void {
    if (ch !== this.#channel) return;
    this.#detector?.heard(performance.now());
    switch (m.type) {
      case 'ack':
        this.#onAck(m.lsn, m.instret, Number(m.bytes));
        break;
      case 'heartbeat':
        break;
      case 'control':
        if (m.op === 'hello' && typeof m.listen === 'string') this.#secondaryListen = m.listen;
        if (m.op === 'cloned' && this.#phase === 'cloning' && this.#cloneSent) this.#inLockstep();
        break;
      case 'bye':
        this.emit('warning', `the secondary left: ${m.reason}`);
        void this.#recover(`the secondary left: ${m.reason}`);
        break;
      default:
        // Anything else from a secondary is a protocol violation.
        ch.close(`unexpected ${m.type} message from the secondary`);
    }
  }

  #onAck(lsn: bigint, instret: bigint, bytes: number): void {
    if (lsn > this.#sentLsn) {
      this.#channel?.close(`the secondary acknowledged lsn ${lsn} but only ${this.#sentLsn} was sent`);
      return;
    }
    const now = performance.now();
    if (lsn > this.#ackedLsn) {
      // The batches this ack covers, oldest first (the map is in send order): the latest gives the round
      // trip, the oldest how long the oldest output released now was held at least.
      let oldest: number | undefined;
      let sent: number | undefined;
      for (const [k, t] of this.#sentAt) {
        if (k > lsn) break;
        oldest ??= t;
        if (k === lsn) sent = t;
        this.#sentAt.delete(k);
      }
      if (sent !== undefined) {
        this.#lastAckLatency = now - sent;
        this.emit('ack', this.#lastAckLatency);
      }
      this.#ackedLsn = lsn;
      this.#ackedBytes = Math.max(this.#ackedBytes, bytes);
      this.#secondaryInstret = instret;
      const rs = this.#rateSample;
      if (now - rs.at >= 20) {
        const dt = (now - rs.at) / 1000;
        const di = Number(instret - rs.instret);
        if (rs.at > 0 && rs.busy && di > 0) {
          const r = di / dt;
          this.#replayRate = this.#replayRate === 0 ? r : 0.7 * this.#replayRate + 0.3 * r;
        }
        // Busy: more than a slice behind, so it was replaying flat out rather than waiting for log.
        this.#rateSample = { at: now, instret, busy: Number(this.machine[internal].native.progress() - instret) > 2 ** 22 };
      }
      const native = this.machine[internal].native;
      const held = native.held();
      const out = native.release(lsn);
      this.machine[internal].emitOutputs(out);
      this.#releasedLsn = lsn;
      if (held > 0 && oldest !== undefined) this.emit('release', now - oldest);
      // Tell the secondary soon (at most every RELEASE_NOTICE_MS): what it knows was released it need not
      // re-emit at a go-live. Less often costs duplicates after a failover, never losses.
      if (!this.#releaseScheduled) {
        this.#releaseScheduled = true;
        setTimeout(() => {
          this.#releaseScheduled = false;
          this.#sendRelease();
        }, RELEASE_NOTICE_MS).unref();
      }
      if (this.#recorder?.paused && this.#sentBytes - this.#ackedBytes < this.#o.maxUnackedBytes / 2) this.#recorder.resume();
      if (this.#phase === 'cloning' && this.#cloneSent) this.#inLockstep();
    }
  }

  #inLockstep(): void {
    this.#setPhase('protected');
    if (this.#awaitSecondary) {
      this.#awaitSecondary = false;
      this.#resumeRun();
    }
    const report: CloneReport = { ...(this.#cloneReport ?? { rounds: 0, pages: 0, bytes: 0, pauseMs: 0 }), totalMs: performance.now() - this.#cloneStart };
    this.emit('cloned', report);
  }

  #sendRelease(force = false): void {
    const ch = this.#channel;
    if (!ch || ch.closed) return;
    if (force || this.#releasedLsn > this.#releaseSent) {
      this.#releaseSent = this.#releasedLsn;
      if (this.#releasedLsn >= 0n) ch.send({ type: 'release', lsn: this.#releasedLsn });
    }
  }

  // ---- heartbeats, failure detection, lag control ------------------------------------------------------

  #tick(): void {
    if (this.#phase === 'halted' || this.#phase === 'ended') return;
    // Closed without stop(): the 'close' event halts us; this covers a machine closed before start().
    if (this.machine.closed) return this.#machineClosed();
    const now = performance.now();
    const native = this.machine[internal].native;
    const instret = native.progress();
    if (this.#mips.at > 0 && now > this.#mips.at) {
      const rate = Number(instret - this.#mips.instret) / ((now - this.#mips.at) * 1000);
      this.#mips.rate = this.#mips.rate === 0 ? rate : 0.7 * this.#mips.rate + 0.3 * rate;
    }
    this.#mips.at = now;
    this.#mips.instret = instret;
    if (now - this.#bw.at >= 1000) {
      const dt = this.#bw.at === 0 ? 1 : (now - this.#bw.at) / 1000;
      this.#bw.rate = (this.#totalLogBytes - this.#bw.bytes) / dt;
      this.#bw.at = now;
      this.#bw.bytes = this.#totalLogBytes;
    }
    const ch = this.#channel;
    if (!ch || ch.closed || (this.#phase !== 'protected' && this.#phase !== 'cloning')) {
      if (this.#lag.ratio > 0 || this.#lagSec > 0) {
        this.#lagSec = 0;
        this.#lagInstr = 0;
        native.setThrottle(this.#lag.update(0));
      }
      return;
    }
    ch.send({ type: 'heartbeat', sentAtMs: now, instret, releasedLsn: this.#releasedLsn < 0n ? 0n : this.#releasedLsn });
    this.#sendRelease();
    if (this.#detector?.expired(now)) {
      void this.#recover(`no word from the secondary for ${Math.round(this.#detector.silence(now))} ms (timeout ${this.#o.timeoutMs} ms)`);
      return;
    }
    if (this.#phase === 'protected') {
      this.#lagInstr = Math.max(0, Number(instret - this.#secondaryInstret));
      this.#lagSec = this.#lagMs(this.#lagInstr) / 1000;
      native.setThrottle(this.#lag.update(this.#lagSec * 1000));
    }
  }

  /**
   * The lockstep interval: how long the secondary needs to replay what it is behind by (its backlog of
   * instructions over the speed it replays at when it has a backlog). This is what a failover would add
   * to the outage, and what lag control keeps near its target.
   */
  #lagMs(backlog: number): number {
    if (backlog <= 0) return 0;
    const rate = this.#replayRate > 0 ? this.#replayRate : Math.max(this.#mips.rate, 1) * 1e6;
    return (1000 * backlog) / rate;
  }
  /** Replay speed of the secondary while it had a backlog (instructions/s), from its acks. */
  #replayRate = 0;
  #rateSample = { at: 0, instret: 0n, busy: false };

  // ---- losing the secondary --------------------------------------------------------------------------

  #dropSecondary(): void {
    this.#channel = undefined;
    this.#detector = undefined;
  }

  /**
   * The secondary is gone (or about to be replaced): win the next epoch, then release what is held and
   * go on alone. Outputs stay held until the arbiter has answered; losing it means the secondary went
   * live, and this side halts without letting anything out.
   */
  async #recover(reason: string, next?: Channel): Promise<void> {
    if (this.#phase === 'recovering' || this.#phase === 'halted' || this.#phase === 'ended') return;
    const wasProtected = this.#phase === 'protected';
    const ch = this.#channel;
    this.#dropSecondary();
    ch?.close(reason);
    this.#setPhase('recovering');
    this.emit('warning', `secondary lost: ${reason}`);
    const want = this.#epoch + 1;
    try {
      const r = await claimEpoch(this.#o.arbiter, this.vmId, want, this.owner, {
        signal: this.#claimAbort.signal,
        onRetry: (err) => this.emit('warning', `arbiter unreachable (${err.message}); outputs stay held, retrying`),
      });
      if (!r.won) {
        this.#halt(`the secondary went live: epoch ${want} belongs to ${r.holder.owner ?? 'another side'}`);
        return;
      }
    } catch (err) {
      if (err instanceof ArbiterError && err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED') return; // halted meanwhile
      this.#halt(`cannot claim epoch ${want}: ${(err as Error).message}`);
      return;
    }
    if ((this.#phase as Phase) === 'halted') return; // stopped meanwhile
    this.#epoch = want;
    if (wasProtected) this.#failovers++;
    // This side owns the VM: everything held may leave, and the log goes nowhere until a new secondary.
    const native = this.machine[internal].native;
    this.machine[internal].emitOutputs(native.setGate(false));
    native.setThrottle(0);
    const rec = this.#recorder;
    this.#recorder = undefined;
    if (rec) await this.#pauseFor(() => rec.finish());
    this.#setPhase('alone');
    this.emit('secondary-lost', reason);
    const waiting = next ?? this.#waitingJoin;
    this.#waitingJoin = undefined;
    if (waiting && !waiting.closed) this.#onJoin(waiting);
  }

  async #dismiss(phase: 'disabled' | 'suspended', why: string): Promise<void> {
    if (this.#phase === 'halted' || this.#phase === 'ended') throw new FtError('ERR_LOCKSTEP_FT_STATE', `the VM is ${this.describe()}`);
    const ch = this.#channel;
    if (ch) {
      ch.send({ type: 'bye', reason: why });
      await this.#recover(why);
    }
    if (this.#phase === 'alone') this.#setPhase(phase);
  }

  /**
   * The machine was closed under this primary (Machine.close() without stop() first): nothing more can
   * run, be logged or be released. Halt — an event with a coded error, never an exception from a timer.
   */
  #machineClosed(): void {
    if (this.#phase === 'halted') return;
    const error = new FtError('ERR_LOCKSTEP_FT_MACHINE_CLOSED', `the machine of VM ${this.vmId} was closed while its primary ran (call FtPrimary.stop() before Machine.close())`);
    this.#halt(error.message, error);
  }

  #halt(reason: string, error?: FtError): void {
    if (this.#phase === 'halted') return;
    this.#setPhase('halted');
    this.#claimAbort.abort(new Error(reason));
    this.#hold = true;
    if (this.#timer) clearInterval(this.#timer);
    if (this.#epochTimer) clearInterval(this.#epochTimer);
    this.machine.off('close', this.#onMachineClose);
    this.#refusals.close();
    // An operation waiting for the guest to stop (test failover, a clone's pause) would wait forever.
    const pause = this.#pause;
    this.#pause = undefined;
    pause?.reject(new FtError('ERR_LOCKSTEP_FT_STATE', `the primary halted: ${reason}`));
    const ch = this.#channel;
    this.#dropSecondary();
    ch?.close(reason);
    this.machine.stop();
    this.#resumeRun();
    void this.#server?.close();
    if (error) this.emit('halted', reason, error);
    else this.emit('halted', reason);
  }

  #setPhase(p: Phase): void {
    if (this.#phase === p) return;
    const before = describeStatus(this.status);
    this.#phase = p;
    if (describeStatus(this.status) !== before) this.emit('status', this.status);
  }

  async #until(cond: () => boolean, timeoutMs: number): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (!cond()) {
      if (performance.now() > end) throw new FtError('ERR_LOCKSTEP_FT_STATE', `timed out after ${timeoutMs} ms`);
      await sleep(2);
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
