// The cluster manager (`lockstep manager`): campaigns for leadership; the leader alone reconciles the
// store's desired VMs with what the agents run — places pairs, gives every FT VM that lost a half a new
// secondary, drains hosts entering maintenance, applies or records load-balancing moves. Every start goes
// through a placement answer computed on the current state, so no hard rule is broken by what it starts.
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { OptionError } from '../../errors.js';
import { Placement, explain, type ClusterSnapshot, type PlacementOptions } from '../placement/index.js';
import type { ClusterStore, JsonValue, Leadership, Unsubscribe } from '../store/store.js';
import { validateName } from '../store/store.js';
import { AgentApiError, AgentClient } from '../agent/client.js';
import { arbiterOfConfigJson } from '../../ft/arbiter-config.js';
import type { Arbiter } from '../../ft/arbiter.js';
import { FT_DEFAULTS } from '../../ft/control.js';
import { CLUSTER_CHANNELS } from './diagnostics.js';
import { admitVm } from './ha.js';
import { restartOrder, restartPriorityOf, waitsFor, type RestartPriority } from './priority.js';
import { ProgressTracker, resetAllowed } from './monitor.js';
import { DEFAULT_EVENT_LIMIT, EventWriter, trimEvents } from './events.js';
import { checkMigration } from './migration.js';
import {
  buildSnapshot,
  channelOf,
  closeHosts,
  maintenanceOf,
  pairViews,
  readInventory,
  type Inventory,
  type PairView,
} from './inventory.js';
import { FT_SUSPENDED, ftOperationRefusal } from './ft-operations.js';
import { DEFAULT_HEARTBEAT_WINDOW_MS, HeartbeatJudge, heartbeatPath, readHeartbeats, type HeartbeatVerdict } from '../datastore/heartbeat.js';
import { HOST_TTL_MS, INSTANCE_TTL_MS, KEYS, MANAGER_ELECTION, asRecord, defaultCompatId, type ClusterEvent, type ClusterFtOperation, type InstanceRecord, type LostHost, type ManagerEpoch, type MaintenanceState, type MonitorRecord, type StartFailure } from './layout.js';

/** The first wait after a failed start of a VM, ms; it doubles per failure in a row, up to {@link START_BACKOFF_MAX_MS}. */
export const START_BACKOFF_FIRST_MS = 2_000;
/** The longest wait between attempts to start a VM whose starts keep failing, ms. */
export const START_BACKOFF_MAX_MS = 60_000;

/** `integrated`: FT-aware placement and balancing of both halves; `legacy`: FT pairs placed once, never balanced. */
export type ManagerMode = 'integrated' | 'legacy';
/**
 * `automatic` (default, vSphere's "fully automated"): the leader applies balancing moves and the repairs
 * of broken rules itself; `manual`: they are only recorded, and `lockstep cluster apply` applies them.
 */
export type Automation = 'manual' | 'automatic';

/** Options of {@link Manager.start}. */
export interface ManagerOptions {
  store: ClusterStore;
  /** This manager's id (1–128 of `[A-Za-z0-9._:@-]`); candidates in one election must differ. */
  id: string;
  /** The agents' API token. */
  token: string;
  /**
   * Certificate authorities (PEM) that sign the agents' certificates. Given, the manager talks to agents
   * over HTTPS only: an agent whose API is plain `http://` is refused (it is not sent the token, nor a
   * live migration's key). Not given: `http://` and `https://` agents (verified against the system's CAs).
   */
  tlsCa?: string | Buffer;
  /** Default `integrated`. */
  mode?: ManagerMode;
  /** FT compatibility baseline in integrated mode (default: this build's {@link defaultCompatId}). */
  baseline?: string;
  /** Default `automatic`. */
  automation?: Automation;
  /** A reconcile pass at least this often, ms (default 500); store changes trigger one sooner. */
  intervalMs?: number;
  /** How long the leadership outlives a dead leader, ms (default 2000). */
  electionTtlMs?: number;
  /** Events kept in the store (default 500). */
  eventLimit?: number;
  /** How long a half gets to become ready when started, ms (default 20 000). */
  startTimeoutMs?: number;
  /** A secondary not in lockstep after this long is stopped and placed again, ms (default 60 000). */
  cloneTimeoutMs?: number;
  /** A VM seen running and then down is restarted (from its disk) after this long, ms (default 2000). */
  restartGraceMs?: number;
  /** At most one balancing move this often, ms (default 10 000). */
  balanceIntervalMs?: number;
  /**
   * A host whose agent could not be reached, or that still lists a half believed lost, takes no new half
   * for this long, ms (default: the host record's TTL and a second, so that a dead host is gone from the
   * store before it could be chosen again).
   */
  suspectMs?: number;
  /**
   * A finding that may come from a record missing for a moment on a loaded machine — a secondary with no
   * record, a VM or half with no host, a blocked drain — is reported only once it has held this long
   * over consecutive passes, ms (default: the instance record's TTL).
   */
  flapGraceMs?: number;
  /**
   * The directory the agents write their datastore heartbeats in (their `datastore` option): a host
   * whose store records expired but whose heartbeat still changes is cut off from the store, not dead,
   * and the VM halves its heartbeat lists are not restarted elsewhere (nor fenced). Default: none (the
   * store's leases alone).
   */
  datastore?: string;
  /** A datastore heartbeat is alive while it changed within this window, ms (default 3000: three agent periods). */
  datastoreWindowMs?: number;
  placementOptions?: PlacementOptions;
}

/** Events of a {@link Manager}. */
export interface ManagerEvents {
  /** This manager leads (and has fenced the store's manager epoch with `token`). */
  elected: [token: number];
  /** This manager no longer leads. */
  deposed: [reason: string];
  /** An event it wrote to the cluster's log. */
  event: [event: ClusterEvent];
  /** A pass or a store operation failed; it is retried. */
  warning: [message: string];
}

/** One thing a pass does for one VM. */
interface Action {
  vm: string;
  run: () => Promise<void>;
}

/**
 * The cluster manager. Several may run; they campaign in the store's election and only the leader,
 * once it has fenced `manager/epoch` with its token, acts. Every agent request carries that token, and
 * agents refuse tokens older than one they have seen.
 */
export class Manager extends EventEmitter<ManagerEvents> {
  readonly id: string;
  readonly mode: ManagerMode;
  readonly automation: Automation;
  readonly baseline: string | undefined;
  readonly #store: ClusterStore;
  readonly #o: Required<Omit<ManagerOptions, 'baseline' | 'placementOptions' | 'mode' | 'automation' | 'tlsCa' | 'datastore'>> & { placementOptions: PlacementOptions | undefined; tlsCa: string | Buffer | undefined; datastore: string | undefined };
  readonly #log: EventWriter;
  #leadership!: Leadership;
  #unwatch: Unsubscribe | undefined;
  #timer: NodeJS.Timeout | undefined;
  #kickTimer: NodeJS.Timeout | undefined;
  #passing: Promise<void> | undefined;
  #again = false;
  #stopped = false;
  /** The token this manager acts under (null: not acting). */
  #acting: number | null = null;
  /** Hosts that take no new half for a while (until, wall-clock ms) and why. */
  readonly #suspect = new Map<string, { until: number; why: string }>();
  readonly #hints = new Map<string, { host: string; until: number }>();
  readonly #said = new Map<string, string>();
  /** Findings seen but not yet reported ({@link #sayOnceHeld}): since when (wall-clock ms), last pass seen. */
  readonly #holding = new Map<string, { since: number; pass: number }>();
  readonly #downSince = new Map<string, number>();
  readonly #seenRunning = new Set<string>();
  /** The primary's epoch when each secondary (by incarnation) was first seen as its VM's secondary. */
  readonly #joinedUnder = new Map<string, number>();
  /** Arbiters of VMs, kept for the epoch check before a secondary start ({@link #arbiterOf}). */
  readonly #arbiters = new Map<string, { spec: string; arbiter: Arbiter }>();
  /** The highest epoch seen on a primary record of each VM (records may lag; a lower one is superseded). */
  readonly #epochSeen = new Map<string, number>();
  /** VMs a maintenance or balancing operation was just issued for: not again until then (wall-clock ms). */
  readonly #cooldown = new Map<string, number>();
  /** Live hosts as of the last pass: when their agent started, and when each VM half was last seen there. */
  #lastLive = new Map<string, { startedAt: number; halves: Map<string, number> }>();
  /** VM monitoring: when each running VM's heartbeat and instret last changed (by this manager's clock). */
  readonly #progress = new ProgressTracker();
  /** VMs this pass found unplaceable: defragmentation may make room for one (#defragment). */
  readonly #roomless = new Set<string>();
  /** The VM the last defragmentation move was issued for. */
  #defragging: string | undefined;
  /** VMs this manager stopped itself (VM monitoring's resets, a start that never got ready): when. */
  readonly #stoppedHere = new Map<string, number>();
  /** Restarts and re-protections under way (their actions in flight), by VM, with the VM's priority. */
  readonly #restarting = new Map<string, RestartPriority>();
  #lastBalance = 0;
  #passes = 0;
  /** Actions under way, by VM, with the halves they start (as decided) for later passes' snapshots. */
  readonly #inflight = new Map<string, { halves: { primary: string | undefined; secondary: string | undefined } | undefined; done: Promise<void> }>();
  /** Datastore heartbeats (with a datastore): the freshness judge, its poll, and problems already warned of. */
  readonly #judge: HeartbeatJudge | undefined;
  #beatTimer: NodeJS.Timeout | undefined;
  #beatPoll: Promise<void> | undefined;
  readonly #beatProblems = new Map<string, string>();
  /** The hosts each VM's records were last seen on (kept while it has none), for the datastore heartbeats. */
  readonly #lastSeenOn = new Map<string, Set<string>>();

  private constructor(o: ManagerOptions) {
    super();
    validateName(o.id, 'id');
    if (typeof o.token !== 'string' || o.token.length < 16) throw new OptionError('token', 'the agents\' API token must be at least 16 characters');
    const mode = o.mode ?? 'integrated';
    if (mode !== 'integrated' && mode !== 'legacy') throw new OptionError('mode', `must be integrated or legacy, got ${JSON.stringify(mode)}`);
    const automation = o.automation ?? 'automatic';
    if (automation !== 'manual' && automation !== 'automatic') throw new OptionError('automation', `must be manual or automatic, got ${JSON.stringify(automation)}`);
    if (mode === 'legacy' && o.baseline !== undefined) throw new OptionError('baseline', 'legacy mode has no compatibility baseline (a baseline is what integrates FT with placement)');
    this.id = o.id;
    this.mode = mode;
    this.automation = automation;
    this.baseline = mode === 'integrated' ? (o.baseline ?? defaultCompatId()) : undefined;
    this.#store = o.store;
    this.#o = {
      store: o.store,
      id: o.id,
      token: o.token,
      intervalMs: o.intervalMs ?? 500,
      electionTtlMs: o.electionTtlMs ?? 2_000,
      eventLimit: o.eventLimit ?? DEFAULT_EVENT_LIMIT,
      startTimeoutMs: o.startTimeoutMs ?? 20_000,
      cloneTimeoutMs: o.cloneTimeoutMs ?? 60_000,
      restartGraceMs: o.restartGraceMs ?? 2_000,
      balanceIntervalMs: o.balanceIntervalMs ?? 10_000,
      suspectMs: o.suspectMs ?? HOST_TTL_MS + 1_000,
      flapGraceMs: o.flapGraceMs ?? INSTANCE_TTL_MS,
      datastore: o.datastore,
      datastoreWindowMs: o.datastoreWindowMs ?? DEFAULT_HEARTBEAT_WINDOW_MS,
      placementOptions: o.placementOptions,
      tlsCa: o.tlsCa,
    };
    if (o.datastore !== undefined && (typeof o.datastore !== 'string' || o.datastore === '')) throw new OptionError('datastore', 'must be a directory path');
    if (!(Number.isFinite(this.#o.datastoreWindowMs) && this.#o.datastoreWindowMs >= 30)) throw new OptionError('datastoreWindowMs', `must be a number of milliseconds of at least 30, got ${String(o.datastoreWindowMs)}`);
    this.#judge = o.datastore !== undefined ? new HeartbeatJudge(this.#o.datastoreWindowMs) : undefined;
    this.#log = new EventWriter(o.store, o.id);
  }

  /** Enter the election and start reconciling (as soon as elected). */
  static async start(o: ManagerOptions): Promise<Manager> {
    const m = new Manager(o);
    m.#unwatch = await m.#store.watch(
      '',
      (e) => {
        // Our own log writes are no reason to look again.
        if (!e.key.startsWith(KEYS.eventsPrefix)) m.#kick(50);
      },
      { onError: (err) => m.#warn(`watch: ${err.message}`) },
    );
    m.#leadership = await m.#store.campaign(MANAGER_ELECTION, m.id, { ttlMs: m.#o.electionTtlMs });
    m.#leadership.on('elected', (token) => void m.#assume(token));
    m.#leadership.on('lost', (err) => m.#depose(`leadership lost: ${err.message}`));
    m.#leadership.on('error', (err: Error) => m.#warn(`campaign: ${err.message}`));
    if (m.#leadership.isLeader) void m.#assume(m.#leadership.token!);
    m.#timer = setInterval(() => m.#kick(0), m.#o.intervalMs);
    if (m.#judge !== undefined) {
      // Followers read the heartbeats too: a new leader judges them at once, with history.
      await m.#pollHeartbeats();
      m.#beatTimer = setInterval(() => void m.#pollHeartbeats(), Math.max(10, Math.floor(m.#o.datastoreWindowMs / 6)));
    }
    return m;
  }

  /** Whether this manager leads and acts now. */
  get isLeader(): boolean {
    return this.#acting !== null && this.#leadership.isLeader;
  }

  /** The fencing token it acts under, or null. */
  get token(): number | null {
    return this.isLeader ? this.#acting : null;
  }

  /** Reconcile passes run so far (as leader). */
  get passes(): number {
    return this.#passes;
  }

  /** Run a reconcile pass now (if leading) and resolve when it and the actions it started are done. */
  async reconcile(): Promise<void> {
    this.#kick(0);
    await new Promise((r) => setTimeout(r, 1));
    while (this.#passing !== undefined) await this.#passing;
    await Promise.all([...this.#inflight.values()].map((f) => f.done));
  }

  /** Stop reconciling and resign (another manager takes over at once). Leaves the VMs running. */
  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    clearInterval(this.#timer);
    clearInterval(this.#beatTimer);
    clearTimeout(this.#kickTimer);
    this.#acting = null;
    await this.#beatPoll;
    while (this.#passing !== undefined) await this.#passing;
    await Promise.all([...this.#inflight.values()].map((f) => f.done));
    await this.#unwatch?.();
    await this.#leadership?.resign();
    await Promise.all([...this.#arbiters.values()].map((a) => a.arbiter.close().catch(() => undefined)));
    this.#arbiters.clear();
  }

  // ---- leadership --------------------------------------------------------------------------------------

  /** Elected with `token`: fence `manager/epoch` (compare-and-set, never lowering it), then act. */
  async #assume(token: number): Promise<void> {
    for (let attempt = 0; attempt < 20 && !this.#stopped; attempt++) {
      if (this.#leadership.token !== token) return;
      try {
        const cur = await this.#store.get(KEYS.managerEpoch);
        const v = asRecord<ManagerEpoch>(cur?.value);
        if (v !== undefined && v.token > token) return this.#depose(`manager/epoch holds a newer token ${v.token} (${v.manager})`);
        const mine: ManagerEpoch = { manager: this.id, token, since: Date.now() };
        if ((v !== undefined && v.token === token && v.manager === this.id) || (await this.#store.compareAndSet(KEYS.managerEpoch, cur?.revision ?? null, mine as unknown as JsonValue))) {
          this.#acting = token;
          if (CLUSTER_CHANNELS.leader.hasSubscribers) CLUSTER_CHANNELS.leader.publish({ manager: this.id, token, leads: true });
          this.emit('elected', token);
          await this.#event({ kind: 'leader', message: `${this.id} leads (fencing token ${token}, ${this.mode} mode, automation ${this.automation})` });
          this.#kick(0);
          return;
        }
      } catch (err) {
        this.#warn(`fencing manager/epoch: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  #depose(reason: string): void {
    if (this.#acting === null) return;
    const token = this.#acting;
    this.#acting = null;
    if (CLUSTER_CHANNELS.leader.hasSubscribers) CLUSTER_CHANNELS.leader.publish({ manager: this.id, token, leads: false, reason });
    this.emit('deposed', reason);
  }

  #warn(message: string): void {
    if (this.listenerCount('warning') > 0) this.emit('warning', message);
  }

  async #event(e: Omit<ClusterEvent, 't' | 'by' | 'token'>): Promise<void> {
    try {
      const ev = await this.#log.write({ ...e, ...(this.#acting !== null ? { token: this.#acting } : {}) });
      if (CLUSTER_CHANNELS.event.hasSubscribers) CLUSTER_CHANNELS.event.publish(ev);
      this.emit('event', ev);
    } catch (err) {
      this.#warn(`event log: ${(err as Error).message}`);
    }
  }

  /**
   * {@link #say}, once the finding under `key` has held for `flapGraceMs` over consecutive passes: a
   * record missing for a moment (an agent stalled on a loaded machine) is not a finding. False until then.
   */
  async #sayOnceHeld(key: string, e: Omit<ClusterEvent, 't' | 'by' | 'token'>): Promise<boolean> {
    const now = Date.now();
    const held = this.#holding.get(key);
    // Held since the pass before this one: it continues; otherwise it starts now.
    const since = held !== undefined && held.pass >= this.#passes - 1 ? held.since : now;
    this.#holding.set(key, { since, pass: this.#passes });
    if (now - since < this.#o.flapGraceMs) return false;
    await this.#say(key, e);
    return true;
  }

  /** Write an event only when `message` differs from the last one said under `key` (no repeats every pass). */
  async #say(key: string, e: Omit<ClusterEvent, 't' | 'by' | 'token'>): Promise<void> {
    if (this.#said.get(key) === e.message) return;
    this.#said.set(key, e.message);
    await this.#event(e);
  }

  // ---- the loop -------------------------------------------------------------------------------------

  #kick(delayMs: number): void {
    if (this.#stopped || this.#kickTimer !== undefined) return;
    this.#kickTimer = setTimeout(() => {
      this.#kickTimer = undefined;
      if (this.#passing !== undefined) {
        this.#again = true;
        return;
      }
      this.#passing = (async () => {
        do {
          this.#again = false;
          try {
            await this.#pass();
          } catch (err) {
            this.#warn(`reconcile: ${(err as Error).stack ?? String(err)}`);
          }
        } while (this.#again && !this.#stopped);
      })().finally(() => (this.#passing = undefined));
    }, delayMs);
  }

  #agent(inv: Inventory, host: string): AgentClient {
    const h = inv.hosts.get(host);
    if (h === undefined) throw new AgentApiError(host, 0, 'unreachable', `host ${host} is not live`);
    if (this.#o.tlsCa !== undefined && !h.api.startsWith('https://')) {
      throw new AgentApiError(h.api, 0, 'unreachable', `host ${host}'s API is not HTTPS, and this manager talks to agents over TLS only (it has a CA, --tls-ca): start the agent with --tls-cert and --tls-key`);
    }
    const token = this.#acting;
    return new AgentClient({ url: h.api, token: this.#o.token, fence: () => (token === null ? undefined : { token, manager: this.id }), ...(this.#o.tlsCa !== undefined ? { ca: this.#o.tlsCa } : {}) });
  }

  /** One reconcile pass: read everything, decide per VM and per host, carry the actions out. */
  async #pass(): Promise<void> {
    const token = this.#acting;
    if (token === null || this.#stopped) return;
    if (!this.#leadership.isLeader) return this.#depose('leadership expired (local deadline)');
    // Actions in flight when the store is read: what they start may not be in this read, so their VMs
    // are left alone in this pass even if they finish meanwhile (one finished before the read is in it:
    // an agent answers a start only once the record is written).
    const inflight = new Map(this.#inflight);
    const inv = await readInventory(this.#store);
    const ep = inv.epoch?.value;
    if (ep === undefined || ep.token !== token || ep.manager !== this.id) return this.#depose(`manager/epoch is ${ep === undefined ? 'missing' : `${ep.manager}@${ep.token}`}, not ${this.id}@${token}`);
    this.#passes++;
    const now = Date.now();
    for (const [k, h] of this.#holding) if (h.pass < this.#passes - 1) this.#holding.delete(k); // no longer held
    for (const [h, s] of this.#suspect) if (s.until <= now) this.#suspect.delete(h);
    for (const [vm, hint] of this.#hints) if (hint.until <= now) this.#hints.delete(vm);
    for (const [vm, until] of this.#cooldown) if (until <= now) this.#cooldown.delete(vm);
    // Maintenance and balancing leave a VM alone for a while after operating on it (the switch or the
    // stop takes effect through the store a little later); re-protection never waits for that.
    const cooling = (vm: string) => this.#cooldown.has(vm);

    // Datastore heartbeats: read now; records of halves an agent says it powered off go from this pass's
    // inventory (see #dropPoweredOff) before anything is decided on it.
    const beats = await this.#heartbeatVerdicts();
    if (this.#judge !== undefined) {
      for (const [k, m] of this.#beatProblems) await this.#say(`heartbeat-invalid:${k}`, { kind: 'heartbeat-invalid', ...(k !== '' ? { host: k } : {}), message: m });
      await this.#dropPoweredOff(inv, beats, now);
    }
    for (const [vm, rs] of inv.instances) if (rs.length > 0) this.#lastSeenOn.set(vm, new Set(rs.map((r) => r.host)));
    for (const vm of this.#lastSeenOn.keys()) if (!inv.instances.has(vm) && !inv.desired.has(vm)) this.#lastSeenOn.delete(vm);

    await this.#syncMaintenance(inv, token);
    await this.#noteLostHosts(inv, token, now);
    if (this.#judge !== undefined) await this.#syncPartitions(inv, beats, token, now);
    const views = pairViews(inv);
    this.#dropLostSecondaries(inv, views);
    // Halves believed dead on hosts the store still lists: those hosts have probably failed (their records
    // expire in a moment); place nothing there meanwhile.
    for (const v of views) {
      for (const r of v.lost) {
        if (this.#suspect.has(r.host)) continue;
        const what = r.role === 'primary' ? `a primary of ${v.vm} superseded by epoch ${v.epoch ?? '?'}` : `a secondary of ${v.vm} that its primary lost`;
        this.#suspect.set(r.host, { until: now + this.#o.suspectMs, why: `it recently failed (${what} is still listed there)` });
      }
    }
    this.#closeHostsOfVanished(inv, views, now);
    // A half the snapshot cannot show — one an operation under way is moving (a migration's follower
    // whose target is not on record as primary yet, a secondary being replaced), still running on a live
    // host — takes room there all the same: that host takes no new half until the operation has ended.
    // (Seen: a VM placed beside a migration's follower whose host was at its FT VM cap.)
    const moving = new Map<string, string>();
    for (const v of views) {
      for (const r of v.others) {
        if (!inv.hosts.has(r.host) || r.state === 'stopping' || v.lost.includes(r) || this.#suspect.has(r.host)) continue;
        moving.set(r.host, `it runs a ${r.role} of ${v.vm} that an operation under way moves (not in the placement snapshot until it ends)`);
      }
    }
    const byVm = new Map(views.map((v) => [v.vm, v]));
    const built = buildSnapshot(inv, byVm, {
      ...(this.baseline !== undefined ? { baseline: this.baseline } : {}),
      closed: new Map([...moving, ...[...this.#suspect].map(([h, s]): [string, string] => [h, s.why])]),
      ...(this.#o.placementOptions !== undefined ? { placementOptions: this.#o.placementOptions } : {}),
    });
    for (const d of built.dropped) await this.#say(`dropped:${d}`, { kind: 'rule-ignored', message: d });
    try {
      new Placement(built.snapshot);
    } catch (err) {
      // A record the engine refuses (a hand-written desired VM or rule, say): nothing can be decided safely.
      await this.#say('snapshot', { kind: 'inventory-invalid', message: `the cluster's state is not a valid placement snapshot, nothing is done until it is fixed: ${(err as Error).message}` });
      return;
    }
    this.#said.delete('snapshot');
    // The working snapshot: updated as decisions are made, so each sees the ones before it.
    let snap: ClusterSnapshot = built.snapshot;
    const decided = new Map<string, { primary: string | undefined; secondary: string | undefined }>();
    const setHalves = (vm: string, primary: string | undefined, secondary: string | undefined) => {
      decided.set(vm, { primary, secondary });
      snap = {
        ...snap,
        vms: snap.vms.map((v) => {
          if (v.id !== vm) return v;
          const { host: _h, secondaryHost: _s, ...rest } = v;
          return { ...rest, ...(primary !== undefined ? { host: primary } : {}), ...(secondary !== undefined ? { secondaryHost: secondary } : {}) };
        }),
      };
    };
    // Starts still in flight from earlier passes: their halves may not be in the store yet, so they are
    // put into the snapshot as decided (capacity and caps count them), and their VMs are left alone.
    const hostIds = new Set(snap.hosts.map((h) => h.id));
    for (const [vm, f] of inflight) {
      const h = f.halves;
      if (h === undefined || !snap.vms.some((v) => v.id === vm)) continue;
      if (h.primary === undefined || !hostIds.has(h.primary) || (h.secondary !== undefined && (!hostIds.has(h.secondary) || h.secondary === h.primary))) continue;
      setHalves(vm, h.primary, h.secondary);
    }
    decided.clear();
    const actions: Action[] = [];
    const busy = new Set<string>(inflight.keys());
    const add = (a: Action | undefined) => {
      if (a === undefined) return;
      busy.add(a.vm);
      actions.push(a);
    };

    this.#roomless.clear();
    // Highest restart priority first: those VMs get the capacity first, and a VM waits while a restart
    // or re-protection of a higher priority is under way (vSphere HA's restart priority).
    const underWay = new Map(this.#restarting);
    const ordered = restartOrder(views.map((view) => ({ vm: view.vm, priority: restartPriorityOf(view.desired?.restartPriority), view })));
    // VMs lost together do not vanish from the store together (their processes end one by one, their
    // records expire one by one): a restart that is due is also held back by a higher-priority VM that
    // went down with it and is still in its restart grace or leaving records — bounded by the grace and
    // the records' TTL; one that cannot be placed holds nothing up.
    for (const { view: v, priority } of ordered) {
      if (v.desired === undefined || v.status !== 'down' || !this.#seenRunning.has(v.vm) || priority === 'disabled') continue;
      const since = this.#downSince.get(v.vm);
      // Running unseen on a host cut off from the store (its datastore heartbeat lists it): not going to restart.
      if (this.#heldBy(v.vm, beats) !== undefined) continue;
      if ((inv.instances.get(v.vm) ?? []).length > 0 || since === undefined || (now - since < this.#o.restartGraceMs && !this.#knownStopped(v.vm, beats, inv))) underWay.set(v.vm, priority);
    }
    for (const { view: v, priority } of ordered) {
      if (busy.has(v.vm)) continue;
      const ha = this.#haNeed(v);
      if (ha !== undefined) {
        const ahead = waitsFor(priority, underWay);
        if (ahead.length > 0) {
          await this.#say(`priority:${v.vm}`, { kind: 'restart-waiting', vm: v.vm, message: `${v.vm} (restart priority ${priority}) waits for the ${ha} of higher-priority ${ahead.join(', ')}` });
          continue;
        }
        this.#said.delete(`priority:${v.vm}`);
      }
      const a = await this.#decideVm(v, inv, () => snap, setHalves, built.blocked, now, beats);
      if (a !== undefined && ha !== undefined) underWay.set(v.vm, priority);
      add(a);
    }
    for (const a of await this.#monitor(inv, views, busy, now)) add(a);
    const draining = [...inv.hosts.keys(), ...inv.maintenance.keys()].filter((h, i, a) => a.indexOf(h) === i && maintenanceOf(inv, h) === 'entering');
    for (const h of draining) {
      for (const a of await this.#drain(h, inv, views, snap, busy, cooling)) add(a);
    }
    for (const a of await this.#migrations(inv, views, snap, busy, cooling)) add(a);
    for (const a of await this.#ftOperations(inv, views, busy)) add(a);
    if (draining.length === 0) add(await this.#defragment(inv, views, snap, busy, cooling));
    if (actions.length === 0 && draining.length === 0 && this.#cooldown.size === 0 && inflight.size === 0 && this.#inflight.size === 0) add(await this.#balance(inv, views, snap, now));

    if (actions.length > 0) {
      if (!this.#leadership.isLeader || this.#acting !== token) return this.#depose('leadership expired before acting');
      // Carried out in the background: a slow start (a process booting, a clone) never holds up the
      // decisions for other VMs. Each VM has at most one action in flight.
      for (const a of actions) {
        const priority = underWay.get(a.vm);
        if (priority !== undefined) this.#restarting.set(a.vm, priority);
        const done = a.run().catch((err: unknown) => this.#warn(`${a.vm}: ${(err as Error).message}`)).finally(() => {
          this.#restarting.delete(a.vm);
          this.#inflight.delete(a.vm);
          this.#kick(0);
        });
        this.#inflight.set(a.vm, { halves: decided.get(a.vm), done });
      }
    }
    if (inv.events.length > this.#o.eventLimit + 50) await trimEvents(this.#store, this.#o.eventLimit).catch((err: unknown) => this.#warn(`trimming events: ${(err as Error).message}`));
  }

  /**
   * A VM that ran and is now gone without this manager stopping it (no record of it anywhere) lost its
   * host, or its process died: a host it was seen on within the last host TTL that the store still lists
   * has probably failed — a dead agent's instance records expire 3 s before its host record, so when the
   * VM is restarted (records gone, then the restart grace) the dead host still looks live, and, having
   * just lost its VMs, the least loaded. It takes no new half until its record must have expired had it
   * died; a live one is back in service then. Without this the restart went to the dead host, failed,
   * and backed off.
   */
  #closeHostsOfVanished(inv: Inventory, views: PairView[], now: number): void {
    const recent = HOST_TTL_MS + 2_000;
    for (const [vm, t] of this.#stoppedHere) if (now - t > recent) this.#stoppedHere.delete(vm);
    for (const v of views) {
      if (v.desired === undefined || v.status !== 'down' || !this.#seenRunning.has(v.vm) || this.#stoppedHere.has(v.vm)) continue;
      if ((inv.instances.get(v.vm) ?? []).length > 0) continue;
      for (const [h, live] of this.#lastLive) {
        if (!inv.hosts.has(h)) continue;
        const seen = Math.max(live.halves.get(`${v.vm}(P)`) ?? 0, live.halves.get(`${v.vm}(S)`) ?? 0);
        const until = seen + HOST_TTL_MS + 1_000;
        if (seen === 0 || until <= now || (this.#suspect.get(h)?.until ?? 0) >= until) continue;
        this.#suspect.set(h, { until, why: `it probably failed: ${v.vm} ran there until ${((now - seen) / 1000).toFixed(1)} s ago and vanished without being stopped (a dead agent's host record outlives its instance records by ${(HOST_TTL_MS - INSTANCE_TTL_MS) / 1000} s)` });
      }
    }
  }

  /**
   * A primary that loses its secondary claims the next epoch and runs alone; the dead secondary's record
   * stays until its TTL runs out, and a secondary's record does not always say whether it was in
   * lockstep (so pairView cannot always tell it lost). A secondary first seen under epoch e of its
   * primary, whose primary now runs alone under a later epoch, is lost: it is moved to `lost` (its host
   * takes nothing for a while) and the VM gets a new secondary now, not once the record expires.
   */
  #dropLostSecondaries(inv: Inventory, views: PairView[]): void {
    const present = new Set<string>();
    for (const rs of inv.instances.values()) for (const r of rs) present.add(r.incarnation);
    for (const k of this.#joinedUnder.keys()) if (!present.has(k)) this.#joinedUnder.delete(k);
    for (const v of views) {
      const p = v.primary;
      const s = v.secondary;
      if (p === undefined || s === undefined || p.epoch === null) continue;
      const under = this.#joinedUnder.get(s.incarnation);
      if (under === undefined) {
        this.#joinedUnder.set(s.incarnation, p.epoch);
        continue;
      }
      // Protected again with it (a restart of the secondary can move the epoch on): it is current.
      if (p.protected) {
        this.#joinedUnder.set(s.incarnation, p.epoch);
        continue;
      }
      // Only a primary that says it runs alone has lost it; one cloning it again has not.
      if (p.epoch <= under || p.state !== 'running' || !/need secondary/i.test(p.status)) continue;
      v.lost.push(s);
      v.others.push(s);
      v.secondary = undefined;
      v.protected = false;
      v.text = p.status;
    }
  }

  // ---- per VM ---------------------------------------------------------------------------------------

  /** What HA owes `v` now, if anything: a restart (it ran and both halves are gone) or a re-protection. */
  #haNeed(v: PairView): 'restart' | 're-protection' | undefined {
    if (v.desired === undefined) return undefined;
    if (v.status === 'down' && this.#seenRunning.has(v.vm)) return 'restart';
    if (v.status === 'not-protected' && v.desired.ft && v.secondary === undefined && v.primary?.protected === false) return 're-protection';
    return undefined;
  }

  async #decideVm(
    v: PairView,
    inv: Inventory,
    snap: () => ClusterSnapshot,
    setHalves: (vm: string, primary: string | undefined, secondary: string | undefined) => void,
    blocked: Map<string, string>,
    now: number,
    beats: Map<string, HeartbeatVerdict>,
  ): Promise<Action | undefined> {
    const all = inv.instances.get(v.vm) ?? [];
    const liveRecords = all.filter((r) => inv.hosts.has(r.host));
    if (v.desired === undefined) {
      if (inv.failures.has(v.vm)) await this.#forgetFailures(v.vm);
      if (inv.monitoring.has(v.vm)) await this.#store.delete(KEYS.monitoring(v.vm)).catch((err: unknown) => this.#warn(`forgetting the resets of ${v.vm}: ${(err as Error).message}`));
      this.#epochSeen.delete(v.vm); // created again, it may come with a fresh arbiter
      // Created again, it is a new VM: powered on (admission control), not restarted.
      if (liveRecords.length === 0) {
        this.#seenRunning.delete(v.vm);
        this.#downSince.delete(v.vm);
      }
      const a = this.#arbiters.get(v.vm);
      this.#arbiters.delete(v.vm);
      if (a !== undefined) await a.arbiter.close().catch(() => undefined);
      // Removed from the desired state: stop what still runs, primaries first (their BYE dismisses the secondary).
      const running = liveRecords.filter((r) => r.state !== 'stopping').sort((a, b) => (a.role === b.role ? 0 : a.role === 'primary' ? -1 : 1));
      if (running.length === 0) return undefined;
      return this.#action(v.vm, async () => {
        for (const r of running) {
          await this.#event({ kind: 'stop', action: true, vm: v.vm, host: r.host, message: `stopping the ${r.role} of ${v.vm} on ${r.host}: the VM was deleted` });
          await this.#call(inv, r.host, (c) => c.stop(v.vm));
        }
      });
    }
    for (const r of liveRecords) if (r.role === 'primary' && r.state !== 'stopping') this.#noteEpoch(v.vm, r.epoch);
    if (liveRecords.length > 0) {
      this.#seenRunning.add(v.vm);
      this.#downSince.delete(v.vm);
    }
    // A VM that runs again (or never needs to) has no start failures to remember.
    if (inv.failures.has(v.vm) && v.primary?.state === 'running') await this.#forgetFailures(v.vm);
    const why = blocked.get(v.vm);
    if (why !== undefined && v.primary === undefined) {
      await this.#sayOnceHeld(`unplaceable:${v.vm}`, { kind: 'unplaceable', vm: v.vm, message: `${v.vm} cannot be placed: ${why}` });
      return undefined;
    }
    if (v.status !== 'going-live') this.#said.delete(`going-live:${v.vm}`);
    switch (v.status) {
      case 'starting': {
        // A primary started as one that never gets ready (its agent answered the start with not-ready
        // and left it running) is stopped, and counts as a failed start.
        const p = v.primary;
        if (p === undefined || p.startedAs !== 'primary' || now - p.startedAt < 2 * this.#o.startTimeoutMs) return undefined;
        return this.#action(v.vm, async () => {
          const reason = `not ready ${2 * this.#o.startTimeoutMs} ms after it was started (${p.status}; last event ${p.lastEvent})`;
          await this.#event({ kind: 'stop', action: true, vm: v.vm, host: p.host, message: `stopping the primary of ${v.vm} on ${p.host}: ${reason}` });
          this.#stoppedHere.set(v.vm, Date.now());
          await this.#call(inv, p.host, (c) => c.stop(v.vm));
          await this.#startFailed(inv, v.vm, p.host, reason);
        });
      }
      case 'going-live': {
        // The FT pair is mid-way (a secondary going live, a primary claiming its epoch). For longer than a
        // record can flap, no primary on record means the primary's host died and its secondary has not
        // gone live yet, or a migration's target never published its record (its old primary's agent
        // dropped the hand-over record, see Agent #handedOn): said, so that the operator looks. The
        // secondary goes live by itself if the primary is really gone; nothing here can do better.
        const s = v.others.find((r) => r.role === 'secondary') ?? (inv.instances.get(v.vm) ?? []).find((r) => r.role === 'secondary');
        await this.#sayOnceHeld(`going-live:${v.vm}`, {
          kind: 'primary-missing',
          vm: v.vm,
          ...(s !== undefined ? { host: s.host } : {}),
          message: `${v.vm} has no primary on record${s !== undefined ? ` (its secondary on ${s.host} follows ${s.join ?? '?'}: ${s.status})` : ''}: its primary's host died or a migration's target never appeared; its secondary goes live by itself if the primary is gone, and the VM is re-protected then`,
        });
        return undefined;
      }
      case 'down': {
        // Left-overs (records of a dead host, a half on its way out) go first.
        if (all.length > 0) return undefined;
        // A host's datastore heartbeat that lists the VM (alive, or not judged yet): it runs there, unseen
        // by the store (that host is cut off from it). No restart, and no fence either: the fence would
        // halt a primary that serves, and nothing would replace it.
        const held = this.#heldBy(v.vm, beats);
        if (this.#seenRunning.has(v.vm)) {
          const since = this.#downSince.get(v.vm) ?? now;
          this.#downSince.set(v.vm, since);
          // The restart grace covers not knowing whether the VM is really gone; a live heartbeat of every
          // host it was last seen on that no longer lists it says it is: no wait.
          if (now - since < this.#o.restartGraceMs && (held !== undefined || !this.#knownStopped(v.vm, beats, inv))) return undefined;
        }
        if (held !== undefined) {
          const b = held.verdict.beat!;
          const role = b.halves.filter((x) => x.vm === v.vm).map((x) => x.role).join(' and ');
          await this.#say(`held:${v.vm}`, {
            kind: 'restart-held',
            vm: v.vm,
            host: held.host,
            message: `${v.vm} has no record in the store, but runs on ${held.host} (its ${role}): the datastore heartbeat of ${held.host} lists it and ${held.verdict.state === 'alive' ? `changed ${Math.round(held.verdict.sinceChangeMs ?? 0)} ms ago (seq ${b.seq})` : 'is being judged'}. ${held.host} is cut off from the store, not dead: ${v.vm} is not restarted elsewhere (nor fenced) while that heartbeat goes on and lists it`,
          });
          return undefined;
        }
        this.#said.delete(`held:${v.vm}`);
        // Starts that keep failing are retried with backoff, never in a tight loop.
        const failed = inv.failures.get(v.vm);
        if (failed !== undefined && now < failed.retryAt) return undefined;
        const restart = this.#seenRunning.has(v.vm);
        if (restart && restartPriorityOf(v.desired.restartPriority) === 'disabled') {
          await this.#say(`unplaceable:${v.vm}`, { kind: 'restart-disabled', vm: v.vm, message: `${v.vm} is down and its restart priority is disabled: HA does not restart it` });
          return undefined;
        }
        // HA admission control binds powering a VM on, never the restart of one that ran (vSphere's too).
        const admission = restart ? undefined : admitVm(snap(), inv.ha.hostFailures, v.vm);
        if (admission !== undefined && !admission.ok) {
          await this.#say(`unplaceable:${v.vm}`, { kind: 'admission-refused', vm: v.vm, message: `${v.vm} is not powered on: ${admission.reason}` });
          return undefined;
        }
        const p = new Placement(snap());
        const r = p.place(v.vm);
        if (r.kind === 'unplaceable') {
          await this.#sayOnceHeld(`unplaceable:${v.vm}`, { kind: 'unplaceable', vm: v.vm, message: `${v.vm} cannot be placed: ${r.reason}\n${explain(r)}` });
          this.#roomless.add(v.vm);
          return undefined;
        }
        this.#said.delete(`unplaceable:${v.vm}`);
        if (r.kind === 'placed-pair') {
          setHalves(v.vm, r.primary.host, r.secondary.host);
          return this.#action(v.vm, () => this.#startPair(inv, v, r.primary.host, r.secondary.host, restart, explain(r, { maxHosts: 0 })));
        }
        if (r.kind === 'placed') {
          setHalves(v.vm, r.host, undefined);
          return this.#action(v.vm, () => this.#startPair(inv, v, r.host, undefined, restart, explain(r, { maxHosts: 0 })));
        }
        return undefined;
      }
      case 'not-protected': {
        if (!v.desired.ft) return undefined;
        const primary = v.primary!;
        if (v.secondary !== undefined) {
          // Being cloned; one that never gets into lockstep is replaced.
          if (now - v.secondary.startedAt < this.#o.cloneTimeoutMs) return undefined;
          const s = v.secondary;
          return this.#action(v.vm, async () => {
            await this.#event({ kind: 'stop-secondary', action: true, vm: v.vm, host: s.host, message: `stopping the secondary of ${v.vm} on ${s.host}: not in lockstep after ${this.#o.cloneTimeoutMs} ms (${s.status})` });
            await this.#call(inv, s.host, (c) => c.stop(v.vm));
          });
        }
        // FT suspended by the operator (`cluster ft <vm> suspend`): the primary runs on unprotected by
        // choice and would refuse a secondary until `resume`.
        if (FT_SUSPENDED.test(primary.status)) {
          await this.#say(`suspended:${v.vm}`, { kind: 'ft-suspended', vm: v.vm, host: primary.host, message: `${v.vm}: FT is suspended on its primary on ${primary.host}; no secondary is started until lockstep cluster ft ${v.vm} resume` });
          return undefined;
        }
        this.#said.delete(`suspended:${v.vm}`);
        // The primary says it is protected, but no record of its secondary is visible (that agent is cut
        // off from the store, or the record is being rewritten): the primary knows best; a second
        // secondary would only be refused.
        if (primary.protected) {
          await this.#sayOnceHeld(`invisible:${v.vm}`, { kind: 'secondary-invisible', vm: v.vm, message: `${v.vm}: the primary on ${primary.host} reports a secondary in lockstep that has no record in the store; waiting` });
          return undefined;
        }
        this.#said.delete(`invisible:${v.vm}`);
        // A primary record below an epoch already seen for this VM is a superseded primary (resumed
        // after a freeze, its record back before it notices), whatever else is visible this pass: the
        // current holder's record may be missing for a moment. It gets no secondary.
        const seen = this.#epochSeen.get(v.vm) ?? -1;
        if ((primary.epoch ?? -1) < seen) {
          await this.#say(`superseded:${v.vm}`, { kind: 'join-superseded', vm: v.vm, host: primary.host, message: `${v.vm}: the primary on ${primary.host} runs under epoch ${primary.epoch ?? '?'}, but epoch ${seen} was seen: it is superseded; no secondary joins it` });
          return undefined;
        }
        this.#said.delete(`superseded:${v.vm}`);
        // No secondary: place one. Hosts still holding a record of the VM take nothing of it.
        const exclude = new Map(v.others.map((r) => [r.host, `it still holds a record of ${v.vm} (${r.role}, ${r.state})`]));
        const p = new Placement(closeHosts(snap(), exclude));
        const r = p.placeSecondary(v.vm);
        if (r.kind === 'unplaceable') {
          await this.#sayOnceHeld(`unplaceable:${v.vm}`, { kind: 'unplaceable', vm: v.vm, message: `no host for a new secondary of ${v.vm}: ${r.reason}\n${explain(r)}` });
          // Defragmentation may make room for it (#defragment), as for a VM that runs nowhere.
          this.#roomless.add(v.vm);
          return undefined;
        }
        if (r.kind !== 'secondary-placed') return undefined;
        this.#said.delete(`unplaceable:${v.vm}`);
        let host = r.host;
        const hint = this.#hints.get(v.vm);
        if (hint !== undefined && hint.host !== host && r.candidates.some((c) => c.host === hint.host && c.ok)) host = hint.host;
        this.#hints.delete(v.vm);
        setHalves(v.vm, primary.host, host);
        const join = channelOf(primary)!;
        const reason = `${explain(r, { maxHosts: 0 })}${host !== r.host ? ` (the planned host ${host} is valid too and was chosen by the operation that freed it)` : ''}`;
        return this.#action(v.vm, async () => {
          // The join target must hold the VM's current epoch: ask the arbiter (the records may lag it).
          if (!(await this.#holdsEpoch(v.vm, v.desired!.config, primary))) return;
          await this.#event({ kind: 'start-secondary', action: true, vm: v.vm, host, message: `starting a secondary of ${v.vm} on ${host}, joining the primary on ${primary.host} (epoch ${primary.epoch ?? '?'}): ${reason}` });
          await this.#call(inv, host, (c) => c.start({ vmId: v.vm, role: 'secondary', config: v.desired!.config, join, waitMs: this.#o.startTimeoutMs }));
        });
      }
      default:
        return undefined;
    }
  }

  async #startPair(inv: Inventory, v: PairView, primaryHost: string, secondaryHost: string | undefined, restart: boolean, reason: string): Promise<void> {
    const d = v.desired!;
    if (restart && !(await this.#fence(v.vm, d.config))) return;
    await this.#event({ kind: 'start-primary', action: true, vm: v.vm, host: primaryHost, message: `${restart ? 'restarting' : 'starting'} ${v.vm}: primary on ${primaryHost}${secondaryHost !== undefined ? `, secondary on ${secondaryHost}` : ''}: ${reason}` });
    // An agent that cannot be reached is the host's failure, not the VM's: the host is closed for a while
    // (#call) and the next pass places the VM elsewhere, with no backoff.
    const started = await this.#call(inv, primaryHost, (c) => c.start({ vmId: v.vm, role: 'primary', config: d.config, waitMs: this.#o.startTimeoutMs }), (err) =>
      err instanceof AgentApiError && (err.apiCode === 'stale-fence' || err.status === 0) ? undefined : this.#startFailed(inv, v.vm, primaryHost, err.message),
    );
    if (started === undefined || secondaryHost === undefined || started.listen === null) return;
    const join = channelOf(started)!;
    await this.#event({ kind: 'start-secondary', action: true, vm: v.vm, host: secondaryHost, message: `starting the secondary of ${v.vm} on ${secondaryHost}, joining ${join}` });
    await this.#call(inv, secondaryHost, (c) => c.start({ vmId: v.vm, role: 'secondary', config: d.config, join, waitMs: this.#o.startTimeoutMs }));
  }

  /**
   * Before a VM that vanished is restarted from its disk: claim the next epoch of its arbiter, then wait
   * for longer than a primary takes to notice (FT_DEFAULTS.epochCheckMs). A primary still running unseen
   * (its host cut off from the store, not dead) halts on seeing the newer epoch instead of serving beside
   * the restarted one. False (no restart this pass) when the arbiter cannot be reached: going ahead
   * could give the VM two primaries.
   */
  async #fence(vm: string, config: JsonValue): Promise<boolean> {
    const arbiter = arbiterOfConfigJson(config);
    if (!arbiter) return true; // FT off: the VM has no arbiter and no pair that could still be running
    try {
      const cur = await arbiter.current(vm);
      const r = await arbiter.claim(vm, (cur?.epoch ?? 0) + 1, `manager:${this.#o.id}`);
      await this.#event({ kind: 'fence', action: true, vm, message: `claimed epoch ${r.epoch} of ${vm} before restarting it: a primary still running unseen halts within ${FT_DEFAULTS.epochCheckMs} ms` });
      await new Promise((res) => setTimeout(res, FT_DEFAULTS.epochCheckMs + 500));
      return true;
    } catch (err) {
      await this.#event({ kind: 'action-failed', vm, message: `cannot fence ${vm} before a restart: ${(err as Error).message}` });
      this.#kick(1000);
      return false;
    } finally {
      await arbiter.close().catch(() => undefined);
    }
  }

  /**
   * Whether `primary` holds the current epoch of `vm` by its arbiter. A newer epoch means it is
   * superseded (an old primary resumed after a freeze, its record back before it halts): no secondary
   * may join it, and its host takes nothing for a while. An arbiter that cannot be asked: false too
   * (this pass starts nothing; the next asks again).
   */
  async #holdsEpoch(vm: string, config: JsonValue, primary: InstanceRecord): Promise<boolean> {
    const arbiter = this.#arbiterOf(vm, config);
    if (!arbiter) return true; // no arbiter: no epochs to compare
    try {
      const cur = await arbiter.current(vm);
      if (cur === null || primary.epoch === null || cur.epoch <= primary.epoch) return true;
      this.#noteEpoch(vm, cur.epoch);
      this.#suspect.set(primary.host, { until: Date.now() + this.#o.suspectMs, why: `it runs a superseded primary of ${vm} (epoch ${primary.epoch} < ${cur.epoch})` });
      await this.#event({ kind: 'join-superseded', vm, host: primary.host, message: `not starting a secondary of ${vm}: its primary on ${primary.host} runs under epoch ${primary.epoch}, but the arbiter holds epoch ${cur.epoch} (${cur.owner ?? '?'}): it is superseded` });
      return false;
    } catch (err) {
      await this.#event({ kind: 'action-failed', vm, message: `cannot check the epoch of ${vm} before starting a secondary: ${(err as Error).message}` });
      return false;
    }
  }

  /**
   * The arbiter of `vm`'s configuration, kept open between secondary starts (connecting to etcd anew
   * would sit on the re-protection path); replaced when the configuration's arbiter changes.
   */
  #arbiterOf(vm: string, config: JsonValue): Arbiter | undefined {
    const spec = JSON.stringify((config as { ft?: { arbiter?: unknown } } | null)?.ft?.arbiter ?? null);
    const cached = this.#arbiters.get(vm);
    if (cached !== undefined && cached.spec === spec) return cached.arbiter;
    if (cached !== undefined) void cached.arbiter.close().catch(() => undefined);
    const arbiter = arbiterOfConfigJson(config);
    if (arbiter === undefined) this.#arbiters.delete(vm);
    else this.#arbiters.set(vm, { spec, arbiter });
    return arbiter;
  }

  #noteEpoch(vm: string, epoch: number | null): void {
    if (epoch !== null && epoch > (this.#epochSeen.get(vm) ?? -1)) this.#epochSeen.set(vm, epoch);
  }

  /** Call an agent; an unreachable agent makes its host take no new half for a while. */
  async #call<T>(inv: Inventory, host: string, f: (c: AgentClient) => Promise<T>, failed?: (err: Error) => Promise<void> | undefined): Promise<T | undefined> {
    try {
      return await f(this.#agent(inv, host));
    } catch (err) {
      if (err instanceof AgentApiError && err.apiCode === 'stale-fence') this.#depose(err.message);
      if (err instanceof AgentApiError && err.status === 0) this.#suspect.set(host, { until: Date.now() + this.#o.suspectMs, why: `its agent could not be reached (${(err as Error).message})` });
      await this.#event({ kind: 'action-failed', host, message: (err as Error).message });
      await failed?.(err as Error);
      this.#kick(100);
      return undefined;
    }
  }

  /**
   * A start of `vm` failed on `host`: record it (`failures/<vm>`, shown by `cluster status`) and back
   * off — the next attempt waits 2 s, doubling per failure in a row up to a minute.
   */
  async #startFailed(inv: Inventory, vm: string, host: string, reason: string): Promise<void> {
    const token = this.#acting;
    if (token === null) return;
    const attempts = (inv.failures.get(vm)?.attempts ?? 0) + 1;
    const delay = Math.min(START_BACKOFF_MAX_MS, START_BACKOFF_FIRST_MS * 2 ** Math.min(attempts - 1, 16));
    const at = Date.now();
    const f: StartFailure = { vm, attempts, host, reason: reason.slice(0, 2000), at, retryAt: at + delay, manager: this.id, token };
    try {
      await this.#store.put(KEYS.failure(vm), f as unknown as JsonValue);
    } catch (err) {
      this.#warn(`recording the failed start of ${vm}: ${(err as Error).message}`);
    }
    await this.#event({ kind: 'start-failed', vm, host, message: `${vm} failed to start on ${host} (${attempts} time(s) in a row): ${f.reason}; next attempt in ${delay} ms` });
  }

  async #forgetFailures(vm: string): Promise<void> {
    try {
      await this.#store.delete(KEYS.failure(vm));
    } catch (err) {
      this.#warn(`forgetting the failed starts of ${vm}: ${(err as Error).message}`);
    }
  }

  #action(vm: string, run: () => Promise<void>): Action {
    return { vm, run };
  }

  /**
   * Move the secondary of `vm` off `from`. A protected pair with a planned target `to` moves it without a
   * protection gap: its primary takes the next secondary as a move, one is started on `to`, and the old
   * one leaves by itself once the new one can take over (docs/fault-tolerance.md, "Moving the
   * secondary"). Otherwise, or when the primary refuses, the secondary is stopped and the VM pass places
   * a new one (on `to` if that is still a valid host then).
   */
  async #moveSecondary(inv: Inventory, vm: string, from: string, to: string | undefined, message: string, v?: PairView): Promise<void> {
    this.#cooldown.set(vm, Date.now() + 5_000);
    if (to !== undefined) this.#hints.set(vm, { host: to, until: Date.now() + 30_000 });
    const primary = v?.primary;
    const join = primary !== undefined ? channelOf(primary) : null;
    if (to !== undefined && v?.protected === true && v.desired !== undefined && primary !== undefined && join !== null) {
      // The clone runs while the old secondary protects: no new action for this VM until it is over.
      this.#cooldown.set(vm, Date.now() + 60_000);
      await this.#event({ kind: 'move-secondary', action: true, vm, host: from, message: `${message} (without a protection gap: a new secondary on ${to} is cloned first)` });
      const armed = await this.#call(inv, primary.host, (c) => c.migrateSecondary(vm));
      if (armed !== undefined) {
        await this.#call(inv, to, (c) => c.start({ vmId: vm, role: 'secondary', config: v.desired!.config, join, waitMs: this.#o.startTimeoutMs }));
        // Joined: the move goes on by itself; while it does, the VM shows the new secondary among its
        // other records, which keeps balancing and drains off it.
        this.#cooldown.set(vm, Date.now() + 5_000);
        return;
      }
    }
    this.#cooldown.set(vm, Date.now() + 5_000);
    await this.#event({ kind: 'move-secondary', action: true, vm, host: from, message });
    await this.#call(inv, from, (c) => c.stop(vm));
  }

  /**
   * Live migration of a protected VM's primary from `from` to `to` (docs/fault-tolerance.md, "Live
   * migration"): the primary is armed, a secondary-role instance started on `to` joins it as the target,
   * and at the hand-over the VM's secondary follows the target without a clone. `otherwise` runs when
   * the primary cannot be armed (no operations API, not running). A VM without FT (`v.desired.ft`
   * false) is live-migrated the same way, its one instance being the primary: a key made for this
   * migration goes to both agents, the target goes live on the source's GO_LIVE (no restart, the guest's
   * console and network state carried over), and the event is `migrate-vm`.
   */
  async #migratePrimary(inv: Inventory, vm: string, from: string, to: string, v: PairView, message: string, otherwise: (why: string) => Promise<void>): Promise<void> {
    const join = v.primary !== undefined ? channelOf(v.primary) : null;
    if (v.desired === undefined || join === null) return otherwise(v.desired === undefined ? `${vm} is no longer desired` : `its primary on ${from} does not listen for a target (${v.primary?.status ?? 'no record'})`);
    this.#cooldown.set(vm, Date.now() + 60_000);
    // A VM without FT: its one instance is live-migrated over a channel keyed for this migration alone.
    // The key is made here and handed to both agents in their (authenticated) requests; it is never
    // written to the store or an event, and each agent passes it to its VM process in a private file.
    const solo = !v.desired.ft;
    const migrationKey = solo ? randomBytes(32).toString('hex') : undefined;
    let refusal = 'its agent did not answer';
    const armed = await this.#call(
      inv,
      from,
      (c) => c.migrate(vm, migrationKey !== undefined ? { migrationKey } : {}),
      (err) => {
        refusal = err.message;
        return undefined;
      },
    );
    if (armed === undefined) return otherwise(refusal);
    await this.#event({ kind: solo ? 'migrate-vm' : 'migrate-primary', action: true, vm, host: from, message });
    await this.#call(
      inv,
      to,
      (c) => c.start({ vmId: vm, role: 'secondary', config: v.desired!.config, join, ...(migrationKey !== undefined ? { migrationKey } : {}), waitMs: this.#o.startTimeoutMs }),
      (err) =>
        // Said with the VM, for `cluster migrate --wait` and the operator: the source stays armed and
        // runs on; a target left running (not ready in time) may still take over.
        this.#event({ kind: 'migrate-failed', vm, host: to, message: `the live migration of ${vm} from ${from} to ${to} did not start: ${err.message}; ${vm} runs on ${from} unless a target still running takes over` }),
    );
    this.#cooldown.set(vm, Date.now() + 10_000);
  }

  /**
   * The primary of `vm` cannot be armed for its drain's live migration: the drain of `h` waits (the VM
   * stays protected where it is) and says why; tried again after a few seconds. Never a switch.
   */
  async #drainWaits(h: string, vm: string, why: string): Promise<void> {
    this.#cooldown.set(vm, Date.now() + 5_000);
    await this.#say(`drain-waits:${h}:${vm}`, {
      kind: 'maintenance-blocked',
      host: h,
      vm,
      message: `the primary of ${vm} cannot leave ${h}: it cannot be armed for a live migration (${why}). It is not switched to its secondary, which would leave ${vm} unprotected until a new secondary is in lockstep: the drain waits and tries again every 5 s. To go on: make the primary migratable again, or take ${h} out of maintenance (lockstep cluster maintenance ${h} off)`,
    });
  }

  // ---- datastore heartbeats -------------------------------------------------------------------------

  /** Read every heartbeat file (or join the read in flight) and feed the judge. Never throws. */
  async #pollHeartbeats(): Promise<void> {
    const judge = this.#judge;
    const datastore = this.#o.datastore;
    if (judge === undefined || datastore === undefined) return;
    this.#beatPoll ??= (async () => {
      const { beats, problems } = await readHeartbeats(datastore);
      const t = performance.now();
      const listed = !problems.has('');
      for (const [h, b] of beats) judge.observe(h, b, t);
      for (const h of problems.keys()) if (h !== '') judge.observe(h, 'unreadable', t);
      for (const h of judge.hosts()) if (!beats.has(h) && !problems.has(h)) judge.observe(h, listed ? 'missing' : 'unreadable', t);
      for (const [k, m] of problems) {
        if (this.#beatProblems.get(k) === m) continue;
        this.#beatProblems.set(k, m);
        this.#warn(m);
      }
      for (const k of [...this.#beatProblems.keys()]) {
        if (problems.has(k)) continue;
        this.#beatProblems.delete(k);
        this.#said.delete(`heartbeat-invalid:${k}`);
      }
    })()
      .catch((err: unknown) => this.#warn(`datastore heartbeats: ${(err as Error).message}`))
      .finally(() => (this.#beatPoll = undefined));
    await this.#beatPoll;
  }

  /** Every host's heartbeat as judged now (empty without a datastore). */
  async #heartbeatVerdicts(): Promise<Map<string, HeartbeatVerdict>> {
    const out = new Map<string, HeartbeatVerdict>();
    if (this.#judge === undefined) return out;
    await this.#pollHeartbeats();
    const t = performance.now();
    for (const h of this.#judge.hosts()) out.set(h, this.#judge.verdict(h, t));
    return out;
  }

  /** The host whose heartbeat lists `vm` and is alive or not judged yet, if any: the VM runs there. */
  #heldBy(vm: string, beats: Map<string, HeartbeatVerdict>): { host: string; verdict: HeartbeatVerdict } | undefined {
    for (const [host, verdict] of beats) {
      if ((verdict.state === 'alive' || verdict.state === 'unknown') && verdict.beat?.halves.some((x) => x.vm === vm)) return { host, verdict };
    }
    return undefined;
  }

  /**
   * Every host `vm` was last seen on is cut off from the store (its record gone, or its heartbeat says it
   * powered the VM off) and has a live heartbeat that does not list it: it runs on none of them. Only
   * for such hosts: a VM that ended on a host the store sees keeps the restart grace as before.
   */
  #knownStopped(vm: string, beats: Map<string, HeartbeatVerdict>, inv: Inventory): boolean {
    const hosts = this.#lastSeenOn.get(vm);
    if (hosts === undefined || hosts.size === 0) return false;
    return [...hosts].every((h) => {
      const v = beats.get(h);
      if (v?.state !== 'alive' || v.beat!.halves.some((x) => x.vm === vm)) return false;
      return !inv.hosts.has(h) || v.beat!.poweredOff.some((x) => x.vm === vm);
    });
  }

  /**
   * Records of halves an agent says on the datastore it killed by its isolation response (the record's
   * incarnation among its heartbeat's `poweredOff`, the VM not among its halves) are left-overs the store
   * keeps until their lease runs out: they go from this pass's inventory, so that the VM is restarted
   * now rather than seconds later. The process of that incarnation has ended whatever the heartbeat's
   * age, so any valid heartbeat says so. The host, cut off from the store (its agent refuses starts),
   * takes no new half meanwhile.
   */
  async #dropPoweredOff(inv: Inventory, beats: Map<string, HeartbeatVerdict>, now: number): Promise<void> {
    for (const [vm, rs] of [...inv.instances]) {
      const keep: InstanceRecord[] = [];
      for (const r of rs) {
        const b = beats.get(r.host)?.beat;
        if (b === undefined || !b.poweredOff.some((x) => x.vm === vm && x.incarnation === r.incarnation) || b.halves.some((x) => x.vm === vm)) {
          keep.push(r);
          continue;
        }
        this.#suspect.set(r.host, { until: now + this.#o.suspectMs, why: `it is cut off from the store: its datastore heartbeat says it powered ${vm} off (isolation response)` });
        await this.#say(`powered-off:${vm}:${r.incarnation}`, {
          kind: 'isolation-powered-off',
          vm,
          host: r.host,
          message: `${vm} was powered off on ${r.host} by its isolation response: the datastore heartbeat ${heartbeatPath(this.#o.datastore!, r.host)} (seq ${b.seq}) says so, so its record there is a left-over; ${vm} is restarted without waiting for that record to expire`,
        });
      }
      if (keep.length === rs.length) continue;
      if (keep.length === 0) inv.instances.delete(vm);
      else inv.instances.set(vm, keep);
    }
  }

  /**
   * A lost host (its records expired) whose datastore heartbeat is alive is cut off from the store, not
   * dead: its `lost-hosts/` record says so, with what its heartbeat lists (for `cluster status`), and a
   * `host-partitioned` event is written once. Should the heartbeat stop too, it is dead after all (a
   * `host-heartbeat-lost` event): what it listed is restarted as after any host death.
   */
  async #syncPartitions(inv: Inventory, beats: Map<string, HeartbeatVerdict>, token: number, now: number): Promise<void> {
    for (const [h, rec] of [...inv.lostHosts]) {
      if (inv.hosts.has(h)) continue;
      const v = beats.get(h);
      if (v?.state === 'unknown') continue; // not judged yet: no change either way
      const file = heartbeatPath(this.#o.datastore!, h);
      const alive = v?.state === 'alive';
      const want = alive ? { since: rec.partitioned?.since ?? now, halves: v.beat!.halves.map((x) => `${x.vm}(${x.role === 'primary' ? 'P' : 'S'})`).sort(), heartbeat: file } : null;
      if (JSON.stringify(want) === JSON.stringify(rec.partitioned ?? null)) continue;
      const reason = alive
        ? `its record expired, but its datastore heartbeat (${file}) still changes: it is cut off from the store (partitioned or isolated), not dead`
        : rec.partitioned
          ? `its record expired and then its datastore heartbeat (${file}) stopped too (${v?.state ?? 'missing'}): the host or its agent died, or it lost the datastore as well`
          : rec.reason;
      const next: LostHost = { ...rec, reason, partitioned: want, manager: this.id, token };
      try {
        await this.#store.put(KEYS.lostHost(h), next as unknown as JsonValue);
      } catch (err) {
        this.#warn(`recording the partition of ${h}: ${(err as Error).message}`);
      }
      inv.lostHosts.set(h, next);
      if (alive && !rec.partitioned) {
        await this.#event({
          kind: 'host-partitioned',
          host: h,
          message: `host ${h} is cut off from the store, not dead: its records expired, but its datastore heartbeat ${file} still changes (seq ${v.beat!.seq}, ${Math.round(v.sinceChangeMs ?? 0)} ms ago by this manager's clock)${want!.halves.length > 0 ? `; it runs ${want!.halves.join(' ')}, which are not restarted elsewhere (nor fenced) while it does` : '; it runs no VM half'}`,
        });
      } else if (!alive && rec.partitioned) {
        await this.#event({ kind: 'host-heartbeat-lost', host: h, message: `host ${h} was cut off from the store; now its datastore heartbeat ${file} has stopped too (${v?.state ?? 'missing'}): it is treated as dead, and what it ran is restarted` });
      }
    }
  }

  // ---- lost hosts -----------------------------------------------------------------------------------

  /**
   * A host live at the last pass and gone now is recorded (`lost-hosts/<host>`: why, and what it ran),
   * for `cluster status`; the record goes when the host is back. Its agent says when it leaves on purpose
   * (a `host-leaving` event); otherwise its record expired.
   */
  async #noteLostHosts(inv: Inventory, token: number, now: number): Promise<void> {
    // A dead agent's instance records expire before its host record: what it ran is what was seen
    // there within a host TTL before it went.
    const recent = HOST_TTL_MS + 2_000;
    const live = new Map<string, { startedAt: number; halves: Map<string, number> }>();
    for (const h of inv.hosts.values()) {
      const before = this.#lastLive.get(h.id);
      const halves = new Map(before !== undefined && before.startedAt === h.startedAt ? [...before.halves].filter(([, t]) => now - t <= recent) : []);
      live.set(h.id, { startedAt: h.startedAt, halves });
    }
    for (const [vm, rs] of inv.instances) for (const r of rs) live.get(r.host)?.halves.set(`${vm}(${r.role === 'primary' ? 'P' : 'S'})`, now);
    for (const [h, last] of this.#lastLive) {
      if (live.has(h)) continue;
      const was = { startedAt: last.startedAt, halves: [...last.halves.keys()].sort() };
      const left = inv.events.some((e) => e.kind === 'host-leaving' && e.host === h && e.t >= was.startedAt);
      const suspect = this.#suspect.get(h)?.why;
      const reason = left
        ? 'its agent stopped and left the cluster'
        : `its record expired: the agent stopped renewing it (the host or its agent died, or it is cut off from the store)${suspect !== undefined ? `; before that it was closed: ${suspect}` : ''}`;
      const rec: LostHost = { host: h, since: now, reason, halves: was.halves, manager: this.id, token };
      try {
        await this.#store.put(KEYS.lostHost(h), rec as unknown as JsonValue);
      } catch (err) {
        this.#warn(`recording the loss of ${h}: ${(err as Error).message}`);
      }
      inv.lostHosts.set(h, rec);
      await this.#event({ kind: 'host-lost', host: h, message: `host ${h} is gone: ${reason}${was.halves.length > 0 ? `; it ran ${was.halves.join(' ')}` : ''}` });
    }
    for (const h of live.keys()) {
      if (!inv.lostHosts.has(h)) continue;
      inv.lostHosts.delete(h);
      await this.#store.delete(KEYS.lostHost(h)).catch((err: unknown) => this.#warn(`forgetting the loss of ${h}: ${(err as Error).message}`));
      await this.#event({ kind: 'host-back', host: h, message: `host ${h} is live again` });
    }
    this.#lastLive = live;
  }

  // ---- VM monitoring --------------------------------------------------------------------------------

  /**
   * VM monitoring: a running VM whose heartbeat (or, in `progress` mode, instret; in `watchdog` mode, its guest's watchdog pets) has not moved for the
   * failure interval is reset — stopped, then restarted from its disk as HA restarts a VM — unless the
   * reset limit is reached.
   */
  async #monitor(inv: Inventory, views: PairView[], busy: Set<string>, now: number): Promise<Action[]> {
    const settings = inv.ha.vmMonitoring;
    const out: Action[] = [];
    const watched = new Set<string>();
    if (settings.mode !== 'off') {
      for (const v of views) {
        const p = v.primary;
        if (v.desired === undefined || p === undefined || p.state !== 'running') continue;
        watched.add(v.vm);
        this.#progress.observe(v.vm, p.incarnation, p.progress, now);
        const stall = busy.has(v.vm) ? undefined : this.#progress.stall(v.vm, settings, now);
        if (stall === undefined) continue;
        const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
        const what =
          stall.what === 'heartbeat'
            ? `no heartbeat from its VM process for ${secs(stall.forMs)}`
            : stall.what === 'progress'
              ? `its instructions retired have not advanced for ${secs(stall.forMs)} (stuck at ${stall.instret ?? '?'})`
              : `its guest has not pet its watchdog for ${secs(stall.forMs)} (${stall.watchdog ?? '?'} pets, instret ${stall.instret ?? '?'})`;
        const { allowed, recent } = resetAllowed(inv.monitoring.get(v.vm)?.resets ?? [], settings, now);
        if (!allowed) {
          await this.#say(`monitor:${v.vm}`, {
            kind: 'monitor-limit',
            vm: v.vm,
            host: p.host,
            message: `${v.vm} on ${p.host} makes no progress (${what}), but VM monitoring reset it ${recent.length} time(s) in the last ${secs(settings.resetWindowMs)}: not reset again`,
          });
          continue;
        }
        this.#said.delete(`monitor:${v.vm}`);
        out.push(this.#action(v.vm, () => this.#reset(inv, v, what, recent)));
      }
    }
    this.#progress.retain(watched);
    return out;
  }

  /** Reset a VM for VM monitoring: record it, stop its halves (secondary first); the VM pass restarts it. */
  async #reset(inv: Inventory, v: PairView, what: string, recent: number[]): Promise<void> {
    const token = this.#acting;
    if (token === null || v.primary === undefined) return;
    const p = v.primary;
    const max = inv.ha.vmMonitoring.maxResets;
    const rec: MonitorRecord = { vm: v.vm, resets: [...recent, Date.now()].slice(-Math.max(1, max)), reason: what, host: p.host, manager: this.id, token };
    try {
      await this.#store.put(KEYS.monitoring(v.vm), rec as unknown as JsonValue);
    } catch (err) {
      this.#warn(`recording the reset of ${v.vm}: ${(err as Error).message}`);
    }
    await this.#event({ kind: 'monitor-reset', action: true, vm: v.vm, host: p.host, message: `VM monitoring resets ${v.vm} on ${p.host} (${recent.length + 1} of at most ${max} in the window): ${what}; it is stopped and restarted from its disk` });
    this.#progress.forget(v.vm);
    this.#stoppedHere.set(v.vm, Date.now());
    // The secondary first: it replays the same guest, and must not go live in its place.
    if (v.secondary !== undefined) await this.#call(inv, v.secondary.host, (c) => c.stop(v.vm));
    await this.#call(inv, p.host, (c) => c.stop(v.vm));
  }

  // ---- maintenance ----------------------------------------------------------------------------------

  /** Turn maintenance requests into the manager's records (fenced), and `entering` into `in` once drained. */
  async #syncMaintenance(inv: Inventory, token: number): Promise<void> {
    const hosts = new Set([...inv.requests.keys(), ...inv.maintenance.keys()]);
    for (const h of hosts) {
      const want = inv.requests.get(h)?.on === true;
      const cur = inv.maintenance.get(h);
      if (cur !== undefined && cur.state.token > token) return this.#depose(`maintenance/${h} was written with a newer token ${cur.state.token}`);
      let next: MaintenanceState['state'] | undefined;
      if (want && (cur === undefined || !cur.state.on)) next = 'entering';
      else if (!want && cur !== undefined && cur.state.on) next = 'off';
      else if (want && cur?.state.state === 'entering' && ![...inv.instances.values()].some((rs) => rs.some((r) => r.host === h))) next = 'in';
      if (next === undefined) continue;
      const value: MaintenanceState = { on: next !== 'off', state: next, since: Date.now(), manager: this.id, token };
      const ok = await this.#store.compareAndSet(KEYS.maintenance(h), cur?.revision ?? null, value as unknown as JsonValue);
      if (!ok) continue; // changed meanwhile: the next pass sees it
      inv.maintenance.set(h, { state: value, revision: -1 });
      const message =
        next === 'entering'
          ? `host ${h} is entering maintenance mode: moving its secondaries off, then live-migrating its primaries`
          : next === 'in'
            ? `host ${h} is in maintenance mode: no VM instance is left on it`
            : `host ${h} left maintenance mode`;
      await this.#event({ kind: `maintenance-${next}`, host: h, message });
    }
  }

  /** Actions that empty host `h`: its secondaries leave first, then its primaries switch to their secondaries. */
  async #drain(h: string, inv: Inventory, views: PairView[], snap: ClusterSnapshot, busy: Set<string>, cooling: (vm: string) => boolean): Promise<Action[]> {
    const out: Action[] = [];
    if (!inv.hosts.has(h)) return out;
    let plan;
    try {
      plan = new Placement(snap).evacuate(h);
    } catch (err) {
      await this.#sayOnceHeld(`evacuate:${h}`, { kind: 'maintenance-blocked', host: h, message: `cannot plan the evacuation of ${h}: ${(err as Error).message}` });
      return out;
    }
    for (const b of plan.blocked) await this.#sayOnceHeld(`blocked:${h}:${b.vm}:${b.role}`, { kind: 'maintenance-blocked', host: h, vm: b.vm, message: `the ${b.role} of ${b.vm} cannot leave ${h}: ${b.reason}` });
    // VMs without FT are live-migrated where the plan says, beside everything else (they depend on
    // nothing else on the host); one that is not running yet (starting, migrating) waits.
    for (const v of views) {
      if (v.desired?.ft !== false || v.primary?.host !== h || busy.has(v.vm) || cooling(v.vm) || v.status !== 'running' || v.others.length > 0) continue;
      const mv = plan.steps.find((s) => s.move.vm === v.vm)?.move;
      if (mv?.kind !== 'migrate' || mv.from !== h) continue;
      out.push(
        this.#action(v.vm, () =>
          this.#migratePrimary(inv, v.vm, h, mv.to, v, `maintenance of ${h}: live migration of ${v.vm} (FT off) to ${mv.to}, without a restart`, () =>
            this.#event({ kind: 'maintenance-blocked', vm: v.vm, host: h, message: `the VM ${v.vm} (FT off) cannot leave ${h}: it cannot be armed for a live migration (no operations API, or not running); tried again` }),
          ),
        ),
      );
    }
    // Secondaries first: stopping one leaves its primary alone, and the VM pass places a new one elsewhere
    // (this host takes nothing new while in maintenance).
    const secondariesHere = views.filter((v) => v.secondary?.host === h);
    for (const v of secondariesHere) {
      if (busy.has(v.vm) || cooling(v.vm)) continue;
      if (v.others.some((o) => o.role === 'secondary' && o.host !== h)) continue; // being moved off already
      const blockedHalf = plan.blocked.some((b) => b.vm === v.vm && b.role === 'secondary');
      if (blockedHalf && v.protected) continue; // nowhere to go: keep the VM protected where it is
      const planned = plan.steps.find((s) => s.move.vm === v.vm && s.move.kind === 'move-secondary' && s.move.from === h)?.move;
      const to = planned?.kind === 'move-secondary' ? planned.to : undefined;
      out.push(
        this.#action(v.vm, () =>
          this.#moveSecondary(inv, v.vm, h, to, to !== undefined ? `maintenance of ${h}: moving the secondary of ${v.vm} to ${to}` : `maintenance of ${h}: stopping the secondary of ${v.vm} there; a new one is placed elsewhere`, v),
        ),
      );
    }
    if (secondariesHere.length > 0) return out;
    for (const v of views) {
      if (v.primary?.host !== h || busy.has(v.vm) || cooling(v.vm) || !v.protected) continue; // an unprotected one first gets a secondary elsewhere
      const step = plan.steps.find((s) => s.move.vm === v.vm);
      if (step === undefined) continue;
      const mv = step.move;
      if (mv.kind === 'switch-primary' && mv.from === h && mv.newPrimaryHost === v.secondary!.host) {
        // Live migration to the host planned for the new secondary: the secondary stays where it is and
        // follows the migrated primary, so the VM is never unprotected. A primary that cannot be armed
        // for it is NOT switched to its secondary (that would leave the VM unprotected until a new
        // secondary is cloned — vSphere's maintenance mode never drops FT protection on its own): the
        // drain waits, says why, and tries again; the operator decides (docs/cluster.md).
        out.push(
          this.#action(v.vm, () =>
            this.#migratePrimary(inv, v.vm, h, mv.newSecondaryHost, v, `maintenance of ${h}: live migration of the primary of ${v.vm} to ${mv.newSecondaryHost}; its secondary on ${v.secondary!.host} follows without a protection gap`, (why) =>
              this.#drainWaits(h, v.vm, why),
            ),
          ),
        );
      } else if (mv.kind === 'move-secondary' && mv.from === v.secondary!.host) {
        // A relay: the secondary's host cannot take the primary role; move the secondary first.
        out.push(
          this.#action(v.vm, () =>
            this.#moveSecondary(inv, v.vm, mv.from, mv.to, `maintenance of ${h}: moving the secondary of ${v.vm} from ${mv.from} to ${mv.to} first, so that the primary can switch there: ${step.message}`, v),
          ),
        );
      }
    }
    return out;
  }

  // ---- operator migrations (`lockstep cluster migrate`) ----------------------------------------------

  /**
   * Carry out or refuse each `requests/migrate/<vm>`: checked on this pass's snapshot (checkMigration),
   * then a primary is live-migrated with its secondary following, a secondary moved by a gap-free move;
   * refused with a `migrate-refused` event naming the reason. The request is deleted either way. A VM
   * with an operation under way waits for it to end.
   */
  async #migrations(inv: Inventory, views: PairView[], snap: ClusterSnapshot, busy: Set<string>, cooling: (vm: string) => boolean): Promise<Action[]> {
    const out: Action[] = [];
    for (const req of inv.migrateRequests.values()) {
      if (busy.has(req.vm) || cooling(req.vm)) continue;
      const v = views.find((x) => x.vm === req.vm);
      if (v !== undefined && v.others.length > 0) continue; // a move or hand-over still ending
      const check = checkMigration(views, snap, req);
      try {
        await this.#store.delete(KEYS.migrateRequest(req.vm));
      } catch (err) {
        this.#warn(`migrate request of ${req.vm}: ${(err as Error).message}`);
        continue;
      }
      const asked = `cluster migrate${req.role === 'secondary' ? ' --secondary' : ''} ${req.vm}${req.to !== undefined ? ` --to ${req.to}` : ''}`;
      if (!check.ok) {
        await this.#event({ kind: 'migrate-refused', vm: req.vm, ...(req.to !== undefined ? { host: req.to } : {}), message: `${asked} refused (${check.code}): ${check.reason}` });
        continue;
      }
      const message = `requested (${asked}): ${check.message}`;
      if (v?.desired?.ft === false) {
        out.push(
          this.#action(req.vm, () =>
            this.#migratePrimary(inv, req.vm, check.from, check.to, v, `${message}; live migration without a restart (FT off)`, () =>
              this.#event({ kind: 'migrate-refused', vm: req.vm, host: check.from, message: `${asked} failed: ${req.vm} on ${check.from} cannot be armed for a live migration (no operations API, or not running); nothing was changed` }),
            ),
          ),
        );
      } else if (check.role === 'secondary') {
        out.push(this.#action(req.vm, () => this.#moveSecondary(inv, req.vm, check.from, check.to, message, v)));
      } else {
        out.push(
          this.#action(req.vm, () =>
            this.#migratePrimary(inv, req.vm, check.from, check.to, v!, `${message}; its secondary follows without a protection gap`, () =>
              this.#event({ kind: 'migrate-refused', vm: req.vm, host: check.from, message: `${asked} failed: the primary of ${req.vm} on ${check.from} cannot be armed for a live migration (no operations API, or not running); nothing was changed` }),
            ),
          ),
        );
      }
    }
    return out;
  }

  // ---- FT operations (`lockstep cluster ft`) -----------------------------------------------------------

  /**
   * Carry out or refuse each `requests/ft/<vm>` on the VM's primary through its agent: test failover
   * (only when protected), restart secondary, suspend or resume FT. The request is deleted either way; a
   * VM with an operation under way waits for it to end. What follows is the manager's usual work: after
   * a test failover the new primary runs alone and gets a new secondary; a suspended one gets none.
   */
  async #ftOperations(inv: Inventory, views: PairView[], busy: Set<string>): Promise<Action[]> {
    const out: Action[] = [];
    for (const req of inv.ftRequests.values()) {
      if (busy.has(req.vm)) continue;
      const v = views.find((x) => x.vm === req.vm);
      if (v !== undefined && v.others.length > 0) continue; // a move or hand-over still ending
      try {
        await this.#store.delete(KEYS.ftRequest(req.vm));
      } catch (err) {
        this.#warn(`ft request of ${req.vm}: ${(err as Error).message}`);
        continue;
      }
      const asked = `cluster ft ${req.vm} ${req.operation}`;
      const why = ftOperationRefusal(req.operation, v);
      if (why !== undefined) {
        await this.#event({ kind: 'ft-operation-refused', vm: req.vm, ...(v?.primary ? { host: v.primary.host } : {}), message: `${asked} refused: ${why}` });
        continue;
      }
      const p = v!.primary!;
      out.push(
        this.#action(req.vm, async () => {
          await this.#event({ kind: 'ft-operation', action: true, vm: req.vm, host: p.host, message: `${asked}: asking the primary on ${p.host}` });
          const done = await this.#call(
            inv,
            p.host,
            (c): Promise<unknown> => {
              switch (req.operation) {
                case 'test-failover':
                  return c.failover(req.vm);
                case 'restart-secondary':
                  return c.restartSecondary(req.vm);
                case 'suspend':
                  return c.suspendFt(req.vm);
                case 'resume':
                  return c.resumeFt(req.vm);
              }
            },
            (err) => this.#event({ kind: 'ft-operation-refused', vm: req.vm, host: p.host, message: `${asked} failed: ${err.message}` }),
          );
          if (done !== undefined) await this.#event({ kind: 'ft-operation-done', vm: req.vm, host: p.host, message: `${asked}: done by the primary on ${p.host}` });
        }),
      );
    }
    return out;
  }

  // ---- defragmentation ------------------------------------------------------------------------------

  /**
   * A VM found unplaceable this pass only for want of room: `Placement.defragment()` plans moves of
   * other VMs' halves that make room; in integrated mode with automatic automation the first is applied
   * (one at a time: the next pass plans again, and places the VM once it fits), as a gap-free move — an
   * FT primary live-migrated with its secondary following, an FT secondary moved. A plan that would move
   * a VM without FT (no live migration of those in the cluster) or an unprotected one is only reported;
   * so is any plan under manual automation.
   */
  async #defragment(inv: Inventory, views: PairView[], snap: ClusterSnapshot, busy: Set<string>, cooling: (vm: string) => boolean): Promise<Action | undefined> {
    // One operation of the kind at a time, cluster-wide: each move changes what the next one should be.
    const last = this.#defragging;
    if (last !== undefined && (this.#inflight.has(last) || this.#cooldown.has(last))) return undefined;
    for (const vm of [...this.#roomless].sort()) {
      let d;
      try {
        d = new Placement(snap).defragment(vm);
      } catch (err) {
        this.#warn(`defragment ${vm}: ${(err as Error).message}`);
        continue;
      }
      if (d.kind !== 'defrag') continue; // the unplaceable event says why
      // Every VM moved must be movable without a gap: an FT VM protected, a VM without FT running.
      const movable = (w: PairView | undefined) => w?.desired !== undefined && (w.desired.ft ? w.protected : w.status === 'running' && w.others.length === 0);
      const blocker = d.moves.map((m) => views.find((x) => x.vm === m.vm)).find((w) => !movable(w));
      if (blocker !== undefined || this.mode !== 'integrated') {
        const why =
          this.mode !== 'integrated'
            ? 'legacy mode moves no FT VM'
            : blocker?.desired?.ft === false
              ? `${blocker.vm} (FT off) is not running now (${blocker.text})`
              : `${blocker?.vm ?? '?'} is not protected, and would be left unprotected by the move`;
        await this.#say(`defrag:${vm}`, { kind: 'defrag-skipped', vm, message: `${vm} (or its new secondary) cannot be placed for want of room; defragmentation: ${d.message}, but not applied: ${why}` });
        continue;
      }
      if (this.automation !== 'automatic') {
        await this.#say(`defrag:${vm}`, { kind: 'recommendation', vm, message: `${vm} (or its new secondary) cannot be placed for want of room; defragmentation: ${d.message} (automation manual: not applied)` });
        continue;
      }
      const m = d.moves[0]!;
      const w = views.find((x) => x.vm === m.vm)!;
      if (busy.has(m.vm) || cooling(m.vm) || w.others.length > 0) return undefined;
      const how =
        m.kind !== 'migrate'
          ? `the secondary of ${m.vm} ${m.from} → ${m.to}`
          : w.desired?.ft === false
            ? `live migration of ${m.vm} (FT off) ${m.from} → ${m.to}, without a restart`
            : `live migration of the primary of ${m.vm} ${m.from} → ${m.to} (its secondary follows without a protection gap)`;
      const message = `defragmentation for ${vm}, ${d.placement.secondaryHost !== undefined && views.find((x) => x.vm === vm)?.primary !== undefined ? 'whose new secondary' : 'which'} no host can take for want of room: ${d.message}; move 1 of ${d.moves.length}: ${how}`;
      this.#said.delete(`defrag:${vm}`);
      this.#defragging = m.vm;
      if (m.kind === 'move-secondary') return this.#action(m.vm, () => this.#moveSecondary(inv, m.vm, m.from, m.to, message, w));
      return this.#action(m.vm, () =>
        this.#migratePrimary(inv, m.vm, m.from, m.to, w, message, () =>
          this.#event({ kind: 'defrag-skipped', vm, message: `${message}: not applied, the primary of ${m.vm} on ${m.from} cannot be armed for a live migration` }),
        ),
      );
    }
    return undefined;
  }

  // ---- balancing ------------------------------------------------------------------------------------

  /** Load-balancing recommendations: recorded; in integrated mode with automatic automation, the first applied. */
  async #balance(inv: Inventory, views: PairView[], snap: ClusterSnapshot, now: number): Promise<Action | undefined> {
    // `lockstep cluster apply`: apply the next recommendations whatever the automation, without waiting.
    const req = inv.applyRequest !== null && inv.applyRequest.moves > 0 ? inv.applyRequest : undefined;
    if (req === undefined && now - this.#lastBalance < this.#o.balanceIntervalMs) return undefined;
    // Only a settled cluster is balanced: every desired FT VM protected, every other VM running.
    if (views.some((v) => v.desired !== undefined && (v.desired.ft ? v.status !== 'protected' : v.primary?.state !== 'running'))) return undefined;
    if (views.some((v) => v.others.length > 0)) return undefined;
    this.#lastBalance = now;
    let r;
    try {
      r = new Placement(snap).balance({ maxMoves: 8 });
    } catch (err) {
      this.#warn(`balance: ${(err as Error).message}`);
      return undefined;
    }
    // FT VMs the balancer may not move in legacy mode (vSphere: "disabled" for DRS without EVC): said
    // whenever the set or the hosts considered change, so an operator sees why they stay put.
    const disabled = r.frozen.filter((f) => f.reason === 'legacy-disabled');
    if (disabled.length > 0) {
      await this.#say('balance-disabled', {
        kind: 'balance-disabled',
        message: `load balancing over ${snap.hosts.length} host(s) leaves ${disabled.length} FT VM(s) where they are: ${disabled.map((f) => f.message).join(' | ')}`,
      });
    } else {
      this.#said.delete('balance-disabled');
    }
    const first = r.recommendations[0];
    if (first === undefined) {
      this.#said.delete('balance');
      if (req !== undefined) await this.#applied(0, 'apply requested: the balancer has no recommendation, nothing to apply');
      return undefined;
    }
    const apply = (this.mode === 'integrated' && this.automation === 'automatic') || req !== undefined;
    await this.#say('balance', {
      kind: 'recommendation',
      message: `${r.recommendations.length} load-balancing recommendation(s)${apply ? `; applying the first${req !== undefined ? ' (cluster apply)' : ''}` : ' (automation manual: not applied; lockstep cluster apply applies it)'}: ${r.recommendations.map((x) => x.message).join(' | ')}`,
    });
    if (!apply) return undefined;
    const mv = first.move;
    const v = views.find((x) => x.vm === mv.vm);
    if (v === undefined) return undefined;
    this.#said.delete('balance');
    const why = req !== undefined ? 'applied on request (cluster apply)' : 'balancing';
    if (mv.kind === 'move-secondary' && v.secondary?.host === mv.from) {
      if (req !== undefined) await this.#applied(req.moves - 1, `apply requested: applying ${first.message}`);
      return this.#action(v.vm, () => this.#moveSecondary(inv, v.vm, mv.from, mv.to, `${why}: ${first.message}`, v));
    }
    if (mv.kind === 'switch-primary' && v.primary?.host === mv.from && v.secondary?.host === mv.newPrimaryHost) {
      // The balancer models a primary's move as a switch (the secondary goes live, a new one is cloned):
      // a protection gap. It is carried out as a live migration instead, with the secondary following.
      const target = this.#primaryTarget(snap, v.vm, mv.newSecondaryHost, first.reason.code === 'fix-hard-rule');
      if (target.ok) {
        if (req !== undefined) await this.#applied(req.moves - 1, `apply requested: applying ${first.message}`);
        const message = `${why}: ${first.message}; carried out as a live migration of the primary to ${target.to} (its secondary on ${mv.newPrimaryHost} follows without a protection gap)${target.to !== mv.newSecondaryHost ? `: ${target.note}` : ''}`;
        return this.#action(v.vm, () =>
          this.#migratePrimary(inv, v.vm, mv.from, target.to, v, message, () =>
            this.#event({ kind: 'recommendation-skipped', vm: v.vm, host: mv.from, message: `not applied: ${first.message} (the primary of ${v.vm} on ${mv.from} cannot be armed for a live migration, and a switch would leave it unprotected)` }),
          ),
        );
      }
      await this.#say(`balance-skip:${mv.vm}`, { kind: 'recommendation-skipped', vm: mv.vm, message: `not applied: ${first.message} (${target.why}; a switch would leave it unprotected)` });
      if (req !== undefined) await this.#applied(0, `apply requested: the next recommendation cannot be applied without a protection gap (${target.why}); request dropped`);
      return undefined;
    }
    const nonFt = v.desired !== undefined && !v.desired.ft;
    if (nonFt && mv.kind === 'migrate' && v.primary?.host === mv.from && v.status === 'running') {
      // A VM without FT: live-migrated, no restart.
      if (req !== undefined) await this.#applied(req.moves - 1, `apply requested: applying ${first.message}`);
      return this.#action(v.vm, () =>
        this.#migratePrimary(inv, v.vm, mv.from, mv.to, v, `${why}: ${first.message}; live migration without a restart (FT off)`, () =>
          this.#event({ kind: 'recommendation-skipped', vm: v.vm, host: mv.from, message: `not applied: ${first.message} (${v.vm} on ${mv.from} cannot be armed for a live migration)` }),
        ),
      );
    }
    const cannot = nonFt ? `a ${mv.kind} of a VM without FT that is not running now (${v.text})` : `a ${mv.kind} of a VM without a secondary, which would leave it unprotected`;
    await this.#say(`balance-skip:${mv.vm}`, { kind: 'recommendation-skipped', vm: mv.vm, message: `not applied: ${first.message} (${cannot})` });
    if (req !== undefined) await this.#applied(0, `apply requested: the next recommendation cannot be applied (${mv.kind} of ${mv.vm}: ${cannot}); request dropped`);
    return undefined;
  }

  /**
   * Where the primary of `vm` live-migrates to carry out a balancing switch whose new secondary was
   * planned on `planned`: there when the primary may run there (VM-VM rules bind primaries, so a host
   * valid for the secondary need not be), else — for a repair of a broken hard rule, where any valid
   * host repairs it — the best other valid host. Checked by the placement engine on the current snapshot.
   */
  #primaryTarget(snap: ClusterSnapshot, vm: string, planned: string, repair: boolean): { ok: true; to: string; note: string } | { ok: false; why: string } {
    const p = new Placement(snap);
    const there = p.migrate(vm, 'primary', planned);
    if (there.kind === 'half-migration') return { ok: true, to: there.to, note: '' };
    if (!repair) return { ok: false, why: there.reason };
    const any = p.migrate(vm, 'primary');
    if (any.kind === 'half-migration') return { ok: true, to: any.to, note: `${there.reason}; ${any.to} is valid` };
    return { ok: false, why: `${there.reason}; ${any.reason}` };
  }

  /** A `cluster apply` request was served once: `left` more to go (0: the request is deleted). */
  async #applied(left: number, message: string): Promise<void> {
    try {
      if (left > 0) await this.#store.put(KEYS.applyRequest, { moves: left, at: Date.now(), by: this.id } as unknown as JsonValue);
      else await this.#store.delete(KEYS.applyRequest);
    } catch (err) {
      this.#warn(`apply request: ${(err as Error).message}`);
    }
    await this.#event({ kind: 'apply', message: `${message}${left > 0 ? `; ${left} more to apply` : ''}` });
  }
}
