// The host agent (`lockstep agent`): registers its host in the cluster store, runs VM halves as child
// processes of the CLI, publishes each one's state, and serves the authenticated control API. It makes
// no placement decision of its own: it does what the (fenced) manager asks.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, resolve } from 'node:path';
import { ConfigError, ftKeyFileBytes, parseHostPort, readFtKey, validateConfig } from '../../config/index.js';
import { ControlUnreachableError, callControl } from '../../ft/control-client.js';
import { createLimitedServer, type TlsIdentity } from '../../observability/http-server.js';
import { OptionError } from '../../errors.js';
import type { ClusterStore, JsonValue } from '../store/store.js';
import { DEFAULT_MAX_FT_VCPUS, DEFAULT_MAX_FT_VMS, type HostCapacity } from '../placement/index.js';
import {
  HOST_ID,
  HOST_TTL_MS,
  INSTANCE_TTL_MS,
  KEYS,
  defaultCompatId,
  packageVersion,
  type HostRecord,
} from '../manager/layout.js';
import { API_PREFIX, AgentClient, FENCE_HEADER, MANAGER_HEADER, type AgentApiCode, type HostInfo, type StartRequest } from './client.js';
import { CLUSTER_CHANNELS } from '../manager/diagnostics.js';
import { EventWriter } from '../manager/events.js';
import { RecordPublisher } from './publisher.js';
import { VmProcess, spawnStandby, type InstanceView } from './vm-process.js';
import { cliEntry } from './cli-process.js';
import { DEFAULT_HEARTBEAT_MS, HeartbeatWriter, type PoweredOffHalf } from '../datastore/heartbeat.js';

/** Options of {@link Agent.start}. */
export interface AgentOptions {
  /** The host's id (`[A-Za-z0-9][A-Za-z0-9._-]{0,63}`). */
  id: string;
  store: ClusterStore;
  /** The bearer token of the control API (at least 16 characters). */
  token: string;
  /** Where the API listens (default 127.0.0.1, port 0: any). */
  listen?: { host: string; port: number };
  /**
   * Address FT logging channels listen on and the API is advertised at (default: the API's listen
   * host; required when that is a wildcard such as 0.0.0.0, which nobody can connect to).
   */
  ftHost?: string;
  /** Working directory: VM configurations are written under `<dir>/vms/<vm>/`. */
  dir: string;
  capacity: HostCapacity;
  /** FT VMs (halves) this host takes at most (default 4; 0: no limit, as vSphere's das.maxftvmsperhost). */
  maxFtVms?: number;
  /** vCPUs of FT VMs (halves) this host takes at most (default 8; 0: no limit). */
  maxFtVcpus?: number;
  groups?: string[];
  /** FT compatibility id (default {@link defaultCompatId}). */
  compatId?: string;
  /** How to run the CLI (default: this node and the built `dist/cli/main.js`). */
  command?: string[];
  /** TTLs of the host and instance records, ms (defaults 8000 and 5000; instances must expire first). */
  hostTtlMs?: number;
  instanceTtlMs?: number;
  /** How long a stopped half gets between SIGTERM and SIGKILL, ms (default 5000). */
  stopGraceMs?: number;
  /**
   * What happens to a VM without FT when this host is cut off from the store (vSphere HA's host
   * isolation response). `power-off` (default): it is killed before its record can expire, so the
   * manager's restart elsewhere never runs beside it. `leave-powered-on`: it keeps running, and a restart
   * elsewhere runs a second copy on the same disk — only for VMs that can bear that. FT halves are left
   * alone either way: their arbiter decides which one serves.
   */
  isolationResponse?: IsolationResponse;
  /**
   * Serve the API over HTTPS with this certificate and key (PEM) — it then carries the token and the
   * keys made for live migrations encrypted. The certificate must name the address the API is reached
   * at (`url`: the listen host, or `ftHost` for a wildcard) as a DNS name or IP address.
   */
  tls?: TlsIdentity;
  /** Certificate authorities (PEM) that sign the other agents' certificates, for the isolation probes (default: the system's). */
  tlsCa?: string | Buffer;
  /**
   * Keep one `lockstep standby` process ready (Node, lockstep and the addon loaded), which the next VM
   * half started here becomes instead of a process started then (default true): a re-protection, an HA
   * restart or a migration's target does not wait for a process to start on a loaded host.
   */
  standby?: boolean;
  /**
   * A directory every host reaches (where the VMs' disks live): the agent rewrites
   * `<datastore>/lockstep-heartbeats/<id>.json` every `datastoreHeartbeatMs` with a rising sequence
   * number and the VM halves it runs, also while it is cut off from the store, so that a manager given
   * the same directory tells a host cut off from the store from a dead one (vSphere HA's datastore
   * heartbeats). Default: none.
   */
  datastore?: string;
  /** How often the datastore heartbeat is rewritten, ms (default 1000; keep it under a third of the manager's window). */
  datastoreHeartbeatMs?: number;
}

/** See {@link AgentOptions.isolationResponse}. */
export type IsolationResponse = 'power-off' | 'leave-powered-on';
/**
 * A VM without FT is powered off this long before its record's lease could run out unrenewed, ms: the
 * manager restarts it only after the record is gone and its restart grace (2 s) passed, so the copy here
 * is dead at least 3 s before another starts, even with this process late by as much.
 */
export const ISOLATION_MARGIN_MS = 1_000;
/** A standby process that exited unused is replaced after this long, ms. */
const STANDBY_RETRY_MS = 5_000;
/** How long a started half may take to be ready before the next standby starts anyway, ms. */
const START_READY_MS = 60_000;
/**
 * How long the other hosts get to answer whether they reach the store, ms: an HTTP round trip and a
 * read of the store on their side (GET /v1/host). 700 ms was often not enough beside stress-ng (peers
 * took 930 and 1 720 ms to say the store was down), and a peer that does not answer counts as none
 * answering. The probe starts this long plus the margin before the record could expire: with a 5 s TTL
 * renewed every 1.7 s, once a renewal is 0.3 s late (a probe that finds the store itself ends at once).
 */
const PEER_PROBE_MS = 2_000;

/** The agent's events (for `lockstep agent --events` and embedders). */
export interface AgentEvents {
  /** A half was started or ended, or a store write failed. */
  'vm-started': [view: InstanceView];
  'vm-exited': [view: InstanceView];
  /** Something went wrong that the agent survives (a store write failed, say). */
  warning: [message: string];
  /** The store stopped renewing this VM's record: the isolation response was applied (see the option). */
  isolated: [vmId: string, response: IsolationResponse, message: string];
  /** The store stopped renewing a VM without FT's record, and the other hosts said why (each time asked). */
  'cut-off': [vmId: string, why: 'isolated' | 'store-down' | 'alone' | 'store-back'];
  /** A standby process was started (see {@link AgentOptions.standby}). */
  standby: [pid: number];
}

/** Built CLI, from src/cluster/agent (tests) and dist/cluster/agent alike. */
const CLI = cliEntry();
/** Ended instances kept for the API. */
const KEEP_EXITED = 20;
/** Largest request body, bytes. */
const MAX_BODY = 2 << 20;
/** Figures alone are published at most this often, ms. */
const STATS_EVERY_MS = 5_000;

/** An FT cap option: a non-negative integer, 0 meaning no limit. */
function capOption(field: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 0) throw new OptionError(field, `must be a non-negative integer (0: no limit), got ${String(v)}`);
  return v;
}

/** Constant-time comparison of a presented token with the expected one (digests: equal lengths). */
function tokenMatches(presented: string, expected: string): boolean {
  const a = createHash('sha256').update(presented).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/** An API error answer. */
class Refusal extends Error {
  constructor(
    readonly status: number,
    readonly code: AgentApiCode,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A host agent. `Agent.start()` registers the host (`hosts/<id>`, a liveness key) and serves the
 * control API; `close()` stops every half it runs and removes its records.
 *
 * ```ts
 * const agent = await Agent.start({ id: 'h1', store, token, dir: '/var/lib/lockstep', capacity });
 * console.log(agent.url); // http://127.0.0.1:41234
 * ```
 */
/**
 * How long a migrated primary's record waits, after its process ended, for its target's record (see
 * Agent #handedOn), ms. The target publishes its record as it goes live, tens of milliseconds after the
 * hand-over; two seconds cover an agent stalled on a loaded machine without letting a record that says
 * Protected outlive a target that never came by more than that.
 */
export const HAND_ON_MAX_MS = 2_000;

export class Agent extends EventEmitter<AgentEvents> {
  readonly id: string;
  readonly #o: Required<Omit<AgentOptions, 'listen' | 'ftHost' | 'groups' | 'compatId' | 'command' | 'maxFtVms' | 'maxFtVcpus' | 'tls' | 'tlsCa' | 'standby' | 'datastore'>> & {
    standby: boolean;
    tls: TlsIdentity | undefined;
    tlsCa: string | Buffer | undefined;
    datastore: string | undefined;
    groups: string[];
    compatId: string;
    command: string[];
    maxFtVms: number;
    maxFtVcpus: number;
  };
  readonly #server: Server;
  readonly #vms = new Map<string, VmProcess>();
  readonly #publishers = new Map<VmProcess, RecordPublisher>();
  readonly #exited: VmProcess[] = [];
  /** Resolves when an ended half's record is deleted from the store. */
  readonly #gone = new WeakMap<VmProcess, Promise<void>>();
  /** Pair keys of the halves, to sign requests to their operations APIs with (never published). */
  readonly #pairKeys = new WeakMap<VmProcess, Uint8Array>();
  /** The read of the store that GET /v1/host is waiting for, if one is (#reachesStore). */
  #storeProbe: Promise<boolean> | undefined;
  #host!: RecordPublisher;
  #address!: AddressInfo;
  #ftHost = '127.0.0.1';
  #fence = { token: 0, manager: null as string | null };
  /** The other hosts' APIs by id (see #refreshPeers). */
  readonly #peers = new Map<string, string>();
  #peerTimer: NodeJS.Timeout | undefined;
  /** The standby process, ready to become the next VM half (see {@link AgentOptions.standby}). */
  #standby: ChildProcess | undefined;
  #closing = false;
  readonly #startedAt = Date.now();
  /** Starts in flight, by VM (a second start of the same VM is refused until the first settles). */
  readonly #starting = new Set<string>();
  /** The datastore heartbeat (when a datastore is configured). */
  #heartbeat: HeartbeatWriter | undefined;
  /** Halves killed by the isolation response, by VM, until the VM is started here again (in the heartbeat). */
  readonly #poweredOff = new Map<string, PoweredOffHalf>();

  private constructor(o: AgentOptions) {
    super();
    if (typeof o.id !== 'string' || !HOST_ID.test(o.id)) throw new OptionError('id', `${JSON.stringify(o.id)} is not a host id: use 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
    if (typeof o.token !== 'string' || o.token.length < 16) throw new OptionError('token', 'the API token must be at least 16 characters');
    const hostTtlMs = o.hostTtlMs ?? HOST_TTL_MS;
    const instanceTtlMs = o.instanceTtlMs ?? INSTANCE_TTL_MS;
    if (!(instanceTtlMs < hostTtlMs)) throw new OptionError('instanceTtlMs', `must be shorter than hostTtlMs (${hostTtlMs}), so a dead agent's instances vanish before its host`);
    this.id = o.id;
    this.#o = {
      id: o.id,
      store: o.store,
      token: o.token,
      dir: resolve(o.dir),
      capacity: o.capacity,
      maxFtVms: capOption('maxFtVms', o.maxFtVms, DEFAULT_MAX_FT_VMS),
      maxFtVcpus: capOption('maxFtVcpus', o.maxFtVcpus, DEFAULT_MAX_FT_VCPUS),
      groups: [...(o.groups ?? [])],
      compatId: o.compatId ?? defaultCompatId(),
      command: o.command ?? [process.execPath, CLI],
      hostTtlMs,
      instanceTtlMs,
      stopGraceMs: o.stopGraceMs ?? 5_000,
      isolationResponse: o.isolationResponse ?? 'power-off',
      tls: o.tls,
      tlsCa: o.tlsCa,
      standby: o.standby ?? true,
      datastore: o.datastore === undefined ? undefined : resolve(o.datastore),
      datastoreHeartbeatMs: o.datastoreHeartbeatMs ?? DEFAULT_HEARTBEAT_MS,
    };
    if (o.datastore !== undefined && (typeof o.datastore !== 'string' || o.datastore === '')) throw new OptionError('datastore', 'must be a directory path');
    if (!(Number.isFinite(this.#o.datastoreHeartbeatMs) && this.#o.datastoreHeartbeatMs >= 10 && this.#o.datastoreHeartbeatMs <= 60_000)) {
      throw new OptionError('datastoreHeartbeatMs', `must be a number of milliseconds from 10 to 60000, got ${String(o.datastoreHeartbeatMs)}`);
    }
    if (this.#o.isolationResponse !== 'power-off' && this.#o.isolationResponse !== 'leave-powered-on') {
      throw new OptionError('isolationResponse', `must be power-off or leave-powered-on, got ${JSON.stringify(o.isolationResponse)}`);
    }
    // Managers and `lockstep cluster` are few; a cap and deadlines keep parked connections from piling up.
    try {
      this.#server = createLimitedServer((req, res) => void this.#handle(req, res), { maxConnections: 256, requestTimeoutMs: 60_000 }, undefined, o.tls);
    } catch (err) {
      // OpenSSL's reason: a key that does not match the certificate, a damaged PEM, a key too weak.
      throw new OptionError('tls', `the certificate and key cannot serve HTTPS: ${(err as Error).message}`);
    }
  }

  /** Listen, register the host, and serve. */
  static async start(o: AgentOptions): Promise<Agent> {
    const a = new Agent(o);
    await mkdir(join(a.#o.dir, 'vms'), { recursive: true });
    const listen = o.listen ?? { host: '127.0.0.1', port: 0 };
    await new Promise<void>((resolve, reject) => {
      a.#server.once('error', reject);
      a.#server.listen(listen.port, listen.host, () => {
        a.#server.off('error', reject);
        resolve();
      });
    });
    a.#address = a.#server.address() as AddressInfo;
    const wildcard = a.#address.address === '0.0.0.0' || a.#address.address === '::';
    if (wildcard && o.ftHost === undefined) {
      a.#server.close();
      throw new OptionError('ftHost', `the API listens on ${a.#address.address}, which is not an address to connect to: give the host's address (ftHost, --ft-host)`);
    }
    a.#ftHost = o.ftHost ?? a.#address.address;
    a.#host = new RecordPublisher(o.store, KEYS.host(a.id), a.#o.hostTtlMs, (err) => a.#warn(`host record: ${err.message}`));
    a.#host.update(a.hostRecord() as unknown as JsonValue);
    await a.#host.flush();
    if (a.#host.publishedAt === 0) {
      await a.close();
      throw new OptionError('store', `could not register host ${a.id} in the store`);
    }
    if (a.#o.datastore !== undefined) {
      a.#heartbeat = new HeartbeatWriter({
        datastore: a.#o.datastore,
        host: a.id,
        periodMs: a.#o.datastoreHeartbeatMs,
        contents: () => ({
          halves: [...a.#vms.values()].filter((p) => p.running).map((p) => ({ vm: p.vmId, role: p.role })),
          poweredOff: [...a.#poweredOff.values()],
        }),
        onTrouble: (message) => a.#warn(message),
      });
      await a.#heartbeat.start();
    }
    await a.#refreshPeers();
    a.#peerTimer = setInterval(() => void a.#refreshPeers(), 2_000);
    a.#peerTimer.unref();
    a.#refillStandby();
    return a;
  }

  // ---- the standby process (src/cli/standby.ts) ------------------------------------------------------

  /** Starts a standby process unless one is ready (or the agent is closing, or standbys are off). */
  #refillStandby(): void {
    if (!this.#o.standby || this.#closing || this.#standby !== undefined) return;
    const child = spawnStandby(this.#o.command, this.#o.dir);
    this.#standby = child;
    if (child.pid !== undefined) this.emit('standby', child.pid);
    let said = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (said = (said + d).slice(-500)));
    child.once('exit', (code, signal) => {
      if (this.#standby !== child) return; // it became a VM half: VmProcess reports its exit
      this.#standby = undefined;
      if (this.#closing) return;
      this.#warn(`the standby process exited (${signal ?? code})${said.trim() !== '' ? `: ${said.trim()}` : ''}; VM halves start as new processes until another is ready`);
      // Not at once: a standby that cannot start (a broken install) must not spin.
      setTimeout(() => this.#refillStandby(), STANDBY_RETRY_MS).unref();
    });
  }

  /** The standby process, handed to a VM half that starts now; another is started once that one is ready. */
  #takeStandby(): ChildProcess | undefined {
    const child = this.#standby;
    this.#standby = undefined;
    if (child === undefined) return undefined;
    child.stderr!.removeAllListeners('data');
    return child;
  }

  /** The API's URL, `http://host:port` (`https://` with {@link AgentOptions.tls}). */
  get url(): string {
    const wildcard = this.#address.address === '0.0.0.0' || this.#address.address === '::';
    const host = wildcard ? this.#ftHost : this.#address.address;
    const h = host.includes(':') ? `[${host}]` : host;
    return `${this.#o.tls !== undefined ? 'https' : 'http'}://${h}:${this.#address.port}`;
  }

  /** The pid of the standby process ready now, if there is one (see {@link AgentOptions.standby}). */
  get standbyPid(): number | undefined {
    return this.#standby?.pid;
  }

  /** The other hosts this agent knows from the store (asked when it is cut off from the store). */
  get peers(): string[] {
    return [...this.#peers.keys()];
  }

  /** The datastore heartbeat file this agent writes (undefined without a datastore). */
  get heartbeatFile(): string | undefined {
    return this.#heartbeat?.path;
  }

  /** The API's address. */
  get address(): { host: string; port: number } {
    return { host: this.#address.address, port: this.#address.port };
  }

  /** What `hosts/<id>` holds. */
  hostRecord(): HostRecord {
    return {
      id: this.id,
      api: this.url,
      ftHost: this.#ftHost,
      capacity: { ...this.#o.capacity },
      groups: [...this.#o.groups],
      compatId: this.#o.compatId,
      maxFtVms: this.#o.maxFtVms,
      maxFtVcpus: this.#o.maxFtVcpus,
      pid: process.pid,
      startedAt: this.#startedAt,
      version: packageVersion(),
    };
  }

  /** Every instance: running ones, then recently ended ones (newest first). */
  list(): InstanceView[] {
    return [...[...this.#vms.values()].map((p) => p.view()), ...[...this.#exited].reverse().map((p) => p.view())];
  }

  /** Stop every half (SIGTERM, SIGKILL after the grace time), delete the records, stop serving. */
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    clearInterval(this.#peerTimer);
    const standby = this.#standby;
    this.#standby = undefined;
    if (standby !== undefined && standby.exitCode === null && standby.signalCode === null) {
      const gone = new Promise((r) => standby.once('exit', r));
      standby.kill('SIGKILL');
      await gone;
    }
    // Said first, so that the manager can tell a host that left from one that died.
    await new EventWriter(this.#o.store, `agent-${this.id}`)
      .write({ kind: 'host-leaving', host: this.id, message: `the agent of ${this.id} is stopping: its VM halves are stopped and the host leaves the cluster` })
      .catch((err: unknown) => this.#warn(`event log: ${(err as Error).message}`));
    await Promise.all([...this.#vms.values()].map((p) => p.stop(this.#o.stopGraceMs)));
    // Removed: a host that left on purpose is neither partitioned nor dead.
    await this.#heartbeat?.stop();
    await Promise.all([...this.#publishers.values()].map((p) => p.close()));
    await this.#host?.close();
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }

  /**
   * Why the store stopped renewing this host's records: `isolated` when another host reaches it (so the
   * manager can restart our VMs there) or when no other host answers at all (this host is cut off from
   * the network, as vSphere HA's isolation address tells); `store-down` when hosts answer and none
   * reaches it either (nobody can restart anything: the VM stays); `alone` when no other host is known;
   * `store-back` when this host reads the store itself again (it came back, and reached another host
   * first: the records are being written again, the VM stays).
   */
  async #whyCutOff(): Promise<'isolated' | 'store-down' | 'alone' | 'store-back'> {
    const peers = [...this.#peers.values()];
    if (peers.length === 0) return 'alone';
    const end = performance.now() + PEER_PROBE_MS;
    let answered: (boolean | undefined)[] | undefined;
    const asking = Promise.all(
      peers.map((url) =>
        new AgentClient({ url, token: this.#o.token, timeoutMs: PEER_PROBE_MS, ...(this.#o.tlsCa !== undefined ? { ca: this.#o.tlsCa } : {}) })
          .host()
          .then((h) => h.storeReachable)
          .catch(() => undefined),
      ),
    ).then((a) => (answered = a));
    // This host reads the store as well, again while the answers may still say that it is up: a store
    // that comes back after a while down for everyone is read by a peer a moment before this host reads
    // it, and that is no isolation. Bounded as the answers are, so that the VM is off before the margin.
    let here = false;
    while (!here && performance.now() < end && (answered === undefined || answered.some((a) => a === true))) {
      here = await this.#reachesStoreBy(end);
      if (!here) await new Promise((r) => setTimeout(r, Math.max(0, Math.min(100, end - performance.now()))));
    }
    if (here) return 'store-back'; // the answers still on their way are not needed
    const answers = await asking;
    if (answers.some((a) => a === true)) return 'isolated';
    return answers.every((a) => a === undefined) ? 'isolated' : 'store-down';
  }

  /** {@link Agent.#reachesStore}, false if not answered by `end` (performance.now() ms). */
  #reachesStoreBy(end: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), Math.max(0, end - performance.now()));
      void this.#reachesStore().then((ok) => {
        clearTimeout(t);
        resolve(ok);
      });
    });
  }

  /**
   * The other hosts' APIs, from the store's host records. A host whose record went is kept: it may be
   * cut off from the store just like this one, and its answer still tells a dead store from isolation.
   */
  async #refreshPeers(): Promise<void> {
    try {
      for (const e of await this.#o.store.list(KEYS.hostsPrefix)) {
        const r = e.value as unknown as Partial<HostRecord>;
        if (typeof r.id === 'string' && r.id !== this.id && typeof r.api === 'string') this.#peers.set(r.id, r.api);
      }
    } catch {
      // cut off from the store: the last list is what there is
    }
  }

  #warn(message: string): void {
    if (this.listenerCount('warning') > 0) this.emit('warning', message);
  }

  // ---- operations ----------------------------------------------------------------------------------

  async #start(body: unknown): Promise<InstanceView> {
    const req = body as Partial<StartRequest>;
    if (typeof req !== 'object' || req === null) throw new Refusal(400, 'bad-request', 'the body must be a JSON object');
    if (typeof req.vmId !== 'string' || !/^[a-z0-9][a-z0-9._-]{0,62}$/.test(req.vmId)) throw new Refusal(400, 'bad-request', 'vmId: must be a VM id ([a-z0-9][a-z0-9._-]{0,62})');
    if (req.role !== 'primary' && req.role !== 'secondary') throw new Refusal(400, 'bad-request', `role: must be "primary" or "secondary", got ${JSON.stringify(req.role)}`);
    if (req.role === 'secondary' && (typeof req.join !== 'string' || parseHostPort(req.join) === undefined)) throw new Refusal(400, 'bad-request', 'join: a secondary needs the primary\'s logging channel as "host:port"');
    const migrationKey = req.migrationKey === undefined ? undefined : hexKey(req.migrationKey, 'migrationKey');
    const waitMs = req.waitMs ?? 0;
    if (typeof waitMs !== 'number' || !Number.isFinite(waitMs) || waitMs < 0 || waitMs > 120_000) throw new Refusal(400, 'bad-request', 'waitMs: must be a number of milliseconds from 0 to 120000');
    const vmId = req.vmId;
    const dir = join(this.#o.dir, 'vms', vmId);
    let disk: { path: string; mode: 'shared' | 'separate' } | undefined;
    let pairKey: Uint8Array | undefined;
    let solo = false;
    try {
      const cfg = validateConfig(req.config, `${vmId}.json`, dir);
      if (cfg.config.vm.id !== vmId) throw new Refusal(400, 'bad-request', `config: vm.id is "${cfg.config.vm.id}", not "${vmId}"`);
      // A VM without FT runs alone, as a primary with FT off and no arbiter; its only other instance is
      // a live migration's target, started as a secondary with the key made for that migration.
      solo = !cfg.config.ft.enabled;
      if (solo && req.role === 'secondary' && migrationKey === undefined) throw new Refusal(400, 'bad-request', `config: ft.enabled is false: VM ${vmId} has no secondary (only a live migration's target, which needs migrationKey)`);
      if (!solo && migrationKey !== undefined) throw new Refusal(400, 'bad-request', `migrationKey: only for a VM without FT (${vmId} has FT on: its halves use the pair key of its configuration)`);
      disk = cfg.config.vm.devices.disk;
      // The half's operations API takes requests signed with the pair key (src/ft/control-auth.ts). A VM
      // without FT gets a key of its own: made here for each start, or the migration's for a target.
      if (solo) pairKey = migrationKey ?? randomBytes(32);
      else if (cfg.config.ft.key !== undefined) pairKey = await readFtKey(cfg.config.ft.key, `${vmId}.json`);
    } catch (err) {
      if (err instanceof ConfigError) throw new Refusal(400, 'bad-request', `config: ${err.message}`);
      throw err;
    }
    // Cut off from the store, this host could not publish the VM's record: nobody would see it run. Its
    // record is renewed about every third of its TTL, so half a TTL without a renewal may mean cut off —
    // or a renewal late on a loaded host (the store a local directory, the timer 1.3 s late): the store
    // is asked before the start is refused (refusals back the VM's starts off, up to a minute each).
    if (this.#host.deadline - performance.now() < this.#o.hostTtlMs / 2 && !(await this.#reachesStore())) {
      throw new Refusal(503, 'isolated', `host ${this.id} cannot reach the store (its record is not being renewed, and a read failed): it starts nothing until it can`);
    }
    if (this.#vms.has(vmId) || this.#starting.has(vmId)) throw new Refusal(409, 'already-running', `VM ${vmId} already runs on host ${this.id} (as ${this.#vms.get(vmId)?.role ?? 'a half being started'})`);
    this.#starting.add(vmId);
    let p: VmProcess;
    try {
      await mkdir(dir, { recursive: true });
      const configPath = join(dir, 'vm.json');
      await writeFile(configPath, `${JSON.stringify(req.config, null, 2)}\n`, { mode: 0o600 });
      // The key of a VM without FT: in a file only this user reads, named on the command line (never the
      // key itself), deleted once the process has read it (VmProcess).
      let keyFile: string | undefined;
      if (solo) {
        keyFile = join(dir, `key-${randomBytes(6).toString('hex')}`);
        // With its newline: the process reads the file as ft.keyFile, which drops one trailing newline,
        // and a key that ends in 0x0a written raw would be read one byte short (1 start in 256: the
        // agent's signed requests to that VM refused, a migration's target refused by its source).
        await writeFile(keyFile, ftKeyFileBytes(pairKey!), { mode: 0o600, flag: 'wx' });
      }
      // Separate disks: a secondary gets an image of its own in this host's directory (the clone fills it).
      const ownDisk = req.role === 'secondary' && disk?.mode === 'separate' ? await this.#ownImage(dir, disk.path) : undefined;
      const standby = this.#takeStandby();
      p = new VmProcess({
        vmId,
        host: this.id,
        role: req.role,
        configPath,
        ftHost: this.#ftHost,
        command: this.#o.command,
        cwd: dir,
        solo,
        ...(standby !== undefined ? { standby } : {}),
        ...(keyFile !== undefined ? { keyFile } : {}),
        ...(req.join !== undefined ? { join: req.join } : {}),
        ...(ownDisk !== undefined ? { disk: ownDisk } : {}),
      });
      this.#track(p);
      if (pairKey !== undefined) this.#pairKeys.set(p, pairKey);
      // The next standby starts once this half is up (or gone), not beside its start.
      const started = p;
      void started.ready(START_READY_MS).catch(() => undefined).finally(() => this.#refillStandby());
    } finally {
      this.#starting.delete(vmId);
    }
    this.emit('vm-started', p.view());
    if (CLUSTER_CHANNELS.vm.hasSubscribers) CLUSTER_CHANNELS.vm.publish({ host: this.id, vm: vmId, role: req.role, what: 'started', view: p.view() });
    if (waitMs > 0) {
      try {
        await p.ready(waitMs);
      } catch (err) {
        throw new Refusal(p.running ? 504 : 500, 'not-ready', (err as Error).message);
      }
    }
    // Answer with the record as published, so the caller's next look at the store agrees.
    await this.#publishers.get(p)?.flush();
    return p.view();
  }

  /**
   * Carry out an FT operation on a primary through its operations API (`lockstep ft`, requests signed
   * with the pair key), or, when it serves none yet, through the CLI's signals: every lockstep process
   * that is a primary — started as one or promoted — takes SIGUSR1 as test failover and SIGUSR2 as
   * test restart secondary (src/cli/signals.ts).
   */
  async #operate<Op extends 'test-failover' | 'restart-secondary' | 'migrate-secondary' | 'migrate' | 'suspend' | 'enable'>(p: VmProcess, op: Op, migrationKey?: Uint8Array): Promise<Op> {
    const key = this.#pairKeys.get(p);
    if (p.controlUrl !== null && key !== undefined) {
      let answer: Awaited<ReturnType<typeof callControl>>;
      try {
        // A migration key rides in the signed body, over loopback to this host's own VM process.
        const body = migrationKey !== undefined ? { body: { keyHex: Buffer.from(migrationKey).toString('hex') } } : {};
        answer = await callControl(p.controlUrl, key, 'POST', `/ft/${op}`, { timeoutMs: 15_000, ...body });
      } catch (err) {
        // A handover ends the process, which may close the connection before the answer: look at what it said.
        if (op === 'test-failover' && p.events.some((e) => e.event === 'handed-over')) return op;
        if (err instanceof ControlUnreachableError) throw new Refusal(502, 'internal', `${p.vmId}: ${err.message}`);
        throw err;
      }
      if (answer.status < 200 || answer.status > 299) {
        const why = typeof answer.body.error === 'string' ? answer.body.error : `HTTP ${answer.status}`;
        throw new Refusal(409, 'not-ready', `${op} refused by the primary of ${p.vmId}: ${why}`);
      }
      return op;
    }
    // No signal moves a secondary: without the operations API the move is refused (the caller stops it instead).
    if (op === 'migrate-secondary') throw new Refusal(409, 'not-ready', `the primary of ${p.vmId} serves no operations API: its secondary cannot be moved without a gap`);
    if (op === 'migrate') throw new Refusal(409, 'not-ready', `the primary of ${p.vmId} serves no operations API: it cannot be migrated`);
    if (op === 'suspend' || op === 'enable') throw new Refusal(409, 'not-ready', `the primary of ${p.vmId} serves no operations API: FT cannot be ${op === 'suspend' ? 'suspended' : 'resumed'}`);
    p.signal(op === 'test-failover' ? 'SIGUSR1' : 'SIGUSR2');
    return op;
  }

  /** `<dir>/disk.img`, created empty with the size of the configured image if missing. */
  async #ownImage(dir: string, configured: string): Promise<string> {
    const path = join(dir, 'disk.img');
    try {
      await stat(path);
      return path;
    } catch {
      // not there yet: create it below
    }
    let size: number;
    try {
      size = (await stat(configured)).size;
    } catch (err) {
      throw new Refusal(400, 'bad-request', `separate disks: cannot read the size of ${configured} to make this host's own image (${(err as Error).message})`);
    }
    const f = await open(path, 'wx', 0o600);
    try {
      await f.truncate(size);
    } finally {
      await f.close();
    }
    return path;
  }

  #track(p: VmProcess): void {
    this.#vms.set(p.vmId, p);
    this.#poweredOff.delete(p.vmId);
    this.#heartbeat?.changed();
    let listedAs = p.role;
    const pub = new RecordPublisher(this.#o.store, KEYS.instance(p.vmId, this.id), this.#o.instanceTtlMs, (err) => this.#warn(`record of ${p.vmId}: ${err.message}`));
    this.#publishers.set(p, pub);
    pub.update(p.record() as unknown as JsonValue);
    let statsTimer: NodeJS.Timeout | undefined;
    p.on('change', (significant: boolean) => {
      if (!p.running) return;
      if (p.role !== listedAs) {
        listedAs = p.role; // a secondary went live: the heartbeat lists it as the primary now
        this.#heartbeat?.changed();
      }
      if (significant) {
        clearTimeout(statsTimer);
        statsTimer = undefined;
        pub.update(p.record() as unknown as JsonValue);
      } else if (statsTimer === undefined) {
        const due = Math.max(0, STATS_EVERY_MS - (performance.now() - pub.publishedAt));
        statsTimer = setTimeout(() => {
          statsTimer = undefined;
          if (p.running) pub.update(p.record() as unknown as JsonValue);
        }, due);
        statsTimer.unref();
      }
    });
    // Isolation: the store no longer renews this VM's record. A VM without FT has nothing else that keeps
    // a restarted copy from running beside it (an FT half has its arbiter), so it goes before the record.
    // A record never published counts as held for one TTL from here: a VM started just as the link to the
    // store went down is fenced like one that ran for hours. The other hosts are asked first (before the
    // margin, so the answer comes in time): a store down for everyone restarts nothing anywhere.
    // The VM process holds a lease of its own, to the record's deadline: should this agent stop (SIGSTOP)
    // with the VM running on, the VM ends itself when its record may expire, 2 s before any restart.
    let isolated = false;
    let probing = false;
    let storeDownSaid = false;
    let keepUntil = 0; // the store is down for everyone: the VM may outlive its record meanwhile
    const tracked = performance.now();
    // leave-powered-on: the lease only ends a VM whose agent is gone for an hour.
    const leave = this.#o.isolationResponse === 'leave-powered-on';
    const renewLease = () => {
      const until = leave ? performance.now() + 3_600_000 : Math.max(pub.deadline, tracked + this.#o.instanceTtlMs, keepUntil);
      p.lease(process.hrtime.bigint() + BigInt(Math.round((until - performance.now()) * 1e6)));
    };
    if (p.solo) renewLease();
    const isolation = p.solo
      ? setInterval(() => {
          if (!isolated || leave) renewLease();
          const deadline = Math.max(pub.deadline, tracked + this.#o.instanceTtlMs);
          if (isolated || probing || !p.running || performance.now() < deadline - ISOLATION_MARGIN_MS - PEER_PROBE_MS) return;
          probing = true;
          void this.#whyCutOff().then((why) => {
            probing = false;
            this.emit('cut-off', p.vmId, why);
            if (isolated || !p.running || performance.now() < Math.max(pub.deadline, tracked + this.#o.instanceTtlMs) - ISOLATION_MARGIN_MS - PEER_PROBE_MS) return;
            if (why !== 'isolated') {
              keepUntil = performance.now() + 2 * ISOLATION_MARGIN_MS + PEER_PROBE_MS;
              renewLease();
              if (why === 'store-back') return; // the record is written again shortly: nothing to say
              if (!storeDownSaid) this.#warn(`${p.vmId}: the store does not renew its record, and ${why === 'alone' ? 'no other host is known' : 'no other host reaches the store either'}: left running (nobody can restart it elsewhere)`);
              storeDownSaid = true;
              return;
            }
            applyIsolation();
          });
        }, 200)
      : undefined;
    let poweredOff = false;
    const applyIsolation = () => {
      isolated = true;
      const ms = Math.round(performance.now() - Math.max(pub.publishedAt, tracked));
      const response = this.#o.isolationResponse;
      const message =
        response === 'power-off'
          ? `${p.vmId}: the store has not renewed its record for ${ms} ms (this host is cut off from it, and other hosts reach it or none answers): powered off, so that a restart elsewhere does not run beside it`
          : `${p.vmId}: the store has not renewed its record for ${ms} ms: left running (isolation response leave-powered-on); ${this.#heartbeat !== undefined ? `this host's datastore heartbeat (${this.#heartbeat.path}) lists it, so a manager given the same datastore does not restart it elsewhere while that heartbeat goes on` : 'a restart elsewhere will run a second copy'}`;
      this.#warn(message);
      this.emit('isolated', p.vmId, response, message);
      if (response === 'power-off') {
        poweredOff = true;
        p.signal('SIGKILL');
      }
    };
    isolation?.unref();
    p.once('exit', () => {
      clearTimeout(statsTimer);
      clearInterval(isolation);
      if (this.#vms.get(p.vmId) === p) this.#vms.delete(p.vmId);
      // Said on the datastore: its record (which the store may keep a while yet) is a left-over.
      if (poweredOff) this.#poweredOff.set(p.vmId, { vm: p.vmId, role: p.role, incarnation: p.incarnation });
      this.#heartbeat?.changed();
      this.#exited.push(p);
      if (this.#exited.length > KEEP_EXITED) this.#exited.shift();
      this.#gone.set(
        p,
        this.#handedOn(p, pub)
          .then(() => pub.close())
          .finally(() => this.#publishers.delete(p)),
      );
      if (CLUSTER_CHANNELS.vm.hasSubscribers) CLUSTER_CHANNELS.vm.publish({ host: this.id, vm: p.vmId, role: p.role, what: 'exited', view: p.view() });
      this.emit('vm-exited', p.view());
    });
  }

  /**
   * A primary that migrated with its secondary following the target keeps its record, as it was at the
   * hand-over, until the store shows the target as the VM's primary (a primary record of a higher epoch):
   * dropping it at once would leave a moment with no primary on record, which reads as unprotected
   * although the secondary holds the hand-over state throughout. It goes the moment the target's record
   * is written (a watch, not a poll), and at most {@link HAND_ON_MAX_MS} after the process ended: a
   * target whose record does not come by then is dead or cut off from the store, and a record that still
   * said Protected would hide that. It is then rewritten to say what is known — handed over, on its way
   * out — before it goes, and a `migration-unconfirmed` event tells the operator; the manager then sees a
   * VM with no primary on record (`going-live`: its secondary goes live by itself if the target is dead)
   * and reports it if that lasts.
   */
  async #handedOn(p: VmProcess, pub: RecordPublisher): Promise<void> {
    if (!p.migratedWithFollower) return;
    const prefix = KEYS.instance(p.vmId, '');
    const isTarget = (v: JsonValue | null) => {
      const r = v as { role?: unknown; epoch?: unknown; host?: unknown } | null;
      return r !== null && r.host !== this.id && r.role === 'primary' && typeof r.epoch === 'number' && r.epoch > (p.epoch ?? 0);
    };
    let settle!: (appeared: boolean) => void;
    const appeared = new Promise<boolean>((r) => (settle = r));
    const timer = setTimeout(() => settle(false), HAND_ON_MAX_MS);
    let unwatch: (() => Promise<void>) | undefined;
    try {
      unwatch = await this.#o.store.watch(prefix, (e) => {
        if (e.type === 'put' && isTarget(e.value)) settle(true);
      }, { onError: () => settle(false) });
      // Written before the watch began: the list sees it.
      if ((await this.#o.store.list(prefix)).some((e) => isTarget(e.value))) settle(true);
    } catch {
      settle(false); // the store is not there: nothing to keep a record in either
    }
    const ok = await appeared;
    clearTimeout(timer);
    await unwatch?.().catch(() => undefined);
    if (ok) return;
    const message = `the primary of ${p.vmId} on ${this.id} handed over to its migration's target, but no record of the target as primary appeared within ${HAND_ON_MAX_MS} ms: the target died or is cut off from the store. The old primary's record is dropped; its secondary goes live by itself if the target is gone`;
    this.#warn(message);
    pub.update({ ...p.record(), state: 'stopping', protected: false, status: `handed over to its migration's target; no record of the target within ${HAND_ON_MAX_MS} ms` } as unknown as JsonValue);
    await pub.flush().catch(() => undefined);
    await new EventWriter(this.#o.store, `agent-${this.id}`)
      .write({ kind: 'migration-unconfirmed', vm: p.vmId, host: this.id, message })
      .catch((err: unknown) => this.#warn(`event log: ${(err as Error).message}`));
  }

  #find(vmId: string): VmProcess {
    const p = this.#vms.get(vmId);
    if (p === undefined) throw new Refusal(404, 'not-running', `VM ${vmId} does not run on host ${this.id}`);
    return p;
  }

  // ---- HTTP ----------------------------------------------------------------------------------------

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const send = (status: number, body: unknown) => {
      if (CLUSTER_CHANNELS.api.hasSubscribers) {
        const manager = req.headers[MANAGER_HEADER];
        const code = (body as { error?: { code?: string } }).error?.code;
        CLUSTER_CHANNELS.api.publish({ host: this.id, method: req.method, path: req.url, status, ...(code !== undefined ? { code } : {}), ...(typeof manager === 'string' ? { manager } : {}) });
      }
      const text = JSON.stringify(body);
      res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store' });
      res.end(text);
    };
    try {
      // Authenticate before anything else is read or done.
      const auth = req.headers.authorization ?? '';
      const m = /^Bearer (.+)$/.exec(auth);
      if (m === null || !tokenMatches(m[1]!, this.#o.token)) {
        res.setHeader('www-authenticate', 'Bearer realm="lockstep-agent"');
        req.resume();
        throw new Refusal(401, 'unauthorized', m === null ? 'a bearer token is required (Authorization: Bearer <token>)' : 'wrong token');
      }
      const url = new URL(req.url ?? '/', 'http://agent');
      if (!url.pathname.startsWith(`${API_PREFIX}/`)) throw new Refusal(404, 'not-found', `no such path ${url.pathname}`);
      const parts = url.pathname.slice(API_PREFIX.length + 1).split('/').map(decodeURIComponent);
      const method = req.method ?? 'GET';
      const mutating = method !== 'GET' && method !== 'HEAD';
      if (mutating) this.#checkFence(req);
      if (mutating && this.#closing) throw new Refusal(503, 'shutting-down', `agent ${this.id} is shutting down`);
      const body = mutating ? await readJson(req) : undefined;
      const [a, b, c] = parts;
      if (parts.length === 1 && a === 'host' && method === 'GET') return send(200, await this.#hostInfo());
      if (parts.length === 1 && a === 'vms' && method === 'GET') return send(200, { vms: this.list() });
      if (parts.length === 1 && a === 'vms' && method === 'POST') return send(201, await this.#start(body));
      if (parts.length === 2 && a === 'vms' && method === 'GET') {
        const p = this.#vms.get(b!) ?? [...this.#exited].reverse().find((x) => x.vmId === b);
        if (p === undefined) throw new Refusal(404, 'not-found', `no instance of VM ${b} on host ${this.id}`);
        return send(200, p.view());
      }
      if (parts.length === 2 && a === 'vms' && method === 'DELETE') {
        const p = this.#find(b!);
        await p.stop(this.#o.stopGraceMs);
        // Answer once the record is gone too, so the caller's next look at the store agrees.
        await this.#gone.get(p);
        return send(200, p.view());
      }
      if (parts.length === 3 && a === 'vms' && method === 'POST' && c === 'migrate-secondary') {
        const p = this.#find(b!);
        if (p.role !== 'primary') throw new Refusal(409, 'wrong-role', `VM ${b} runs here as the ${p.role}; ${c} is an operation of the primary`);
        if (!p.protected) throw new Refusal(409, 'not-ready', `the primary of ${b} is not protected (${p.status}): there is no secondary to move`);
        return send(200, { ...p.view(), operation: await this.#operate(p, 'migrate-secondary') });
      }
      if (parts.length === 3 && a === 'vms' && method === 'POST' && c === 'migrate') {
        const p = this.#find(b!);
        if (p.role !== 'primary') throw new Refusal(409, 'wrong-role', `VM ${b} runs here as the ${p.role}; ${c} is an operation of the primary`);
        if (p.state !== 'running') throw new Refusal(409, 'not-ready', `the primary of ${b} is ${p.state} (${p.status})`);
        const raw = (body as { migrationKey?: unknown } | null)?.migrationKey;
        const key = raw === undefined ? undefined : hexKey(raw, 'migrationKey');
        if (p.solo && key === undefined) throw new Refusal(400, 'bad-request', `migrationKey: ${b} runs without FT; its live migration needs a key made for it (the target's start gets the same)`);
        if (!p.solo && key !== undefined) throw new Refusal(400, 'bad-request', `migrationKey: only for a VM without FT (${b} has FT on: its target joins with the pair key)`);
        return send(200, { ...p.view(), operation: await this.#operate(p, 'migrate', key) });
      }
      if (parts.length === 3 && a === 'vms' && method === 'POST' && (c === 'failover' || c === 'restart-secondary')) {
        const p = this.#find(b!);
        if (p.role !== 'primary') throw new Refusal(409, 'wrong-role', `VM ${b} runs here as the ${p.role}; ${c} is an operation of the primary`);
        if (p.state !== 'running') throw new Refusal(409, 'not-ready', `the primary of ${b} is ${p.state} (${p.status})`);
        // Only a protected primary can hand over: nobody would take over from one that runs alone.
        if (c === 'failover' && !p.protected) throw new Refusal(409, 'not-ready', `the primary of ${b} is not protected (${p.status}): a failover needs a secondary in lockstep`);
        return send(200, { ...p.view(), operation: await this.#operate(p, c === 'failover' ? 'test-failover' : 'restart-secondary') });
      }
      if (parts.length === 3 && a === 'vms' && method === 'POST' && (c === 'suspend-ft' || c === 'resume-ft')) {
        const p = this.#find(b!);
        if (p.role !== 'primary') throw new Refusal(409, 'wrong-role', `VM ${b} runs here as the ${p.role}; ${c} is an operation of the primary`);
        if (p.state !== 'running') throw new Refusal(409, 'not-ready', `the primary of ${b} is ${p.state} (${p.status})`);
        return send(200, { ...p.view(), operation: await this.#operate(p, c === 'suspend-ft' ? 'suspend' : 'enable') });
      }
      throw new Refusal(404, 'not-found', `no such operation: ${method} ${url.pathname}`);
    } catch (err) {
      if (err instanceof Refusal) return send(err.status, { error: { code: err.code, message: err.message } });
      this.#warn(`API: ${(err as Error).stack ?? String(err)}`);
      return send(500, { error: { code: 'internal', message: (err as Error).message } });
    }
  }

  /** Reject a request carrying a lower fencing token than one already accepted (a deposed manager). */
  #checkFence(req: IncomingMessage): void {
    const raw = req.headers[FENCE_HEADER];
    if (raw === undefined) return;
    const token = Number(raw);
    if (!Number.isSafeInteger(token) || token < 0) throw new Refusal(400, 'bad-request', `${FENCE_HEADER}: not a fencing token: ${String(raw)}`);
    if (token < this.#fence.token) {
      throw new Refusal(409, 'stale-fence', `fencing token ${token} is older than ${this.#fence.token} (manager ${this.#fence.manager ?? '?'}): ${String(req.headers[MANAGER_HEADER] ?? 'the sender')} no longer leads`);
    }
    const manager = req.headers[MANAGER_HEADER];
    this.#fence = { token, manager: typeof manager === 'string' ? manager : null };
  }

  async #hostInfo(): Promise<HostInfo> {
    const storeReachable = await this.#reachesStore();
    const r = this.hostRecord();
    return { id: r.id, api: r.api, ftHost: r.ftHost, capacity: r.capacity, groups: r.groups, compatId: r.compatId, maxFtVms: r.maxFtVms, maxFtVcpus: r.maxFtVcpus ?? DEFAULT_MAX_FT_VCPUS, pid: r.pid, running: this.#vms.size, fence: { ...this.#fence }, storeReachable };
  }

  /**
   * Whether this agent reaches the store now: a read of its own host record, one at a time (peers that
   * ask together share it). Not the record's deadline: a lease renewed just before the store went down
   * stays valid for up to a host TTL (8 s), and a peer that answered from it would tell an agent whose
   * VM record expires sooner that the store is up, and so that it is the one cut off — powering its VM
   * off with the store down for everyone. A store that does not answer leaves the caller without an
   * answer (its own timeout), which it counts as no answer at all.
   */
  #reachesStore(): Promise<boolean> {
    this.#storeProbe ??= this.#o.store.get(KEYS.host(this.id)).then(
      () => true,
      () => false,
    ).finally(() => (this.#storeProbe = undefined));
    return this.#storeProbe;
  }
}

/** A key sent as hex (a migration's): at least 16 bytes. */
function hexKey(v: unknown, field: string): Uint8Array {
  if (typeof v !== 'string' || !/^(?:[0-9a-f]{2}){16,64}$/i.test(v)) throw new Refusal(400, 'bad-request', `${field}: must be a key of 16 to 64 bytes as hex`);
  return Buffer.from(v, 'hex');
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new Refusal(413 as number, 'bad-request', `the body is larger than ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new Refusal(400, 'bad-request', 'the body is not JSON');
  }
}
