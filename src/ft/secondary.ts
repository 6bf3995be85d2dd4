// The secondary half of a fault-tolerant pair: is cloned from the primary, replays its log with every
// output suppressed, acknowledges as it receives, and goes live when the primary is lost (after
// replaying all it holds and winning the arbiter). Mirrors primary.ts.
import { createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { closeSync, createWriteStream, fstatSync, fsyncSync, mkdirSync, openSync, writeFileSync, writeSync, type WriteStream } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Machine } from '../machine/machine.js';
import { PAGE_SIZE, replicationPort, type LinkEnd, type ReplicationLink, type ReplicationPort } from '../machine/replication-port.js';
import type { RunResult } from '../machine/types.js';
import { CLOSE_LINGER_MS, connectChannel, type Channel, type Message } from '../protocol/channel.js';
import { decodeMessage, encodeMessage } from '../protocol/messages.js';
import { publishSecondary } from './diagnostics.js';
import { OptionError, ReplicationError } from '../errors.js';
import { formatHostPort, parseHostPort } from '../config/address.js';
import { BATCH_MAX_LENGTH, BATCH_HEADER, batchLsn, batchSizeAt } from '../log/format.js';
import { ArbiterError, validateOwnerId, validateVmId } from './arbiter.js';
import { claimEpoch, newOwnerId } from './claim.js';
import { FT_DEFAULTS, FailureDetector, checkCloneTimeout, handOverRetryMs } from './control.js';
import { FtError, FtPrimary, type FtCommonOptions, type FtPrimaryOptions } from './primary.js';

/**
 * The replay reached the guest's own end (an exit, trap or halt, or the end record the primary logged):
 * the pair is over, there is nothing to go live for.
 */
function guestEnded(r: RunResult): boolean {
  return (r.kind === 'end-of-log' && r.recorded !== undefined) || r.kind === 'exit' || r.kind === 'trap' || r.kind === 'halted';
}

export interface FtSecondaryOptions extends FtCommonOptions {
  /** The primary's logging-channel address. */
  join: { host: string; port: number };
  /** Makes a fresh machine (same memory, clock and devices as the primary's) for a clone. */
  createMachine(meta: Record<string, unknown>): Machine;
  /** Where this side listens for a new secondary once it is the primary (told to the primary). */
  listen?: { host?: string; port?: number };
  /** Options of the primary this side becomes at go-live. */
  promote?: Partial<Omit<FtPrimaryOptions, 'machine' | 'vmId' | 'key' | 'arbiter' | 'epoch' | 'listen' | 'tls'>>;
  /**
   * Called before any output leaves (e.g. bind the UDP forwarder): after the arbiter was won, or, for a
   * live migration's target that has the source's GO_LIVE, while it claims (the guest runs only once won).
   */
  beforeLive?: (machine: Machine) => Promise<void> | void;
  /** Keeps the clone's state and every batch received here (offline verification of a failover). */
  logDir?: string;
  /** This side's own disk image when disks are `separate` (the clone brings it up to date). */
  separateDisk?: string;
  /**
   * Slows this side's replay: it sleeps this share of each slice (0..0.95). For tests and demos of lag
   * control — a secondary on a slower or loaded host.
   */
  replayThrottle?: number;
  /**
   * Where the log arrives after the clone (default `native`): a native thread owns the connection,
   * verifies LOG frames into the replayer's ring and acknowledges them without JavaScript. `js` (and
   * always with TLS or a `logDir`) keeps everything on the event loop.
   */
  dataPath?: 'native' | 'js';
}

/** What a go-live did. */
export interface GoLiveReport {
  epoch: number;
  reason: string;
  /** From noticing the loss to serving, ms. */
  ms: number;
  /** Console bytes and frames re-emitted because their release could not be ruled out. */
  reemittedConsole: number;
  reemittedFrames: number;
  /** Position where this side took over. */
  instret: bigint;
  stateHash: bigint;
  /**
   * Console stream position of the first re-emitted console byte (see `Machine.consolePosition`): a
   * sink holding the primary's console up to position P keeps it up to here and appends the re-emitted
   * bytes, so it has no gap and no duplicate.
   */
  consolePosition: bigint;
  /** Where this side listens as the primary (when known before it listens: a configured or held port). */
  listen?: string;
  /** A live migration's target: the VM's secondary follows it from this very state (no clone). */
  followed: boolean;
  /**
   * Where {@link ms} went: replaying the rest of the log, winning the epoch at the arbiter, `beforeLive`
   * (binding the VM's network), switching the devices live and re-emitting.
   */
  steps: { drainMs: number; claimMs: number; beforeLiveMs: number; goLiveMs: number };
}

export interface FtSecondaryEvents {
  /** The clone arrived; replay runs. */
  cloned: [info: { pages: number; ms: number }];
  /** The first batch after the clone was acknowledged: the pair is in lockstep. */
  lockstep: [];
  /** This side is live. */
  'go-live': [report: GoLiveReport];
  /** …and is now the primary of its own pair (waiting for a new secondary). */
  promoted: [primary: FtPrimary];
  /** The primary dismissed this secondary (FT off, suspended, replaced, primary stopped). */
  left: [reason: string];
  /** The guest ended on the primary, and here at the same point. */
  ended: [result: RunResult];
  /**
   * This side stopped for good: lost the arbiter, diverged, or had nothing to go live with. `error` is
   * set for a failure rather than a decision: `ERR_LOCKSTEP_FT_MACHINE_CLOSED` (its machine was closed).
   */
  /** `error`: an FtError, or the OptionError of a machine this side could not make (its configuration). */
  halted: [reason: string, error?: FtError | OptionError];
  /** The primary asked for a restart (test restart secondary); a fresh clone follows. */
  restart: [];
  /**
   * A live migration of the primary: this side drained the old primary's log to the hand-over point and
   * follows the migration's target from there (no clone), at `primary`.
   */
  following: [info: { primary: string; instret: bigint }];
  /** The target took this side on as its secondary (epoch `epoch`): the pair is whole again. */
  rejoined: [info: { primary: string; epoch: number }];
  warning: [message: string];
}

/** A live migration's follow notice (see FtSecondary #onFollow). */
interface Follow {
  host: string;
  port: number;
  epoch: number;
  owner: string;
  instret: bigint;
  stateHash: bigint;
  /** The hart and devices at the hand-over point (the target's clone state) and the console position there. */
  state: Uint8Array;
  consolePosition: bigint;
}

type Phase = 'connecting' | 'cloning' | 'replaying' | 'rebasing' | 'going-live' | 'live' | 'left' | 'ended' | 'halted';

/**
 * The secondary VM of a fault-tolerant pair.
 *
 * ```ts
 * const s = new FtSecondary({ vmId: 'kv1', key, arbiter, join: { host, port }, createMachine: () => new Machine(opts) });
 * s.on('promoted', (p) => console.log('now primary at epoch', p.epoch));
 * await s.start();
 * ```
 */
export class FtSecondary extends EventEmitter<FtSecondaryEvents> {
  readonly vmId: string;
  /** This incarnation's owner token at the arbiter (kept when it is promoted to primary). */
  readonly owner: string;
  readonly #o: FtSecondaryOptions;
  readonly #heartbeatMs: number;
  readonly #timeoutMs: number;
  #phase: Phase = 'connecting';
  #channel: Channel | undefined;
  /** The native data path, once {@link #channel} was handed over to it. */
  #link: ReplicationLink | undefined;
  #machine: Machine | undefined;
  /** The replication port of {@link #machine}. */
  #port: ReplicationPort | undefined;
  #run: Promise<RunResult> | undefined;
  #epoch = 0;
  #detector: FailureDetector | undefined;
  #timer: NodeJS.Timeout | undefined;
  #expectLsn = 0n;
  #receivedBytes = 0;
  #released = -1n;
  #ackScheduled = false;
  #acked = false;
  #pages = 0;
  #cloneStart = 0;
  #log: WriteStream | undefined;
  #primary: FtPrimary | undefined;
  #diskFd: number | undefined;
  #diskBytes = 0;
  /** Aborted by {@link #halt}: a side that stopped must not go on claiming (and then fence the primary). */
  readonly #claimAbort = new AbortController();
  #goingLive: Promise<void> | undefined;
  /**
   * This side was brought in by a move (primary.ts #switchOver) that is not over yet: going live first
   * needs the move's own arbiter record (the primary claims it to call the move off), and the epoch after
   * the fence when the primary's fence holds the next one.
   */
  #move: { key?: string; epoch?: number; fenceEpoch: number; fenceOwner: string } | undefined;
  /**
   * A live migration's hand-over told this side to follow the target (CONTROL `follow`): when the old
   * primary's connection ends, drain to `instret` and join the target at `host:port` without a clone.
   */
  #follow: Follow | undefined;
  /** The target this side joined after a follow notice, until it answered RESUMED. */
  #rejoining: string | undefined;
  /** This side is a live migration's target (clone-final `migration`): it goes live only on GO_LIVE. */
  #targetOnly = false;
  /** GO_LIVE arrived (a hand-over, not a loss). */
  #handedOver = false;
  /** A migration's target: the SHA-256 (hex) of the final state S(P) it restored, what the source checks when it asks again. */
  #finalDigest: string | undefined;

  /** @throws OptionError when `owner` is given but not a valid owner id. */
  constructor(options: FtSecondaryOptions) {
    super();
    if (options.owner !== undefined) validateOwnerId(options.owner);
    checkCloneTimeout(options.cloneTimeoutMs);
    this.vmId = options.vmId;
    this.owner = options.owner ?? newOwnerId('secondary');
    this.#o = options;
    this.#heartbeatMs = options.heartbeatMs ?? FT_DEFAULTS.heartbeatMs;
    this.#timeoutMs = options.timeoutMs ?? FT_DEFAULTS.timeoutMs;
    publishSecondary(this);
  }

  /** The machine being replayed (after the clone), or the live one after go-live. */
  get machine(): Machine | undefined {
    return this.#machine;
  }
  /** The epoch of the pair this secondary belongs to. */
  get epoch(): number {
    return this.#epoch;
  }
  get phase(): Phase {
    return this.#phase;
  }
  /** The primary this side became, after a go-live. */
  get primary(): FtPrimary | undefined {
    return this.#primary;
  }

  /**
   * Where this side will listen once it is the primary. A configured port 0 is turned into a real one
   * by holding it ({@link #reserved}) from the start: a live migration's source must tell the VM's
   * secondary where to follow the target before the target listens.
   */
  #listenAt: { host: string; port: number } | undefined;
  #reserved: Server | undefined;

  async #reserve(): Promise<void> {
    const l = this.#o.listen;
    if (!l || l.port === undefined || this.#listenAt) return;
    const host = l.host ?? '127.0.0.1';
    if (l.port !== 0) {
      this.#listenAt = { host, port: l.port };
      return;
    }
    // Nothing is served here: a follower that comes too early is cut off and tries again.
    const server = createServer((socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, host, () => resolve());
    });
    server.unref();
    this.#reserved = server;
    this.#listenAt = { host, port: (server.address() as AddressInfo).port };
  }

  /** Frees the held port (close() releases it at once) for the primary this side became, which binds it next. */
  #unreserve(): void {
    const server = this.#reserved;
    this.#reserved = undefined;
    server?.close();
  }

  #sendHello(ch: Channel): void {
    const at = this.#listenAt;
    if (at) ch.send({ type: 'control', op: 'hello', listen: formatHostPort(at), owner: this.owner });
  }

  /** Connects to the primary and starts the clone. Resolves once connected and authenticated. */
  async start(): Promise<void> {
    await this.#reserve();
    const ch = await connectChannel({
      host: this.#o.join.host,
      port: this.#o.join.port,
      key: this.#o.key,
      vmId: this.vmId,
      role: 'secondary',
      ...(this.#o.tls ? { tls: this.#o.tls } : {}),
    });
    this.#attach(ch);
  }

  /**
   * Leaves the pair without going live (the primary goes on alone). During a go-live, stops claiming:
   * once this resolves no claim of this side is made any more.
   */
  async stop(): Promise<void> {
    this.#halt('stopped', 'left');
    this.#unreserve();
    if (this.#run) await this.#run.catch(() => undefined);
    if (this.#goingLive) await this.#goingLive.catch(() => undefined);
    this.#machine?.close();
  }

  #attach(ch: Channel): void {
    this.#channel = ch;
    this.#phase = 'cloning';
    this.#cloneStart = performance.now();
    this.#expectLsn = 0n;
    this.#receivedBytes = 0;
    this.#released = -1n;
    this.#acked = false;
    this.#pages = 0;
    this.#link = undefined;
    // Until the clone's final state is restored a long silence is tolerated (FtCommonOptions.cloneTimeoutMs).
    this.#detector = new FailureDetector(this.#timeoutMs, performance.now(), { checkEveryMs: this.#heartbeatMs, graceMs: this.#o.cloneTimeoutMs ?? FT_DEFAULTS.cloneTimeoutMs });
    ch.on('message', (m: Message) => this.#onMessage(ch, m));
    ch.on('close', (reason: string) => {
      if (ch === this.#channel) this.#lose(`the logging channel closed: ${reason}`);
    });
    this.#sendHello(ch);
    this.#timer = setInterval(() => this.#tick(), this.#heartbeatMs);
    this.#timer.unref();
  }

  #violation(ch: Channel, why: string): void {
    this.emit('warning', `protocol violation by the primary: ${why}`);
    if (this.#link && ch === this.#channel) {
      // Through the link: the primary is treated as lost, as a channel that closed on a bad frame is.
      this.#link.stop();
      this.#lose(`protocol violation by the primary: ${why}`);
      return;
    }
    ch.close(why);
  }

  #onMessage(ch: Channel, m: Message): void {
    if (ch !== this.#channel) return;
    this.#detector?.heard(performance.now());
    switch (m.type) {
      case 'clone-begin':
        return this.#cloneBegin(ch, m.meta);
      case 'clone-pages': {
        if (this.#phase !== 'cloning' || !this.#port) return this.#violation(ch, 'pages outside a clone');
        if (m.pageSize !== PAGE_SIZE) return this.#violation(ch, `page size ${m.pageSize}, this machine has ${PAGE_SIZE}-byte pages`);
        try {
          this.#port.writePages(m.pages);
        } catch (err) {
          if (err instanceof ReplicationError) return this.#violation(ch, `clone pages: ${err.message}`);
          throw err;
        }
        this.#pages += m.pages.length;
        return;
      }
      case 'clone-disk': {
        if (this.#phase !== 'cloning' || this.#diskFd === undefined) return this.#violation(ch, 'disk data outside a separate-disk clone');
        const end = m.offset + BigInt(m.data.length);
        if (end > BigInt(this.#diskBytes)) return this.#violation(ch, `disk data up to byte ${end} of a ${this.#diskBytes}-byte image`);
        writeSync(this.#diskFd, m.data, 0, m.data.length, Number(m.offset));
        return;
      }
      case 'clone-final':
        if (this.#diskFd !== undefined) {
          fsyncSync(this.#diskFd);
          closeSync(this.#diskFd);
          this.#diskFd = undefined;
        }
        return this.#cloneFinal(ch, m.state, m.meta);
      case 'clone-done':
        return;
      case 'log': {
        if (this.#phase !== 'replaying' || !this.#port) return this.#violation(ch, 'log before the clone finished');
        const port = this.#port;
        // One or more whole batches; each is checked again (CRC, records) by the replayer before use.
        const all = m.batches;
        for (let at = 0; at < all.length; ) {
          const size = batchSizeAt(all, at);
          if (size === undefined) return this.#violation(ch, `a log frame ends with ${all.length - at} bytes of a batch header`);
          if (size > BATCH_HEADER + BATCH_MAX_LENGTH || at + size > all.length) return this.#violation(ch, `a log batch of ${size} bytes overruns its frame`);
          const b = all.subarray(at, at + size);
          at += size;
          const lsn = batchLsn(b);
          if (lsn !== this.#expectLsn) return this.#violation(ch, `log batch lsn ${lsn}, expected ${this.#expectLsn}`);
          this.#expectLsn++;
          this.#receivedBytes += b.length;
          port.feed(b);
          this.#log?.write(b.slice());
        }
        this.#scheduleAck();
        return;
      }
      case 'release':
        if (m.lsn > this.#released) {
          this.#released = m.lsn;
          this.#port?.shadowRelease(m.lsn);
        }
        return;
      case 'heartbeat':
        return;
      case 'go-live':
        this.#handedOver = true;
        return this.#lose(`the primary handed over: ${m.reason}`);
      case 'control':
        if (m.op === 'restart') return void this.#restart();
        if (m.op === 'sync') return void this.#send({ type: 'control', op: 'synced' }); // everything before it is processed
        if (m.op === 'follow') return this.#onFollow(ch, m);
        if (m.op === 'resumed') return this.#onResumed(ch, m);
        if (m.op === 'moved') {
          // The primary won its fence: the move is over, this side is an ordinary secondary of that epoch.
          const e = m.epoch;
          if (!this.#move || typeof e !== 'number' || e !== this.#move.fenceEpoch) return this.#violation(ch, `a move's end for epoch ${String(e)} that this side was not told of`);
          this.#epoch = e;
          this.#move = undefined;
        }
        return;
      case 'bye':
        if (this.#follow) return this.#lose(`the primary handed over to the migration's target: ${m.reason}`);
        return this.#halt(`dismissed by the primary: ${m.reason}`, 'left');
      default:
        return this.#violation(ch, `unexpected ${m.type} message from the primary`);
    }
  }

  #cloneBegin(ch: Channel, meta: Record<string, unknown>): void {
    if (this.#phase !== 'cloning' || this.#machine) return this.#violation(ch, 'a second clone-begin');
    const epoch = meta.epoch;
    if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < 1) return this.#violation(ch, `clone-begin without a valid epoch (${String(epoch)})`);
    try {
      this.#machine = this.#o.createMachine(meta);
    } catch (err) {
      // This side's own configuration (its disk image locked by another writer, a TAP device it cannot
      // attach…), not the primary's doing: halt and say so to both.
      const why = `cannot make the machine for this clone: ${(err as Error).message}`;
      return this.#halt(why, 'halted', err instanceof OptionError ? err : undefined, `the secondary ${why}`);
    }
    if (meta.memory !== this.#machine.memory || meta.clock !== this.#machine.clock) {
      const m = this.#machine;
      this.#machine = undefined;
      m.close();
      return this.#violation(ch, `the primary's machine has ${String(meta.memory)} bytes and the ${String(meta.clock)} clock; this side's config says ${m.memory} and ${m.clock}`);
    }
    this.#epoch = epoch;
    const machine = this.#machine;
    this.#port = replicationPort(machine);
    machine.once('close', () => {
      if (machine === this.#machine) this.#machineClosed();
    });
    const disk = meta.disk ?? 'shared';
    if (disk === 'separate') {
      if (!this.#o.separateDisk) return this.#violation(ch, "the primary's disks are separate but this side has no image of its own (separateDisk)");
      this.#diskFd = openSync(this.#o.separateDisk, 'r+');
      this.#diskBytes = fstatSync(this.#diskFd).size;
    } else if (this.#o.separateDisk) {
      return this.#violation(ch, "this side's disk is separate but the primary's is shared");
    }
    if (this.#o.logDir) {
      mkdirSync(this.#o.logDir, { recursive: true });
      this.#log = createWriteStream(join(this.#o.logDir, 'log.bin'));
    }
  }

  #cloneFinal(ch: Channel, state: Uint8Array, meta: Record<string, unknown>): void {
    const machine = this.#machine;
    if (this.#phase !== 'cloning' || !machine) return this.#violation(ch, 'clone-final outside a clone');
    const position = meta.consolePosition;
    if (position !== undefined && (typeof position !== 'string' || !/^\d{1,20}$/.test(position) || BigInt(position) >= 1n << 64n)) {
      return this.#violation(ch, `clone-final with a bad consolePosition (${JSON.stringify(position)})`);
    }
    // The primary's epoch may have moved on since clone-begin (it lost the secondary a move replaces).
    const epoch = meta.epoch;
    if (epoch !== undefined && (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < this.#epoch)) {
      return this.#violation(ch, `clone-final with a bad epoch (${JSON.stringify(epoch)}; clone-begin said ${this.#epoch})`);
    }
    const move = parseMove(meta.move, typeof epoch === 'number' ? epoch : this.#epoch);
    if (move === null) return this.#violation(ch, `clone-final with a bad move (${JSON.stringify(meta.move)?.slice(0, 200)})`);
    try {
      machine.restore(state);
    } catch (err) {
      return this.#violation(ch, `clone state: ${(err as Error).message}`);
    }
    if (position !== undefined) machine.consolePosition = BigInt(position);
    if (typeof epoch === 'number') this.#epoch = epoch;
    this.#move = move;
    this.#targetOnly = meta.migration === true;
    if (this.#targetOnly) this.#finalDigest = createHash('sha256').update(state).digest('hex');
    if (this.#o.logDir) writeFileSync(join(this.#o.logDir, 'clone.snap'), machine.snapshot());
    const port = this.#port!;
    port.setShadow(true);
    if (this.#o.replayThrottle) port.setThrottle(this.#o.replayThrottle);
    try {
      port.startReplay();
    } catch (err) {
      return this.#violation(ch, `cannot start replaying: ${(err as Error).message}`);
    }
    this.#phase = 'replaying';
    // A migration's target gets no log: nothing to replay, it waits at S(P) for GO_LIVE (a replay run
    // would only have to be stopped again then, on the hand-over's critical path).
    if (!this.#targetOnly) {
      this.#run = machine.run();
      void this.#run.then((r) => this.#onRunEnd(r), (err: unknown) => this.#halt(`the machine failed: ${(err as Error).message}`));
    }
    this.#detector?.endGrace();
    ch.send({ type: 'control', op: 'cloned' }); // the primary counts the VM protected from here
    this.emit('cloned', { pages: this.#pages, ms: performance.now() - this.#cloneStart });
    // A migration's target gets no log before its GO_LIVE: the channel stays with JavaScript.
    if (this.#o.dataPath !== 'js' && !this.#o.logDir && ch.canHandOver && !this.#targetOnly) void this.#handOver(ch, port);
  }

  /** The connection moves to a native link: the log goes to the replayer and is acknowledged there. */
  async #handOver(ch: Channel, port: ReplicationPort): Promise<void> {
    try {
      await ch.handOver((connection) => {
        if (ch !== this.#channel || port !== this.#port) throw new FtError('ERR_LOCKSTEP_FT_STATE', 'the channel was replaced meanwhile');
        this.#link = port.startLink('receiver', connection, {
          message: (type, payload) => this.#onLinkMessage(ch, type, payload),
          end: (e) => this.#onLinkEnd(ch, e),
        });
      });
    } catch (err) {
      // The channel closed with the error: its 'close' handler decides what follows.
      this.emit('warning', `the native data path did not start: ${(err as Error).message}`);
    }
  }

  #onLinkMessage(ch: Channel, type: number, payload: Uint8Array): void {
    let m: Message;
    try {
      m = decodeMessage(type, payload);
    } catch (err) {
      return this.#violation(ch, `malformed message: ${(err as Error).message}`);
    }
    this.#onMessage(ch, m);
  }

  #onLinkEnd(ch: Channel, e: LinkEnd): void {
    const link = this.#link;
    link?.stop();
    if (ch !== this.#channel) return;
    if (e.bye && this.#follow) return this.#lose(`the primary handed over to the migration's target: ${e.byeReason}`);
    if (e.bye) return this.#halt(`dismissed by the primary: ${e.byeReason}`, 'left');
    this.#lose(`the logging channel closed: ${e.message}`);
  }

  /** Sends through the link once there is one, else the channel. */
  #send(m: Message): void {
    const link = this.#link;
    if (!link) {
      this.#channel?.send(m);
      return;
    }
    const { code, payload } = encodeMessage(m);
    link.send(code, payload);
  }

  /** Closes the connection with a BYE saying `reason` (through the link: flushed, then stopped). */
  #closeChannel(ch: Channel | undefined, reason: string): void {
    const link = this.#link;
    this.#link = undefined;
    if (link && !link.stopped) {
      const { code, payload } = encodeMessage({ type: 'bye', reason: reason.length > 1000 ? `${reason.slice(0, 999)}…` : reason });
      link.send(code, payload);
      link.finish();
      setTimeout(() => link.stop(), CLOSE_LINGER_MS).unref();
    }
    ch?.close(reason); // nothing more once handed over
  }

  #onRunEnd(r: RunResult): void {
    if (this.#phase === 'going-live' || this.#phase === 'rebasing' || this.#phase === 'left' || this.#phase === 'halted') return; // handled there
    // The guest ended as the log says it did (a replay reports the guest's own exit, trap or halt, or the
    // recorded end): the pair is over.
    if (guestEnded(r)) {
      this.#phase = 'ended';
      this.#stopTimer();
      this.#closeChannel(this.#channel, 'the guest ended');
      this.emit('ended', r);
      return;
    }
    if (r.kind === 'divergence') {
      this.#halt(`diverged from the primary: ${r.message}`, 'halted', undefined, `the secondary diverged: ${r.message}`);
      return;
    }
    if (r.kind === 'stopped') return;
    this.#halt(`the replay ended unexpectedly (${r.kind})`, 'halted', undefined, `the secondary's replay ended: ${r.kind}`);
  }

  #scheduleAck(): void {
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    // One ack per turn of the event loop covers every batch that arrived in it.
    setImmediate(() => {
      this.#ackScheduled = false;
      this.#sendAck();
    });
  }

  #sendAck(): void {
    const ch = this.#channel;
    if (this.#link) {
      this.#link.report();
      return;
    }
    if (!ch || ch.closed || this.#expectLsn === 0n || !this.#port || this.#port.machine.closed) return;
    const instret = this.#port.progress();
    ch.send({ type: 'ack', lsn: this.#expectLsn - 1n, instret, bytes: BigInt(this.#receivedBytes) });
    if (!this.#acked) {
      this.#acked = true;
      this.emit('lockstep');
    }
  }

  #tick(): void {
    const ch = this.#channel;
    const link = this.#link;
    if (!ch || (ch.closed && !link) || link?.stopped) return;
    if (this.#machine?.closed) return this.#machineClosed();
    const now = performance.now();
    const instret = this.#port ? this.#port.progress() : 0n;
    if (link) {
      link.poll();
      const f = link.figures();
      if (f) {
        if (f.heardAgoMs >= 0) this.#detector?.heard(now - f.heardAgoMs);
        if (f.releasedLsn1 > 0n && f.releasedLsn1 - 1n > this.#released) this.#released = f.releasedLsn1 - 1n;
        this.#receivedBytes = f.logBytes;
        if (!this.#acked && f.acks > 0) {
          this.#acked = true;
          this.emit('lockstep');
        }
      }
      if (link.stopped || this.#link !== link) return; // the poll ended it
    }
    this.#send({ type: 'heartbeat', sentAtMs: now, instret, releasedLsn: 0n });
    if (this.#phase === 'replaying') this.#sendAck(); // also reports replay progress for lag control
    if (this.#detector?.expired(now)) this.#lose(`no word from the primary for ${Math.round(this.#detector.silence(now))} ms (timeout ${Math.round(this.#detector.currentTimeoutMs)} ms)`);
  }

  #stopTimer(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  /** {@link #lost}, whose failure (its machine closed under it, say) halts this side instead of escaping. */
  #lose(reason: string): void {
    this.#lost(reason).catch((err: unknown) => {
      if (this.#machine?.closed) return this.#machineClosed();
      if (this.#phase === 'live') this.emit('warning', `going live: ${(err as Error).message}`);
      else this.#halt(`going live failed: ${(err as Error).message}`);
    });
  }

  /**
   * The primary is gone (or handed over): replay everything received, and only once that replay reached
   * the end of the log soundly win the next epoch (DESIGN §3: replay all received log, then the
   * test-and-set), switch the devices live, re-emit the outputs the primary may not have released, and
   * serve as the new primary.
   */
  #lost(reason: string): Promise<void> {
    if (this.#goingLive === undefined && this.#phase === 'replaying' && this.#follow) return this.#rebase(reason);
    if (this.#goingLive === undefined && this.#o.arbiter.kind === 'local' && !this.#handedOver && (this.#phase === 'replaying' || (this.#phase === 'cloning' && this.#machine !== undefined))) {
      // No shared arbiter (a VM without FT): a silence proves nothing, the source may run on. Only its
      // GO_LIVE makes this side the VM, so it asks the source again how the hand-over stands
      // (docs/fault-tolerance.md, "Live migration without FT").
      this.#goingLive = this.#askSource(reason);
      return this.#goingLive;
    }
    if (this.#goingLive === undefined && this.#phase === 'replaying' && this.#targetOnly && !this.#handedOver) {
      // Before GO_LIVE the source still owns the VM and its secondary holds the log: that one takes over.
      this.#halt(`the source was lost before it handed the VM over (${reason}); the VM's secondary takes over`);
      return Promise.resolve();
    }
    if (this.#goingLive === undefined && this.#phase === 'replaying') this.#goingLive = this.#goLive(reason);
    else if (this.#phase === 'cloning') this.#halt(`the primary was lost before the clone finished (${reason}): nothing to go live with`);
    return this.#goingLive ?? Promise.resolve();
  }

  async #goLive(reason: string): Promise<void> {
    const t0 = performance.now();
    this.#phase = 'going-live';
    this.#stopTimer();
    const ch = this.#channel;
    const link = this.#link;
    if (link) {
      // Everything verified is in the replay ring once the link stopped; what it said was released counts.
      link.stop();
      const f = link.figures();
      if (f && f.releasedLsn1 > 0n && f.releasedLsn1 - 1n > this.#released) this.#released = f.releasedLsn1 - 1n;
      this.#link = undefined;
    }
    this.#channel = undefined;
    // A migration without an arbiter: the source waits for this (its retry window) before it exits.
    if (this.#targetOnly && this.#handedOver && this.#o.arbiter.kind === 'local') ch?.send({ type: 'control', op: 'took-go-live' });
    ch?.close(reason);
    this.#log?.end();
    const machine = this.#machine!;
    const port = this.#port!;
    port.endOfLog();
    let want = this.#epoch + 1;
    const claim = (vm: string, epoch: number) =>
      claimEpoch(this.#o.arbiter, vm, epoch, this.owner, {
        signal: this.#claimAbort.signal,
        onRetry: (err) => this.emit('warning', `arbiter unreachable (${err.message}); retrying`),
      });
    // A claim made before the drain has shown the replay sound could win for a side that then halts
    // (diverged): it would fence out a live primary and leave nothing live. A migration's target handed
    // the VM over has no log to replay (it restored the hand-over state itself) and a secondary that
    // follows it and goes live when it cannot reach it: it claims while its replay run stops.
    const early = this.#targetOnly && this.#handedOver && !this.#move ? claim(this.vmId, want) : undefined;
    early?.catch(() => undefined); // awaited below unless this side halts first
    // The same target makes the host side of its devices ready (beforeLive: binding its UDP port) while
    // it claims, not after: the source stopped for good before it sent GO_LIVE, and the guest neither
    // runs nor emits anything here before the claim is won (a frame that arrives meanwhile waits on the
    // host, as at any go-live). Any other go-live binds only once it won, as the old primary may be live.
    const beforeLive = async (): Promise<void> => {
      try {
        await this.#o.beforeLive?.(machine);
      } catch (err) {
        // The epoch is ours (or being won) and the old primary fenced: not going live would leave nothing live.
        this.emit('warning', `beforeLive failed (${(err as Error).message}); going live regardless`);
      }
    };
    const preparing = early ? beforeLive() : undefined;
    // No run: a migration's target still at S(P), where the log (there is none) ends.
    const r: RunResult = this.#run ? await this.#run : { kind: 'end-of-log', recorded: undefined, code: 0, ...machine.counters, pc: machine.pc };
    const drainedAt = performance.now();
    if (!this.#drained(r)) return;
    if (this.#phase !== 'going-live') return; // stopped meanwhile
    const move = this.#move;
    let c;
    try {
      if (move?.key !== undefined && move.epoch !== undefined) {
        // Mid-move: the move's record first (the primary holds it when it called the move off).
        const m = await claim(move.key, move.epoch);
        if (!m.won) return this.#halt(`the move that brought this secondary in was called off (${move.key} ${move.epoch} belongs to ${m.holder.owner ?? 'the primary'})`);
      }
      c = await (early ?? claim(this.vmId, want));
      if (!c.won && move && c.reason === 'taken' && c.holder.epoch === move.fenceEpoch && c.holder.owner === move.fenceOwner) {
        // The primary's fence (or the migration's target that this side follows, live and holding the
        // next epoch): this side takes over one epoch later.
        want = move.fenceEpoch + 1;
        c = await claim(this.vmId, want);
      }
    } catch (err) {
      if (err instanceof ArbiterError && err.code === 'ERR_LOCKSTEP_ARBITER_ABORTED') return; // halted meanwhile
      return this.#halt(`cannot claim epoch ${want}: ${(err as Error).message}`);
    }
    if (!c.won) return this.#halt(`the primary is still live: epoch ${want} belongs to ${c.holder.owner ?? 'another side'}`);
    const claimedAt = performance.now();
    const stateHash = machine.stateHash();
    const { instret } = machine.counters;
    if (this.#o.logDir) writeFileSync(join(this.#o.logDir, 'golive.json'), JSON.stringify({ stateHash: stateHash.toString(), instret: instret.toString(), epoch: want }));
    await (preparing ?? beforeLive());
    if ((this.#phase as Phase) !== 'going-live') return; // stopped meanwhile: the epoch is won, but nothing goes live
    const boundAt = performance.now();
    port.setThrottle(0);
    let out;
    try {
      out = port.goLive(this.#released < 0n ? undefined : this.#released); // re-emits what may not have left
    } catch (err) {
      if (err instanceof ReplicationError) return this.#halt(err.message);
      throw err;
    }
    // The re-emitted console bytes are the last ones the guest wrote: they end at the stream's position.
    const consolePosition = machine.consolePosition - BigInt(out.console.length);
    this.#phase = 'live';
    const report: GoLiveReport = {
      epoch: want,
      reason,
      ms: performance.now() - t0,
      reemittedConsole: out.console.length,
      reemittedFrames: out.frames.length + out.deviceFrames,
      instret,
      stateHash,
      consolePosition,
      ...(this.#listenAt ? { listen: formatHostPort(this.#listenAt) } : {}),
      followed: this.#targetOnly,
      steps: { drainMs: drainedAt - t0, claimMs: claimedAt - drainedAt, beforeLiveMs: boundAt - claimedAt, goLiveMs: performance.now() - boundAt },
    };
    this.emit('go-live', report);
    const primary = new FtPrimary({
      ...(this.#o.promote ?? {}),
      machine,
      vmId: this.vmId,
      key: this.#o.key,
      arbiter: this.#o.arbiter,
      epoch: want,
      owner: this.owner,
      ...(this.#o.heartbeatMs !== undefined ? { heartbeatMs: this.#o.heartbeatMs } : {}),
      ...(this.#o.timeoutMs !== undefined ? { timeoutMs: this.#o.timeoutMs } : {}),
      ...(this.#o.cloneTimeoutMs !== undefined ? { cloneTimeoutMs: this.#o.cloneTimeoutMs } : {}),
      ...(this.#listenAt ? { listen: this.#listenAt } : this.#o.listen ? { listen: this.#o.listen } : {}),
      ...(this.#o.tls ? { tls: this.#o.tls } : {}),
      ...(this.#o.separateDisk ? { separateDisk: this.#o.separateDisk } : {}),
      ...(this.#o.dataPath ? { dataPath: this.#o.dataPath } : {}),
      // A migration's target: the VM's secondary follows from exactly this state.
      ...(this.#targetOnly ? { follower: { instret, stateHash } } : {}),
      // Without shared arbiter storage the VM runs with FT off, whatever the promote options say.
      ...(this.#o.arbiter.kind === 'local' ? { disabled: true } : {}),
    });
    this.#primary = primary;
    this.#unreserve();
    await primary.start();
    this.emit('promoted', primary);
  }

  /**
   * A migration's target without an arbiter lost the source before GO_LIVE (its connection closed, or
   * a silence): it asks the source, on new connections with the same key, for up to the retry window
   * (handOverRetryMs) how the hand-over stands. `handed-over` (with the rest of the migration again if
   * this side lacks S(P), and GO_LIVE): it goes live as if GO_LIVE had come, once it checked that it
   * stands at exactly the hand-over point. `called-off`, or any other answer of the source: it halts, the
   * VM runs on at the source. No answer within the window: it halts (the source died or is cut off).
   * It never goes live on a silence.
   */
  async #askSource(reason: string): Promise<void> {
    const windowMs = handOverRetryMs(this.#timeoutMs);
    const t0 = performance.now();
    this.#stopTimer();
    const old = this.#channel;
    this.#channel = undefined;
    // Closing tells a source that has not sent GO_LIVE to call the migration off; one that has waits.
    old?.close(reason);
    this.emit('warning', `the source was lost before GO_LIVE reached this side (${reason}); asking it how the hand-over stands, for up to ${windowMs} ms`);
    const asking = () => this.#phase === 'cloning' || this.#phase === 'replaying';
    let last = reason;
    for (let attempt = 1; asking(); attempt++) {
      const left = windowMs - (performance.now() - t0);
      if (left <= 0) break;
      let ch: Channel;
      try {
        ch = await connectChannel({
          host: this.#o.join.host,
          port: this.#o.join.port,
          key: this.#o.key,
          vmId: this.vmId,
          role: 'secondary',
          handshakeTimeoutMs: Math.max(1, Math.min(left, 5_000)),
          signal: this.#claimAbort.signal, // a halt (stop()) ends the attempt at once
          ...(this.#o.tls ? { tls: this.#o.tls } : {}),
        });
      } catch (err) {
        last = `attempt ${attempt}: ${(err as Error).message}`;
        await new Promise((r) => setTimeout(r, Math.min(this.#heartbeatMs, Math.max(1, left))));
        continue;
      }
      if (!asking()) {
        ch.close('this side stopped');
        return;
      }
      const a = await this.#ask(ch, windowMs - (performance.now() - t0));
      if (a.kind === 'go-live') {
        this.#handedOver = true;
        return this.#goLive(`the primary handed over: live migration (GO_LIVE taken on asking the source again, ${Math.round(performance.now() - t0)} ms after ${reason})`);
      }
      if (a.kind === 'halt') return this.#halt(a.why);
      last = `attempt ${attempt}: ${a.why}`;
    }
    if (!asking()) return;
    this.#halt(`the source was lost before it handed the VM over (${reason}), and asking it again for ${windowMs} ms brought no answer (${last}): a migration's target without an arbiter goes live only on the source's GO_LIVE, so it does not; the VM runs on at the source, or is down if the source died`);
  }

  /**
   * One question to the source on `ch` (see #askSource): resolves with `go-live` once GO_LIVE came and
   * this side stands at the hand-over point, `halt` for a final answer that it must not go live, `lost`
   * when the connection ended (or `leftMs` passed) before an answer.
   */
  #ask(ch: Channel, leftMs: number): Promise<{ kind: 'go-live' } | { kind: 'halt' | 'lost'; why: string }> {
    return new Promise((resolve) => {
      let point: { instret: bigint; digest: string } | undefined;
      let settled = false;
      const settle = (a: { kind: 'go-live' } | { kind: 'halt' | 'lost'; why: string }) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (a.kind !== 'go-live') {
          if (this.#channel === ch) this.#channel = undefined;
          ch.close(a.kind === 'halt' ? a.why : 'no answer');
        }
        resolve(a);
      };
      const timer = setTimeout(() => settle({ kind: 'lost', why: `no answer within ${Math.round(leftMs)} ms` }), Math.max(1, leftMs));
      timer.unref();
      this.#channel = ch; // the rest of the migration, if it comes again, goes through #onMessage
      ch.on('close', (why: string) => settle(point ? { kind: 'lost', why: `the source handed over at instret ${point.instret}, then the connection ended: ${why}` } : { kind: 'lost', why }));
      ch.on('message', (m: Message) => {
        if (settled) return;
        switch (m.type) {
          case 'control':
            if (m.op !== 'handover') return settle({ kind: 'halt', why: `asked how the hand-over stands, the source answered CONTROL ${m.op}: it did not hand the VM over; the VM runs on at the source` });
            if (m.state === 'handed-over' && typeof m.instret === 'string' && /^\d{1,20}$/.test(m.instret) && typeof m.digest === 'string') {
              point = { instret: BigInt(m.instret), digest: m.digest };
              if (m.resend === false) {
                return settle({ kind: 'halt', why: `the source handed the VM over at instret ${m.instret}, but this side does not hold that final state and the source cannot send it again: the VM is down (restart it from its disk)` });
              }
              return;
            }
            return settle({ kind: 'halt', why: `the source did not hand the VM over (${typeof m.reason === 'string' ? m.reason : String(m.state)}); it runs on there, and a migration's target without an arbiter goes live only on the source's GO_LIVE` });
          case 'clone-pages':
          case 'clone-disk':
          case 'clone-final':
          case 'clone-done':
            if (!point) return settle({ kind: 'halt', why: `asked how the hand-over stands, the source answered with ${m.type}: it did not hand the VM over` });
            return this.#onMessage(ch, m);
          case 'heartbeat':
            return;
          case 'go-live': {
            if (!point) return settle({ kind: 'halt', why: 'the source sent GO_LIVE again without the hand-over point: not taken' });
            const here = this.#machine?.counters.instret;
            if (this.#phase !== 'replaying' || !this.#targetOnly || here !== point.instret || this.#finalDigest !== point.digest) {
              return settle({ kind: 'halt', why: `the source handed the VM over at instret ${point.instret} (final state ${point.digest.slice(0, 16)}), but this side stands at ${this.#phase === 'replaying' ? `instret ${String(here)} (final state ${this.#finalDigest?.slice(0, 16) ?? 'none'})` : 'no final state'}: it cannot go live; the VM is down (restart it from its disk)` });
            }
            return settle({ kind: 'go-live' });
          }
          case 'bye':
            return settle(
              point
                ? { kind: 'lost', why: `the source handed over at instret ${point.instret}, then said: ${m.reason}` }
                : { kind: 'halt', why: `asked how the hand-over stands, the source refused (${m.reason}): it did not hand the VM over; the VM runs on at the source` },
            );
          default:
            return settle({ kind: 'halt', why: `asked how the hand-over stands, the source answered with ${m.type}: it did not hand the VM over` });
        }
      });
      const restored = this.#phase === 'replaying' && this.#targetOnly ? { instret: String(this.#machine!.counters.instret), digest: this.#finalDigest } : {};
      ch.send({ type: 'control', op: 'handover?', owner: this.owner, ...restored });
    });
  }

  async #restart(): Promise<void> {
    if (this.#phase !== 'replaying' && this.#phase !== 'cloning') return;
    const ch = this.#channel;
    this.#channel = undefined;
    this.#stopTimer();
    this.#phase = 'left';
    this.#closeChannel(ch, 'restarting (test restart secondary)');
    const m = this.#machine;
    this.#machine = undefined;
    this.#port = undefined;
    if (m) {
      m.stop();
      await this.#run?.catch(() => undefined);
      m.close();
    }
    this.#run = undefined;
    this.emit('restart');
    this.#phase = 'connecting';
    // The primary needs a moment to win the next epoch and listen for a secondary again.
    for (let attempt = 0; attempt < 50; attempt++) {
      try {
        await this.start();
        return;
      } catch (err) {
        if (attempt === 49) this.#halt(`restart: cannot rejoin the primary: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  // ---- following a live migration of the primary (docs/fault-tolerance.md, "Live migration") ------------

  /**
   * The primary hands the VM over to a migration's target and tells this side to follow it. Everything up
   * to the hand-over point is acknowledged and released by now. Until the target takes this side on, going
   * live claims the next epoch, or the one after it when the target holds the next.
   */
  #onFollow(ch: Channel, m: Message & { type: 'control' }): void {
    const at = typeof m.listen === 'string' ? parseHostPort(m.listen) : undefined;
    const ok =
      at !== undefined &&
      m.epoch === this.#epoch + 1 &&
      typeof m.owner === 'string' &&
      m.owner.length > 0 &&
      m.owner.length <= 256 &&
      typeof m.instret === 'string' &&
      /^\d{1,20}$/.test(m.instret) &&
      typeof m.stateHash === 'string' &&
      /^\d{1,20}$/.test(m.stateHash) &&
      typeof m.consolePosition === 'string' &&
      /^\d{1,20}$/.test(m.consolePosition) &&
      typeof m.state === 'string' &&
      m.state.length > 0;
    if (!ok) return this.#violation(ch, `a follow notice with bad fields (${JSON.stringify(m).slice(0, 200)})`);
    if (this.#phase !== 'replaying' || this.#move) return; // not answered: the primary hands over without a follower
    this.#follow = { host: at.host, port: at.port, epoch: m.epoch as number, owner: m.owner as string, instret: BigInt(m.instret as string), stateHash: BigInt(m.stateHash as string), consolePosition: BigInt(m.consolePosition as string), state: Buffer.from(m.state as string, 'base64') };
    this.#move = { fenceEpoch: this.#follow.epoch, fenceOwner: this.#follow.owner };
    this.#send({ type: 'control', op: 'following' });
  }

  /**
   * The old primary's connection ended after a follow notice: replay to the hand-over point, check that
   * this side stands exactly where the target took over, and join the target without a clone. If the
   * target cannot be reached within the timeout, this side goes live itself (its rule, see #onFollow).
   */
  /** The replay's end once the log is drained: a divergence or another end halts, a guest that ended ends this side; true to go on. */
  #drained(r: RunResult): boolean {
    if (r.kind === 'divergence') {
      this.#halt(`diverged from the primary while draining the log: ${r.message}`);
      return false;
    }
    if (guestEnded(r)) {
      this.#phase = 'ended';
      this.emit('ended', r);
      return false;
    }
    if (r.kind !== 'end-of-log') {
      this.#halt(`the replay ended with ${r.kind} while draining the log`);
      return false;
    }
    return true;
  }

  async #rebase(reason: string): Promise<void> {
    const f = this.#follow!;
    this.#follow = undefined;
    this.#phase = 'rebasing';
    this.#stopTimer();
    const ch = this.#channel;
    const link = this.#link;
    if (link) {
      link.stop();
      this.#link = undefined;
    }
    this.#channel = undefined;
    ch?.close(reason);
    this.#log?.end();
    this.#log = undefined;
    const machine = this.#machine!;
    const port = this.#port!;
    port.endOfLog();
    const r = await this.#run!;
    if ((this.#phase as Phase) !== 'rebasing') return; // stopped meanwhile
    if (!this.#drained(r)) return;
    const { instret } = machine.counters;
    const hash = machine.stateHash();
    if (instret !== f.instret || hash !== f.stateHash) {
      return this.#halt(`cannot follow the migration: this side drained to instret ${instret} (state hash ${hash.toString(16)}), the primary handed over at ${f.instret} (${f.stateHash.toString(16)})`);
    }
    // The primary released every output up to here before it told this side to follow: nothing kept is
    // re-emitted by a later go-live, and the target's log numbers its batches from 0 again.
    port.setShadow(true);
    try {
      // The target's very state (hart and devices; the RAM is the same, as the hash showed).
      machine.restore(f.state);
    } catch (err) {
      return this.#halt(`cannot follow the migration: the hand-over state: ${(err as Error).message}`);
    }
    machine.consolePosition = f.consolePosition;
    if (machine.stateHash() !== f.stateHash) return this.#halt('cannot follow the migration: the hand-over state does not match this side\'s memory');
    port.startReplay();
    if (this.#o.logDir) {
      writeFileSync(join(this.#o.logDir, 'clone.snap'), machine.snapshot());
      this.#log = createWriteStream(join(this.#o.logDir, 'log.bin'));
    }
    this.#phase = 'replaying';
    this.#run = machine.run();
    void this.#run.then((x) => this.#onRunEnd(x), (err: unknown) => this.#halt(`the machine failed: ${(err as Error).message}`));
    const primary = formatHostPort({ host: f.host, port: f.port });
    this.emit('following', { primary, instret });
    const deadline = performance.now() + this.#timeoutMs;
    let lastError = '';
    while ((this.#phase as Phase) === 'replaying' && this.#channel === undefined) {
      if (performance.now() > deadline) return this.#lose(`the migration's target at ${primary} did not take this side on within ${this.#timeoutMs} ms (${lastError})`);
      try {
        const next = await connectChannel({ host: f.host, port: f.port, key: this.#o.key, vmId: this.vmId, role: 'secondary', ...(this.#o.tls ? { tls: this.#o.tls } : {}) });
        if ((this.#phase as Phase) !== 'replaying') {
          next.close('this side stopped');
          return;
        }
        this.#attachFollower(next, f);
      } catch (err) {
        lastError = (err as Error).message;
        // The target binds its port once it is live: a few milliseconds after the hand-over.
        await new Promise((res) => setTimeout(res, 2));
      }
    }
  }

  /** Joins the target as its secondary at the hand-over point: RESUME instead of a clone. */
  #attachFollower(ch: Channel, f: Follow): void {
    this.#channel = ch;
    this.#rejoining = formatHostPort({ host: f.host, port: f.port });
    this.#expectLsn = 0n;
    this.#receivedBytes = 0;
    this.#released = -1n;
    this.#acked = false;
    this.#detector = new FailureDetector(this.#timeoutMs, performance.now(), { checkEveryMs: this.#heartbeatMs });
    ch.on('message', (m: Message) => this.#onMessage(ch, m));
    ch.on('close', (reason: string) => {
      if (ch === this.#channel) this.#lose(`the logging channel closed: ${reason}`);
    });
    ch.send({ type: 'control', op: 'resume', instret: String(f.instret), stateHash: String(f.stateHash), epoch: f.epoch });
    this.#sendHello(ch);
    this.#timer = setInterval(() => this.#tick(), this.#heartbeatMs);
    this.#timer.unref();
  }

  /** The target took this side on: an ordinary secondary of its epoch from here. */
  #onResumed(ch: Channel, m: Message & { type: 'control' }): void {
    const e = m.epoch;
    if (!this.#move || typeof e !== 'number' || e !== this.#move.fenceEpoch || this.#phase !== 'replaying') return this.#violation(ch, `a resume for epoch ${String(e)} that this side did not ask for`);
    this.#epoch = e;
    this.#move = undefined;
    this.emit('rejoined', { primary: this.#rejoining ?? '?', epoch: e });
    this.#rejoining = undefined;
    // Synchronously, as after a clone: the log frames behind RESUMED go to the native link, not to JavaScript.
    if (this.#o.dataPath !== 'js' && !this.#o.logDir && ch.canHandOver && this.#port) void this.#handOver(ch, this.#port);
  }

  /** Its machine was closed under this secondary (by whoever holds {@link machine}): halt, with a coded error. */
  #machineClosed(): void {
    const error = new FtError('ERR_LOCKSTEP_FT_MACHINE_CLOSED', `the machine of VM ${this.vmId} was closed while its secondary ran (call FtSecondary.stop() before closing it)`);
    this.#halt(error.message, 'halted', error);
  }

  #halt(reason: string, phase: 'halted' | 'left' = 'halted', error?: FtError | OptionError, bye = reason): void {
    if (this.#phase === 'halted' || this.#phase === 'left' || this.#phase === 'live') return;
    this.#phase = phase;
    this.#claimAbort.abort(new Error(reason));
    this.#stopTimer();
    const ch = this.#channel;
    this.#closeChannel(ch, bye);
    this.#channel = undefined;
    this.#log?.end();
    this.#machine?.stop();
    this.#unreserve();
    if (phase === 'left') this.emit('left', reason);
    else if (error) this.emit('halted', reason, error);
    else this.emit('halted', reason);
  }
}


/**
 * The move a clone-final carries (primary.ts #switchOver): undefined for none, null when malformed. Its
 * fence must be the epoch after the one the clone is of.
 */
function parseMove(v: unknown, epoch: number): { key: string; epoch: number; fenceEpoch: number; fenceOwner: string } | null | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'object' || v === null) return null;
  const m = v as Record<string, unknown>;
  const ok =
    typeof m.key === 'string' &&
    isVmId(m.key) &&
    typeof m.epoch === 'number' &&
    Number.isSafeInteger(m.epoch) &&
    m.epoch >= 1 &&
    m.fenceEpoch === epoch + 1 &&
    typeof m.fenceOwner === 'string' &&
    m.fenceOwner.length > 0 &&
    m.fenceOwner.length <= 256;
  return ok ? { key: m.key as string, epoch: m.epoch as number, fenceEpoch: m.fenceEpoch as number, fenceOwner: m.fenceOwner as string } : null;
}

function isVmId(v: string): boolean {
  try {
    validateVmId(v);
    return true;
  } catch {
    return false;
  }
}
