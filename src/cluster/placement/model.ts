// Placement model: the cluster snapshot's types, their validation, and the indexed, canonically ordered
// form every operation reads. Pure data: no I/O, no clock, no randomness; never mutates the snapshot.
import { PlacementInputError } from './errors.js';

/** What a host offers. MIPS and memory must be positive; log bandwidth may be 0 (no FT logging NIC). */
export interface HostCapacity {
  /** Instructions per second the host can give its VMs, in millions. */
  mips: number;
  /** Memory for VMs, in bytes (a safe integer). */
  memoryBytes: number;
  /** FT logging bandwidth, in bytes per second (a safe integer). */
  logBandwidth: number;
}

/** One host of the cluster as the manager sees it now. */
export interface HostSpec {
  /** Unique id; ties between equally good hosts go to the smaller id (plain string order). */
  id: string;
  capacity: HostCapacity;
  /** Names of the host groups this host belongs to (VM-host rules name groups). */
  groups?: readonly string[];
  /** In maintenance mode: receives nothing and is not part of the load spread. Default false. */
  maintenance?: boolean;
  /**
   * Receives nothing for the reason given (its agent could not be reached lately, say), like a host in
   * maintenance mode, but rejections say this reason instead. Absent: available.
   */
  unavailable?: string;
  /** FT compatibility id (CPU feature set and FT version), e.g. `rv32imac-v1`. */
  ftCompatId: string;
  /** Connected and alive. A disconnected host runs nothing and receives nothing. Default true. */
  connected?: boolean;
  /** Overrides {@link PlacementOptions.maxFtVmsPerHost} for this host (0: no limit). */
  maxFtVms?: number;
  /** Overrides {@link PlacementOptions.maxFtVcpusPerHost} for this host (0: no limit). */
  maxFtVcpus?: number;
}

/** What a VM needs. Each half of an FT pair needs all of it on its own host. */
export interface VmDemand {
  /** CPU demand in MIPS (non-negative, finite). */
  mips: number;
  /** Memory in bytes (a non-negative safe integer); also the migration cost. */
  memoryBytes: number;
  /** FT logging bandwidth in bytes per second (a non-negative safe integer). Default 0. */
  logBandwidth?: number;
}

/** One VM. For an FT VM, `host` is the primary's host and `secondaryHost` the secondary's. */
export interface VmSpec {
  /** Unique id. */
  id: string;
  demand: VmDemand;
  /** Virtual CPUs (a positive integer); counts against the FT vCPU cap for FT VMs. Default 1. */
  vcpus?: number;
  /** Fault tolerant: a primary and a secondary, never on one host. Default false. */
  ft?: boolean;
  /** Host the VM (the primary, for FT) runs on now; absent when not placed. */
  host?: string;
  /** FT only: host of the secondary; absent when the VM has none (not protected). */
  secondaryHost?: string;
  /** Host the VM is registered on: in legacy mode an FT primary powers on only there. */
  registeredHost?: string;
  /** The FT compatibility id the VM requires of its hosts, if any. */
  ftCompatId?: string;
}

/** Kinds of VM-host rule: `must`/`must-not` are hard, `should`/`should-not` soft. */
export type VmHostRuleType = 'must' | 'must-not' | 'should' | 'should-not';

/** VMs that must (not) / should (not) run on the hosts of a group. Binds both halves of an FT pair. */
export interface VmHostRule {
  kind: 'vm-host';
  id: string;
  type: VmHostRuleType;
  vms: readonly string[];
  /** A group at least one host lists in its `groups`. */
  hostGroup: string;
}

/** VMs that run together (affinity) or apart (anti-affinity). Binds FT primaries only, as in vSphere. */
export interface VmVmRule {
  kind: 'vm-vm';
  id: string;
  type: 'affinity' | 'anti-affinity';
  /** Hard rules are never broken by a recommendation; soft ones are preferences. */
  hard: boolean;
  /** At least two distinct VMs. */
  vms: readonly string[];
}

/**
 * FT Metro-style placement (hard): each half of a member FT VM runs on a host of one of `hostGroups`
 * (the sites), and the primary and the secondary never share one — losing a site leaves one half. A
 * member without FT only has to run in one of the groups.
 */
export interface FtSplitRule {
  kind: 'ft-split';
  id: string;
  vms: readonly string[];
  /** Distinct groups, each one a host lists in its `groups`. */
  hostGroups: readonly string[];
}

/** A placement rule. */
export type PlacementRule = VmHostRule | VmVmRule | FtSplitRule;

/** Cluster-wide limits. */
export interface PlacementOptions {
  /**
   * FT VMs (primaries plus secondaries) per host. Default 4, as in vSphere; 0 means no limit, as
   * vSphere's `das.maxftvmsperhost` (0 disables the check).
   */
  maxFtVmsPerHost?: number;
  /** vCPUs of FT VMs (primaries plus secondaries) per host. Default 8, as in vSphere; 0 means no limit. */
  maxFtVcpusPerHost?: number;
  /**
   * How far demand may exceed capacity, as a ratio (1 = no overcommit, the default). A host of
   * 1000 MIPS with `mips: 1.5` accepts up to 1500 MIPS of demand.
   */
  overcommit?: { mips?: number; memory?: number; logBandwidth?: number };
}

/** A cluster as the manager sees it: the input of every placement operation. */
export interface ClusterSnapshot {
  hosts: readonly HostSpec[];
  vms: readonly VmSpec[];
  rules?: readonly PlacementRule[];
  /**
   * The cluster's FT compatibility baseline (the counterpart of EVC). Present: `integrated` mode, FT
   * halves go only to hosts whose id equals it and are placed and balanced like other VMs. Absent:
   * `legacy` mode, FT pairs are disabled for load balancing.
   */
  compatBaseline?: string;
  options?: PlacementOptions;
}

/** `integrated` when the snapshot has a compatibility baseline, `legacy` when not. */
export type PlacementMode = 'integrated' | 'legacy';

/** Which half of a VM: a non-FT VM is `vm`; an FT VM has a `primary` and a `secondary`. */
export type Role = 'vm' | 'primary' | 'secondary';

/** Default FT VMs per host (vSphere's). */
export const DEFAULT_MAX_FT_VMS = 4;
/** Default FT vCPUs per host (vSphere's). */
export const DEFAULT_MAX_FT_VCPUS = 8;
/** A cap of 0 (FT VMs or FT vCPUs per host) means no limit, as vSphere's `das.maxftvmsperhost`. */
export const NO_LIMIT = 0;

/** The cap as the checks use it: {@link NO_LIMIT} becomes the largest Int32 (never reached). */
function capOf(n: number): number {
  return n === NO_LIMIT ? 0x7fffffff : n;
}

/** A VM-host rule resolved to indices. */
export interface HostRuleIndex {
  readonly id: string;
  readonly type: VmHostRuleType;
  readonly group: string;
  /** 1 for each host index in the group. */
  readonly inGroup: Uint8Array;
  readonly hard: boolean;
}

/** A VM-VM rule resolved to indices. */
export interface VmRuleIndex {
  readonly id: string;
  readonly type: 'affinity' | 'anti-affinity';
  readonly hard: boolean;
  /** Member VM indices, ascending. */
  readonly vms: readonly number[];
}

/** An FT split rule resolved to host bit masks: bit i set when the host is in `groups[i]`. */
export interface SplitRuleIndex {
  readonly id: string;
  readonly groups: readonly string[];
  /** Per host: the rule's groups it is in, as bits (at most 31 groups). */
  readonly sites: Uint32Array;
}

/**
 * The validated snapshot in canonical order: hosts and VMs sorted by id (plain string order), so
 * that every loop, sum and tie-break is the same whatever order the caller listed them in.
 * Internal to the placement engine.
 */
export interface Cluster {
  readonly mode: PlacementMode;
  readonly baseline: string | undefined;
  readonly hostIds: readonly string[];
  readonly hostIndex: ReadonlyMap<string, number>;
  readonly capMips: Float64Array;
  readonly capMem: Float64Array;
  readonly capLog: Float64Array;
  /** Capacity times the overcommit ratio: what demand may reach. */
  readonly limMips: Float64Array;
  readonly limMem: Float64Array;
  readonly limLog: Float64Array;
  readonly maxFtVms: Int32Array;
  readonly maxFtVcpus: Int32Array;
  readonly alive: Uint8Array;
  /** In maintenance mode, or unavailable (see {@link Cluster.unavailable}): a target of nothing. */
  readonly maintenance: Uint8Array;
  /** Why a host that is not in maintenance mode receives nothing (HostSpec.unavailable), per host. */
  readonly unavailable: ReadonlyArray<string | undefined>;
  readonly compat: readonly string[];
  readonly vmIds: readonly string[];
  readonly vmIndex: ReadonlyMap<string, number>;
  readonly mips: Float64Array;
  readonly mem: Float64Array;
  readonly log: Float64Array;
  readonly vcpus: Int32Array;
  readonly ft: Uint8Array;
  readonly required: readonly (string | undefined)[];
  /** Registered host index per VM, -1 when none. */
  readonly registered: Int32Array;
  /** Host index of the VM (primary) in the snapshot, -1 when not placed. */
  readonly initialPrimary: Int32Array;
  /** Host index of the secondary in the snapshot, -1 when none. */
  readonly initialSecondary: Int32Array;
  /** Rules sorted by id. */
  readonly hostRules: readonly HostRuleIndex[];
  readonly vmRules: readonly VmRuleIndex[];
  /** Per VM: indices into hostRules / vmRules, ascending. */
  readonly hostRulesOf: readonly (readonly number[])[];
  readonly vmRulesOf: readonly (readonly number[])[];
  readonly splitRules: readonly SplitRuleIndex[];
  readonly splitRulesOf: readonly (readonly number[])[];
}

/** Plain code-unit string order: locale-independent, so ties break the same everywhere. */
export function compareIds(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function fail(field: string, message: string): never {
  throw new PlacementInputError(field, message);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null;
}

function checkId(x: unknown, field: string): string {
  if (typeof x !== 'string' || x.length === 0) fail(field, `must be a non-empty string, got ${JSON.stringify(x)}`);
  return x;
}

function checkNumber(x: unknown, field: string, what: 'positive' | 'non-negative', integer: boolean): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) fail(field, `must be a finite number, got ${JSON.stringify(x)}`);
  if (what === 'positive' ? !(x > 0) : !(x >= 0)) fail(field, `must be ${what}, got ${x}`);
  if (integer && !Number.isSafeInteger(x)) fail(field, `must be an integer, got ${x}`);
  return x;
}

function optionalBool(x: unknown, field: string, dflt: boolean): boolean {
  if (x === undefined) return dflt;
  if (typeof x !== 'boolean') fail(field, `must be true or false, got ${JSON.stringify(x)}`);
  return x;
}

const HOST_RULE_TYPES: readonly string[] = ['must', 'must-not', 'should', 'should-not'];

/**
 * Validates a snapshot and builds its canonical index. Throws {@link PlacementInputError} naming the
 * first bad field (in the caller's own order and indices).
 */
export function buildCluster(snapshot: ClusterSnapshot): Cluster {
  if (!isObject(snapshot)) fail('snapshot', 'must be an object');
  if (!Array.isArray(snapshot.hosts)) fail('hosts', 'must be an array');
  if (!Array.isArray(snapshot.vms)) fail('vms', 'must be an array');
  const rulesIn: readonly unknown[] = snapshot.rules === undefined ? [] : snapshot.rules;
  if (!Array.isArray(rulesIn)) fail('rules', 'must be an array');

  let baseline: string | undefined;
  if (snapshot.compatBaseline !== undefined) baseline = checkId(snapshot.compatBaseline, 'compatBaseline');

  const opts: unknown = snapshot.options ?? {};
  if (!isObject(opts)) fail('options', 'must be an object');
  const defFtVms =
    opts.maxFtVmsPerHost === undefined ? DEFAULT_MAX_FT_VMS : checkNumber(opts.maxFtVmsPerHost, 'options.maxFtVmsPerHost', 'non-negative', true);
  const defFtVcpus =
    opts.maxFtVcpusPerHost === undefined
      ? DEFAULT_MAX_FT_VCPUS
      : checkNumber(opts.maxFtVcpusPerHost, 'options.maxFtVcpusPerHost', 'non-negative', true);
  const oc: unknown = opts.overcommit ?? {};
  if (!isObject(oc)) fail('options.overcommit', 'must be an object');
  const ocMips = oc.mips === undefined ? 1 : checkNumber(oc.mips, 'options.overcommit.mips', 'positive', false);
  const ocMem = oc.memory === undefined ? 1 : checkNumber(oc.memory, 'options.overcommit.memory', 'positive', false);
  const ocLog = oc.logBandwidth === undefined ? 1 : checkNumber(oc.logBandwidth, 'options.overcommit.logBandwidth', 'positive', false);

  // Hosts: validate in the caller's order (errors name their indices), then sort by id.
  const seenHosts = new Map<string, number>();
  snapshot.hosts.forEach((h: unknown, i) => {
    const f = `hosts[${i}]`;
    if (!isObject(h)) fail(f, 'must be an object');
    const id = checkId(h.id, `${f}.id`);
    const prev = seenHosts.get(id);
    if (prev !== undefined) fail(`${f}.id`, `duplicate host id "${id}" (also hosts[${prev}])`);
    seenHosts.set(id, i);
    if (!isObject(h.capacity)) fail(`${f}.capacity`, 'must be an object with mips, memoryBytes and logBandwidth');
    checkNumber(h.capacity.mips, `${f}.capacity.mips`, 'positive', false);
    checkNumber(h.capacity.memoryBytes, `${f}.capacity.memoryBytes`, 'positive', true);
    checkNumber(h.capacity.logBandwidth, `${f}.capacity.logBandwidth`, 'non-negative', true);
    checkId(h.ftCompatId, `${f}.ftCompatId`);
    if (h.groups !== undefined) {
      if (!Array.isArray(h.groups)) fail(`${f}.groups`, 'must be an array of group names');
      (h.groups as unknown[]).forEach((g, j) => checkId(g, `${f}.groups[${j}]`));
    }
    optionalBool(h.maintenance, `${f}.maintenance`, false);
    if (h.unavailable !== undefined && (typeof h.unavailable !== 'string' || h.unavailable === '')) fail(`${f}.unavailable`, 'must be a non-empty reason when present');
    optionalBool(h.connected, `${f}.connected`, true);
    if (h.maxFtVms !== undefined) checkNumber(h.maxFtVms, `${f}.maxFtVms`, 'non-negative', true);
    if (h.maxFtVcpus !== undefined) checkNumber(h.maxFtVcpus, `${f}.maxFtVcpus`, 'non-negative', true);
  });
  const hosts = [...snapshot.hosts].sort((a, b) => compareIds(a.id, b.id));
  const H = hosts.length;
  const hostIndex = new Map<string, number>();
  hosts.forEach((h, i) => hostIndex.set(h.id, i));
  const capMips = new Float64Array(H);
  const capMem = new Float64Array(H);
  const capLog = new Float64Array(H);
  const limMips = new Float64Array(H);
  const limMem = new Float64Array(H);
  const limLog = new Float64Array(H);
  const maxFtVms = new Int32Array(H);
  const maxFtVcpus = new Int32Array(H);
  const alive = new Uint8Array(H);
  const maintenance = new Uint8Array(H);
  const unavailable: Array<string | undefined> = [];
  const compat: string[] = [];
  const groupHosts = new Map<string, Uint8Array>();
  hosts.forEach((h, i) => {
    capMips[i] = h.capacity.mips;
    capMem[i] = h.capacity.memoryBytes;
    capLog[i] = h.capacity.logBandwidth;
    limMips[i] = h.capacity.mips * ocMips;
    limMem[i] = h.capacity.memoryBytes * ocMem;
    limLog[i] = h.capacity.logBandwidth * ocLog;
    maxFtVms[i] = capOf(h.maxFtVms ?? defFtVms);
    maxFtVcpus[i] = capOf(h.maxFtVcpus ?? defFtVcpus);
    alive[i] = h.connected === false ? 0 : 1;
    maintenance[i] = h.maintenance === true || h.unavailable !== undefined ? 1 : 0;
    unavailable.push(h.maintenance === true ? undefined : h.unavailable);
    compat.push(h.ftCompatId);
    for (const g of h.groups ?? []) {
      let m = groupHosts.get(g);
      if (m === undefined) groupHosts.set(g, (m = new Uint8Array(H)));
      m[i] = 1;
    }
  });

  // VMs.
  const seenVms = new Map<string, number>();
  const hostRef = (x: unknown, field: string): void => {
    if (x === undefined) return;
    const id = checkId(x, field);
    if (!hostIndex.has(id)) fail(field, `unknown host "${id}"`);
  };
  snapshot.vms.forEach((v: unknown, i) => {
    const f = `vms[${i}]`;
    if (!isObject(v)) fail(f, 'must be an object');
    const id = checkId(v.id, `${f}.id`);
    const prev = seenVms.get(id);
    if (prev !== undefined) fail(`${f}.id`, `duplicate VM id "${id}" (also vms[${prev}])`);
    seenVms.set(id, i);
    if (!isObject(v.demand)) fail(`${f}.demand`, 'must be an object with mips and memoryBytes');
    checkNumber(v.demand.mips, `${f}.demand.mips`, 'non-negative', false);
    checkNumber(v.demand.memoryBytes, `${f}.demand.memoryBytes`, 'non-negative', true);
    if (v.demand.logBandwidth !== undefined) checkNumber(v.demand.logBandwidth, `${f}.demand.logBandwidth`, 'non-negative', true);
    if (v.vcpus !== undefined) checkNumber(v.vcpus, `${f}.vcpus`, 'positive', true);
    const ft = optionalBool(v.ft, `${f}.ft`, false);
    hostRef(v.host, `${f}.host`);
    hostRef(v.secondaryHost, `${f}.secondaryHost`);
    hostRef(v.registeredHost, `${f}.registeredHost`);
    if (v.ftCompatId !== undefined) checkId(v.ftCompatId, `${f}.ftCompatId`);
    if (v.secondaryHost !== undefined) {
      if (!ft) fail(`${f}.secondaryHost`, `VM "${id}" is not FT and cannot have a secondary`);
      if (v.host === undefined) fail(`${f}.secondaryHost`, `VM "${id}" has a secondary but no primary host`);
      if (v.secondaryHost === v.host)
        fail(`${f}.secondaryHost`, `primary and secondary of "${id}" are both on "${v.host as string}"; they must never share a host`);
    }
  });
  const vms = [...snapshot.vms].sort((a, b) => compareIds(a.id, b.id));
  const V = vms.length;
  const vmIndex = new Map<string, number>();
  vms.forEach((v, i) => vmIndex.set(v.id, i));
  const mips = new Float64Array(V);
  const mem = new Float64Array(V);
  const log = new Float64Array(V);
  const vcpus = new Int32Array(V);
  const ftArr = new Uint8Array(V);
  const required: (string | undefined)[] = [];
  const registered = new Int32Array(V);
  const initialPrimary = new Int32Array(V);
  const initialSecondary = new Int32Array(V);
  const idx = (id: string | undefined): number => (id === undefined ? -1 : hostIndex.get(id)!);
  vms.forEach((v, i) => {
    mips[i] = v.demand.mips;
    mem[i] = v.demand.memoryBytes;
    log[i] = v.demand.logBandwidth ?? 0;
    vcpus[i] = v.vcpus ?? 1;
    ftArr[i] = v.ft === true ? 1 : 0;
    required.push(v.ftCompatId);
    registered[i] = idx(v.registeredHost);
    initialPrimary[i] = idx(v.host);
    initialSecondary[i] = idx(v.secondaryHost);
  });

  // Rules.
  const seenRules = new Map<string, number>();
  rulesIn.forEach((r: unknown, i) => {
    const f = `rules[${i}]`;
    if (!isObject(r)) fail(f, 'must be an object');
    const id = checkId(r.id, `${f}.id`);
    const prev = seenRules.get(id);
    if (prev !== undefined) fail(`${f}.id`, `duplicate rule id "${id}" (also rules[${prev}])`);
    seenRules.set(id, i);
    if (!Array.isArray(r.vms) || r.vms.length === 0) fail(`${f}.vms`, 'must be a non-empty array of VM ids');
    const members = new Set<string>();
    (r.vms as unknown[]).forEach((x, j) => {
      const vm = checkId(x, `${f}.vms[${j}]`);
      if (!vmIndex.has(vm)) fail(`${f}.vms[${j}]`, `unknown VM "${vm}"`);
      if (members.has(vm)) fail(`${f}.vms[${j}]`, `VM "${vm}" is listed twice`);
      members.add(vm);
    });
    if (r.kind === 'vm-host') {
      if (typeof r.type !== 'string' || !HOST_RULE_TYPES.includes(r.type))
        fail(`${f}.type`, `must be one of ${HOST_RULE_TYPES.join(', ')}, got ${JSON.stringify(r.type)}`);
      const g = checkId(r.hostGroup, `${f}.hostGroup`);
      if (!groupHosts.has(g)) fail(`${f}.hostGroup`, `no host is in group "${g}"`);
    } else if (r.kind === 'vm-vm') {
      if (r.type !== 'affinity' && r.type !== 'anti-affinity')
        fail(`${f}.type`, `must be affinity or anti-affinity, got ${JSON.stringify(r.type)}`);
      if (typeof r.hard !== 'boolean') fail(`${f}.hard`, `must be true or false, got ${JSON.stringify(r.hard)}`);
      if (members.size < 2) fail(`${f}.vms`, 'a VM-VM rule needs at least two VMs');
    } else if (r.kind === 'ft-split') {
      if (!Array.isArray(r.hostGroups) || r.hostGroups.length === 0 || r.hostGroups.length > 31) fail(`${f}.hostGroups`, 'must be an array of 1 to 31 host group names');
      const seenGroups = new Set<string>();
      (r.hostGroups as unknown[]).forEach((x, j) => {
        const g = checkId(x, `${f}.hostGroups[${j}]`);
        if (!groupHosts.has(g)) fail(`${f}.hostGroups[${j}]`, `no host is in group "${g}"`);
        if (seenGroups.has(g)) fail(`${f}.hostGroups[${j}]`, `group "${g}" is listed twice`);
        seenGroups.add(g);
      });
    } else {
      fail(`${f}.kind`, `must be "vm-host", "vm-vm" or "ft-split", got ${JSON.stringify(r.kind)}`);
    }
  });
  const rules = [...(rulesIn as readonly PlacementRule[])].sort((a, b) => compareIds(a.id, b.id));
  const hostRules: HostRuleIndex[] = [];
  const vmRules: VmRuleIndex[] = [];
  const hostRulesOf: number[][] = Array.from({ length: V }, () => []);
  const vmRulesOf: number[][] = Array.from({ length: V }, () => []);
  const splitRules: SplitRuleIndex[] = [];
  const splitRulesOf: number[][] = Array.from({ length: V }, () => []);
  for (const r of rules) {
    const members = r.vms.map((id) => vmIndex.get(id)!).sort((a, b) => a - b);
    if (r.kind === 'ft-split') {
      const sites = new Uint32Array(H);
      r.hostGroups.forEach((g, i) => {
        const m = groupHosts.get(g)!;
        for (let h = 0; h < H; h++) if (m[h]) sites[h]! |= 1 << i;
      });
      const k = splitRules.length;
      splitRules.push({ id: r.id, groups: [...r.hostGroups], sites });
      for (const m of members) splitRulesOf[m]!.push(k);
    } else if (r.kind === 'vm-host') {
      const k = hostRules.length;
      hostRules.push({ id: r.id, type: r.type, group: r.hostGroup, inGroup: groupHosts.get(r.hostGroup)!, hard: r.type === 'must' || r.type === 'must-not' });
      for (const m of members) hostRulesOf[m]!.push(k);
    } else {
      const k = vmRules.length;
      vmRules.push({ id: r.id, type: r.type, hard: r.hard, vms: members });
      for (const m of members) vmRulesOf[m]!.push(k);
    }
  }

  return {
    mode: baseline === undefined ? 'legacy' : 'integrated',
    baseline,
    hostIds: hosts.map((h) => h.id),
    hostIndex,
    capMips,
    capMem,
    capLog,
    limMips,
    limMem,
    limLog,
    maxFtVms,
    maxFtVcpus,
    alive,
    maintenance,
    unavailable,
    compat,
    vmIds: vms.map((v) => v.id),
    vmIndex,
    mips,
    mem,
    log,
    vcpus,
    ft: ftArr,
    required,
    registered,
    initialPrimary,
    initialSecondary,
    hostRules,
    vmRules,
    hostRulesOf,
    vmRulesOf,
    splitRules,
    splitRulesOf,
  };
}

/** Index of a VM named by an operation's argument, or a {@link PlacementInputError} naming `field`. */
export function vmArg(c: Cluster, id: unknown, field = 'vm'): number {
  if (typeof id !== 'string') fail(field, `must be a VM id string, got ${JSON.stringify(id)}`);
  const i = c.vmIndex.get(id);
  if (i === undefined) fail(field, `unknown VM "${id}"`);
  return i;
}

/** Index of a host named by an operation's argument, or a {@link PlacementInputError} naming `field`. */
export function hostArg(c: Cluster, id: unknown, field = 'host'): number {
  if (typeof id !== 'string') fail(field, `must be a host id string, got ${JSON.stringify(id)}`);
  const i = c.hostIndex.get(id);
  if (i === undefined) fail(field, `unknown host "${id}"`);
  return i;
}
