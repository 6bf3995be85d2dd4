// The cluster as the store shows it: one consistent read of every key, the pairs it implies (which
// instance is a VM's primary, which its secondary, which are left-overs), and the placement snapshot
// built from it. Reading aside, pure functions: `lockstep cluster status`, the manager and the tests'
// checker all judge the state through the same code.
import { formatHostPort } from '../../config/index.js';
import type { ClusterSnapshot, HostSpec, PlacementRule, VmSpec } from '../placement/index.js';
import type { ClusterStore, StoreEntry } from '../store/store.js';
import {
  CLUSTER_FT_OPERATIONS,
  KEYS,
  asRecord,
  asRule,
  haSettingsOf,
  type ClusterEvent,
  type DesiredVm,
  type HaSettings,
  type HostRecord,
  type InstanceRecord,
  type MaintenanceRequest,
  type MaintenanceState,
  type ManagerEpoch,
  type ApplyRequest,
  type MigrateRequest,
  type FtOperationRequest,
  type HostGroup,
  type LostHost,
  type MonitorRecord,
  type StartFailure,
} from './layout.js';

/** Everything the store holds about the cluster, read at once. */
export interface Inventory {
  /** Live hosts (their liveness key is present), by id. */
  hosts: Map<string, HostRecord>;
  desired: Map<string, DesiredVm>;
  /** Every instance record by VM (including VMs no longer desired), live host or not. */
  instances: Map<string, InstanceRecord[]>;
  rules: PlacementRule[];
  requests: Map<string, MaintenanceRequest>;
  maintenance: Map<string, { state: MaintenanceState; revision: number }>;
  /** VMs whose starts keep failing, by VM. */
  failures: Map<string, StartFailure>;
  /** Host groups defined in the store, by name. */
  groups: Map<string, HostGroup>;
  /** A pending `cluster apply`, if any. */
  applyRequest: ApplyRequest | null;
  /** `cluster migrate` requests, by VM. */
  migrateRequests: Map<string, MigrateRequest>;
  /** `cluster ft` requests, by VM. */
  ftRequests: Map<string, FtOperationRequest>;
  /** Hosts the manager saw leave, by host (see {@link LostHost}). */
  lostHosts: Map<string, LostHost>;
  /** VM monitoring's resets, by VM. */
  monitoring: Map<string, MonitorRecord>;
  /** The cluster's HA settings (the defaults when none are stored). */
  ha: HaSettings;
  epoch: { value: ManagerEpoch; revision: number } | null;
  events: ClusterEvent[];
  /** Wall-clock ms of the read. */
  at: number;
}

/**
 * One read of the whole store (`list('')`: a single range read, so one etcd revision — an instance and
 * the host it runs on are seen as of the same moment).
 */
export async function readInventory(store: ClusterStore): Promise<Inventory> {
  return parseInventory(await store.list(''));
}

/** The inventory held by a list of entries (see {@link readInventory}). */
export function parseInventory(entries: StoreEntry[]): Inventory {
  const inv: Inventory = { hosts: new Map(), desired: new Map(), instances: new Map(), rules: [], requests: new Map(), maintenance: new Map(), failures: new Map(), groups: new Map(), applyRequest: null, migrateRequests: new Map(), ftRequests: new Map(), lostHosts: new Map(), monitoring: new Map(), ha: haSettingsOf(null), epoch: null, events: [], at: Date.now() };
  for (const e of entries) {
    const k = e.key;
    if (k.startsWith(KEYS.hostsPrefix)) {
      const h = asRecord<HostRecord>(e.value);
      if (h !== undefined && typeof h.id === 'string') inv.hosts.set(h.id, h);
    } else if (k.startsWith(KEYS.vmsPrefix)) {
      const r = asRecord<InstanceRecord>(e.value);
      if (r === undefined || typeof r.vmId !== 'string' || typeof r.host !== 'string') continue;
      let list = inv.instances.get(r.vmId);
      if (list === undefined) inv.instances.set(r.vmId, (list = []));
      list.push(r);
    } else if (k.startsWith(KEYS.desiredPrefix)) {
      const d = asRecord<DesiredVm>(e.value);
      if (d !== undefined && typeof d.id === 'string') inv.desired.set(d.id, d);
    } else if (k.startsWith(KEYS.rulesPrefix)) {
      const r = asRule(e.value);
      if (r !== undefined) inv.rules.push(r);
    } else if (k === KEYS.applyRequest) {
      const r = asRecord<ApplyRequest>(e.value);
      if (r !== undefined && typeof r.moves === 'number') inv.applyRequest = r;
    } else if (k.startsWith(KEYS.migrateRequestsPrefix)) {
      const r = asRecord<MigrateRequest>(e.value);
      if (r !== undefined && typeof r.vm === 'string' && (r.role === 'primary' || r.role === 'secondary')) inv.migrateRequests.set(r.vm, r);
    } else if (k.startsWith(KEYS.ftRequestsPrefix)) {
      const r = asRecord<FtOperationRequest>(e.value);
      if (r !== undefined && typeof r.vm === 'string' && (CLUSTER_FT_OPERATIONS as readonly string[]).includes(r.operation)) inv.ftRequests.set(r.vm, r);
    } else if (k.startsWith(KEYS.groupsPrefix)) {
      const g = asRecord<HostGroup>(e.value);
      if (g !== undefined && typeof g.name === 'string' && Array.isArray(g.hosts)) inv.groups.set(g.name, g);
    } else if (k.startsWith(KEYS.requestsPrefix)) {
      const r = asRecord<MaintenanceRequest>(e.value);
      if (r !== undefined) inv.requests.set(k.slice(KEYS.requestsPrefix.length), r);
    } else if (k.startsWith(KEYS.maintenancePrefix)) {
      const s = asRecord<MaintenanceState>(e.value);
      if (s !== undefined) inv.maintenance.set(k.slice(KEYS.maintenancePrefix.length), { state: s, revision: e.revision });
    } else if (k.startsWith(KEYS.failuresPrefix)) {
      const f = asRecord<StartFailure>(e.value);
      if (f !== undefined && typeof f.vm === 'string') inv.failures.set(f.vm, f);
    } else if (k.startsWith(KEYS.lostHostsPrefix)) {
      const l = asRecord<LostHost>(e.value);
      if (l !== undefined && typeof l.host === 'string') inv.lostHosts.set(l.host, l);
    } else if (k.startsWith(KEYS.monitoringPrefix)) {
      const m = asRecord<MonitorRecord>(e.value);
      if (m !== undefined && typeof m.vm === 'string' && Array.isArray(m.resets)) inv.monitoring.set(m.vm, m);
    } else if (k === KEYS.haSettings) {
      inv.ha = haSettingsOf(e.value);
    } else if (k === KEYS.managerEpoch) {
      const v = asRecord<ManagerEpoch>(e.value);
      if (v !== undefined) inv.epoch = { value: v, revision: e.revision };
    } else if (k.startsWith(KEYS.eventsPrefix)) {
      const ev = asRecord<ClusterEvent>(e.value);
      if (ev !== undefined) inv.events.push(ev);
    }
  }
  return inv;
}

/** The groups of a host: its agent's `--groups` and the store's groups that list it, sorted. */
export function hostGroupsOf(inv: Inventory, host: string): string[] {
  const out = new Set(inv.hosts.get(host)?.groups ?? []);
  for (const g of inv.groups.values()) if (g.hosts.includes(host)) out.add(g.name);
  return [...out].sort();
}

/**
 * Protection of a VM as `cluster status` reports it. `running`: a VM without FT (`ft.enabled: false`)
 * runs — there is nothing to protect.
 */
export type PairStatus = 'protected' | 'not-protected' | 'running' | 'starting' | 'going-live' | 'down' | 'not-desired';

/** A VM and its instances, sorted out. */
export interface PairView {
  vm: string;
  desired: DesiredVm | undefined;
  /** The primary: the highest-epoch primary on a live host that is not on its way out. */
  primary: InstanceRecord | undefined;
  /** The secondary joined to that primary, on a live host. */
  secondary: InstanceRecord | undefined;
  /**
   * Every other record of the VM: an old primary that handed over or lost its host, a secondary of an
   * older primary, anything on its way out, records of hosts the store already reports dead.
   */
  others: InstanceRecord[];
  /**
   * Of `others`, the records believed dead though their host is live in the store: a secondary claiming
   * lockstep with a primary that runs alone, a primary superseded by a higher epoch. Their hosts have
   * probably failed; the manager places nothing there for a while.
   */
  lost: InstanceRecord[];
  /** True only when the primary says Protected and its secondary's record is on another live host. */
  protected: boolean;
  status: PairStatus;
  /** The primary's own status text, or what the view concluded. */
  text: string;
  epoch: number | null;
}

/** The `host:port` a secondary of this primary joins. */
export function channelOf(r: InstanceRecord): string | null {
  return r.listen === null ? null : formatHostPort(r.listen);
}

/** Sort out one VM's instances (see {@link PairView}). */
export function pairView(vm: string, inv: Inventory): PairView {
  const desired = inv.desired.get(vm);
  const all = inv.instances.get(vm) ?? [];
  const live = all.filter((r) => inv.hosts.has(r.host) && r.state !== 'stopping');
  let primary: InstanceRecord | undefined;
  for (const r of live) {
    if (r.role !== 'primary') continue;
    if (primary === undefined || (r.epoch ?? -1) > (primary.epoch ?? -1) || ((r.epoch ?? -1) === (primary.epoch ?? -1) && r.startedAt > primary.startedAt)) primary = r;
  }
  let secondary: InstanceRecord | undefined;
  const lost: InstanceRecord[] = [];
  const channel = primary === undefined ? null : channelOf(primary);
  // The primary runs alone (it lost its secondary, or never had one): a secondary still claiming lockstep
  // with it is one it lost — dead, or about to notice. A new secondary claims lockstep only after the
  // primary has left that state (its clone starts first).
  const alone = primary !== undefined && primary.state === 'running' && !primary.protected && /need secondary/i.test(primary.status);
  // A VM without FT has no secondary: a secondary-role instance of it is a live migration's target,
  // one of the others until it goes live as the primary.
  if (channel !== null && desired?.ft !== false) {
    for (const r of live) {
      if (r.role !== 'secondary' || r.join !== channel || r.host === primary!.host) continue;
      if (alone && r.protected) {
        lost.push(r);
        continue;
      }
      if (secondary === undefined || (r.protected && !secondary.protected) || (r.protected === secondary.protected && r.startedAt > secondary.startedAt)) secondary = r;
    }
  }
  // A primary superseded by a higher epoch lost the arbiter, or its host is gone — unless it handed over
  // on purpose: a live migration's source keeps its record, as at the hand-over, until the target's is
  // there (Agent #handedOn); its host is fine.
  for (const r of live) if (r.role === 'primary' && r !== primary && (r.epoch ?? -1) < (primary?.epoch ?? -1) && r.lastEvent !== 'migrated') lost.push(r);
  const others = all.filter((r) => r !== primary && r !== secondary);
  const isProtected = primary !== undefined && primary.protected && secondary !== undefined;
  let status: PairStatus;
  let text: string;
  if (primary !== undefined) {
    if (primary.state !== 'running') {
      status = 'starting';
      text = primary.status;
    } else if (isProtected) {
      status = 'protected';
      text = 'Protected';
    } else if (desired !== undefined && !desired.ft) {
      status = 'running';
      text = primary.status;
    } else {
      status = 'not-protected';
      text =
        secondary !== undefined
          ? `${primary.status}; secondary on ${secondary.host}: ${secondary.status}`
          : primary.protected
            ? 'Not Protected in the store: the primary reports a secondary in lockstep, but no record of it is visible'
            : primary.status;
    }
  } else if (live.some((r) => r.role === 'secondary')) {
    status = 'going-live';
    text = 'Not Protected (the primary is gone; its secondary is going live)';
  } else if (desired === undefined) {
    status = 'not-desired';
    text = all.length > 0 ? 'being removed' : 'unknown';
  } else {
    status = 'down';
    const f = inv.failures.get(vm);
    text =
      all.length > 0
        ? 'Down (its last instances are on their way out)'
        : f !== undefined
          ? `Down: failed to start ${f.attempts} time(s), last on ${f.host}: ${f.reason}; next attempt at ${new Date(f.retryAt).toISOString()}`
          : desired.restartPriority === 'disabled'
            ? 'Down (not running; restart priority disabled: HA does not restart it)'
            : 'Down (not running)';
  }
  return { vm, desired, primary, secondary, others, lost, protected: isProtected, status, text, epoch: primary?.epoch ?? null };
}

/** Every VM that is desired or has instances, in id order. */
export function pairViews(inv: Inventory): PairView[] {
  const ids = new Set([...inv.desired.keys(), ...inv.instances.keys()]);
  return [...ids].sort().map((vm) => pairView(vm, inv));
}

/** The maintenance mode of a host as the manager recorded it (`off` when never set). */
export function maintenanceOf(inv: Inventory, host: string): MaintenanceState['state'] {
  const m = inv.maintenance.get(host)?.state;
  return m === undefined || !m.on ? 'off' : m.state;
}

/** Options of {@link buildSnapshot}. */
export interface SnapshotOptions {
  /** The FT compatibility baseline (integrated mode); absent: legacy mode. */
  baseline?: string;
  /**
   * Hosts that take no new half (reported unreachable, say), with the reason placement gives for each
   * (a set: a generic reason). Not maintenance mode: rejections say the reason.
   */
  closed?: ReadonlySet<string> | ReadonlyMap<string, string>;
  /** Per-host cap on FT halves, for hosts that do not say. */
  placementOptions?: ClusterSnapshot['options'];
}

/** A placement snapshot and what could not go into it. */
export interface BuiltSnapshot {
  snapshot: ClusterSnapshot;
  /** VMs that cannot be placed at all now, and why (a `must` rule's group has no live host). */
  blocked: Map<string, string>;
  /** Rules left out, and why. */
  dropped: string[];
}

/**
 * The placement snapshot of the inventory: live hosts (maintenance as the manager recorded it, or
 * requested), desired VMs where their primary and secondary run, their VM-host rules and the store's
 * rules (members that are not desired VMs dropped; a rule whose group has no live host dropped, and for
 * `must` its VMs reported blocked).
 */
export function buildSnapshot(inv: Inventory, views: ReadonlyMap<string, PairView>, o: SnapshotOptions = {}): BuiltSnapshot {
  const hosts: HostSpec[] = [...inv.hosts.values()].map((h) => ({
    id: h.id,
    capacity: { ...h.capacity },
    groups: hostGroupsOf(inv, h.id),
    ftCompatId: h.compatId,
    maintenance: maintenanceOf(inv, h.id) !== 'off' || inv.requests.get(h.id)?.on === true,
    ...(o.closed?.has(h.id) === true ? { unavailable: closedReason(o.closed, h.id) } : {}),
    maxFtVms: h.maxFtVms,
    ...(typeof h.maxFtVcpus === 'number' ? { maxFtVcpus: h.maxFtVcpus } : {}),
  }));
  const groups = new Set(hosts.flatMap((h) => h.groups ?? []));
  const vms: VmSpec[] = [];
  for (const d of [...inv.desired.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))) {
    const v = views.get(d.id);
    // Demand as DRS sees it: what the VM was declared to need, or what its primary measurably uses if
    // more (MIPS and FT logging bandwidth from the instance's stats); memory stays as declared.
    const measured = v?.primary?.stats;
    const spec: VmSpec = {
      id: d.id,
      demand: {
        ...d.demand,
        ...(measured ? { mips: Math.max(d.demand.mips, measured.mips), logBandwidth: Math.max(d.demand.logBandwidth, measured.logBandwidth) } : {}),
      },
      vcpus: d.vcpus,
      ft: d.ft,
    };
    if (v?.primary !== undefined) spec.host = v.primary.host;
    if (v?.secondary !== undefined && d.ft) spec.secondaryHost = v.secondary.host;
    if (d.registeredHost !== undefined && inv.hosts.has(d.registeredHost)) spec.registeredHost = d.registeredHost;
    vms.push(spec);
  }
  const known = new Set(vms.map((v) => v.id));
  const blocked = new Map<string, string>();
  const dropped: string[] = [];
  const rules: PlacementRule[] = [];
  const candidates: PlacementRule[] = [
    ...[...inv.desired.values()].flatMap((d) => d.rules.map((r, i): PlacementRule => ({ kind: 'vm-host', id: `${d.id}#${i}`, type: r.type, vms: [d.id], hostGroup: r.hostGroup }))),
    ...inv.rules,
  ];
  const ids = new Set<string>();
  for (const r of candidates) {
    if (ids.has(r.id)) {
      dropped.push(`rule ${r.id}: the id is used twice`);
      continue;
    }
    ids.add(r.id);
    const members = r.vms.filter((vm) => known.has(vm));
    if (r.kind === 'ft-split') {
      if (members.length === 0) continue;
      // A site with no live host is left out: its members run on the others (an FT VM unprotected when
      // one site is left — never both halves in one site).
      const sites = r.hostGroups.filter((g) => groups.has(g));
      if (sites.length === 0) {
        for (const vm of members) blocked.set(vm, `rule ${r.id}: runs only in host groups ${r.hostGroups.join(', ')}, and no live host is in any of them`);
        continue;
      }
      rules.push({ ...r, vms: members, hostGroups: sites });
    } else if (r.kind === 'vm-host') {
      if (members.length === 0) continue;
      if (!groups.has(r.hostGroup)) {
        if (r.type === 'must') for (const vm of members) blocked.set(vm, `rule ${r.id}: must run in host group ${r.hostGroup}, and no live host is in it`);
        else dropped.push(`rule ${r.id}: no live host is in group ${r.hostGroup}`);
        continue;
      }
      rules.push({ ...r, vms: members });
    } else {
      if (members.length < 2) continue;
      rules.push({ ...r, vms: members });
    }
  }
  const snapshot: ClusterSnapshot = { hosts, vms, rules };
  if (o.baseline !== undefined) snapshot.compatBaseline = o.baseline;
  if (o.placementOptions !== undefined) snapshot.options = o.placementOptions;
  return { snapshot, blocked, dropped };
}

function closedReason(closed: ReadonlySet<string> | ReadonlyMap<string, string>, host: string): string {
  return (closed instanceof Map ? closed.get(host) : undefined) ?? 'closed to new halves for now';
}

/**
 * A copy of the snapshot in which `hosts` take no new half, each for the reason given (a set: a
 * generic reason); placement's rejections say that reason (`host-unavailable`), not maintenance mode.
 */
export function closeHosts(snapshot: ClusterSnapshot, hosts: ReadonlySet<string> | ReadonlyMap<string, string>): ClusterSnapshot {
  if (hosts.size === 0) return snapshot;
  return { ...snapshot, hosts: snapshot.hosts.map((h) => (hosts.has(h.id) && h.maintenance !== true && h.unavailable === undefined ? { ...h, unavailable: closedReason(hosts, h.id) } : h)) };
}

/** Declared load of a host, its halves, and its FT halves and their vCPUs (what the FT caps limit). */
export interface HostLoad {
  cpu: number;
  memory: number;
  halves: string[];
  ftVms: number;
  ftVcpus: number;
}

/** Declared load of each host: the demand of the halves on it over its capacity. */
export function hostLoads(inv: Inventory, views: readonly PairView[]): Map<string, HostLoad> {
  const out = new Map<string, HostLoad>();
  for (const h of inv.hosts.values()) out.set(h.id, { cpu: 0, memory: 0, halves: [], ftVms: 0, ftVcpus: 0 });
  for (const v of views) {
    for (const r of inv.instances.get(v.vm) ?? []) {
      const l = out.get(r.host);
      const h = inv.hosts.get(r.host);
      if (l === undefined || h === undefined) continue;
      const tag = r === v.primary ? 'P' : r === v.secondary ? 'S' : r.role === 'primary' ? 'p?' : 's?';
      l.halves.push(`${v.vm}(${tag})`);
      if (v.desired !== undefined) {
        l.cpu += v.desired.demand.mips / h.capacity.mips;
        l.memory += v.desired.demand.memoryBytes / h.capacity.memoryBytes;
        if (v.desired.ft && (r === v.primary || r === v.secondary)) {
          l.ftVms += 1;
          l.ftVcpus += v.desired.vcpus;
        }
      }
    }
  }
  return out;
}
