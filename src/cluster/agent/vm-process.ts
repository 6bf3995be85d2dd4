// One half of an FT pair run by an agent — or a VM without FT, or its live migration's target — as a
// child process of the built CLI (`lockstep primary|secondary … --events`), its JSON event lines folded
// into the instance record the agent publishes. Never detaches the child: it stays in the agent's
// process group, so killing the group kills it too.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { rm } from 'node:fs/promises';
import { formatHostPort, parseHostPort } from '../../config/index.js';
import { parseEventLine, type FtEventLine } from '../../ft/event-lines.js';
import type { InstanceRecord, InstanceRole, InstanceState } from '../manager/layout.js';
import { SOLO_STATUS } from './solo.js';

/** How to run one instance. */
export interface VmProcessOptions {
  vmId: string;
  /** The agent's host id. */
  host: string;
  role: InstanceRole;
  /**
   * A VM without FT (`ft.enabled: false`): run alone as a primary with FT off and no arbiter (`lockstep
   * primary --key-file`), live-migratable, never protected; with role `secondary`, a live migration's
   * target (it goes live only on the source's GO_LIVE). Needs {@link keyFile}.
   */
  solo?: boolean;
  /**
   * The key file of a VM without FT (`--key-file`): made by the agent for this process (a primary) or
   * for this migration (a target). Deleted once the process has read it (it reads it before it binds
   * anything, so at its first `net`, `listening`, `joined` or `halted` event, or its exit).
   */
  keyFile?: string;
  /** The configuration file written for it. */
  configPath: string;
  /** Secondary: the primary's logging channel, `host:port`. */
  join?: string;
  /** Secondary with separate disks: its own image (`--disk`). */
  disk?: string;
  /** Address the logging channel listens on (port 0: any). */
  ftHost: string;
  /** The lockstep CLI: `[node, dist/cli/main.js]`. */
  command: readonly string[];
  cwd: string;
  /**
   * A `lockstep standby` process started ahead of need ({@link spawnStandby}): it becomes this instance
   * (told its command on stdin) instead of a process spawned now. Ignored unless it still runs.
   */
  standby?: ChildProcess;
}

/**
 * A `lockstep standby` process (src/cli/standby.ts): Node, lockstep and the addon loaded, waiting for the
 * command a {@link VmProcess} gives it. In the agent's process group, ended with the agent.
 */
export function spawnStandby(command: readonly string[], cwd: string): ChildProcess {
  const [cmd, ...pre] = command;
  const child = spawn(cmd!, [...pre, 'standby', '--exit-with-parent'], { cwd, stdio: ['pipe', 'ignore', 'pipe'] });
  child.stdin!.on('error', () => undefined);
  child.once('error', () => undefined); // no such executable: it is not used (see usable)
  return child;
}

/** Whether a standby process can still be given a command. */
function usable(p: ChildProcess | undefined): p is ChildProcess {
  return p !== undefined && p.exitCode === null && p.signalCode === null && p.pid !== undefined && p.stdin !== null && p.stdin.writable;
}

/** One event line of the child, as printed (`{event, t, …}`; src/ft/event-lines.ts). */
export type VmEvent = FtEventLine & Record<string, unknown>;

/** How the process ended. */
export interface VmExit {
  code: number | null;
  signal: string | null;
  /** Wall-clock ms. */
  at: number;
}

/** The API's view of an instance: the published record, plus how it ended and its recent events. */
export interface InstanceView extends InstanceRecord {
  running: boolean;
  exit: VmExit | null;
  events: VmEvent[];
  /** Lines of the child's stderr that were not events (errors before the first event, say). */
  log: string[];
}

const KEEP_EVENTS = 50;
const KEEP_LOG = 20;

/**
 * A running (or ended) instance. Events: `change (significant: boolean)` whenever the record changes
 * (`false` for figures only), `exit (VmExit)`.
 */
export class VmProcess extends EventEmitter {
  readonly vmId: string;
  readonly host: string;
  readonly incarnation = randomBytes(6).toString('hex');
  readonly startedAt = Date.now();
  readonly child: ChildProcess;
  role: InstanceRole;
  readonly startedAs: InstanceRole;
  /** Runs without FT (see {@link VmProcessOptions.solo}). */
  readonly solo: boolean;
  state: InstanceState = 'starting';
  epoch: number | null = null;
  listen: { host: string; port: number } | null = null;
  /** The primary's logging channel it follows (a live migration's target, once it follows one). */
  join: string | null;
  /** This primary migrated and its secondary follows the target (its record stays until it exits). */
  migratedWithFollower = false;
  protected = false;
  status = 'starting';
  lastEvent = 'spawned';
  /** Times a secondary was cloned into lockstep (see InstanceRecord.clones). */
  clones = 0;
  /** A standby process became this instance (see {@link VmProcessOptions.standby}). */
  fromStandby = false;
  updatedAt = Date.now();
  stats: InstanceRecord['stats'] = null;
  progress: { instret: string; beats: number; watchdog?: string } | null = null;
  /** The process's operations API (`lockstep ft`), once it serves one (a primary, or a promoted secondary). */
  controlUrl: string | null = null;
  exit: VmExit | null = null;
  readonly events: VmEvent[] = [];
  readonly log: string[] = [];
  readonly #exited: Promise<VmExit>;
  #keyFile: string | undefined;

  constructor(o: VmProcessOptions) {
    super();
    this.vmId = o.vmId;
    this.host = o.host;
    this.role = o.role;
    this.startedAs = o.role;
    this.join = o.join ?? null;
    this.solo = o.solo === true;
    const [cmd, ...pre] = o.command;
    // The operations API (test failover, restart secondary) on loopback: only this agent talks to it.
    const control = ['--control', '127.0.0.1:0', '--exit-with-parent'];
    const listen = formatHostPort({ host: o.ftHost, port: 0 });
    if (this.solo && o.keyFile === undefined) throw new Error(`VmProcess: the VM without FT ${o.vmId} needs a key file`);
    this.#keyFile = o.keyFile;
    // A VM without FT holds a lease from the agent (--lease-stdin): see Agent #track.
    const solo = ['--key-file', o.keyFile!, '--listen', listen, ...control, '--lease-stdin', '--events'];
    const args = this.solo
      ? o.role === 'primary'
        ? ['primary', o.configPath, ...solo]
        : ['secondary', o.configPath, '--join', o.join!, ...solo]
      : o.role === 'primary'
        ? ['primary', o.configPath, '--listen', listen, ...control, '--events']
        : ['secondary', o.configPath, '--join', o.join!, '--listen', listen, ...control, ...(o.disk !== undefined ? ['--disk', o.disk] : []), '--events'];
    // Not detached: the child shares the agent's process group (see the file comment).
    if (usable(o.standby)) {
      this.child = o.standby;
      this.child.stdin!.write(`${JSON.stringify({ argv: args, cwd: o.cwd })}\n`);
      this.fromStandby = true;
    } else {
      this.child = spawn(cmd!, [...pre, ...args], { cwd: o.cwd, stdio: [this.solo ? 'pipe' : 'ignore', 'ignore', 'pipe'] });
    }
    this.child.stdin?.on('error', () => undefined); // a lease written as it exits: its exit says the rest
    this.#exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.#forgetKey();
        this.exit = { code, signal, at: Date.now() };
        this.state = 'stopping';
        this.protected = false;
        this.status = signal !== null ? `exited (${signal})` : `exited (${code})`;
        this.emit('exit', this.exit);
        resolve(this.exit);
      });
    });
    // A spawn failure (no such executable) arrives as 'error' and then 'exit' may never come.
    this.child.once('error', (err) => {
      this.#keepLog(`spawn failed: ${err.message}`);
      if (this.exit === null) this.child.emit('exit', null, null);
    });
    let buf = '';
    this.child.stderr!.setEncoding('utf8');
    this.child.stderr!.on('data', (d: string) => {
      buf += d;
      for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        this.#line(line);
      }
    });
  }

  /** Whether the process still runs. */
  get running(): boolean {
    return this.exit === null;
  }

  /** Resolves when the process has exited. */
  exited(): Promise<VmExit> {
    return this.#exited;
  }

  /** The record the agent publishes for this instance. */
  record(): InstanceRecord {
    return {
      vmId: this.vmId,
      host: this.host,
      role: this.role,
      startedAs: this.startedAs,
      state: this.state,
      pid: this.child.pid ?? -1,
      incarnation: this.incarnation,
      // A VM without FT has no arbiter: its process-local epochs mean nothing to anyone else.
      epoch: this.solo ? null : this.epoch,
      listen: this.listen,
      join: this.join,
      protected: this.protected,
      status: this.status,
      lastEvent: this.lastEvent,
      clones: this.clones,
      startedAt: this.startedAt,
      updatedAt: this.updatedAt,
      stats: this.stats,
      progress: this.progress,
    };
  }

  /** The API's view. */
  view(): InstanceView {
    return { ...this.record(), running: this.running, exit: this.exit, events: [...this.events], log: [...this.log] };
  }

  /**
   * Resolves once the instance is usable — a primary listening for secondaries, a secondary joined —
   * and rejects if it exits first or `timeoutMs` passes.
   */
  ready(timeoutMs: number): Promise<void> {
    // A live migration's target (started as a secondary) is ready once it joined, or once it is the VM.
    const isReady = () =>
      this.role === 'primary' ? this.state === 'running' && (this.solo || this.listen !== null) : this.state === 'joined' || this.protected;
    if (isReady()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const done = (err?: Error) => {
        clearTimeout(timer);
        this.off('change', onChange);
        this.off('exit', onExit);
        if (err) reject(err);
        else resolve();
      };
      const onChange = () => {
        if (isReady()) done();
      };
      const onExit = (e: VmExit) => done(new Error(`the ${this.role} of ${this.vmId} exited (${e.signal ?? e.code}) before it was ready${this.#lastWords()}`));
      const timer = setTimeout(() => done(new Error(`the ${this.role} of ${this.vmId} was not ready within ${timeoutMs} ms (last event: ${this.lastEvent})`)), timeoutMs);
      this.on('change', onChange);
      this.on('exit', onExit);
    });
  }

  /**
   * A VM without FT: it may run until `untilNs` (CLOCK_MONOTONIC, `process.hrtime.bigint()`, one clock
   * for every process on the host) and kills itself then unless a later lease came (`--lease-stdin`).
   */
  lease(untilNs: bigint): void {
    if (this.running && this.child.stdin?.writable) this.child.stdin.write(`lease ${untilNs}\n`);
  }

  /** Send a signal, if the process still runs; whether it was sent. */
  signal(sig: NodeJS.Signals): boolean {
    if (!this.running) return false;
    return this.child.kill(sig);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves with how it ended. */
  async stop(graceMs: number): Promise<VmExit> {
    if (this.running) {
      this.state = 'stopping';
      this.#changed(true);
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      timer.unref();
      await this.#exited;
      clearTimeout(timer);
    }
    return this.exit!;
  }

  /** The key file has been read (or never will be): it goes. */
  #forgetKey(): void {
    const f = this.#keyFile;
    if (f === undefined) return;
    this.#keyFile = undefined;
    void rm(f, { force: true }).catch(() => undefined);
  }

  #lastWords(): string {
    const why = [...this.events].reverse().find((e) => e.event === 'halted' || e.event === 'warning');
    const text = why !== undefined ? String(why.reason ?? why.message) : this.log[this.log.length - 1];
    return text === undefined ? '' : `: ${text}`;
  }

  #keepLog(line: string): void {
    this.log.push(line.slice(0, 500));
    if (this.log.length > KEEP_LOG) this.log.shift();
  }

  #line(line: string): void {
    const e = parseEventLine(line) as VmEvent | undefined;
    if (e === undefined) {
      if (line.trim() !== '') this.#keepLog(line);
      return;
    }
    if (e.event !== 'stats' && e.event !== 'progress') {
      this.events.push(e);
      if (this.events.length > KEEP_EVENTS) this.events.shift();
    }
    this.#apply(e);
  }

  /** Folds one event into the record (what each event means: src/cli/ft.ts and docs/fault-tolerance.md). */
  #apply(e: VmEvent): void {
    const num = (x: unknown) => (typeof x === 'number' && Number.isFinite(x) ? x : null);
    if (e.event === 'stats') {
      this.stats = { mips: num(e.mips) ?? 0, lagMs: (num(e.lagSeconds) ?? 0) * 1000, logBandwidth: num(e.logBandwidth) ?? 0, failovers: num(e.failovers) ?? 0 };
      return this.#changed(false);
    }
    if (e.event === 'progress') {
      if (typeof e.instret === 'string') {
        this.progress = { instret: e.instret, beats: (this.progress?.beats ?? 0) + 1, ...(typeof e.watchdog === 'string' ? { watchdog: e.watchdog } : {}) };
      }
      return this.#changed(false);
    }
    if (e.event === 'net' || e.event === 'listening' || e.event === 'joined' || e.event === 'halted') this.#forgetKey();
    // A primary whose secondary follows its migration's target: its record stays as it was at the
    // hand-over (the agent drops it once the target's is there), see Agent #handedOn.
    if (this.migratedWithFollower) return;
    this.lastEvent = e.event;
    switch (e.event) {
      case 'listening': {
        const port = num(e.port);
        if (typeof e.host === 'string' && port !== null) this.listen = { host: e.host, port };
        this.epoch = num(e.epoch) ?? this.epoch;
        // A secondary that went live listens as the new primary.
        this.role = 'primary';
        this.state = 'running';
        if (this.solo) this.status = SOLO_STATUS;
        break;
      }
      case 'running':
        // A VM without FT (lockstep agent run-vm): up, and nothing more to wait for.
        this.state = 'running';
        this.status = SOLO_STATUS;
        break;
      case 'control':
        if (typeof e.url === 'string') this.controlUrl = e.url;
        return; // not part of the record
      case 'joined':
        this.state = 'joined';
        this.status = this.solo ? 'a live migration\'s target: being copied from the source' : 'joined the primary; being cloned';
        break;
      case 'cloned':
        if (this.role === 'secondary') {
          this.status = 'cloned; replaying';
          this.clones++;
        }
        break;
      case 'status':
        // A VM without FT: FT is off for good (no arbiter), there is nothing to protect.
        if (this.solo) {
          if (this.role === 'primary' && this.state === 'running') this.status = SOLO_STATUS;
          break;
        }
        this.protected = e.protected === true;
        if (typeof e.text === 'string') this.status = this.role === 'secondary' && this.protected ? 'Protected (in lockstep with the primary)' : e.text;
        break;
      case 'following':
        // The primary migrated: this secondary follows the target, at the address the target listens on.
        if (typeof e.primary === 'string') this.join = e.primary;
        break;
      case 'restart':
        this.protected = false;
        this.status = 'restarting (asked by the primary)';
        break;
      case 'go-live': {
        this.role = 'primary';
        this.epoch = num(e.epoch) ?? this.epoch;
        const at = typeof e.listen === 'string' ? parseHostPort(e.listen) : undefined;
        if (this.solo) {
          // A VM without FT live-migrated here: it is this process now (running once it listens).
          this.state = 'starting';
          this.status = 'live migration: the VM runs here now (FT off)';
          break;
        }
        if (e.followed === true && at !== undefined) {
          // A live migration's target: the VM's secondary follows it from this state, so the pair is
          // protected from here on, at the address it is about to listen on.
          this.state = 'running';
          this.listen = at;
          this.protected = true;
          this.status = 'Protected (the secondary follows this migrated primary)';
          break;
        }
        this.state = 'starting';
        this.listen = null;
        this.protected = false;
        this.status = 'went live; Not Protected (need secondary VM)';
        break;
      }
      case 'migrated':
        // The secondary follows the target: this record stays as it was until the process exits.
        if (e.follower === true) this.migratedWithFollower = true;
        break;
      case 'secondary-lost':
        this.protected = false;
        this.epoch = num(e.epoch) ?? this.epoch;
        break;
      case 'handed-over':
      case 'halted':
      case 'left':
      case 'ended':
        this.state = 'stopping';
        this.protected = false;
        this.status = `${e.event}${e.reason !== undefined ? `: ${String(e.reason)}` : ''}`;
        break;
      default:
        break;
    }
    this.#changed(true);
  }

  #changed(significant: boolean): void {
    this.updatedAt = Date.now();
    this.emit('change', significant);
  }
}
