// The chaos harness behind `npm run chaos` (bench/src/chaos.ts) and test/ft/chaos.test.ts: the kvserver
// guest as a fault-tolerant pair of real `lockstep primary` / `lockstep secondary` processes, under a
// verifying load, through a seeded schedule of faults; counts what was lost, applied twice, and any
// moment two sides were live at once. It never fixes what it finds: it reports it.
//
//   host slots A B C: each a UDP port of its own (as separate hosts have separate addresses); a slot
//   holds at most one process; clients know all three and fail over between them.
//
//        clients ──udp──► slot A: primary ──► TcpProxy ──► slot B: secondary      slot C: (free)
//                                   (logging channel; partitions are cut here)
//
//   each cycle: load for a while → one fault (kill -9 / SIGSTOP…SIGCONT of either side, or a cut of the
//   logging channel) → wait until exactly one side is live and every other process is gone or back in
//   lockstep → if the pair lost a side, a new secondary joins in a free slot → next cycle.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { KvClient, LoadGenerator, verifyStore, type Endpoint, type LoadResult, type ReadViolation } from '../../src/client/index.js';
import { launch as launchCli, type CliProcess as Proc } from '../../src/cluster/agent/cli-process.js';
import { prng } from '../cpu/prng.js';
import { AckClock, CounterLoad, Prober, type CounterVerdict } from './chaos-load.js';
import { TcpProxy } from './tcp-proxy.js';

/** The faults a cycle can inject. */
export const FAULT_KINDS = ['kill-primary', 'kill-secondary', 'stop-primary', 'stop-secondary', 'partition'] as const;
/**
 * A cycle that injects nothing: the pair serves its load for `soakMs`. Any failover then is a false one
 * (a loaded host's stall taken for a death), counted in {@link ChaosResult.falseFailovers}. Never picked
 * by the seeded schedule unless `faults` names it.
 */
export const SOAK = 'none';
export type FaultKind = (typeof FAULT_KINDS)[number] | typeof SOAK;
/** Every kind a schedule may name. */
export const CYCLE_KINDS: readonly FaultKind[] = [...FAULT_KINDS, SOAK];
/** How long a soak cycle serves load with nothing injected unless told otherwise, ms. */
const DEFAULT_SOAK_MS = 60_000;
/** The pair's failure-detection timeout unless told otherwise (the FT default). */
const DEFAULT_TIMEOUT_MS = 600;

/** Options of {@link ChaosRun}. */
export interface ChaosOptions {
  /** Faults to inject, one per cycle. */
  cycles: number;
  /** Seed of the schedule (fault kinds, waits, fault durations) and of the loads' choices. */
  seed: number;
  /** Fixed fault sequence (cycle i gets `schedule[(i - 1) % length]`) instead of seeded picks. */
  schedule?: readonly FaultKind[];
  /** Kinds the seeded schedule picks from (default: all). */
  faults?: readonly FaultKind[];
  /** Logical `incr` clients (default 8). */
  counterClients?: number;
  /** Counters they share (default 16). */
  counters?: number;
  /** Logical set/get clients of the register load (default 2). */
  registerClients?: number;
  /** Failure-detection timeout of the pair, ms (default 600). */
  timeoutMs?: number;
  /** Heartbeat interval, ms (default timeoutMs / 6). */
  heartbeatMs?: number;
  /** How long a soak cycle (`none`) serves load with nothing injected, ms (default 60 000). */
  soakMs?: number;
  /** Each half in its own PID namespace, as in containers (default: when running as root). */
  pidNamespaces?: boolean;
  /** Keep the working directory (configs, arbiter, disk image) instead of removing it. */
  keep?: boolean;
  /** The CLI launcher (default: src/cluster/agent/cli-process.ts's; the benchmark passes dist's). */
  launch?: typeof launchCli;
  /** Called when a cycle is over. */
  onCycle?: (report: CycleReport) => void;
  /** Notable things as they happen (anomalies, split brain evidence). */
  onLog?: (line: string) => void;
}

/** What one cycle did and saw. */
export interface CycleReport {
  cycle: number;
  fault: FaultKind;
  /** Load before the fault, and how long a stop or partition lasted, ms. */
  waitMs: number;
  faultMs: number;
  /** The halves the fault met (names are slot letter + launch number). */
  primary: string;
  secondary: string;
  epochBefore: number | undefined;
  /** Who was live afterwards, at which epoch, and how it came about. */
  live: string;
  epochAfter: number | undefined;
  outcome: string;
  /** The secondary that joined afterwards, when one had to. */
  joined: string | undefined;
  /** Longest gap between acknowledgements from just before the fault to the end of the cycle, ms. */
  outageMs: number;
  /** Evidence of two sides live at once in this cycle (empty: none). */
  splitBrain: string[];
  /** Everything else that should not happen (a process that would not halt, an unexpected exit…). */
  anomalies: string[];
  /** Wall time of the whole cycle, ms. */
  ms: number;
}

/** A live view for progress lines. */
export interface ChaosStatus {
  cycle: number;
  cycles: number;
  phase: string;
  requests: number;
  acknowledged: number;
  splitBrainCycles: number;
  live: string;
}

/** One cycle of the schedule. */
export interface PlannedFault {
  cycle: number;
  fault: FaultKind;
  /** Load before the fault, ms. */
  waitMs: number;
  /** How long a stop or a cut lasts, or a soak serves load, ms (0 for a kill). */
  faultMs: number;
}

/**
 * The schedule of a run: a function of the seed (and the options it names) alone, so `--seed`
 * repeats it. Every cycle draws the same three numbers whatever it picks.
 */
export function planChaos(o: Pick<ChaosOptions, 'cycles' | 'seed' | 'schedule' | 'faults' | 'timeoutMs' | 'soakMs'>): PlannedFault[] {
  const random = prng(o.seed);
  const kinds = o.faults ?? FAULT_KINDS;
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const plan: PlannedFault[] = [];
  for (let cycle = 1; cycle <= o.cycles; cycle++) {
    const pick = kinds[Math.floor(random() * kinds.length)]!;
    const fault = o.schedule && o.schedule.length > 0 ? o.schedule[(cycle - 1) % o.schedule.length]! : pick;
    const waitMs = Math.round(300 + random() * 900);
    const share = random();
    // A stop outlasts the detection timeout (a hung host); a cut may be shorter (it still garbles the stream).
    const faultMs =
      fault === SOAK ? (o.soakMs ?? DEFAULT_SOAK_MS) : fault.startsWith('kill') ? 0 : Math.round(timeoutMs * (fault === 'partition' ? 0.3 + 2.7 * share : 1.2 + 1.8 * share));
    plan.push({ cycle, fault, waitMs, faultMs });
  }
  return plan;
}

/** The outcome of a run. */
export interface ChaosResult {
  seed: number;
  cyclesRequested: number;
  /** Cycles completed. */
  cycles: number;
  faults: Record<FaultKind, number>;
  /** Requests of both loads, and those acknowledged. */
  requests: number;
  acknowledged: number;
  /** Requests given up after every retry (their outcome was never learned) or refused by the server. */
  unknown: number;
  /** Acknowledged writes not found at their value (registers) or missing from a counter. */
  lost: number;
  /** Increments applied beyond those acknowledged plus those of unknown outcome. */
  appliedTwice: number;
  /** Cycles with evidence of two live sides. */
  splitBrain: number;
  /**
   * Failovers nobody caused: a secondary that went live, or a rightful primary that dropped its
   * secondary, while no fault was being injected or settled (`quietMs` of such time in the run).
   */
  falseFailovers: { promotions: number; secondaryLosses: number; events: string[]; quietMs: number; perHour: number };
  outageMs: { p50: number; p99: number; max: number; samples: number[] };
  cycleMs: { mean: number; max: number };
  /** Whether the final reads could be made (false when the run ended with no live side). */
  verified: boolean;
  registers: {
    sent: number;
    acknowledged: number;
    failed: number;
    /** Reads that the write history rules out, during the run and in the final read of every key. */
    violations: number;
    byKind: Record<string, number>;
    examples: ReadViolation[];
  };
  counters: {
    sent: number;
    acknowledged: number;
    unknown: number;
    refused: number;
    lost: number;
    appliedTwice: number;
    duplicateAnswers: number;
    rollbacks: number;
    notFound: number;
    verdicts: CounterVerdict[];
  };
  /** The epochs the arbiter handed out, with their owners, in order. */
  epochs: Array<{ epoch: number; owner: string | null }>;
  perCycle: CycleReport[];
  /** Anomalies outside cycles (setup, final read). */
  anomalies: string[];
  /** Why the run stopped before its last cycle, if it did. */
  aborted: string | undefined;
  pidNamespaces: boolean;
  timeoutMs: number;
  heartbeatMs: number;
  /** Wall time of the whole run, ms. */
  ms: number;
}

/** One `lockstep` process of the run, and what its events said about it. */
interface Half {
  name: string;
  slot: number;
  proc: Proc;
  /** The process to signal: the lockstep node process itself (inside its namespace it is pid 1). */
  pid: number;
  role: 'primary' | 'secondary';
  /** Holds an epoch as the VM's primary and has not halted. */
  live: boolean;
  epoch: number | undefined;
  /** When it last won an epoch (performance.now()). */
  wonAt: number;
  channelPort: number | undefined;
  protected: boolean;
  inLockstep: boolean;
  /** Set once it halted, left or ended (it exits next). */
  ended: string | undefined;
  exited: boolean;
  killedByHarness: boolean;
  proxy: TcpProxy | undefined;
  joinedTo: Half | undefined;
}

class ChaosAbort extends Error {}

const SLOT_NAMES = ['A', 'B', 'C'];
/** Per-attempt time-out and retries of every load client: a resend of the same datagram every 50 ms for 20 s. */
const RETRY = { timeoutMs: 50, retries: 400 };
const REGISTER_KEYS = 64;

/** The repository root (this file runs from test/helpers under vitest and from bench/build/test/helpers). */
const ROOT = ((): string => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'lockstep') return dir;
    if (dirname(dir) === dir) throw new Error('cannot find the lockstep package root');
  }
})();
const KVSERVER = join(ROOT, 'guest', 'bin', 'kvserver.elf');

/** Whether halves can run in PID namespaces of their own here (root and util-linux's unshare). */
export function pidNamespacesAvailable(): { ok: true } | { ok: false; why: string } {
  if (process.getuid?.() !== 0) return { ok: false, why: 'PID namespaces need root (unshare --pid)' };
  const r = spawnSync('unshare', ['--pid', '--fork', '--kill-child', 'true'], { stdio: 'ignore', timeout: 10_000 });
  return r.status === 0 ? { ok: true } : { ok: false, why: `unshare --pid --fork failed (${r.error?.message ?? `exit ${r.status}`})` };
}

function pct(xs: readonly number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * A UDP port below the ephemeral range that is free now. A slot's port is unbound while no live side
 * holds it; outside the ephemeral range no client socket of this run can take it meanwhile.
 */
async function slotPort(taken: Set<number>): Promise<number> {
  let low = 32768;
  try {
    low = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]) || low;
  } catch {
    // not Linux: the default range
  }
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = 20000 + Math.floor(Math.random() * Math.max(1, low - 20000));
    if (taken.has(port)) continue;
    const free = await new Promise<boolean>((resolve) => {
      const s = createSocket('udp4');
      s.once('error', () => resolve(false));
      s.bind(port, '127.0.0.1', () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('chaos: no free UDP port below the ephemeral range');
}

/** The pid of the process whose parent is `ppid` (unshare --fork's child), polled until it exists. */
async function childOf(ppid: number): Promise<number> {
  for (let i = 0; i < 500; i++) {
    for (const entry of readdirSync('/proc')) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
        // Fields after the command name (which may hold spaces and parentheses): state, ppid, …
        if (Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === ppid) return Number(entry);
      } catch {
        // the process went away while we looked
      }
    }
    await sleep(10);
  }
  throw new Error(`chaos: no child of unshare (pid ${ppid}) appeared`);
}

/**
 * One chaos run. `run()` once; `kill()` (synchronous, for signal handlers) stops every process it
 * started. Every process is also started with a parent-death signal, so none outlives the harness.
 */
export class ChaosRun {
  readonly #o: ChaosOptions;
  readonly #timeoutMs: number;
  readonly #heartbeatMs: number;
  readonly #pidns: boolean;
  readonly #launch: typeof launchCli;
  readonly #clock = new AckClock();
  readonly #halves: Half[] = [];
  readonly #holders = new Map<number, Half[]>();
  readonly #anomalies: string[] = [];
  readonly #perCycle: CycleReport[] = [];
  #dir = '';
  #slots: Array<{ port: number; config: string }> = [];
  #launched = 0;
  #report: CycleReport | undefined;
  #phase = 'starting';
  #cycle = 0;
  #counters: CounterLoad | undefined;
  #registerProgress = { sent: 0, acknowledged: 0 };
  #killed = false;
  /** Ends the soak cycle in progress (see endSoak()). */
  #endSoak: (() => void) | undefined;
  /** A fault (or the harness's own kill of a half) is in progress: failovers now are expected. */
  #faultOpen = true;
  #quietSince = 0;
  #quietMs = 0;
  readonly #false = { promotions: 0, secondaryLosses: 0, events: [] as string[] };

  constructor(options: ChaosOptions) {
    if (!Number.isInteger(options.cycles) || options.cycles < 0) throw new RangeError(`cycles must be a non-negative integer, got ${options.cycles}`);
    if (!Number.isInteger(options.seed) || options.seed < 0 || options.seed > 0xffff_ffff) throw new RangeError(`seed must be an unsigned 32-bit integer, got ${options.seed}`);
    for (const k of [...(options.schedule ?? []), ...(options.faults ?? [])]) {
      if (!(CYCLE_KINDS as readonly string[]).includes(k)) throw new RangeError(`unknown fault '${k}' (known: ${CYCLE_KINDS.join(', ')})`);
    }
    if (options.soakMs !== undefined && !(options.soakMs >= 0)) throw new RangeError(`soakMs must be a non-negative number, got ${options.soakMs}`);
    if (options.faults !== undefined && options.faults.length === 0) throw new RangeError('faults must name at least one fault kind');
    // Every half starts under setpriv (util-linux) for its parent-death signal.
    const setpriv = spawnSync('setpriv', ['--version'], { stdio: 'ignore', timeout: 10_000 });
    if (setpriv.status !== 0) throw new Error(`chaos: setpriv (util-linux) is needed to start the halves: ${setpriv.error?.message ?? `exit ${setpriv.status}`}`);
    this.#o = options;
    this.#timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.#heartbeatMs = options.heartbeatMs ?? Math.max(10, Math.floor(this.#timeoutMs / 6));
    this.#pidns = options.pidNamespaces ?? pidNamespacesAvailable().ok;
    this.#launch = options.launch ?? launchCli;
  }

  /** Where the run is, for a progress line. */
  status(): ChaosStatus {
    const c = this.#counters?.totals ?? { sent: 0, acknowledged: 0 };
    const live = this.#halves.filter((h) => h.live && !h.exited).map((h) => `${h.name}@${h.epoch ?? '?'}`);
    return {
      cycle: this.#cycle,
      cycles: this.#o.cycles,
      phase: this.#phase,
      requests: c.sent + this.#registerProgress.sent,
      acknowledged: c.acknowledged + this.#registerProgress.acknowledged,
      splitBrainCycles: this.#perCycle.filter((r) => r.splitBrain.length > 0).length + (this.#report && this.#report.splitBrain.length > 0 ? 1 : 0),
      live: live.join(' ') || 'none',
    };
  }

  /** The run's processes now (name, pid to signal, role, live), e.g. for a test that stalls one. */
  halves(): Array<{ name: string; pid: number; role: 'primary' | 'secondary'; live: boolean; exited: boolean }> {
    return this.#halves.map((h) => ({ name: h.name, pid: h.pid, role: h.role, live: h.live, exited: h.exited }));
  }

  /**
   * Ends the soak cycle in progress now rather than after its `soakMs`: for a test that has seen what it
   * waited for in the soak (the failover it caused). The cycle then settles as after any soak. No effect
   * outside a soak.
   */
  endSoak(): void {
    this.#endSoak?.();
  }

  /**
   * SIGKILLs every process of the run now and removes its working directory (unless `keep`).
   * Synchronous, for signal handlers; idempotent.
   */
  kill(): void {
    this.#killed = true;
    for (const h of this.#halves) {
      if (h.exited) continue;
      h.killedByHarness = true;
      // SIGKILL ends a stopped process too. Both pids: the wrappers (setpriv, unshare) and lockstep.
      for (const pid of new Set([h.pid, h.proc.child.pid])) {
        if (pid === undefined) continue;
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    if (this.#dir !== '' && !this.#o.keep) rmSync(this.#dir, { recursive: true, force: true });
  }

  async run(): Promise<ChaosResult> {
    const started = performance.now();
    this.#dir = mkdtempSync(join(tmpdir(), 'lockstep-chaos-'));
    const endpoints = await this.#setupSlots().catch((err: unknown) => {
      this.kill();
      throw err;
    });
    const counters = new CounterLoad({
      endpoints,
      clients: this.#o.counterClients ?? 8,
      counters: this.#o.counters ?? 16,
      seed: this.#o.seed,
      retry: RETRY,
      onAck: () => this.#clock.note(),
    });
    this.#counters = counters;
    const registers = new LoadGenerator({
      endpoints,
      clients: this.#o.registerClients ?? 2,
      setRatio: 0.5,
      keys: REGISTER_KEYS,
      keyPrefix: 'chaos:reg:',
      seed: this.#o.seed,
      durationMs: 30 * 24 * 3600 * 1000,
      progressIntervalMs: 5,
      timeoutMs: RETRY.timeoutMs,
      retries: RETRY.retries,
      backoff: { initialMs: 0, maxMs: 0 },
    });
    const byKind: Record<string, number> = {};
    registers.on('violation', (v) => {
      byKind[v.kind] = (byKind[v.kind] ?? 0) + 1;
    });
    registers.on('progress', (p) => {
      if (p.acknowledged > this.#registerProgress.acknowledged) this.#clock.note();
      this.#registerProgress = { sent: p.sent, acknowledged: p.acknowledged };
    });
    const prober = new Prober(endpoints, 100, (slots) => this.#bothAnswered(slots));
    let regRun: Promise<LoadResult> | undefined;
    let aborted: string | undefined;
    let failure: unknown;
    try {
      this.#phase = 'starting the pair';
      await this.#spawn('primary', 0, []);
      await this.#until(() => this.#halves[0]!.live && this.#halves[0]!.channelPort !== undefined, 30_000, 'the first primary did not listen');
      await this.#join(undefined);
      await counters.init();
      counters.start();
      regRun = registers.run();
      prober.start();
      this.#quiet(true);
      for (const plan of planChaos({ ...this.#o, timeoutMs: this.#timeoutMs })) {
        this.#cycle = plan.cycle;
        const report = await this.#runCycle(plan);
        this.#perCycle.push(report);
        this.#report = undefined;
        this.#o.onCycle?.(report);
      }
    } catch (err) {
      if (err instanceof ChaosAbort) {
        aborted = err.message;
        this.#log(`aborted: ${aborted}`);
      } else {
        failure = err;
        this.kill();
      }
      if (this.#report) this.#perCycle.push(this.#report);
      this.#report = undefined;
    }

    this.#quiet(false);
    // Final reads, from whichever side is live.
    this.#phase = 'verifying';
    await counters.stop();
    registers.stop();
    const reg = regRun ? await regRun : undefined;
    await prober.stop();
    let verdicts: CounterVerdict[] = [];
    let finalViolations: ReadViolation[] = [];
    let verified = false;
    if (failure === undefined && !this.#killed) {
      const checker = new KvClient({ endpoints, timeoutMs: 200, retries: 30 });
      try {
        verdicts = await counters.verify(checker);
        if (reg) finalViolations = (await verifyStore(checker, reg.history)).violations;
        verified = true;
      } catch (err) {
        this.#anomalies.push(`final read failed: ${(err as Error).message}`);
      } finally {
        await checker.close();
      }
    }
    const epochs = this.#epochs();
    this.kill();
    await Promise.race([Promise.all(this.#halves.map((h) => (h.exited ? undefined : new Promise((r) => h.proc.child.once('exit', r))))), sleep(5000)]);
    for (const h of this.#halves) await h.proxy?.close();
    if (failure !== undefined) throw failure;

    const violations = [...(reg?.violations ?? []), ...finalViolations];
    for (const v of finalViolations) byKind[v.kind] = (byKind[v.kind] ?? 0) + 1;
    // The run's own violation count includes those beyond the kept examples.
    const registerViolations = (reg?.violationCount ?? 0) + finalViolations.length;
    const sum = (f: (v: CounterVerdict) => number) => verdicts.reduce((n, v) => n + f(v), 0);
    const ct = counters.totals;
    const counterLost = sum((v) => v.lost);
    const appliedTwice = sum((v) => v.appliedTwice);
    // A cycle cut short by an abort has no outage or duration of its own.
    const done = this.#perCycle.filter((r) => r.ms > 0);
    const outages = done.map((r) => r.outageMs);
    const cycleTimes = done.map((r) => r.ms);
    const faults = Object.fromEntries(CYCLE_KINDS.map((k) => [k, this.#perCycle.filter((r) => r.fault === k).length])) as Record<FaultKind, number>;
    return {
      seed: this.#o.seed,
      cyclesRequested: this.#o.cycles,
      cycles: done.length,
      faults,
      requests: ct.sent + (reg?.sent ?? 0),
      acknowledged: ct.acknowledged + (reg?.acknowledged ?? 0),
      unknown: ct.unknown + ct.refused + (reg?.failed ?? 0),
      lost: counterLost + registerViolations,
      appliedTwice,
      splitBrain: this.#perCycle.filter((r) => r.splitBrain.length > 0).length,
      falseFailovers: {
        ...this.#false,
        quietMs: this.#quietMs,
        perHour: this.#quietMs > 0 ? ((this.#false.promotions + this.#false.secondaryLosses) * 3_600_000) / this.#quietMs : NaN,
      },
      outageMs: { p50: pct(outages, 50), p99: pct(outages, 99), max: outages.length > 0 ? Math.max(...outages) : NaN, samples: outages },
      cycleMs: { mean: cycleTimes.length > 0 ? cycleTimes.reduce((a, b) => a + b, 0) / cycleTimes.length : NaN, max: cycleTimes.length > 0 ? Math.max(...cycleTimes) : NaN },
      verified,
      registers: {
        sent: reg?.sent ?? 0,
        acknowledged: reg?.acknowledged ?? 0,
        failed: reg?.failed ?? 0,
        violations: registerViolations,
        byKind,
        examples: violations.slice(0, 10),
      },
      counters: {
        sent: ct.sent,
        acknowledged: ct.acknowledged,
        unknown: ct.unknown,
        refused: ct.refused,
        lost: counterLost,
        appliedTwice,
        duplicateAnswers: sum((v) => v.duplicateAnswers),
        rollbacks: sum((v) => v.rollbacks),
        notFound: sum((v) => v.notFound),
        verdicts,
      },
      epochs,
      perCycle: this.#perCycle,
      anomalies: this.#anomalies,
      aborted,
      pidNamespaces: this.#pidns,
      timeoutMs: this.#timeoutMs,
      heartbeatMs: this.#heartbeatMs,
      ms: performance.now() - started,
    };
  }

  // ---- topology --------------------------------------------------------------------------------

  /** Three host slots: a port and a config each (same VM, key, arbiter and shared disk). */
  async #setupSlots(): Promise<Endpoint[]> {
    const image = join(this.#dir, 'kv.img');
    writeFileSync(image, Buffer.alloc(4 << 20));
    mkdirSync(join(this.#dir, 'arbiter'));
    const keyHex = randomBytes(32).toString('hex');
    const taken = new Set<number>();
    for (let slot = 0; slot < SLOT_NAMES.length; slot++) {
      const port = await slotPort(taken);
      taken.add(port);
      const config = join(this.#dir, `slot-${SLOT_NAMES[slot]}.json`);
      writeFileSync(
        config,
        JSON.stringify({
          vm: { id: 'chaos-kv', guest: KVSERVER, ramMiB: 16, clock: 'real', devices: { disk: { path: image }, net: { backend: 'udp', hostPort: port, guestPort: 11211 } } },
          ft: { listen: '127.0.0.1:0', keyHex, arbiter: { backend: 'file', dir: join(this.#dir, 'arbiter') }, timeoutMs: this.#timeoutMs, heartbeatMs: this.#heartbeatMs },
        }),
      );
      this.#slots.push({ port, config });
    }
    return this.#slots.map((s) => ({ host: '127.0.0.1', port: s.port }));
  }

  async #spawn(role: 'primary' | 'secondary', slot: number, extra: string[]): Promise<Half> {
    if (this.#killed) throw new ChaosAbort('killed');
    const name = `${SLOT_NAMES[slot]}${++this.#launched}`;
    // The parent-death signal ends a half with the harness, whatever kills the harness.
    const prefix = ['setpriv', '--pdeathsig', 'KILL', ...(this.#pidns ? ['unshare', '--pid', '--fork', '--kill-child'] : [])];
    let half!: Half;
    const proc = this.#launch(name, [role, this.#slots[slot]!.config, ...extra], (_p, e) => this.#onEvent(half, e), { prefix });
    half = {
      name,
      slot,
      proc,
      pid: proc.child.pid ?? -1,
      role,
      live: false,
      epoch: undefined,
      wonAt: 0,
      channelPort: undefined,
      protected: false,
      inLockstep: false,
      ended: undefined,
      exited: false,
      killedByHarness: false,
      proxy: undefined,
      joinedTo: undefined,
    };
    this.#halves.push(half);
    proc.child.once('exit', (code, signal) => {
      half.exited = true;
      half.live = false;
      void half.proxy?.close();
      // 0: left or handed over; 76: halted (lost the arbiter). Anything else is a crash.
      if (!half.killedByHarness && code !== 0 && code !== 76) {
        this.#anomaly(`${name} (${half.role}) exited with ${code ?? signal}: ${proc.log.slice(-3).join(' / ') || 'no message'}`);
      }
    });
    if (this.#pidns && proc.child.pid !== undefined) half.pid = await childOf(proc.child.pid);
    return half;
  }

  #onEvent(h: Half, e: Record<string, unknown>): void {
    switch (e.event) {
      case 'listening':
        h.role = 'primary';
        h.channelPort = Number(e.port);
        this.#holds(h, Number(e.epoch));
        return;
      case 'go-live':
        h.role = 'primary';
        h.protected = false;
        h.inLockstep = false;
        if (!this.#faultOpen && !this.#killed) this.#falseFailover('promotions', `${h.name} went live at epoch ${String(e.epoch)} with no fault injected`);
        this.#holds(h, Number(e.epoch));
        return;
      case 'secondary-lost': {
        h.protected = false;
        // A superseded primary reporting the loss of its promoted secondary is the same incident.
        const newest = Math.max(0, ...this.#holders.keys());
        if (!this.#faultOpen && !this.#killed && Number(e.epoch) >= newest) this.#falseFailover('secondaryLosses', `${h.name} lost its secondary at epoch ${String(e.epoch)} with no fault injected`);
        this.#holds(h, Number(e.epoch));
        return;
      }
      case 'cloned':
        // A secondary's clone is restored and replaying (its 'status' comes only with the first log
        // batch, which an idle guest may never send); the primary says Protected in the same breath.
        if (h.role === 'secondary') h.inLockstep = true;
        return;
      case 'status':
        if (h.role === 'primary') h.protected = e.protected === true;
        else if (e.protected === true) h.inLockstep = true;
        return;
      case 'halted':
      case 'left':
      case 'ended':
      case 'handed-over':
        h.ended = `${String(e.event)}: ${String(e.reason ?? e.result ?? '')}`;
        h.live = false;
        return;
    }
  }

  /** `h` announced that it holds `epoch`: a second process announcing the same epoch is split brain. */
  #holds(h: Half, epoch: number): void {
    if (h.ended !== undefined) return;
    h.live = true;
    h.epoch = epoch;
    h.wonAt = performance.now();
    const holders = this.#holders.get(epoch) ?? [];
    if (!holders.includes(h)) holders.push(h);
    this.#holders.set(epoch, holders);
    if (holders.length > 1) this.#splitBrain(`epoch ${epoch} held by ${holders.map((x) => x.name).join(' and ')} at once`);
  }

  #falseFailover(kind: 'promotions' | 'secondaryLosses', what: string): void {
    this.#false[kind]++;
    this.#false.events.push(`${this.#cycle > 0 ? `cycle ${this.#cycle}: ` : ''}${what}`);
    this.#log(`false failover: ${what}`);
  }

  /** Quiet time (no fault, no harness kill) starts (true) or ends (false). */
  #quiet(on: boolean): void {
    const now = performance.now();
    if (on && this.#faultOpen) this.#quietSince = now;
    if (!on && !this.#faultOpen) this.#quietMs += now - this.#quietSince;
    this.#faultOpen = !on;
  }

  #bothAnswered(slots: number[]): void {
    // The slot's latest process is the one that answered (a slot holds one process at a time).
    const names = slots.map((s) => {
      const h = [...this.#halves].reverse().find((x) => x.slot === s);
      return `${SLOT_NAMES[s]}${h ? ` (${h.name})` : ''}`;
    });
    this.#splitBrain(`slots ${names.join(' and ')} answered the same probe round`);
  }

  #splitBrain(evidence: string): void {
    const list = this.#report?.splitBrain ?? this.#anomalies;
    if (!list.includes(evidence)) {
      list.push(evidence);
      this.#log(`SPLIT BRAIN: ${evidence}`);
    }
  }

  #anomaly(what: string): void {
    (this.#report?.anomalies ?? this.#anomalies).push(what);
    this.#log(`anomaly: ${what}`);
  }

  #log(line: string): void {
    this.#o.onLog?.(`${this.#cycle > 0 ? `cycle ${this.#cycle}: ` : ''}${line}`);
  }

  #alive(): Half[] {
    return this.#halves.filter((h) => !h.exited);
  }

  #signal(h: Half, signal: NodeJS.Signals): void {
    if (signal === 'SIGKILL') h.killedByHarness = true;
    try {
      process.kill(h.pid, signal);
    } catch {
      // already gone
    }
  }

  /**
   * The settled state, if the processes are in one: exactly one live side, nothing halting, and every
   * other process a secondary of it in lockstep (`s`) or none (`s` undefined, the primary alone —
   * having won an epoch since `since`).
   */
  #settled(since: number): { p: Half; s: Half | undefined } | undefined {
    const alive = this.#alive();
    if (alive.some((h) => h.ended !== undefined)) return undefined;
    const live = alive.filter((h) => h.live);
    if (live.length !== 1) return undefined;
    const p = live[0]!;
    const others = alive.filter((h) => h !== p);
    // Alone: it must have won an epoch since the fault, and listen for a new secondary.
    if (others.length === 0) return !p.protected && p.wonAt >= since && p.channelPort !== undefined ? { p, s: undefined } : undefined;
    const s = others[0]!;
    if (others.length === 1 && s.role === 'secondary' && s.joinedTo === p && s.inLockstep && p.protected) return { p, s };
    return undefined;
  }

  async #until(cond: () => boolean, ms: number, what: string): Promise<void> {
    const end = performance.now() + ms;
    while (!cond()) {
      if (this.#killed) throw new ChaosAbort('killed');
      if (performance.now() > end) throw new ChaosAbort(`${what} within ${ms} ms`);
      await sleep(20);
    }
  }

  /**
   * Waits for the processes to settle after a fault that began at `since`. A pair still intact must stay
   * so for a detection timeout (a loss may be noticed late). Resolves what will not settle: two live
   * sides for long (the one at the lower epoch, or the later holder of the same epoch, is killed), a
   * process that will not halt or rejoin (killed); no live side at all ends the run.
   */
  async #settle(since: number): Promise<{ p: Half; s: Half | undefined }> {
    const hold = this.#timeoutMs + 2 * this.#heartbeatMs;
    const dualLimit = Math.max(4000, 5 * this.#timeoutMs);
    const stuckLimit = Math.max(15_000, 20 * this.#timeoutMs);
    let intactSince: number | undefined;
    let dualSince: number | undefined;
    let deadline = performance.now() + stuckLimit;
    for (;;) {
      if (this.#killed) throw new ChaosAbort('killed');
      const now = performance.now();
      const state = this.#settled(since);
      if (state && state.s === undefined) return state;
      if (state) {
        intactSince ??= now;
        if (now - intactSince >= hold) return state;
      } else {
        intactSince = undefined;
      }
      const live = this.#alive().filter((h) => h.live);
      if (live.length >= 2) {
        dualSince ??= now;
        if (now - dualSince >= dualLimit) {
          this.#resolveDual(live, now - dualSince);
          dualSince = undefined;
          deadline = now + stuckLimit;
        }
      } else {
        dualSince = undefined;
      }
      if (now > deadline) {
        if (live.length === 0) throw new ChaosAbort(`no side live ${Math.round(now - since)} ms after the fault: ${this.#describe()}`);
        const keep = live[0]!;
        for (const h of this.#alive()) {
          if (h === keep) continue;
          this.#anomaly(`${h.name} did not settle beside ${keep.name} (${this.#state(h)}); killed`);
          this.#signal(h, 'SIGKILL');
        }
        deadline = now + stuckLimit;
      }
      await sleep(20);
    }
  }

  /** Two or more sides live for too long: keep one (highest epoch, then the first to hold it). */
  #resolveDual(live: Half[], ms: number): void {
    const rank = (h: Half) => (this.#holders.get(h.epoch ?? -1) ?? []).indexOf(h);
    const keep = [...live].sort((a, b) => (b.epoch ?? 0) - (a.epoch ?? 0) || rank(a) - rank(b))[0]!;
    for (const h of live) {
      if (h === keep) continue;
      if (h.epoch === keep.epoch) this.#splitBrain(`${h.name} and ${keep.name} both live at epoch ${keep.epoch} for ${Math.round(ms)} ms`);
      else this.#anomaly(`${h.name} still live at epoch ${h.epoch} ${Math.round(ms)} ms after ${keep.name} took epoch ${keep.epoch}`);
      this.#log(`killing ${h.name} to go on with ${keep.name}`);
      this.#signal(h, 'SIGKILL');
    }
  }

  #state(h: Half): string {
    if (h.ended) return h.ended;
    if (h.live) return `live at epoch ${h.epoch}${h.protected ? ', protected' : ''}`;
    return h.inLockstep ? `secondary of ${h.joinedTo?.name} in lockstep` : `secondary of ${h.joinedTo?.name}, not in lockstep`;
  }

  #describe(): string {
    return this.#halves.filter((h) => !h.exited).map((h) => `${h.name}: ${this.#state(h)}`).join('; ') || 'every process exited';
  }

  /** A new secondary for the one live side, in a free slot, through a proxy of its own. */
  async #join(report: CycleReport | undefined): Promise<string> {
    for (let attempt = 1; ; attempt++) {
      const p = this.#alive().find((h) => h.live);
      if (!p || p.channelPort === undefined) throw new ChaosAbort(`no live side to join: ${this.#describe()}`);
      const used = new Set(this.#alive().map((h) => h.slot));
      const slot = SLOT_NAMES.findIndex((_n, i) => !used.has(i));
      this.#phase = `new secondary for ${p.name}`;
      const proxy = await TcpProxy.start('127.0.0.1', p.channelPort);
      const s = await this.#spawn('secondary', slot, ['--join', `127.0.0.1:${proxy.port}`]);
      s.proxy = proxy;
      s.joinedTo = p;
      const done = () => (s.inLockstep && p.protected) || s.exited || s.ended !== undefined || !p.live;
      try {
        await this.#until(done, 30_000, `${s.name} did not reach lockstep with ${p.name}`);
      } catch (err) {
        if (!(err instanceof ChaosAbort) || this.#killed) throw err;
      }
      if (s.inLockstep && p.protected && !s.exited && s.ended === undefined && p.live) return s.name;
      this.#anomaly(`new secondary ${s.name} did not reach lockstep with ${p.name}: ${this.#state(s)}; ${p.name}: ${this.#state(p)}`);
      // The harness's own kill: the primary's loss of this secondary is no false failover.
      this.#quiet(false);
      this.#signal(s, 'SIGKILL');
      await this.#until(() => s.exited, 10_000, `${s.name} did not exit after SIGKILL`);
      if (attempt === 3) throw new ChaosAbort(`no secondary could join ${p.name} in ${attempt} attempts`);
      if (report !== undefined && !p.live) {
        // The primary failed meanwhile: whoever is live now gets the next secondary.
        const state = await this.#settle(0);
        if (state.s) return state.s.name;
      }
    }
  }

  // ---- cycles ----------------------------------------------------------------------------------

  async #runCycle(plan: PlannedFault): Promise<CycleReport> {
    const { cycle: n, fault, waitMs, faultMs } = plan;
    const t0 = performance.now();
    const report: CycleReport = {
      cycle: n,
      fault,
      waitMs,
      faultMs,
      primary: '',
      secondary: '',
      epochBefore: undefined,
      live: '',
      epochAfter: undefined,
      outcome: '',
      joined: undefined,
      outageMs: 0,
      splitBrain: [],
      anomalies: [],
      ms: 0,
    };
    this.#report = report;
    this.#phase = `load (${fault} next)`;
    await sleep(waitMs);
    const { p, s } = await this.#protectedPair(report);
    report.primary = p.name;
    report.secondary = s.name;
    report.epochBefore = p.epoch;
    this.#phase = fault === SOAK ? `soak (${p.name}-${s.name})` : `${fault} (${fault.endsWith('primary') ? p.name : fault.endsWith('secondary') ? s.name : `${p.name}-${s.name}`})`;
    const faultAt = performance.now();
    this.#clock.open();
    if (fault !== SOAK) this.#quiet(false);
    switch (fault) {
      case SOAK:
        await Promise.race([sleep(faultMs), new Promise<void>((r) => (this.#endSoak = r))]);
        this.#endSoak = undefined;
        break;
      case 'kill-primary':
        this.#signal(p, 'SIGKILL');
        break;
      case 'kill-secondary':
        this.#signal(s, 'SIGKILL');
        break;
      case 'stop-primary':
      case 'stop-secondary': {
        const target = fault === 'stop-primary' ? p : s;
        this.#signal(target, 'SIGSTOP');
        await sleep(faultMs);
        this.#signal(target, 'SIGCONT');
        break;
      }
      case 'partition':
        s.proxy?.partition();
        await sleep(faultMs);
        s.proxy?.heal();
        break;
    }
    this.#phase = `${fault}: settling`;
    const after = await this.#settle(faultAt);
    report.live = after.p.name;
    report.epochAfter = after.p.epoch;
    report.outcome =
      after.p === p ? (after.s === s ? 'pair intact' : `${p.name} went on alone at epoch ${after.p.epoch}`) : `${after.p.name} live at epoch ${after.p.epoch}`;
    if (!after.s) report.joined = await this.#join(report);
    report.outageMs = this.#clock.close();
    report.ms = performance.now() - t0;
    this.#quiet(true);
    return report;
  }

  /**
   * The pair the next fault meets. It may have changed on its own since the last cycle (a loaded machine
   * can miss a deadline): then it is settled and given a secondary first, which is noted.
   */
  async #protectedPair(report: CycleReport): Promise<{ p: Half; s: Half }> {
    for (let attempt = 1; ; attempt++) {
      const pair = this.#settled(0);
      if (pair?.s) return { p: pair.p, s: pair.s };
      if (attempt === 1) this.#anomaly(`the pair was not protected before the fault: ${this.#describe()}`);
      if (attempt === 4) throw new ChaosAbort(`the pair could not be protected again: ${this.#describe()}`);
      const state = await this.#settle(0);
      if (!state.s) await this.#join(report);
      await this.#settle(0);
    }
  }

  /** The epochs claimed in the arbiter's directory, with their owners (the file back-end's records). */
  #epochs(): Array<{ epoch: number; owner: string | null }> {
    const dir = join(this.#dir, 'arbiter', 'chaos-kv');
    const out: Array<{ epoch: number; owner: string | null }> = [];
    try {
      for (const f of readdirSync(dir)) {
        const m = /^epoch-(\d+)$/.exec(f);
        if (!m) continue;
        let owner: string | null = null;
        try {
          owner = String((JSON.parse(readFileSync(join(dir, f), 'utf8')) as { owner?: unknown }).owner ?? null);
        } catch {
          // a claim whose record was never written
        }
        out.push({ epoch: Number(m[1]), owner });
      }
    } catch {
      // no arbiter directory: nothing was claimed
    }
    return out.sort((a, b) => a.epoch - b.epoch);
  }
}

/** Runs a chaos run to its end (see {@link ChaosRun}). */
export function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  return new ChaosRun(options).run();
}
