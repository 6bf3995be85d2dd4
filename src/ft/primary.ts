// The primary half of a fault-tolerant pair: runs the guest, records its inputs, streams the log to the
// secondary, releases outputs only behind acknowledged log (the output rule), slows down when the
// secondary lags, and clones a new secondary by pre-copy. Mirrors secondary.ts.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { LockstepError, OptionError } from '../errors.js';
import { Recorder, endReasonOf } from '../log/recorder.js';
import type { Machine } from '../machine/machine.js';
import { PAGE_RECORD_BYTES, PAGE_SIZE, replicationPort, type LinkEnd, type PageRecord, type ReplicationPort } from '../machine/replication-port.js';
import { allocateRing } from '../native/ring.js';
import type { RunResult } from '../machine/types.js';
import { ChannelServer, type Channel, type ChannelOptions, type Message } from '../protocol/channel.js';
import { decodeMessage } from '../protocol/messages.js';
import { RefusalLog } from '../observability/refusals.js';
import { ArbiterError, validateOwnerId, type Arbiter } from './arbiter.js';
import { claimEpoch, newOwnerId } from './claim.js';
import { publishPrimary } from './diagnostics.js';
import { batchLsn } from '../log/format.js';
import { FT_DEFAULTS, LagController, checkCloneTimeout, describeStatus, handOverRetryMs, type ProtectionStatus } from './control.js';
import { SecondarySession, type CloneFigures } from './session.js';

/** A pre-copy round with fewer dirty pages than this ends the pre-copy: the rest goes in the pause. */
const PRECOPY_CONVERGED_PAGES = 256;
const PRECOPY_MAX_ROUNDS = 8;
/** The smallest log ring a native link reads: a batch (at most 1 MiB of records) must fit it whole. */
const NATIVE_MIN_RING_BYTES = 2 * 1024 * 1024;
/** The largest machine state (base64) a follow notice carries: CONTROL messages are at most 64 KiB. */
const FOLLOW_STATE_MAX = 60_000;
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

/**
 * Reads the separate disk's chunks `chunks` with the guest stopped and sends them to the clone; `kept`
 * collects the messages too (a hand-over without an arbiter sends them again to a target that asks).
 */
type ReadChunksPaused = (chunks: Uint32Array, kept?: Message[]) => void;

/**
 * A live migration without an arbiter that sent GO_LIVE (#migrateDirect): what a target that lost its
 * connection and asks again is answered, until it confirms or the retry window ends.
 */
interface PendingHandOver {
  /** The hand-over point P (the guest's position when it was held). */
  instret: bigint;
  /** The final state S(P) as sent in clone-final: its SHA-256 (hex) is what the target must hold. */
  state: Uint8Array;
  digest: string | undefined;
  goLive: Message;
  /**
   * Everything sent after the target confirmed the last catch-up (the last pages, disk chunks, S(P)):
   * sent again to a target that lost it. Undefined when that confirmation never came (the target may
   * lack earlier pages too: it cannot be completed from here).
   */
  final: Message[] | undefined;
  /** The target said it took GO_LIVE (CONTROL `took-go-live`, on its connection or on a new one). */
  confirmed: boolean;
  /** Times a target asked again. */
  asked: number;
}

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
  /**
   * The silence tolerated while a secondary is cloned, until it restored the final state, ms: at least
   * this, or `timeoutMs` if longer (default {@link FT_DEFAULTS}.cloneTimeoutMs, 10 s). A clone stalls
   * both sides on a loaded host, and nothing waits on a quick verdict then (a cloning secondary cannot go
   * live; the primary holds no output for it before the final state). A peer that dies still closes the
   * connection at once.
   */
  cloneTimeoutMs?: number;
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
  /** Bytes of the log ring between the vCPU thread and JavaScript or the native link (default 4 MiB; a power of two; at least 2 MiB natively). */
  ringBytes?: number;
  /** How often to check that no newer epoch was claimed (default 1000 ms; 0 = never). */
  epochCheckMs?: number;
  /**
   * Where the log and its acknowledgements go after the clone (default `native`): a native thread owns
   * the connection, frames batches straight from the log ring, and releases held outputs on each ACK
   * without JavaScript. `js` keeps everything on the event loop (as a channel over TLS always does).
   * `maxUnackedBytes` applies to `js` only; natively the log ring itself holds the guest back.
   */
  dataPath?: 'native' | 'js';
  /**
   * A live migration's target that just went live: the VM's secondary follows it from exactly this
   * state (no clone). The log is recorded and outputs held from the first instruction; the pair counts
   * as protected meanwhile (the secondary holds this state and can go live, nothing after it has left).
   * If no secondary resumes here within `timeoutMs`, this side claims the next epoch and runs alone.
   */
  follower?: { instret: bigint; stateHash: bigint };
}

/** Figures of a running pair. */
export interface FtPrimaryStats {
  epoch: number;
  status: ProtectionStatus;
  /** Log bytes sent to the current secondary, and in all. */
  logBytes: number;
  /** Log batches and logging-channel LOG frames sent, counted as {@link logBytes} is (each frame adds a 20-byte header and a 32-byte MAC on the wire). */
  logBatches: number;
  logFrames: number;
  /** The guest's network input so far (bytes of the frames delivered to it), read with {@link logBytes}: log ÷ input over an interval. */
  guestInputBytes: number;
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
  /** Where the current secondary's log travels (see {@link FtPrimaryOptions.dataPath}); undefined without one. */
  dataPath: 'native' | 'js' | undefined;
  /** A secondary is being moved (see {@link FtPrimary.migrateSecondary}); the current one protects the VM meanwhile. */
  moving: boolean;
}

/** What a move of the secondary did ({@link FtPrimary.migrateSecondary}). */
export interface MoveReport extends CloneFigures {
  /** From the new secondary's join to the end of the switch-over, ms. */
  totalMs: number;
  /** The epoch the primary holds after the move (its fence against the old secondary). */
  epoch: number;
  /**
   * Where the switch-over's pause went, ms: stopping the guest, the old secondary's last
   * acknowledgement, the final copy, the new one's confirmation, dismissing the old one, the fence claim.
   */
  steps: { stopMs: number; drainMs: number; copyMs: number; confirmMs: number; dismissMs: number; fenceMs: number };
}

/**
 * Where a protected VM's migration held the guest, ms: stopping it, the secondary's last acknowledgement,
 * the final copy and GO_LIVE to the target, the secondary's answer to the follow notice and the target
 * taking GO_LIVE.
 */
export interface MigrateSteps {
  stopMs: number;
  drainMs: number;
  copyMs: number;
  followMs: number;
}

/** What a live migration did ({@link FtPrimary.migrate}): `migrated`. */
export interface MigrateReport {
  /** From the target's join to GO_LIVE's confirmation, ms. */
  totalMs: number;
  /** The guest held at the source for the switch-over, ms (stop to GO_LIVE sent). */
  handOverMs: number;
  /** The VM's secondary was told to follow the target (it stays protected without a new clone). */
  follower: boolean;
  steps?: MigrateSteps;
  /** Wall-clock time (ms since the epoch) at which the guest was held: where the switch-over begins. */
  heldAt?: number;
  /** FT off with a shared arbiter: how long the guest ran on after the catch-up, waiting for the claim made in the target's name, ms. */
  claimWaitMs?: number;
  /** Pre-copy rounds, pages and bytes sent in all (the final copy included), and the pages of the final copy. */
  rounds?: number;
  pages?: number;
  bytes?: number;
  finalPages?: number;
}

export interface CloneReport extends CloneFigures {
  /** Whole clone, from join to the first acknowledged batch, ms. */
  totalMs: number;
}

export interface FtPrimaryEvents {
  /** Protection status changed. */
  status: [status: ProtectionStatus];
  /** A new secondary is in lockstep. */
  cloned: [report: CloneReport];
  /** A move of the secondary finished: the new one protects the VM, the old one was dismissed. */
  moved: [report: MoveReport];
  /** A move of the secondary (or a live migration) was called off; the secondary the VM had protects it still (unless `secondary-lost` follows). */
  'move-failed': [reason: string];
  /**
   * Live migration: GO_LIVE went to the target (`handed-over` and `halted` follow at once). `follower`:
   * the VM's secondary was told to follow the target (it stays protected without a new clone).
   */
  migrated: [report: MigrateReport];
  /** A migration's target: the VM's secondary resumed here without a clone, `waitedMs` after go-live. */
  followed: [info: { waitedMs: number }];
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

type Phase = 'idle' | 'alone' | 'cloning' | 'protected' | 'rejoining' | 'recovering' | 'disabled' | 'suspended' | 'ended' | 'halted';

/**
 * The primary VM of a fault-tolerant pair.
 *
 * ```ts
 * const p = new FtPrimary({ machine, vmId: 'kv1', key, arbiter: new FileArbiter({ dir }) });
 * const { port } = await p.start();   // secondaries join at port
 * p.on('status', (s) => console.log(describeStatus(s)));
 * ```
 */
/** Records in `steps[k]` the time since the previous call (or since it was made). */
/** A migration's pre-copy figures and the wall-clock moment its guest was held (`t0`, performance.now()). */
function migrateFigures(figures: CloneFigures, finalPages: number, t0: number): Pick<MigrateReport, 'heldAt' | 'rounds' | 'pages' | 'bytes' | 'finalPages'> {
  return { heldAt: Date.now() - (performance.now() - t0), rounds: figures.rounds, pages: figures.pages, bytes: figures.bytes, finalPages };
}

function stepTimer<K extends string>(steps: Record<K, number>): (k: K) => void {
  let mark = performance.now();
  return (k) => {
    const now = performance.now();
    steps[k] = now - mark;
    mark = now;
  };
}

export class FtPrimary extends EventEmitter<FtPrimaryEvents> {
  readonly machine: Machine;
  readonly vmId: string;
  readonly #port: ReplicationPort;
  readonly #o: Required<Omit<FtPrimaryOptions, 'tls' | 'epoch' | 'meta' | 'listen' | 'disabled' | 'awaitSecondary' | 'owner' | 'separateDisk' | 'ringBytes' | 'epochCheckMs' | 'dataPath' | 'follower'>> & FtPrimaryOptions;
  /** This incarnation's owner token at the arbiter (a promoted secondary's own). */
  readonly owner: string;
  /** Aborted by {@link #halt}: a halted side makes no further claim. */
  readonly #claimAbort = new AbortController();
  #epoch = 0;
  #phase: Phase = 'idle';
  #server: ChannelServer | undefined;
  /** The current secondary, from its join to its loss. */
  #session: SecondarySession | undefined;
  #recorder: Recorder | undefined;
  /** A recording whose log ring a native link reads (instead of {@link #recorder}): its ring's data bytes. */
  #nativeRing: number | undefined;
  /** Log bytes sent to earlier secondaries (native links count their own). */
  #logBytesBefore = 0;
  #guestInputBytes = 0;
  #logBatchesBefore = 0;
  #logFramesBefore = 0;
  #runLoop: Promise<void> | undefined;
  #pause: { fn: () => void; resolve: () => void; reject: (e: unknown) => void } | undefined;
  #hold = false; // the run loop must not restart the guest (hand-over, halt)
  #awaitSecondary = false; // the guest has not started yet: it waits for its first secondary
  readonly #lag: LagController;
  #timer: NodeJS.Timeout | undefined;
  #totalLogBytes = 0;
  #totalLogBatches = 0;
  #totalLogFrames = 0;
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
    checkCloneTimeout(options.cloneTimeoutMs);
    this.machine = options.machine;
    this.#port = replicationPort(options.machine);
    this.vmId = options.vmId;
    this.#o = {
      heartbeatMs: FT_DEFAULTS.heartbeatMs,
      timeoutMs: FT_DEFAULTS.timeoutMs,
      cloneTimeoutMs: FT_DEFAULTS.cloneTimeoutMs,
      lagTargetMs: FT_DEFAULTS.lagTargetMs,
      maxLagMs: FT_DEFAULTS.maxLagMs,
      maxUnackedBytes: FT_DEFAULTS.maxUnackedBytes,
      outputRule: true,
      hashInterval: 2 ** 26,
      ...stripUndefined(options),
    };
    if (options.arbiter.kind === 'local' && !options.disabled) {
      throw new OptionError('arbiter', `VM ${options.vmId}: a primary without shared arbiter storage (a local arbiter) runs with FT off only (disabled: true)`);
    }
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
      case 'rejoining': // a migration's target: the secondary holds the hand-over state, nothing after it has left
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
    let addr: { host: string; port: number };
    try {
      addr = await this.#server.listen(this.#o.listen?.port ?? 0, this.#o.listen?.host ?? '127.0.0.1');
    } catch (err) {
      // stop() came while the channel was still binding: nothing runs, start() says so.
      if ((this.#phase as Phase) === 'halted') throw new FtError('ERR_LOCKSTEP_FT_STATE', `start(): the primary was stopped while starting (${(err as Error).message})`);
      throw err;
    }
    if ((this.#phase as Phase) === 'halted') throw new FtError('ERR_LOCKSTEP_FT_STATE', 'start(): the primary was stopped while starting');
    this.#address = addr;
    if (this.machine.closed) {
      this.#machineClosed();
      return addr;
    }
    this.machine.once('close', this.#onMachineClose);
    this.#setPhase(this.#o.disabled ? 'disabled' : 'alone');
    this.#awaitSecondary = this.#o.awaitSecondary === true && !this.#o.disabled;
    if (this.#o.follower && !this.#o.disabled) {
      // Recording (and holding outputs) before the first instruction: the follower replays from here.
      this.#beginRecording(this.#o.dataPath !== 'js' && !this.#o.tls);
      this.#followerSince = performance.now();
      this.#setPhase('rejoining');
    }
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
  /** A migration's target: when it went live (its follower has `timeoutMs` from here to resume). */
  #followerSince = 0;
  /** The follower's connection, from its join to its RESUME. */
  #followerJoining: Channel | undefined;
  /** JS recorder: batches recorded before the follower resumed. */
  #rejoinQueue: Uint8Array[] = [];

  /**
   * Fencing from outside: a newer epoch than this primary's means someone else owns the VM now (a
   * secondary that went live without our noticing, or a manager about to restart the VM elsewhere). Then
   * halt, whatever is held stays held. An unreachable arbiter proves nothing and changes nothing.
   */
  async #checkEpoch(): Promise<void> {
    // A switch-over claims the next epoch itself (its fence) before it takes it as its own.
    if (this.#epochChecking || this.#switching || this.#phase === 'recovering' || this.#phase === 'halted' || this.#phase === 'ended') return;
    this.#epochChecking = true;
    try {
      const mine = this.#epoch;
      const cur = await this.#o.arbiter.current(this.vmId);
      // The epoch an FT-off migration claimed in its target's name: that target goes live only on this
      // side's GO_LIVE, so it fences nothing here.
      const pre = this.#preclaimed;
      const migrating = pre !== undefined && cur?.epoch === pre.epoch && cur.owner === pre.owner;
      if (cur && cur.epoch > mine && this.#epoch === mine && (this.#phase as Phase) !== 'recovering' && !this.#switching && !migrating) {
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
    // The native link's poll reads the guest's input with the log's count; without one, read it here.
    if (!this.#session?.link) this.#sampleInput();
    const input = this.#guestInputBytes;
    return {
      epoch: this.#epoch,
      status: this.status,
      logBytes: this.#totalLogBytes,
      logBatches: this.#totalLogBatches,
      logFrames: this.#totalLogFrames,
      guestInputBytes: input,
      logBandwidth: this.#bw.rate,
      lagSeconds: this.#lagSec,
      lagInstructions: this.#lagInstr,
      unackedBytes: this.#session?.unackedBytes ?? 0,
      throttle: this.#lag.ratio,
      mips: this.#mips.rate,
      failovers: this.#failovers,
      lastAckLatencyMs: this.#lastAckLatency,
      heldOutputs: this.#phase === 'halted' ? 0 : this.#port.held(),
      lastClonePauseMs: this.#lastPause,
      rejectedConnections: this.#refusals.total,
      dataPath: this.#session ? (this.#session.native ? 'native' : 'js') : undefined,
      moving: this.#incoming !== undefined,
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
    const s = this.#session;
    if (this.#phase !== 'protected' || !s) throw new FtError('ERR_LOCKSTEP_FT_STATE', `test failover needs a protected VM; it is ${this.describe()}`);
    this.#refuseWhileMoving('test failover');
    await this.#handOverTo(s, 'test failover');
  }

  /**
   * Live migration: the next secondary to join (started on the target host) becomes the primary. It is
   * cloned — while the VM's secondary protects it when the VM is protected, as an ordinary clone
   * otherwise (also with FT off: the clone's log then guards only the migration) — and a hand-over as in
   * {@link testFailover} makes it the primary and this side halts (exit 0, `handed-over`). A protected
   * VM's secondary is told to follow the target and resumes there without a clone, so the VM is never
   * unprotected (docs/fault-tolerance.md, "Live migration"). No output is lost (all log is acknowledged and every output released before
   * `GO_LIVE`) and none is repeated (the target is told everything was released). Resolves once armed;
   * `migrated` / `move-failed` / `warning` tell the rest. `key`: the logging channel takes joins with this
   * key from now on (a key made for this one migration, handed to the target too) — only with FT off and
   * no arbiter, where the channel serves nothing but migrations.
   */
  migrate(options: { key?: Uint8Array } = {}): void {
    if (this.#phase !== 'protected' && this.#phase !== 'alone' && this.#phase !== 'disabled') {
      throw new FtError('ERR_LOCKSTEP_FT_STATE', `live migration needs a running VM that is protected, alone or with FT off; it is ${this.describe()}`);
    }
    this.#refuseWhileMoving('live migration');
    if (options.key !== undefined) {
      // Only where the logging channel serves nothing but migrations: a VM with FT off that can never
      // have a secondary (no arbiter). A protected VM's secondary follows the target with the pair key.
      if (this.#phase !== 'disabled' || this.#o.arbiter.kind !== 'local') {
        throw new FtError('ERR_LOCKSTEP_FT_STATE', `a key for one migration is only for a VM with FT off and no arbiter; ${this.vmId} is ${this.describe()} with a ${this.#o.arbiter.kind} arbiter`);
      }
      this.#server?.rekey(options.key);
    }
    this.#migrateNext = true;
    this.#moveNext = this.#phase === 'protected';
  }
  /** The next secondary to join is a live migration's target (see {@link migrate}). */
  #migrateNext = false;
  /** A hand-over sent GO_LIVE: the guest never runs here again, and a lost secondary is not recovered from. */
  #goLiveSent = false;
  /** A migration without an arbiter sent GO_LIVE and waits for its target's confirmation (#migrateDirect). */
  #handover: PendingHandOver | undefined;
  /** FT was off before a migration's clone (the target then runs with FT off too). */
  #migratingFromDisabled = false;
  /**
   * An FT-off migration claimed (or may have claimed) this epoch in its target's name before the pause
   * (#migrateDirect): the epoch check lets it be, and a migration called off re-claims above it.
   */
  #preclaimed: { epoch: number; owner: string } | undefined;

  /** Hands the VM over to `s` (in lockstep): guest stopped, all log acknowledged, everything released, GO_LIVE. */
  async #handOverTo(s: SecondarySession, reason: string, done?: () => void): Promise<void> {
    this.#hold = true;
    await this.#pauseFor(() => {});
    this.#recorder?.resume();
    // Everything the guest did is in batches now (a stopped run seals its last batch).
    if (s.native) {
      const ring = this.#nativeRing ?? 0;
      await this.#until(() => {
        s.link?.poll(); // released outputs out now: the release sent below then covers all of the log
        this.#pollLink(s);
        const f = s.link?.figures();
        return s.closed || (f !== undefined && this.#port.logFree() === ring && f.ackedLsn1 === f.logLsn1 && f.emittedLsn1 === f.ackedLsn1);
      }, 10_000);
    } else {
      await this.#until(() => s.ackedLsn >= s.sentLsn || s.closed, 10_000);
    }
    if (s.closed) {
      this.#hold = false;
      this.#resumeRun();
      throw new FtError('ERR_LOCKSTEP_FT_STATE', `${reason}: the secondary went away before it acknowledged the whole log`);
    }
    this.#sendRelease(s, true);
    s.send({ type: 'go-live', epoch: BigInt(this.#epoch + 1), reason });
    // From here this side never runs the guest again, whatever happens: the secondary may hold GO_LIVE.
    // It closes its connection as it takes GO_LIVE; until then this process stays, so that an exit
    // right after (a process that ends at `handed-over`) cannot cut GO_LIVE off before it left.
    this.#goLiveSent = true;
    const confirmed = await this.#until(() => s.closed, this.#o.timeoutMs).then(
      () => true,
      () => false,
    );
    if (!confirmed) this.emit('warning', `${reason}: the secondary did not take GO_LIVE within ${this.#o.timeoutMs} ms; this side does not resume (the secondary is live, or the VM is down)`);
    const listen = s.listen;
    done?.();
    this.emit('handed-over', listen === undefined ? { epoch: this.#epoch + 1 } : { epoch: this.#epoch + 1, listen });
    this.#halt(`handed over to the secondary (${reason})`);
  }

  /** A migration's target is in lockstep (cloned, or moved in): hand the VM over to it. */
  #migrateTo(s: SecondarySession): void {
    s.target = false;
    const t0 = performance.now();
    this.#handOverTo(s, 'live migration', () => this.emit('migrated', { totalMs: performance.now() - s.joinedAt, handOverMs: performance.now() - t0, follower: false })).then(
      () => undefined,
      (err: unknown) => {
        this.emit('warning', `live migration failed: ${(err as Error).message}`);
        this.emit('move-failed', `live migration: ${(err as Error).message}`);
      },
    );
  }

  /**
   * Test restart secondary: the secondary discards its VM and joins again (a fresh clone). The primary
   * runs alone meanwhile; nothing is lost.
   */
  restartSecondary(): void {
    this.#refuseWhileMoving('restart secondary');
    if (!this.#session || (this.#phase !== 'protected' && this.#phase !== 'cloning')) {
      throw new FtError('ERR_LOCKSTEP_FT_STATE', `restart secondary needs a secondary; the VM is ${this.describe()}`);
    }
    this.#session.send({ type: 'control', op: 'restart' });
  }

  /** Turns FT off: the secondary is dismissed and none may join until {@link enable}. */
  async disable(): Promise<void> {
    await this.#dismiss('disabled', 'FT turned off');
  }
  /** Suspends FT (as vSphere's "Suspend Fault Tolerance"): like disable, shown as suspended. */
  async suspend(): Promise<void> {
    await this.#dismiss('suspended', 'FT suspended');
  }
  /**
   * Turns FT (back) on: a secondary may join.
   * @throws FtError (`ERR_LOCKSTEP_FT_STATE`) over a local arbiter (arbiter-local.ts): with nothing shared to fence a
   *   side, a secondary that went live on a silence could run beside this primary
   */
  enable(): void {
    if (this.#o.arbiter.kind === 'local') throw new FtError('ERR_LOCKSTEP_FT_STATE', `FT cannot be turned on for VM ${this.vmId}: it runs without an arbiter (configure ft.arbiter and restart it to protect it)`);
    if (this.#phase === 'disabled' || this.#phase === 'suspended') this.#setPhase('alone');
  }
  /**
   * Migrate the secondary without a protection gap: the next secondary that joins is cloned while the
   * current one goes on protecting the VM; at a short switch-over both hold the same state, and the right
   * to go live passes from the old one to the new one in one arbiter claim; only then is the old one
   * dismissed for good (docs/fault-tolerance.md, "Moving the secondary"). `moved` reports the move,
   * `move-failed` a move called off (the current secondary still protects the VM).
   */
  migrateSecondary(): void {
    if (this.#phase !== 'protected') throw new FtError('ERR_LOCKSTEP_FT_STATE', `migrate secondary needs a protected VM; it is ${this.describe()}`);
    if (this.#incoming) throw new FtError('ERR_LOCKSTEP_FT_STATE', 'a secondary is being moved already');
    this.#moveNext = true;
  }
  /** The next secondary to join is a move's (see {@link migrateSecondary}). */
  #moveNext = false;
  /** The secondary a move brings in, from its join to the switch-over (or the move's failure). */
  #incoming: SecondarySession | undefined;
  /** A move's switch-over decides what a loss of either secondary means (see {@link #switchOver}). */
  #switching = false;
  #waitingJoin: Channel | undefined;

  #refuseWhileMoving(what: string): void {
    if (this.#incoming) throw new FtError('ERR_LOCKSTEP_FT_STATE', `${what}: a secondary is being moved; try again when the move is over`);
  }

  /** Stops everything: the guest, the channel, the listener. The secondary is dismissed (it will not go live). */
  async stop(): Promise<void> {
    const s = this.#session;
    const closing = s && !s.closed ? s.close('primary stopped') : undefined;
    this.#halt('stopped');
    await closing;
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
      if (this.#incoming) this.#moveFailed(this.#incoming, 'the guest ended');
      if (this.#recorder) {
        this.#recorder.finish(r);
        this.#recorder = undefined;
      }
      if (this.#nativeRing !== undefined) await this.#finishNative(r);
      this.#port.openGate();
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
    if (this.#phase === 'protected' && this.#moveNext && this.#session && !this.#incoming) {
      this.#moveNext = false;
      const s = new SecondarySession(ch, this.#o.timeoutMs, this.#o.heartbeatMs, this.#o.cloneTimeoutMs);
      s.target = this.#migrateNext;
      this.#migrateNext = false;
      void this.#beginMove(s);
      return;
    }
    if (this.#o.arbiter.kind === 'local' && (this.#handover !== undefined || (this.#session?.target === true && this.#migratingFromDisabled))) {
      return this.#answerTarget(ch);
    }
    if (this.#migrateNext && (this.#phase === 'alone' || this.#phase === 'disabled')) {
      this.#migrateNext = false;
      this.#migratingFromDisabled = this.#phase === 'disabled';
      const s = new SecondarySession(ch, this.#o.timeoutMs, this.#o.heartbeatMs, this.#o.cloneTimeoutMs);
      s.target = true;
      void this.#clone(s).catch((err: unknown) => {
        this.emit('warning', `clone failed: ${(err as Error).message}`);
        ch.close('clone failed');
      });
      return;
    }
    if (this.#phase === 'rejoining' && !this.#session) return this.#awaitFollower(ch);
    if (this.#phase === 'recovering') {
      // Still winning the next epoch after losing the previous secondary: take this one right after.
      this.#waitingJoin?.close('superseded by a newer secondary');
      this.#waitingJoin = ch;
      return;
    }
    if (this.#phase === 'disabled' || this.#phase === 'suspended') return refuse(`FT is ${this.#phase} for VM ${this.vmId}`);
    if (this.#phase !== 'alone') return refuse(`VM ${this.vmId} already has a secondary (or is ${this.#phase})`);
    void this.#clone(new SecondarySession(ch, this.#o.timeoutMs, this.#o.heartbeatMs, this.#o.cloneTimeoutMs)).catch((err: unknown) => {
      this.emit('warning', `clone failed: ${(err as Error).message}`);
      ch.close('clone failed');
    });
  }

  /**
   * A connection while a migration without an arbiter is under way, or its GO_LIVE is out: a target
   * that lost its connection (or heard nothing) before it read GO_LIVE asks how the hand-over stands
   * (CONTROL `handover?`, with the instret and state digest of S(P) if it holds it). The answer is final:
   *  - GO_LIVE not sent: it never will be now (the migration is called off here, before this returns to
   *    the event loop, so #migrateDirect cannot send it after): `handover` `called-off`, the guest runs on;
   *  - GO_LIVE sent: `handover` `handed-over` (P and the digest of S(P)), the rest of the migration
   *    again when the target has no S(P) (it applied everything before it: it answered the last sync),
   *    and the same GO_LIVE. The target confirms with `took-go-live`, which ends the retry window.
   */
  #answerTarget(ch: Channel): void {
    const timer = setTimeout(() => ch.close(`VM ${this.vmId} is being migrated; this connection asked nothing within ${this.#o.timeoutMs} ms`), this.#o.timeoutMs);
    timer.unref();
    const first = (m: Message) => {
      ch.off('message', first);
      clearTimeout(timer);
      if (m.type !== 'control' || m.op !== 'handover?') return ch.close(`VM ${this.vmId} is being migrated to another target; it takes no secondary now`);
      const h = this.#handover;
      if (!h) {
        const s = this.#session;
        const why = 'the target lost its connection and asked again before GO_LIVE was sent: the migration is called off, the VM runs on at the source';
        if (s && s.target && !s.closed) {
          s.lost ??= why;
          void s.close(why);
        }
        ch.send({ type: 'control', op: 'handover', state: 'called-off', reason: why });
        return ch.close(why);
      }
      h.asked++;
      h.digest ??= createHash('sha256').update(h.state).digest('hex');
      const answer: Message = { type: 'control', op: 'handover', state: 'handed-over', instret: String(h.instret), digest: h.digest };
      const holds = m.instret === String(h.instret) && m.digest === h.digest;
      if (!holds && (m.instret !== undefined || h.final === undefined)) {
        const why = `handed over at instret ${h.instret}, but the target holds ${m.instret === undefined ? 'no final state' : `the state of instret ${String(m.instret)}`} and this side cannot send it again`;
        this.emit('warning', `live migration: the target asked again; ${why}`);
        ch.send({ ...answer, resend: false });
        return ch.close(why);
      }
      this.emit('warning', `live migration: the target asked again how the hand-over stands; it is sent ${holds ? 'GO_LIVE' : 'the final state and GO_LIVE'} again (instret ${h.instret})`);
      ch.send(answer);
      if (!holds) for (const f of h.final!) ch.send(f);
      ch.send(h.goLive);
      ch.on('message', (c: Message) => {
        if (c.type === 'control' && c.op === 'took-go-live') h.confirmed = true;
      });
    };
    ch.on('message', first);
  }

  // ---- a migration's target: the VM's secondary follows it (docs/fault-tolerance.md, "Live migration") ---

  /** A secondary joined a target that went live: its first message must be RESUME at this very state. */
  #awaitFollower(ch: Channel): void {
    const refuse = (why: string) => {
      ch.send({ type: 'bye', reason: why });
      ch.close(why);
    };
    if (this.#followerJoining && !this.#followerJoining.closed) return refuse('another secondary is resuming here');
    this.#followerJoining = ch;
    const first = (m: Message) => {
      ch.off('message', first);
      if (this.#followerJoining === ch) this.#followerJoining = undefined;
      if (this.#phase !== 'rejoining' || this.#session) return refuse(`VM ${this.vmId} is ${this.describe()}: it takes no resuming secondary now`);
      const f = this.#o.follower!;
      if (m.type !== 'control' || m.op !== 'resume') return refuse('this primary waits for the secondary that follows its live migration');
      if (m.instret !== String(f.instret) || m.stateHash !== String(f.stateHash) || m.epoch !== this.#epoch) {
        return refuse(`resume at instret ${String(m.instret)} (state hash ${String(m.stateHash)}, epoch ${String(m.epoch)}): this primary took over at ${f.instret} (${f.stateHash}, epoch ${this.#epoch})`);
      }
      void this.#resumeFollower(ch);
    };
    ch.on('message', first);
  }

  /** The follower resumed: it replays this side's log from its first batch, as a cloned secondary would. */
  async #resumeFollower(ch: Channel): Promise<void> {
    const s = new SecondarySession(ch, this.#o.timeoutMs, this.#o.heartbeatMs, 0);
    s.native = this.#nativeRing !== undefined;
    if (s.native && !ch.canHandOver) {
      ch.send({ type: 'bye', reason: 'this primary records for a native link; the connection cannot take one' });
      ch.close('no native link');
      return;
    }
    this.#session = s;
    this.#listenTo(s);
    s.cloneSent = true;
    s.instret = this.#o.follower!.instret;
    s.clone = { rounds: 0, pages: 0, bytes: 0, pauseMs: 0 };
    ch.send({ type: 'control', op: 'resumed', epoch: this.#epoch });
    const queued = this.#rejoinQueue;
    this.#rejoinQueue = [];
    for (const b of queued) this.#sendBatch(s, b);
    this.#setPhase('protected');
    this.emit('followed', { waitedMs: performance.now() - this.#followerSince });
    if (s.native) await this.#handOver(s);
  }

  // ---- moving the secondary (docs/fault-tolerance.md, "Moving the secondary") ---------------------------

  /** The arbiter record a move of `vmId`'s secondary is called off by (beside the VM's epoch, never it). */
  static moveKey(vmId: string): string {
    return `${vmId}.move`;
  }

  /** A move's new secondary joined: it is cloned while the current one goes on protecting the VM. */
  async #beginMove(s: SecondarySession): Promise<void> {
    this.#incoming = s;
    this.#listenTo(s);
    const key = FtPrimary.moveKey(this.vmId);
    try {
      const cur = await this.#o.arbiter.current(key);
      s.move = { key, epoch: (cur?.epoch ?? 0) + 1 };
    } catch (err) {
      this.#moveFailed(s, `the arbiter cannot be read (${(err as Error).message})`);
      return;
    }
    if (this.#incoming !== s) return;
    try {
      await this.#transfer(s);
    } catch (err) {
      this.#moveFailed(s, `the clone failed: ${(err as Error).message}`);
    }
  }

  /** The move is off: the incoming secondary is dismissed (before the switch-over it can never go live). */
  #moveFailed(s: SecondarySession, reason: string): void {
    if (this.#incoming !== s) return;
    this.#incoming = undefined;
    s.lost ??= reason;
    void s.close(`the move was called off: ${reason}`);
    this.emit('warning', `moving the secondary failed: ${reason}`);
    this.emit('move-failed', reason);
  }

  /** `s` acknowledged every batch the guest made (the guest is stopped): every output it made may leave. */
  #fullyAcked(s: SecondarySession): boolean {
    if (!s.native) return s.ackedLsn >= s.sentLsn && this.#port.held() === 0;
    s.link?.poll(); // released outputs out now (see emittedLsn1)
    this.#pollLink(s);
    const f = s.link?.figures();
    return f !== undefined && this.#port.logFree() === (this.#nativeRing ?? 0) && f.ackedLsn1 === f.logLsn1 && f.emittedLsn1 === f.ackedLsn1;
  }

  /** A round trip with the incoming secondary `s`: it answers once it has taken everything sent before. */
  async #syncWith(s: SecondarySession): Promise<void> {
    s.synced = false;
    s.send({ type: 'control', op: 'sync' });
    await this.#until(() => s.synced || this.#incoming !== s, this.#o.timeoutMs).catch(() => undefined);
  }

  /** `x` is no longer this VM's secondary (lost, closed or replaced). */
  #gone(x: SecondarySession): boolean {
    return x.lost !== undefined || x.closed || this.#session !== x;
  }

  /**
   * The start of a switch-over from `old` to `s` (a secondary move or a migration), up to the guest held
   * at P with all of P's log acknowledged by `old`. The pre-copy's pages may still be queued at `s`, so it
   * catches up first (a round trip; one that does not answer only makes the pause longer). Then the guest
   * is held and `old` acknowledges the log up to P. The function that resumes the guest and how long
   * stopping and draining took; or the switch-over's verdict when `s` or `old` went away meanwhile, the
   * pair halted, or `old` did not acknowledge in time (`what` names the operation in that case).
   */
  async #holdForSwitch(s: SecondarySession, old: SecondarySession, what: 'a move' | 'a live migration'): Promise<{ resume: () => void; t0: number; stopMs: number; drainMs: number } | 'done' | 'fallback'> {
    await this.#syncWith(s);
    if (this.#incoming !== s) return 'done';
    this.#switching = true;
    this.#hold = true;
    const t0 = performance.now();
    try {
      await this.#pauseFor(() => {});
    } catch {
      this.#switching = false;
      return 'done'; // halted meanwhile
    }
    this.#recorder?.resume();
    const resume = () => {
      this.#switching = false;
      this.#hold = false;
      if (this.#phase !== 'halted') this.#resumeRun();
    };
    const stopped = performance.now();
    const drained = await this.#until(() => this.#gone(old) || this.#incoming !== s || this.#fullyAcked(old), this.#o.timeoutMs).then(() => true, () => false);
    if (this.#incoming !== s) {
      resume();
      return 'done';
    }
    const who = what === 'a move' ? 'the old secondary' : 'the secondary';
    if (this.#gone(old)) {
      this.#switching = false;
      await this.#recover(old.lost ?? `${who} went away during ${what}`);
      resume();
      return this.#session === s ? 'fallback' : 'done';
    }
    if (!drained) {
      this.#moveFailed(s, `${who} did not acknowledge the whole log within ${this.#o.timeoutMs} ms`);
      resume();
      return 'done';
    }
    const now = performance.now();
    return { resume, t0, stopMs: stopped - t0, drainMs: now - stopped };
  }

  /**
   * A move's switch-over, with the guest held at one point P:
   *  1. the old secondary acknowledges all log up to P (every output up to P leaves);
   *  2. the new one gets the final state S(P) and the move's rule for going live;
   *  3. it confirms it restored S(P): from here either secondary may go live (both hold S(P), and
   *     nothing after P has left), and the arbiter lets only one of them;
   *  4. the old secondary is dismissed and its recording ends at P;
   *  5. the primary claims the next epoch under the move's fence token: the old secondary can no longer
   *     win, the new one can (its rule: the next epoch but one when the fence holds the next);
   *  6. the log starts at P for the new secondary and the guest runs on.
   * A loss before 2 makes the move an ordinary clone ('fallback'); a loss of the new secondary before 5
   * calls the move off (its arbiter record, so it can never go live) and the old one protects on.
   */
  async #switchOver(s: SecondarySession, figures: CloneFigures, first: boolean, readChunksPaused: ReadChunksPaused): Promise<'done' | 'fallback'> {
    // The old secondary was lost and the next epoch is being won: then the new one is cloned as usual.
    await this.#until(() => this.#phase !== 'recovering', 60_000).catch(() => undefined);
    if (this.#session === s) return 'fallback';
    if (this.#incoming !== s) return 'done';
    const old = this.#session;
    const move = s.move;
    if (!old || !move) {
      this.#moveFailed(s, 'nothing to move from');
      return 'done';
    }
    const port = this.#port;
    const held = await this.#holdForSwitch(s, old, 'a move');
    if (typeof held === 'string') return held;
    const { resume, t0 } = held;
    const steps = { stopMs: held.stopMs, drainMs: held.drainMs, copyMs: 0, confirmMs: 0, dismissMs: 0, fenceMs: 0 };
    const step = stepTimer(steps);
    // 2. S(P) to the new secondary.
    const fence = { epoch: this.#epoch + 1, owner: newOwnerId('move') };
    const finalPages = port.copyPages(first);
    readChunksPaused(port.takeDiskDirty(false));
    const state = port.cloneState();
    const consolePosition = this.machine.consolePosition;
    figures.pages += finalPages.length;
    figures.bytes += finalPages.length * PAGE_RECORD_BYTES + state.length;
    this.#sendPages(s.channel, finalPages);
    const instret = port.progress();
    s.instret = instret;
    s.channel.send({
      type: 'clone-final',
      state,
      meta: { instret: String(instret), epoch: this.#epoch, consolePosition: String(consolePosition), move: { key: move.key, epoch: move.epoch, fenceEpoch: fence.epoch, fenceOwner: fence.owner } },
    });
    s.channel.send({ type: 'clone-done' });
    step('copyMs');
    // 3. It restored S(P).
    await this.#until(() => s.restored || this.#incoming !== s, this.#o.timeoutMs).catch(() => undefined);
    if (this.#incoming !== s || !s.restored) {
      this.#moveFailed(s, `the new secondary did not confirm the clone within ${this.#o.timeoutMs} ms`);
      return this.#callOff(s, old, resume);
    }
    step('confirmMs');
    // 4. The old secondary goes; its recording ends at P.
    this.#dropSecondary();
    const closing = old.close('moved: a new secondary protects the VM');
    const rec = this.#recorder;
    this.#recorder = undefined;
    rec?.finish();
    if (this.#nativeRing !== undefined) {
      await closing;
      port.abandonLog();
      this.#nativeRing = undefined;
      port.finishRecording('stopped', 0);
    }
    step('dismissMs');
    // 5. The fence.
    let won: boolean;
    try {
      const r = await claimEpoch(this.#o.arbiter, this.vmId, fence.epoch, fence.owner, {
        signal: this.#claimAbort.signal,
        onRetry: (err) => this.emit('warning', `arbiter unreachable (${err.message}); the guest stays stopped, retrying`),
      });
      won = r.won;
      if (!won) this.#halt(`the old secondary went live during the move: epoch ${fence.epoch} belongs to ${r.holder.owner ?? 'another side'}`);
    } catch (err) {
      if (!(err instanceof ArbiterError && err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED')) this.#halt(`cannot claim epoch ${fence.epoch}: ${(err as Error).message}`);
      won = false;
    }
    if (!won || (this.#phase as Phase) === 'halted') {
      this.#switching = false;
      return 'done';
    }
    step('fenceMs');
    this.#epoch = fence.epoch;
    this.#session = s;
    if (this.#incoming !== s) {
      // Lost after its state arrived: it may still go live (it holds S(P)), so win the epoch after the fence.
      this.#switching = false;
      await this.#recover(s.lost ?? 'the new secondary went away during the switch-over');
      resume();
      return 'done';
    }
    // 6. The log for the new secondary starts at P.
    this.#incoming = undefined;
    s.cloneSent = true;
    this.#startRecording(s);
    s.send({ type: 'control', op: 'moved', epoch: fence.epoch });
    figures.pauseMs = performance.now() - t0;
    this.#lastPause = figures.pauseMs;
    s.clone = { ...figures, rounds: figures.rounds + 1 };
    resume();
    if (this.#phase !== 'protected') this.#setPhase('protected');
    this.emit('moved', { ...s.clone, totalMs: performance.now() - s.joinedAt, epoch: this.#epoch, steps });
    if (s.native) await this.#handOver(s);
    if (s.target && this.#session === s) this.#migrateTo(s);
    return 'done';
  }

  /**
   * The new secondary of a move failed after it got S(P): before the guest moves past P, the move's record
   * is won, so that it can never go live (its rule claims that record first). Lost means it did go
   * live: this side halts, nothing after P having left.
   */
  async #callOff(s: SecondarySession, old: SecondarySession, resume: () => void): Promise<'done'> {
    const move = s.move!;
    try {
      const r = await claimEpoch(this.#o.arbiter, move.key, move.epoch, this.owner, {
        signal: this.#claimAbort.signal,
        onRetry: (err) => this.emit('warning', `arbiter unreachable (${err.message}); the guest stays stopped, retrying`),
      });
      if (!r.won) {
        this.#halt('the new secondary went live during the move');
        this.#switching = false;
        return 'done';
      }
    } catch (err) {
      if (!(err instanceof ArbiterError && err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED')) this.#halt(`cannot call the move off: ${(err as Error).message}`);
      this.#switching = false;
      return 'done';
    }
    if (this.#gone(old)) {
      this.#switching = false;
      await this.#recover(old.lost ?? 'the old secondary went away during a move');
    }
    resume();
    return 'done';
  }

  /**
   * A protected VM's live migration, with the guest held at one position P:
   *  1. the secondary acknowledges all log up to P (every output up to P leaves);
   *  2. the secondary is told to follow the target (its address and owner token, P, the state hash and
   *     S(P)'s hart and devices);
   *  3. the target gets the final state S(P), marked as a migration's (it goes live only on GO_LIVE), and
   *     GO_LIVE right behind it: it restores, claims the next epoch and records from P on;
   *  4. once the secondary has answered, this side halts; the secondary, once its connection ends,
   *     drains to P and resumes at the target without a clone.
   * Before 3 the target can never go live, so calling the migration off needs no arbiter claim. A loss of
   * the secondary before 2 makes the target an ordinary clone that is handed over to ('fallback').
   */
  async #migrateOver(s: SecondarySession, figures: CloneFigures, first: boolean, readChunksPaused: ReadChunksPaused): Promise<'done' | 'fallback'> {
    await this.#until(() => this.#phase !== 'recovering', 60_000).catch(() => undefined);
    if (this.#session === s) return 'fallback';
    if (this.#incoming !== s) return 'done';
    const old = this.#session;
    if (!old) {
      this.#moveFailed(s, 'the VM has no secondary to follow the target');
      return 'done';
    }
    const port = this.#port;
    const held = await this.#holdForSwitch(s, old, 'a live migration');
    if (typeof held === 'string') return held;
    const { resume, t0 } = held;
    const steps: MigrateSteps = { stopMs: held.stopMs, drainMs: held.drainMs, copyMs: 0, followMs: 0 };
    const step = stepTimer(steps);
    // 2. S(P) to the target.
    const finalPages = port.copyPages(first);
    readChunksPaused(port.takeDiskDirty(false));
    const state = port.cloneState();
    const consolePosition = this.machine.consolePosition;
    const instret = port.progress();
    const stateHash = this.machine.stateHash();
    figures.pages += finalPages.length;
    figures.bytes += finalPages.length * PAGE_RECORD_BYTES + state.length;
    this.#sendPages(s.channel, finalPages);
    // 3. The secondary is told to follow the target (its address and owner token, P, the state hash, and
    // S(P)'s hart and devices: its RAM it has, the state hash says so, and from P on it replays the log of
    // a target restored from exactly this state). It acts on it only once this side's connection ends.
    const encoded = Buffer.from(state).toString('base64');
    const follow = encoded.length <= FOLLOW_STATE_MAX;
    if (follow) {
      old.send({ type: 'control', op: 'follow', listen: s.listen!, owner: s.owner!, epoch: this.#epoch + 1, instret: String(instret), stateHash: String(stateHash), consolePosition: String(consolePosition), state: encoded });
    } else {
      this.emit('warning', `live migration: the machine state (${state.length} bytes) does not fit a follow notice; the secondary is dismissed and the target runs alone after the hand-over`);
    }
    // 4. GO_LIVE right behind the final state, without waiting for the target to confirm it: it restores,
    // then drains and claims, in that order. A target that fails to restore never goes live; the
    // secondary, unable to reach it, then goes live itself (its rule) — nothing after P has left.
    this.#incoming = undefined;
    s.channel.send({ type: 'clone-final', state, meta: { instret: String(instret), epoch: this.#epoch, consolePosition: String(consolePosition), migration: true } });
    s.channel.send({ type: 'clone-done' });
    s.send({ type: 'go-live', epoch: BigInt(this.#epoch + 1), reason: 'live migration' });
    step('copyMs');
    // 5. This side halts once the secondary has the notice (its connection ending then means "follow")
    // and the target took GO_LIVE (it closes the channel then). Halting earlier could cut the target's
    // connection while GO_LIVE still waits in its socket: a reset, or its own write failing on the closed
    // connection, ends the channel before it reads GO_LIVE, and it halts. Neither wait changes the
    // hand-over: a silent secondary is waited for by the target, a silent target is replaced by the
    // secondary's go-live.
    await this.#until(() => (!follow || old.following || this.#gone(old)) && s.channel.closed, this.#o.timeoutMs).catch(() => undefined);
    step('followMs');
    this.#sendRelease(old, true);
    figures.pauseMs = performance.now() - t0;
    this.#lastPause = figures.pauseMs;
    this.emit('migrated', { totalMs: performance.now() - s.joinedAt, handOverMs: figures.pauseMs, follower: old.following, steps, ...migrateFigures(figures, finalPages.length, t0) });
    this.emit('handed-over', { epoch: this.#epoch + 1, listen: s.listen! });
    // The secondary's connection ends with this BYE; after a follow notice that means "join the target".
    this.#halt(`handed over to the migration's target at ${s.listen!} (live migration)`);
    s.channel.close('handed over'); // closed by the target already, unless it stayed silent
    return 'done';
  }

  /**
   * A VM with FT off moves as vMotion moves one, in one pause: with the guest held at P, the last dirty
   * pages and S(P) go to the target marked as a migration's (it goes live only on GO_LIVE), GO_LIVE right
   * behind them, and this side never runs the guest again. No log, no lockstep: every output up to P
   * has left already (FT off: the gate is open), none after P is made here. A target lost before GO_LIVE
   * calls the migration off (the guest runs on here); after it, this side halts whatever happens, once
   * the target took GO_LIVE or the wait ran out: with a shared arbiter, the target's close or the
   * timeout; without one, the target's confirmation (CONTROL `took-go-live`) or the retry window
   * (handOverRetryMs), during which a target that lost its connection can ask again and is answered
   * with the same GO_LIVE (#answerTarget; docs/fault-tolerance.md, "Live migration without FT").
   */
  async #migrateDirect(s: SecondarySession, figures: CloneFigures, first: boolean, readChunksPaused: ReadChunksPaused): Promise<void> {
    const port = this.#port;
    const ch = s.channel;
    const steps: MigrateSteps = { stopMs: 0, drainMs: 0, copyMs: 0, followMs: 0 };
    let finalPages: PageRecord[] = [];
    let finalDisk: Message[] = [];
    let state: Uint8Array = new Uint8Array(0);
    let consolePosition = 0n;
    let t0 = performance.now();
    const resume = () => {
      port.setThrottle(0);
      this.#hold = false;
      this.#resumeRun();
    };
    // Catch up before the pause: the target applies every page sent so far (a round trip through
    // CONTROL sync), then the pages dirtied meanwhile go out and are applied too. Otherwise the pause
    // would carry the backlog of the pre-copy still in the pipe: GO_LIVE waits behind it (100 ms and
    // more for 64 MiB under load).
    port.setThrottle(0);
    // The target's claim of the next epoch, made here in its name (its owner token) while the catch-up
    // runs, instead of after GO_LIVE on the switch-over's critical path (an fsynced create with the file
    // arbiter: 5–120 ms on a loaded host). Safe: the target goes live only on GO_LIVE, which only this
    // side sends and only after this; so the epoch it holds meanwhile fences nothing, and its own claim
    // at its go-live is a reclaim (same token: won, nothing written), still checked against any later
    // epoch. A migration called off from here re-claims above it (#recover). It starts after the first
    // round trip, which settles the owner token the target said in its first message.
    let preclaim: Promise<'claimed' | 'fenced' | 'not-claimed'> = Promise.resolve('not-claimed');
    for (let i = 0; i < 2; i++) {
      if (i > 0) {
        preclaim = this.#preclaim(s);
        const n = await port.precopyRound(false, (pages) => this.#sendPages(ch, pages), () => !this.#owns(s));
        figures.rounds++;
        figures.pages += n;
        figures.bytes += n * PAGE_RECORD_BYTES;
      }
      s.synced = false;
      s.send({ type: 'control', op: 'sync' });
      await this.#until(() => s.synced || !this.#owns(s) || s.closed, this.#o.timeoutMs).catch(() => undefined);
      if (!this.#owns(s) || s.closed) return;
    }
    const waitFrom = performance.now();
    if ((await preclaim) === 'fenced' || !this.#owns(s) || s.closed) return;
    const claimWaitMs = performance.now() - waitFrom;
    this.#hold = true;
    for (let attempt = 0; ; attempt++) {
      let done = false;
      t0 = performance.now();
      try {
        await this.#pauseFor(() => {
          // Prefer a point where no disk request is in flight (the target would re-issue it at its
          // go-live); bounded: after 200 tries it goes ahead. (An increment the kill test saw applied
          // twice was the target's clock going back to 0, fixed in Machine::settle_clock, not the re-issue.)
          if (attempt < 200 && port.diskInFlight() > 0) return;
          steps.stopMs = performance.now() - t0;
          finalPages = port.copyPages(first);
          finalDisk = [];
          readChunksPaused(port.takeDiskDirty(false), finalDisk);
          state = port.cloneState();
          consolePosition = this.machine.consolePosition;
          done = true;
        });
      } catch {
        return; // halted meanwhile
      }
      if (!this.#owns(s) || s.closed) return resume(); // the target was lost: the migration is off, the guest runs on
      if (done) break;
      resume();
      await sleep(1);
      if (!this.#owns(s)) return;
      this.#hold = true;
    }
    const step = stepTimer(steps);
    const instret = port.progress();
    figures.pages += finalPages.length;
    figures.bytes += finalPages.length * PAGE_RECORD_BYTES + state.length;
    figures.rounds++;
    // The target applied everything before the last catch-up's sync (it answered it): what follows is
    // the whole rest of the migration, and can be sent again to a target that lost it.
    const caughtUp = s.synced;
    const final: Message[] = [
      ...pageMessages(finalPages),
      ...finalDisk,
      { type: 'clone-final', state, meta: { instret: String(instret), epoch: this.#epoch, consolePosition: String(consolePosition), migration: true } },
      { type: 'clone-done' },
    ];
    for (const m of final) ch.send(m);
    if (s.closed) return resume();
    const goLive: Message = { type: 'go-live', epoch: BigInt(this.#epoch + 1), reason: 'live migration' };
    s.send(goLive);
    this.#goLiveSent = true;
    step('copyMs');
    figures.pauseMs = performance.now() - t0;
    this.#lastPause = figures.pauseMs;
    let confirmed: boolean;
    if (this.#o.arbiter.kind === 'local') {
      // No arbiter: this side stays reachable for the retry window, so that a target that lost its
      // connection (or heard nothing) before it read GO_LIVE can ask again and get the same GO_LIVE
      // (#answerTarget), rather than halting and leaving the VM down. Only its confirmation ends the wait
      // early: a closed connection no longer counts as one, since a target that asks again closed it too.
      const windowMs = handOverRetryMs(this.#o.timeoutMs);
      const h: PendingHandOver = { instret, state, digest: undefined, goLive, final: caughtUp ? final : undefined, confirmed: false, asked: 0 };
      this.#handover = h;
      let noted = false;
      confirmed = await this.#until(() => {
        if (s.closed && !h.confirmed && !noted) {
          noted = true;
          this.emit('warning', `live migration: the target's connection ended before it confirmed GO_LIVE (${s.lost ?? 'closed'}); this side never resumes, and stays reachable for up to ${windowMs} ms for the target to ask again`);
        }
        return h.confirmed || this.#phase === 'halted';
      }, windowMs).then(
        () => h.confirmed,
        () => false,
      );
      step('followMs');
      if (!confirmed) this.emit('warning', `live migration: the target did not take GO_LIVE within ${windowMs} ms (neither on its connection nor by asking again${h.asked > 0 ? `; it asked ${h.asked} times` : ''}); this side does not resume (the target is live, or the VM is down)`);
    } else {
      // Halting at once could reset the connection before the target read GO_LIVE: wait for its close.
      confirmed = await this.#until(() => s.closed, this.#o.timeoutMs).then(
        () => true,
        () => false,
      );
      step('followMs');
      if (!confirmed) this.emit('warning', `live migration: the target did not take GO_LIVE within ${this.#o.timeoutMs} ms; this side does not resume (the target is live, or the VM is down)`);
    }
    this.emit('migrated', { totalMs: performance.now() - s.joinedAt, handOverMs: figures.pauseMs, follower: false, steps, ...migrateFigures(figures, finalPages.length, t0), claimWaitMs });
    this.emit('handed-over', s.listen === undefined ? { epoch: this.#epoch + 1 } : { epoch: this.#epoch + 1, listen: s.listen });
    this.#halt(`handed over to the migration's target${s.listen === undefined ? '' : ` at ${s.listen}`} (live migration)`);
  }

  /**
   * An FT-off migration's claim of the next epoch in the name of its target `s` (see #migrateDirect).
   * 'fenced' when another side holds that epoch or a later one: this side halts (as its epoch check
   * would). Otherwise the target claims at its go-live as ever, which is a reclaim if this landed.
   */
  async #preclaim(s: SecondarySession): Promise<'claimed' | 'fenced' | 'not-claimed'> {
    if (this.#o.arbiter.kind === 'local' || s.owner === undefined) return 'not-claimed';
    const epoch = this.#epoch + 1;
    // Set before the call: an attempt may land even when its answer is lost.
    this.#preclaimed = { epoch, owner: s.owner };
    try {
      const r = await claimEpoch(this.#o.arbiter, this.vmId, epoch, s.owner, { signal: this.#claimAbort.signal, maxAttempts: 2 });
      if (r.won) return 'claimed';
      // The migration is off meanwhile (the target lost): #recover claims above both epochs, and its own
      // claim may be what made this one stale.
      if (!this.#owns(s)) return 'not-claimed';
      this.#halt(`epoch ${epoch} of VM ${this.vmId} was claimed by ${r.holder.owner ?? 'another side'} before the migration could claim it for its target; this primary holds ${this.#epoch}`);
      return 'fenced';
    } catch (err) {
      if (err instanceof ArbiterError && err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED') return 'fenced'; // halted meanwhile
      this.emit('warning', `live migration: the arbiter did not take the target's claim ahead (${(err as Error).message}); the target claims at its go-live`);
      return 'not-claimed';
    }
  }

  async #clone(s: SecondarySession): Promise<void> {
    this.#session = s;
    this.#setPhase('cloning');
    this.#listenTo(s);
    await this.#transfer(s);
  }

  #listenTo(s: SecondarySession): void {
    s.channel.on('message', (m: Message) => this.#onMessage(s, m));
    s.channel.on('close', (reason: string) => this.#sessionLost(s, `the logging channel closed: ${reason}`));
  }

  /** True while `s` is the secondary, or the one a move brings in. */
  #owns(s: SecondarySession): boolean {
    return this.#session === s || this.#incoming === s;
  }

  /**
   * A secondary's connection failed, it left, or it went silent. The current one is recovered from (the
   * next epoch, then alone) unless a move's switch-over is deciding (it looks at `s.lost` itself); the
   * incoming one of a move only fails the move.
   */
  #sessionLost(s: SecondarySession, reason: string): void {
    s.lost ??= reason;
    if (this.#goLiveSent) return; // the hand-over is over: this side halts, it never recovers
    if (s === this.#incoming) return this.#moveFailed(s, reason);
    if (s !== this.#session || this.#switching) return;
    void this.#recover(reason);
  }

  /** Copies the VM to `s` (clone-begin, disk and memory pre-copy, the stop-and-copy or a move's switch-over). */
  async #transfer(s: SecondarySession): Promise<void> {
    const ch = s.channel;
    const diskPath = this.#o.separateDisk;
    ch.send({
      type: 'clone-begin',
      meta: { vmId: this.vmId, memory: this.machine.memory, clock: this.machine.clock, epoch: this.#epoch, disk: diskPath ? 'separate' : 'shared', ...(this.#o.meta ?? {}) },
    });
    const figures: CloneFigures = { rounds: 0, pages: 0, bytes: 0, pauseMs: 0 };
    // Separate disks: iterative pre-copy of the image first (the disk tracks the chunks it writes). The
    // rounds read asynchronously and wait for the channel's 'drain'; only the last dirty chunks are read
    // in the stop-and-copy pause, where the image must not move under the read.
    const disk = diskPath ? await open(diskPath, 'r') : undefined;
    try {
      const diskBytes = disk ? (await disk.stat()).size : 0;
      const chunkLength = (c: number) => Math.min(DISK_CHUNK, diskBytes - c * DISK_CHUNK) & ~511;
      const readChunks = async (chunks: Uint32Array): Promise<void> => {
        for (const c of chunks) {
          const len = chunkLength(c);
          if (len <= 0 || !disk) continue;
          const buf = Buffer.allocUnsafe(len);
          await disk.read(buf, 0, len, c * DISK_CHUNK);
          if (!this.#owns(s)) return;
          figures.bytes += len;
          ch.send({ type: 'clone-disk', offset: BigInt(c * DISK_CHUNK), data: buf });
          await drained(ch);
        }
      };
      const readChunksPaused: ReadChunksPaused = (chunks, kept) => {
        if (!diskPath) return;
        const fd = openSync(diskPath, 'r');
        try {
          for (const c of chunks) {
            const len = chunkLength(c);
            if (len <= 0) continue;
            const buf = Buffer.allocUnsafe(len);
            readSync(fd, buf, 0, len, c * DISK_CHUNK);
            figures.bytes += len;
            const m: Message = { type: 'clone-disk', offset: BigInt(c * DISK_CHUNK), data: buf };
            ch.send(m);
            kept?.push(m);
          }
        } finally {
          closeSync(fd);
        }
      };
      if (disk) {
        for (let r = 0, firstDisk = true; r < PRECOPY_MAX_ROUNDS; r++, firstDisk = false) {
          const chunks = this.#port.takeDiskDirty(firstDisk);
          await readChunks(chunks);
          if (!this.#owns(s)) return;
          if (!firstDisk && chunks.length <= DISK_CONVERGED_CHUNKS) break;
        }
      }
      await this.#cloneMemory(s, figures, readChunksPaused);
    } finally {
      await disk?.close();
    }
  }

  async #cloneMemory(s: SecondarySession, figures: CloneFigures, readChunksPaused: ReadChunksPaused): Promise<void> {
    const ch = s.channel;
    const port = this.#port;
    const separate = this.#o.separateDisk !== undefined;
    let first = true;
    // Iterative pre-copy while the guest runs; each round waits for the channel to drain before the next.
    let previous = Infinity;
    for (;;) {
      const n = await port.precopyRound(first, (pages) => this.#sendPages(ch, pages), () => !this.#owns(s));
      if (!this.#owns(s)) return;
      figures.rounds++;
      figures.pages += n;
      figures.bytes += n * PAGE_RECORD_BYTES;
      first = false;
      if (this.#phase === 'ended' || this.#phase === 'halted') return this.#abandonClone(s);
      if (n <= PRECOPY_CONVERGED_PAGES || figures.rounds >= PRECOPY_MAX_ROUNDS) break;
      // Not converging (the guest dirties pages about as fast as they are sent): slow the guest down,
      // more each round, so the last dirty set — what the pause copies — shrinks (VMware's "stun during
      // page send"). Lifted after the stop-and-copy.
      // Not for a VM with FT off moving away: its pause carries only what one round trip dirtied
      // (#migrateDirect catches up first), and a throttled guest answers late, an outage of its own.
      if (figures.rounds >= 2 && n > previous / 2 && !(s.target && this.#migratingFromDisabled)) port.setThrottle(Math.min(0.95, 0.3 * (figures.rounds - 1)));
      previous = n;
      await drained(ch);
      if (!this.#owns(s)) return;
    }
    if ((this.#phase as Phase) === 'ended' || (this.#phase as Phase) === 'halted') return this.#abandonClone(s);
    if (s.target && this.#migratingFromDisabled && this.#session === s) return this.#migrateDirect(s, figures, first, readChunksPaused);
    // A target's first message names where it will listen, but a busy clone may not have read it yet: a
    // round trip (answered after it) settles what the target said.
    if (this.#incoming === s && s.target && (s.listen === undefined || s.owner === undefined)) await this.#syncWith(s);
    if (this.#incoming === s) {
      if (s.target && (s.listen === undefined || s.owner === undefined)) {
        this.emit('warning', `live migration: the target said no ${s.listen === undefined ? 'listening address' : 'owner token'}; its secondary cannot follow it: the secondary is moved out of the way first, and the VM needs a new one after the hand-over`);
      }
      const how = s.target && s.listen !== undefined && s.owner !== undefined ? await this.#migrateOver(s, figures, first, readChunksPaused) : await this.#switchOver(s, figures, first, readChunksPaused);
      if (how === 'done') return;
    }
    if (!this.#owns(s)) return;
    // Stop-and-copy: the pause covers copying the last dirty pages and the hart and devices, and starting
    // the log; sending happens after the guest runs again.
    let finalPages: PageRecord[] = [];
    let state: Uint8Array = new Uint8Array(0);
    let consolePosition = 0n;
    for (let attempt = 0; ; attempt++) {
      let done = false;
      const t0 = performance.now();
      await this.#pauseFor(() => {
        // Separate disks: stop where no disk request is in flight, so no completion delivered after the
        // copy can refer to an image state the copy did not capture (bounded: then go ahead anyway; the
        // state hash would expose a difference).
        if (separate && attempt < 200 && port.diskInFlight() > 0) return;
        finalPages = port.copyPages(first);
        readChunksPaused(port.takeDiskDirty(false));
        state = port.cloneState();
        consolePosition = this.machine.consolePosition; // the secondary's console numbering continues from here
        this.#startRecording(s);
        done = true;
      });
      figures.pauseMs = performance.now() - t0;
      if (done) {
        port.setThrottle(0); // lag control takes over from here
        break;
      }
      await sleep(1);
      if (!this.#owns(s)) return;
    }
    if (!this.#owns(s)) return;
    figures.pages += finalPages.length;
    figures.bytes += finalPages.length * PAGE_RECORD_BYTES + state.length;
    this.#sendPages(ch, finalPages);
    const instret = port.progress();
    // The secondary starts from here: its lag counts from this point, not from the start of the run.
    s.instret = instret;
    ch.send({ type: 'clone-final', state, meta: { instret: String(instret), epoch: this.#epoch, consolePosition: String(consolePosition) } });
    ch.send({ type: 'clone-done' });
    s.cloneSent = true;
    for (const b of s.queued) this.#sendBatch(s, b);
    s.queued = [];
    this.#lastPause = figures.pauseMs;
    s.clone = { ...figures, rounds: figures.rounds + 1 };
    if (s.native) await this.#handOver(s);
  }

  /**
   * The connection moves to a native link once the clone has left: from here on the log ring is read,
   * framed and sent, and ACKs release held outputs, on the link's thread.
   */
  async #handOver(s: SecondarySession): Promise<void> {
    let ok = false;
    try {
      ok = await s.channel.handOver((connection) => {
        s.link = this.#port.startLink('sender', connection, {
          message: (type, payload) => this.#onLinkMessage(s, type, payload),
          end: (e) => this.#onLinkEnd(s, e),
        });
      });
    } catch (err) {
      this.emit('warning', `the native data path did not start: ${(err as Error).message}`);
    }
    // Closed meanwhile: its 'close' handler recovers. Otherwise nothing reads the log: recover too.
    if (!ok && this.#session === s && !s.channel.closed) this.#sessionLost(s, 'the logging channel could not be handed to the native data path');
  }

  #onLinkMessage(s: SecondarySession, type: number, payload: Uint8Array): void {
    let m: Message;
    try {
      m = decodeMessage(type, payload);
    } catch (err) {
      void s.close(`malformed message from the secondary: ${(err as Error).message}`);
      return;
    }
    this.#onMessage(s, m);
  }

  #onLinkEnd(s: SecondarySession, e: LinkEnd): void {
    s.linkEnded();
    if (!this.#owns(s)) return;
    if (e.bye) {
      this.emit('warning', `the secondary left: ${e.byeReason}`);
      this.#sessionLost(s, `the secondary left: ${e.byeReason}`);
    } else {
      this.#sessionLost(s, `the logging channel closed: ${e.message}`);
    }
  }

  /**
   * Native link: what the link counted since the last look (acks, the peer heard from, release delays).
   * `final`: the session is being dropped; its last acks still count, but it moves to no new phase.
   */
  #pollLink(s: SecondarySession, final = false): void {
    const f = s.link?.figures();
    if (!f) return;
    const now = performance.now();
    if (f.heardAgoMs >= 0) s.detector.heard(now - f.heardAgoMs);
    s.sentLsn = f.logLsn1 - 1n;
    s.sentBytes = f.logBytes;
    this.#totalLogBytes = this.#logBytesBefore + f.logBytes;
    this.#totalLogBatches = this.#logBatchesBefore + f.logBatches;
    this.#totalLogFrames = this.#logFramesBefore + f.logFrames;
    this.#sampleInput(); // with the log's count: their ratio over an interval is exact
    for (const d of this.#port.releaseDelays()) this.emit('release', d);
    const lsn = f.ackedLsn1 - 1n;
    // Announced (heartbeats, release notices) only as far as the released outputs have left this process:
    // the secondary does not re-emit what it was told was released.
    const emitted = f.emittedLsn1 - 1n < lsn ? f.emittedLsn1 - 1n : lsn;
    if (emitted > s.releasedLsn) s.releasedLsn = emitted;
    if (lsn <= s.ackedLsn) return;
    s.ackedLsn = lsn;
    s.ackedBytes = f.ackBytes;
    if (f.ackInstret > s.instret) s.instret = f.ackInstret;
    this.#lastAckLatency = f.ackRttMs;
    this.emit('ack', f.ackRttMs);
    this.#sampleReplayRate(s, now, f.ackInstret);
    if (!final && this.#phase === 'cloning' && s.cloneSent) this.#inLockstep(s);
  }

  /** The guest's network input so far; a closed machine keeps the count it had (stats are read after a halt too). */
  #sampleInput(): void {
    if (!this.#port.machine.closed) this.#guestInputBytes = this.#port.machine.netStats.deliveredBytes;
  }

  /** Native: the final batch and its end record, once the log ring has room (the link frees it as it sends). */
  async #finishNative(r?: RunResult): Promise<void> {
    const { reason, code } = endReasonOf(r);
    await this.#until(() => this.#port.logFree() >= 64 * 1024 || !this.#session?.link || this.#session.closed, 10_000).catch(() => undefined);
    this.#nativeRing = undefined;
    if (!this.#port.finishRecording(reason, code)) this.emit('warning', 'the final log batch did not fit the ring; the secondary replays without the end record');
  }

  /** The guest ended (or this side halted) during a clone: nothing to protect; the joiner is dismissed. */
  #abandonClone(s: SecondarySession): void {
    this.#port.setThrottle(0);
    s.channel.send({ type: 'bye', reason: 'the guest ended during the clone' });
    if (this.#session === s) this.#dropSecondary();
    if (this.#incoming === s) this.#incoming = undefined;
    s.channel.close('the guest ended during the clone');
  }

  #sendPages(ch: Channel, pages: PageRecord[]): void {
    for (const m of pageMessages(pages)) ch.send(m);
  }

  #startRecording(s: SecondarySession): void {
    s.native = this.#o.dataPath !== 'js' && s.channel.canHandOver;
    this.#beginRecording(s.native);
  }

  #beginRecording(native: boolean): void {
    if (native) {
      // The link frames whole batches from the ring, so the largest batch must fit it.
      const ringBytes = Math.max(this.#o.ringBytes ?? 4 * 1024 * 1024, NATIVE_MIN_RING_BYTES);
      this.#port.startRecording(new Uint8Array(allocateRing(ringBytes)), this.#o.hashInterval);
      this.#nativeRing = ringBytes;
    } else {
      this.#recorder = new Recorder(this.machine, { hashInterval: this.#o.hashInterval, ...(this.#o.ringBytes ? { ringBytes: this.#o.ringBytes } : {}) });
      this.#recorder.on('batch', (b) => this.#onBatch(b));
    }
    if (this.#o.outputRule) this.#port.closeGate();
  }

  #onBatch(b: Uint8Array): void {
    const s = this.#session;
    if (this.#phase === 'rejoining' && !s) {
      this.#rejoinQueue.push(b.slice()); // for the follower, once it resumes
      return;
    }
    if (!s || s.closed) return; // alone, or claiming the arbiter: the log goes nowhere
    if (!s.cloneSent) {
      s.queued.push(b.slice());
      return;
    }
    this.#sendBatch(s, b);
  }

  #sendBatch(s: SecondarySession, b: Uint8Array): void {
    const lsn = batchLsn(b);
    s.sentLsn = lsn;
    s.sentAt.set(lsn, performance.now());
    s.sentBytes += b.length;
    this.#totalLogBytes += b.length;
    this.#totalLogBatches++;
    // Batches read in one go (one doorbell) leave in one LOG frame: one HMAC and one write for all.
    s.outbox.push(b);
    if (s.outbox.length === 1) {
      queueMicrotask(() => {
        const group = s.outbox;
        s.outbox = [];
        if (s.closed || group.length === 0) return;
        this.#totalLogFrames++;
        s.channel.sendLog(group.length === 1 ? group[0]! : Buffer.concat(group));
      });
    }
    if (s.unackedBytes > this.#o.maxUnackedBytes) this.#recorder?.pause(); // the ring fills, the guest stalls
  }

  // ---- messages from the secondary -------------------------------------------------------------------

  #onMessage(s: SecondarySession, m: Message): void {
    if (!this.#owns(s)) return;
    s.detector.heard(performance.now());
    switch (m.type) {
      case 'ack':
        if (s !== this.#session) return; // a moving secondary's progress report before it has any log
        this.#onAck(s, m.lsn, m.instret, Number(m.bytes));
        break;
      case 'heartbeat':
        break;
      case 'control':
        if (m.op === 'hello' && typeof m.listen === 'string') s.listen = m.listen;
        if (m.op === 'hello' && typeof m.owner === 'string' && m.owner.length > 0 && m.owner.length <= 256) s.owner = m.owner;
        if (m.op === 'following') s.following = true;
        if (m.op === 'cloned') {
          s.restored = true;
          s.detector.endGrace();
        }
        if (m.op === 'synced') s.synced = true;
        if (m.op === 'took-go-live' && this.#handover) this.#handover.confirmed = true;
        if (m.op === 'cloned' && this.#phase === 'cloning' && s.cloneSent && s === this.#session) this.#inLockstep(s);
        break;
      case 'bye':
        this.emit('warning', `the secondary left: ${m.reason}`);
        this.#sessionLost(s, `the secondary left: ${m.reason}`);
        break;
      default:
        // Anything else from a secondary is a protocol violation.
        void s.close(`unexpected ${m.type} message from the secondary`);
    }
  }

  #onAck(s: SecondarySession, lsn: bigint, instret: bigint, bytes: number): void {
    if (lsn > s.sentLsn) {
      void s.close(`the secondary acknowledged lsn ${lsn} but only ${s.sentLsn} was sent`);
      return;
    }
    const now = performance.now();
    if (lsn > s.ackedLsn) {
      // The batches this ack covers, oldest first: the latest gives the round trip, the oldest how long
      // the oldest output released now was held at least.
      const { oldest, sent } = s.acknowledge(lsn, bytes, instret);
      if (sent !== undefined) {
        this.#lastAckLatency = now - sent;
        this.emit('ack', this.#lastAckLatency);
      }
      this.#sampleReplayRate(s, now, instret);
      const held = this.#port.held();
      this.#port.release(lsn);
      s.releasedLsn = lsn;
      if (held > 0 && oldest !== undefined) this.emit('release', now - oldest);
      // Tell the secondary soon (at most every RELEASE_NOTICE_MS): what it knows was released it need not
      // re-emit at a go-live. Less often costs duplicates after a failover, never losses.
      if (!s.releaseScheduled) {
        s.releaseScheduled = true;
        setTimeout(() => {
          s.releaseScheduled = false;
          this.#sendRelease(s);
        }, RELEASE_NOTICE_MS).unref();
      }
      if (this.#recorder?.paused && s.unackedBytes < this.#o.maxUnackedBytes / 2) this.#recorder.resume();
      if (this.#phase === 'cloning' && s.cloneSent) this.#inLockstep(s);
    }
  }

  /** The secondary's replay speed while it has a backlog, from the positions its acks report. */
  #sampleReplayRate(s: SecondarySession, now: number, instret: bigint): void {
    const rs = s.rateSample;
    if (now - rs.at < 20) return;
    const dt = (now - rs.at) / 1000;
    const di = Number(instret - rs.instret);
    if (rs.at > 0 && rs.busy && di > 0) {
      const r = di / dt;
      s.replayRate = s.replayRate === 0 ? r : 0.7 * s.replayRate + 0.3 * r;
    }
    // Busy: more than a slice behind, so it was replaying flat out rather than waiting for log.
    s.rateSample = { at: now, instret, busy: Number(this.#port.progress() - instret) > 2 ** 22 };
  }

  #inLockstep(s: SecondarySession): void {
    this.#setPhase('protected');
    if (this.#awaitSecondary) {
      this.#awaitSecondary = false;
      this.#resumeRun();
    }
    const report: CloneReport = { ...(s.clone ?? { rounds: 0, pages: 0, bytes: 0, pauseMs: 0 }), totalMs: performance.now() - s.joinedAt };
    this.emit('cloned', report);
    if (s.target) this.#migrateTo(s);
  }

  #sendRelease(s: SecondarySession, force = false): void {
    if (s !== this.#session || s.closed) return;
    if (force || s.releasedLsn > s.releaseSent) {
      s.releaseSent = s.releasedLsn;
      if (s.releasedLsn >= 0n) s.send({ type: 'release', lsn: s.releasedLsn });
    }
  }

  // ---- heartbeats, failure detection, lag control ------------------------------------------------------

  #tick(): void {
    if (this.#phase === 'halted' || this.#phase === 'ended') return;
    // Closed without stop(): the 'close' event halts us; this covers a machine closed before start().
    if (this.machine.closed) return this.#machineClosed();
    const now = performance.now();
    const instret = this.#port.progress();
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
    const s = this.#session;
    if (this.#phase === 'rejoining' && !s && now - this.#followerSince > this.#o.timeoutMs) {
      void this.#recover(`the secondary did not follow the migration within ${this.#o.timeoutMs} ms`);
      return;
    }
    if (s?.link) this.#pollLink(s);
    const inc = this.#incoming;
    if (inc && !inc.closed) {
      inc.send({ type: 'heartbeat', sentAtMs: now, instret, releasedLsn: 0n });
      if (inc.detector.expired(now)) this.#sessionLost(inc, `no word from the incoming secondary for ${Math.round(inc.detector.silence(now))} ms`);
    }
    if (!s || s.closed || (this.#phase !== 'protected' && this.#phase !== 'cloning')) {
      if (this.#lag.ratio > 0 || this.#lagSec > 0) {
        this.#lagSec = 0;
        this.#lagInstr = 0;
        this.#port.setThrottle(this.#lag.update(0));
      }
      return;
    }
    s.send({ type: 'heartbeat', sentAtMs: now, instret, releasedLsn: s.releasedLsn < 0n ? 0n : s.releasedLsn });
    this.#sendRelease(s);
    if (s.detector.expired(now)) {
      this.#sessionLost(s, `no word from the secondary for ${Math.round(s.detector.silence(now))} ms (timeout ${Math.round(s.detector.currentTimeoutMs)} ms)`);
      return;
    }
    if (this.#phase === 'protected') {
      this.#lagInstr = Math.max(0, Number(instret - s.instret));
      this.#lagSec = this.#lagMs(s, this.#lagInstr) / 1000;
      this.#port.setThrottle(this.#lag.update(this.#lagSec * 1000));
    }
  }

  /**
   * The lockstep interval: how long the secondary needs to replay what it is behind by (its backlog of
   * instructions over the speed it replays at when it has a backlog). This is what a failover would add
   * to the outage, and what lag control keeps near its target.
   */
  #lagMs(s: SecondarySession, backlog: number): number {
    if (backlog <= 0) return 0;
    const rate = s.replayRate > 0 ? s.replayRate : Math.max(this.#mips.rate, 1) * 1e6;
    return (1000 * backlog) / rate;
  }

  // ---- losing the secondary --------------------------------------------------------------------------

  #dropSecondary(): void {
    const s = this.#session;
    if (s?.link) {
      this.#pollLink(s, true); // acks since the last tick (a short-lived secondary's included)
      const f = s.link.figures();
      if (f) {
        this.#logBytesBefore += f.logBytes;
        this.#logBatchesBefore += f.logBatches;
        this.#logFramesBefore += f.logFrames;
      }
    }
    this.#session = undefined;
  }

  /**
   * The secondary is gone (or about to be replaced): win the next epoch, then release what is held and
   * go on alone. Outputs stay held until the arbiter has answered; losing it means the secondary went
   * live, and this side halts without letting anything out.
   */
  async #recover(reason: string, next?: Channel): Promise<void> {
    if (this.#phase === 'recovering' || this.#phase === 'halted' || this.#phase === 'ended') return;
    const wasProtected = this.#phase === 'protected';
    const s = this.#session;
    this.#dropSecondary();
    const closing = s?.close(reason);
    this.#setPhase('recovering');
    this.emit('warning', `secondary lost: ${reason}`);
    // A migration's target lost before GO_LIVE never goes live, but it may hold the next epoch (claimed
    // in its name before the pause): this side takes the one after it.
    const want = Math.max(this.#epoch, this.#preclaimed?.epoch ?? 0) + 1;
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
    this.#preclaimed = undefined;
    if (wasProtected) this.#failovers++;
    // This side owns the VM: everything held may leave, and the log goes nowhere until a new secondary.
    this.#port.openGate();
    this.#port.setThrottle(0);
    const rec = this.#recorder;
    this.#recorder = undefined;
    if (rec) await this.#pauseFor(() => rec.finish());
    if (this.#nativeRing !== undefined) {
      await closing;
      this.#port.abandonLog(); // nothing reads the ring now: the vCPU discards the log
      if ((this.#phase as Phase) === 'halted') return;
      this.#nativeRing = undefined;
      await this.#pauseFor(() => this.#port.finishRecording('stopped', 0));
    }
    const inc = this.#incoming;
    if (inc && !inc.closed && inc.lost === undefined) {
      // The old secondary of a move was lost before the switch-over: the new one is cloned as usual.
      this.#incoming = undefined;
      this.#session = inc;
      this.#setPhase('cloning');
      this.emit('secondary-lost', reason);
      return;
    }
    // A live migration of a VM with FT off that failed: FT stays off.
    this.#setPhase(this.#migratingFromDisabled ? 'disabled' : 'alone');
    this.#migratingFromDisabled = false;
    this.emit('secondary-lost', reason);
    const waiting = next ?? this.#waitingJoin;
    this.#waitingJoin = undefined;
    if (waiting && !waiting.closed) this.#onJoin(waiting);
  }

  async #dismiss(phase: 'disabled' | 'suspended', why: string): Promise<void> {
    if (this.#phase === 'halted' || this.#phase === 'ended') throw new FtError('ERR_LOCKSTEP_FT_STATE', `the VM is ${this.describe()}`);
    this.#refuseWhileMoving(why);
    if (this.#session) await this.#recover(why); // its close tells the secondary why (BYE): it does not go live
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
    const s = this.#session;
    this.#dropSecondary();
    void s?.close(reason);
    const inc = this.#incoming;
    this.#incoming = undefined;
    void inc?.close(reason);
    // A vCPU waiting for log ring space that no link will free must be able to stop.
    if (this.#nativeRing !== undefined && !s?.link) this.#port.abandonLog();
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

/** Resolves at once unless `ch` is congested; then once it drained its write buffer or closed. */
function drained(ch: Channel): Promise<void> {
  if (!ch.congested) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      ch.off('drain', done);
      ch.off('close', done);
      resolve();
    };
    ch.on('drain', done);
    ch.on('close', done);
  });
}

/** `pages` as CLONE_PAGES messages of at most {@link PAGES_PER_MESSAGE} pages. */
function pageMessages(pages: PageRecord[]): Message[] {
  const out: Message[] = [];
  for (let i = 0; i < pages.length; i += PAGES_PER_MESSAGE) out.push({ type: 'clone-pages', pageSize: PAGE_SIZE, pages: pages.slice(i, i + PAGES_PER_MESSAGE) });
  return out;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function stripUndefined<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}
