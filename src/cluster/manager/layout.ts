// The cluster's store layout: every key the agents, the manager and `lockstep cluster` read or write,
// and the JSON records under them. Names and shapes only; no I/O here.
//
//   hosts/<host>                         HostRecord        agent; liveness key (gone ~8 s after it dies)
//   vms/<vm>/instances/<host>            InstanceRecord    agent; liveness key (gone ~5 s after it dies)
//   desired/<vm>                         DesiredVm         `lockstep cluster create-vm`
//   rules/<id>                           PlacementRule     `lockstep cluster rule` (VM-VM and VM-host rules)
//   groups/<name>                        HostGroup         `lockstep cluster group` (host groups besides agents' --groups)
//   requests/apply                       ApplyRequest      `lockstep cluster apply` (balancing moves to apply)
//   requests/maintenance/<host>          MaintenanceRequest  `lockstep cluster maintenance`
//   requests/migrate/<vm>                MigrateRequest    `lockstep cluster migrate` (a live migration to carry out)
//   requests/ft/<vm>                     FtOperationRequest  `lockstep cluster ft` (an FT operation on the VM's primary)
//   maintenance/<host>                   MaintenanceState  the leading manager (fenced)
//   failures/<vm>                        StartFailure      the leading manager: a VM whose starts fail
//   settings/ha                          HaSettings        `lockstep cluster ha` (admission control, monitoring)
//   monitoring/<vm>                      MonitorRecord     the leading manager: VM monitoring's resets of a VM
//   lost-hosts/<host>                    LostHost          the leading manager: a host that left, and why
//   manager/epoch                        ManagerEpoch      the leading manager (compare-and-set, fenced)
//   events/<ms>-<seq>-<writer>           ClusterEvent      managers and the CLI; bounded
//
// Instance records live shorter than host records, so a dead agent's instances vanish before its host
// does: an instance is never seen on a host the store already reports dead.
import { readFileSync } from 'node:fs';
import { LOG_FORMAT_VERSION } from '../../log/format.js';
import { PROTOCOL_VERSION } from '../../protocol/auth.js';
import type { JsonValue } from '../store/store.js';
import type { HostCapacity, PlacementRule, VmHostRuleType } from '../placement/index.js';
import type { RestartPriority } from './priority.js';
import { DEFAULT_VM_MONITORING, vmMonitoringOf, type VmMonitoringSettings } from './monitor.js';

/** Store keys of the cluster (relative to the store's own prefix). */
export const KEYS = {
  hostsPrefix: 'hosts/',
  host: (host: string) => `hosts/${host}`,
  vmsPrefix: 'vms/',
  instancesPrefix: (vm: string) => `vms/${vm}/instances/`,
  instance: (vm: string, host: string) => `vms/${vm}/instances/${host}`,
  desiredPrefix: 'desired/',
  desired: (vm: string) => `desired/${vm}`,
  rulesPrefix: 'rules/',
  requestsPrefix: 'requests/maintenance/',
  maintenanceRequest: (host: string) => `requests/maintenance/${host}`,
  maintenancePrefix: 'maintenance/',
  maintenance: (host: string) => `maintenance/${host}`,
  failuresPrefix: 'failures/',
  failure: (vm: string) => `failures/${vm}`,
  haSettings: 'settings/ha',
  rule: (id: string) => `rules/${id}`,
  groupsPrefix: 'groups/',
  group: (name: string) => `groups/${name}`,
  applyRequest: 'requests/apply',
  migrateRequestsPrefix: 'requests/migrate/',
  migrateRequest: (vm: string) => `requests/migrate/${vm}`,
  ftRequestsPrefix: 'requests/ft/',
  ftRequest: (vm: string) => `requests/ft/${vm}`,
  lostHostsPrefix: 'lost-hosts/',
  lostHost: (host: string) => `lost-hosts/${host}`,
  monitoringPrefix: 'monitoring/',
  monitoring: (vm: string) => `monitoring/${vm}`,
  managerEpoch: 'manager/epoch',
  eventsPrefix: 'events/',
} as const;

/** The election the managers campaign in. */
export const MANAGER_ELECTION = 'lockstep-manager';

/**
 * TTL of a host record, ms: how long a dead agent's host stays listed. Long enough that an agent stalled
 * for seconds on a loaded machine (its renewals run every third of the TTL) does not look dead.
 */
export const HOST_TTL_MS = 8_000;
/**
 * TTL of an instance record, ms: shorter than {@link HOST_TTL_MS} (see the layout above). It was 1 s,
 * which a loaded machine's stalls outlived (records flapped: false secondary-invisible and unplaceable
 * events). Failover does not wait for it: the survivors' own reports reach the store at once.
 */
export const INSTANCE_TTL_MS = 5_000;

/** Host ids: 1–64 characters of `[A-Za-z0-9._-]`, starting with a letter or digit. */
export const HOST_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/** What an agent registers under `hosts/<id>` (a liveness key). */
export interface HostRecord {
  id: string;
  /** The control API, `http://host:port`. */
  api: string;
  /** Address the host's FT logging channels listen on. */
  ftHost: string;
  capacity: HostCapacity;
  groups: string[];
  /** FT compatibility id: both halves of a pair need hosts with the same one. */
  compatId: string;
  /** FT halves the host takes at most (0: no limit). */
  maxFtVms: number;
  /** vCPUs of FT halves the host takes at most (0: no limit); absent in records of older agents (default 8). */
  maxFtVcpus?: number;
  pid: number;
  /** Wall-clock ms when the agent started. */
  startedAt: number;
  version: string;
}

/** Role of an instance: the side of the FT pair the process plays now. */
export type InstanceRole = 'primary' | 'secondary';

/** Life of an instance process as its agent saw it. */
export type InstanceState =
  /** Spawned; a primary has not claimed its epoch and listened yet, a secondary not joined yet. */
  | 'starting'
  /** A secondary connected to its primary (being cloned, or replaying). */
  | 'joined'
  /** A primary listening for secondaries (alone or protected). */
  | 'running'
  /** Asked to stop, handed over, halted or left: on its way out. */
  | 'stopping';

/** What an agent publishes under `vms/<vm>/instances/<host>` while the process runs. */
export interface InstanceRecord {
  vmId: string;
  host: string;
  role: InstanceRole;
  /** The role it was started as (a secondary that went live is a primary now). */
  startedAs: InstanceRole;
  state: InstanceState;
  pid: number;
  /** Random id of this process incarnation. */
  incarnation: string;
  /** The FT epoch the process runs under (null until known). */
  epoch: number | null;
  /** A primary's logging channel, where secondaries join. */
  listen: { host: string; port: number } | null;
  /** A secondary's primary (`host:port`). */
  join: string | null;
  /** Primary: its status says Protected. Secondary: in lockstep with its primary. */
  protected: boolean;
  /** Last status text (`Protected`, `Not Protected (need secondary VM)`, …). */
  status: string;
  /** The last event the process reported. */
  lastEvent: string;
  /** Secondary: times this process was cloned into lockstep (a restart secondary clones it again); absent from older agents. */
  clones?: number;
  /** Wall-clock ms. */
  startedAt: number;
  updatedAt: number;
  /** The latest periodic figures of a primary (MIPS, lag, log bandwidth), if any. */
  stats: { mips: number; lagMs: number; logBandwidth: number; failovers: number } | null;
  /**
   * The VM process's heartbeat: its last report of instructions retired (decimal), of the guest
   * watchdog's pets (decimal; absent from older agents) and how many reports the agent received (VM
   * monitoring). Null until the first; absent in records of older agents.
   */
  progress?: { instret: string; beats: number; watchdog?: string } | null;
}

/** A VM-host rule on one VM, as `create-vm --rule must:group` writes it. */
export interface VmHostRuleSpec {
  type: VmHostRuleType;
  hostGroup: string;
}

/** A VM the cluster should run: `desired/<vm>`. */
export interface DesiredVm {
  id: string;
  /** The VM's configuration file (JSON form, absolute paths), written to the agent that runs a half. */
  config: JsonValue;
  ft: boolean;
  demand: { mips: number; memoryBytes: number; logBandwidth: number };
  vcpus: number;
  rules: VmHostRuleSpec[];
  /** Legacy mode: the host the primary powers on on. */
  registeredHost?: string;
  /** HA restart priority (absent: medium, as in vSphere); `disabled`: not restarted after a failure. */
  restartPriority?: RestartPriority;
  createdAt: number;
}

/** `requests/maintenance/<host>`: what an operator asked for. */
export interface MaintenanceRequest {
  on: boolean;
  at: number;
  by: string;
}

/** `maintenance/<host>`: the manager's record of the host's maintenance mode. */
export interface MaintenanceState {
  on: boolean;
  /** `entering`: being drained; `in`: nothing runs there; `off`: back in service. */
  state: 'entering' | 'in' | 'off';
  since: number;
  manager: string;
  token: number;
}

/**
 * `failures/<vm>`: a VM whose start keeps failing (its process exited before it was ready, its UDP port
 * is taken, …). The manager waits until `retryAt` before the next attempt, backing off; the record goes
 * once the VM runs, or is deleted.
 */
export interface StartFailure {
  vm: string;
  /** Failed attempts in a row. */
  attempts: number;
  /** Where the last attempt ran, and why it failed (the agent's answer). */
  host: string;
  reason: string;
  /** Wall-clock ms of the last failure, and of the next attempt. */
  at: number;
  retryAt: number;
  manager: string;
  token: number;
}

/**
 * `settings/ha`: the cluster's HA settings, as `lockstep cluster ha` writes them. Absent: the defaults
 * ({@link DEFAULT_HA_SETTINGS}).
 */
export interface HaSettings {
  /**
   * HA admission control: host failures the cluster tolerates (vSphere's "host failures cluster
   * tolerates"). A VM is not powered on if the VMs that run and it could not all be restarted, and every
   * FT VM re-protected, after the loss of this many hosts. 0: admission control off.
   */
  hostFailures: number;
  /** VM monitoring: reset a VM whose heartbeat (or progress) stops (src/cluster/manager/monitor.ts). */
  vmMonitoring: VmMonitoringSettings;
  /** Wall-clock ms of the last change, and who made it. */
  updatedAt: number;
  by: string;
}

/** HA settings of a cluster that has none stored: admission control off (see docs/cluster.md). */
export const DEFAULT_HA_SETTINGS: HaSettings = { hostFailures: 0, vmMonitoring: DEFAULT_VM_MONITORING, updatedAt: 0, by: 'default' };

/** The HA settings in a stored value, any missing or malformed field taken from the defaults. */
export function haSettingsOf(value: JsonValue | null | undefined): HaSettings {
  const r = asRecord<Partial<HaSettings>>(value) ?? {};
  const n = r.hostFailures;
  return {
    hostFailures: typeof n === 'number' && Number.isSafeInteger(n) && n >= 0 ? n : DEFAULT_HA_SETTINGS.hostFailures,
    vmMonitoring: vmMonitoringOf(r.vmMonitoring),
    updatedAt: typeof r.updatedAt === 'number' ? r.updatedAt : DEFAULT_HA_SETTINGS.updatedAt,
    by: typeof r.by === 'string' ? r.by : DEFAULT_HA_SETTINGS.by,
  };
}

/** `monitoring/<vm>`: VM monitoring's resets of a VM (for the reset limit, and `cluster status`). */
export interface MonitorRecord {
  vm: string;
  /** Wall-clock ms of each reset, oldest first (the last few only). */
  resets: number[];
  /** Why the last reset was made, and where the VM ran. */
  reason: string;
  host: string;
  manager: string;
  token: number;
}

/** `groups/<name>`: a host group defined in the store; a host is in it as well as in its agent's `--groups`. */
export interface HostGroup {
  name: string;
  hosts: string[];
}

/** `requests/apply`: apply this many of the balancer's recommendations (manual automation). */
export interface ApplyRequest {
  moves: number;
  at: number;
  by: string;
}

/**
 * `requests/migrate/<vm>`: live-migrate a half of the VM (`lockstep cluster migrate`). The leading
 * manager checks it against the placement rules, carries it out without a protection gap or refuses it
 * (a `migrate-refused` event), and deletes the request either way.
 */
export interface MigrateRequest {
  vm: string;
  /** Which half moves: the primary (the VM itself without FT) or the FT secondary. */
  role: 'primary' | 'secondary';
  /** The target host; absent: the manager chooses the best valid one. */
  to?: string;
  at: number;
  by: string;
}

/** FT operations `lockstep cluster ft` asks the leading manager for, as vSphere's Fault Tolerance menu has them. */
export const CLUSTER_FT_OPERATIONS = ['test-failover', 'restart-secondary', 'suspend', 'resume'] as const;
export type ClusterFtOperation = (typeof CLUSTER_FT_OPERATIONS)[number];

/**
 * `requests/ft/<vm>`: an FT operation on the VM's primary. The leading manager carries it out through
 * the primary's agent (a `ft-operation` event) or refuses it (`ft-operation-refused`, with the reason),
 * and deletes the request either way.
 */
export interface FtOperationRequest {
  vm: string;
  operation: ClusterFtOperation;
  at: number;
  by: string;
}

/** `lost-hosts/<host>`: a host the leading manager saw live and then gone; deleted when it is back. */
export interface LostHost {
  host: string;
  /** Wall-clock ms the manager noticed. */
  since: number;
  reason: string;
  /** The VM halves it ran when last seen: `kv1(P)`, `kv2(S)`. */
  halves: string[];
  /**
   * Set while its datastore heartbeat is alive (the manager has a datastore): it is cut off from the
   * store, not dead. `halves`: what the heartbeat lists; `heartbeat`: the file.
   */
  partitioned?: { since: number; halves: string[]; heartbeat: string } | null;
  manager: string;
  token: number;
}

/** `manager/epoch`: the leading manager and its fencing token. */
export interface ManagerEpoch {
  manager: string;
  token: number;
  since: number;
}

/** Kinds of cluster event. `action: true` marks the ones that changed something running. */
export interface ClusterEvent {
  /** Wall-clock ms. */
  t: number;
  kind: string;
  /** Who wrote it: a manager id, or `cli`. */
  by: string;
  /** The writer's fencing token (managers). */
  token?: number;
  /** The event started, stopped or signalled a process. */
  action?: boolean;
  vm?: string;
  host?: string;
  message: string;
}

/**
 * The default FT compatibility id of this build: package version, ISA, log format and channel
 * protocol — what must match for a secondary to replay its primary exactly.
 */
export function defaultCompatId(): string {
  return `lockstep-${packageVersion()}.rv32imac.log${LOG_FORMAT_VERSION}.proto${PROTOCOL_VERSION}`;
}

let version: string | undefined;
/** The version of the lockstep package. */
export function packageVersion(): string {
  if (version === undefined) {
    // From src/cluster/manager and dist/cluster/manager alike.
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
    version = pkg.version;
  }
  return version;
}

/** Parse a stored value as a record, or undefined if it is not an object. */
export function asRecord<T>(value: JsonValue | null | undefined): T | undefined {
  return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as unknown as T) : undefined;
}

/** A rule from `rules/<id>`, minimally checked (the placement engine validates the rest). */
export function asRule(value: JsonValue): PlacementRule | undefined {
  const r = asRecord<PlacementRule>(value);
  if (r === undefined || (r.kind !== 'vm-host' && r.kind !== 'vm-vm' && r.kind !== 'ft-split') || typeof r.id !== 'string' || !Array.isArray(r.vms)) return undefined;
  return r;
}
