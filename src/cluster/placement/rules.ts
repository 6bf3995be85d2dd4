// Hard and soft rule checks shared by every placement operation: may this half run on that host, and
// which preferences would it break there. Reads the state only; never moves anything.
import { formatBytes, formatMips, formatRate } from './format.js';
import type { Cluster, Role } from './model.js';
import type { State } from './state.js';

/** Why a host was rejected for a half. Every variant carries its numbers and a one-line `message`. */
export type Rejection =
  | { code: 'host-disconnected'; host: string; message: string }
  | { code: 'host-maintenance'; host: string; message: string }
  /** Takes nothing new for a reason of the caller's (HostSpec.unavailable), not maintenance mode. */
  | { code: 'host-unavailable'; host: string; reason: string; message: string }
  | { code: 'host-evacuating'; host: string; message: string }
  | {
      code: 'capacity';
      host: string;
      resource: 'mips' | 'memory' | 'log-bandwidth';
      /** Demand of the half. */
      needed: number;
      /** Limit minus what the host's running halves use (may be negative when overcommitted). */
      free: number;
      /** Capacity times the overcommit ratio. */
      limit: number;
      message: string;
    }
  | { code: 'ft-vm-cap'; host: string; cap: number; count: number; message: string }
  | { code: 'ft-vcpu-cap'; host: string; cap: number; used: number; needed: number; message: string }
  | { code: 'ft-anti-affinity'; host: string; vm: string; otherRole: 'primary' | 'secondary'; message: string }
  | { code: 'compat-baseline'; host: string; compatId: string; baseline: string; message: string }
  | { code: 'compat-pair'; host: string; compatId: string; otherHost: string; otherCompatId: string; message: string }
  | { code: 'compat-required'; host: string; compatId: string; required: string; message: string }
  | { code: 'vm-host-rule'; host: string; rule: string; type: 'must' | 'must-not'; group: string; message: string }
  | {
      code: 'vm-vm-rule';
      host: string;
      rule: string;
      type: 'affinity' | 'anti-affinity';
      /** The other members that make the host wrong: elsewhere (affinity) or on it (anti-affinity). */
      vms: string[];
      message: string;
    }
  | { code: 'legacy-registered-host'; host: string; registeredHost: string | undefined; message: string }
  /** An FT split (Metro) rule: the host is in none of its groups, or shares one with the other half's host. */
  | { code: 'ft-split'; host: string; rule: string; groups: string[]; otherHost?: string; message: string };

/** A soft rule (should / should-not, or a soft VM-VM rule) a half would break on a host. */
export interface SoftViolation {
  rule: string;
  type: 'should' | 'should-not' | 'affinity' | 'anti-affinity';
  host: string;
  /** VM-VM rules: the members that make it break (elsewhere for affinity, on the host for anti). */
  vms: string[];
  /** Number of broken pairs (VM-VM) or 1 (VM-host): the unit soft scores add up. */
  weight: number;
  message: string;
}

/** Which half of a VM. */
export function roleOf(c: Cluster, vm: number, secondary: boolean): Role {
  return c.ft[vm] ? (secondary ? 'secondary' : 'primary') : 'vm';
}

/** `vm-3`, `vm-3 (secondary)`. */
export function halfName(c: Cluster, vm: number, secondary: boolean): string {
  const r = roleOf(c, vm, secondary);
  return r === 'vm' ? c.vmIds[vm]! : `${c.vmIds[vm]!} (${r})`;
}

/**
 * Host-side checks: connected, not in maintenance or being evacuated, free MIPS / memory / log
 * bandwidth, FT VM and FT vCPU caps. `freed` is the host the half leaves (its own usage there does not
 * count against it), -1 for a new half. With `out` null, stops at the first failure.
 */
export function checkHost(c: Cluster, s: State, vm: number, h: number, freed: number, out: Rejection[] | null): boolean {
  const host = c.hostIds[h]!;
  if (!c.alive[h]) {
    out?.push({ code: 'host-disconnected', host, message: `${host} is not connected` });
    return false;
  }
  if (h === s.excluded) {
    out?.push({ code: 'host-evacuating', host, message: `${host} is being evacuated` });
    return false;
  }
  const why = c.unavailable[h];
  if (why !== undefined) {
    out?.push({ code: 'host-unavailable', host, reason: why, message: `${host} takes no new VM half: ${why}` });
    return false;
  }
  if (c.maintenance[h]) {
    out?.push({ code: 'host-maintenance', host, message: `${host} is in maintenance mode` });
    return false;
  }
  const own = h === freed;
  let ok = true;
  const cap = (resource: 'mips' | 'memory' | 'log-bandwidth', needed: number, limit: number, used: number): void => {
    const free = limit - used + (own ? needed : 0);
    if (needed <= free) return;
    ok = false;
    if (!out) return;
    const f = resource === 'mips' ? formatMips : resource === 'memory' ? formatBytes : formatRate;
    const what = resource === 'mips' ? 'CPU' : resource === 'memory' ? 'memory' : 'FT logging bandwidth';
    out.push({
      code: 'capacity',
      host,
      resource,
      needed,
      free,
      limit,
      message: `${what} ${f(needed)} needed, ${f(Math.max(0, free))} free${free < 0 ? ` (overcommitted by ${f(-free)})` : ''} of ${f(limit)}`,
    });
  };
  cap('mips', c.mips[vm]!, c.limMips[h]!, s.usedMips[h]!);
  if (!ok && !out) return false;
  cap('memory', c.mem[vm]!, c.limMem[h]!, s.usedMem[h]!);
  if (!ok && !out) return false;
  cap('log-bandwidth', c.log[vm]!, c.limLog[h]!, s.usedLog[h]!);
  if (!ok && !out) return false;
  if (c.ft[vm]) {
    const count = s.ftVms[h]! - (own ? 1 : 0);
    const vmCap = c.maxFtVms[h]!;
    if (count + 1 > vmCap) {
      ok = false;
      if (!out) return false;
      out.push({ code: 'ft-vm-cap', host, cap: vmCap, count, message: `FT VM cap ${vmCap} reached (${count} FT VMs on ${host})` });
    }
    const needed = c.vcpus[vm]!;
    const used = s.ftVcpus[h]! - (own ? needed : 0);
    const cpuCap = c.maxFtVcpus[h]!;
    if (used + needed > cpuCap) {
      ok = false;
      if (!out) return false;
      out.push({
        code: 'ft-vcpu-cap',
        host,
        cap: cpuCap,
        used,
        needed,
        message: `FT vCPU cap ${cpuCap}: ${used} in use, ${needed} needed`,
      });
    }
  }
  return ok;
}

/** Members of a VM-VM rule other than `vm` whose primary runs on `h`, and those placed anywhere. */
function ruleMates(s: State, r: number, vm: number, h: number, ignore: number): { at: number; placed: number } {
  const count = s.ruleCount[r]!;
  const self = s.running(vm, false) ? s.pri[vm]! : -1;
  const at = (count.get(h) ?? 0) - (self === h ? 1 : 0);
  let placed = s.rulePlaced[r]! - (self >= 0 ? 1 : 0);
  if (ignore >= 0 && ignore !== h) placed -= (count.get(ignore) ?? 0) - (self === ignore ? 1 : 0);
  return { at, placed };
}

/** Names of the members of rule `r` (other than `vm`) that are on `h` (`on` true) or elsewhere. */
function mateNames(c: Cluster, s: State, r: number, vm: number, h: number, on: boolean, ignore: number): string[] {
  const names: string[] = [];
  for (const m of c.vmRules[r]!.vms) {
    if (m === vm || !s.running(m, false)) continue;
    const mh = s.pri[m]!;
    if (mh === ignore && mh !== h) continue;
    if ((mh === h) === on) names.push(on ? c.vmIds[m]! : `${c.vmIds[m]!} on ${c.hostIds[mh]!}`);
  }
  return names;
}

/**
 * Rule checks: FT anti-affinity with the other half (on `partner`, -1 for none), FT compatibility
 * (baseline, the partner's host, the VM's required id), must / must-not VM-host rules (both halves)
 * and hard VM-VM rules (the primary or a non-FT VM only). `ignore` is a host whose VM-VM rule mates
 * are leaving with this VM (evacuation), so hard affinity does not hold the VM to them. With `out`
 * null, stops at the first failure.
 */
export function checkRules(
  c: Cluster,
  s: State,
  vm: number,
  secondary: boolean,
  h: number,
  partner: number,
  ignore: number,
  out: Rejection[] | null,
): boolean {
  const host = c.hostIds[h]!;
  let ok = true;
  const ft = c.ft[vm] === 1;
  if (ft && partner === h) {
    if (!out) return false;
    ok = false;
    const otherRole = secondary ? 'primary' : 'secondary';
    out.push({
      code: 'ft-anti-affinity',
      host,
      vm: c.vmIds[vm]!,
      otherRole,
      message: `anti-affinity with ${otherRole} ${c.vmIds[vm]!} on ${host}`,
    });
  }
  const id = c.compat[h]!;
  const req = c.required[vm];
  if (req !== undefined && req !== id) {
    if (!out) return false;
    ok = false;
    out.push({ code: 'compat-required', host, compatId: id, required: req, message: `compat id ${id} ≠ ${req} required by ${c.vmIds[vm]!}` });
  }
  if (ft && c.baseline !== undefined && id !== c.baseline) {
    if (!out) return false;
    ok = false;
    out.push({ code: 'compat-baseline', host, compatId: id, baseline: c.baseline, message: `compat id ${id} ≠ baseline ${c.baseline}` });
  }
  if (ft && partner >= 0 && partner !== h && c.compat[partner] !== id) {
    if (!out) return false;
    ok = false;
    const other = c.compat[partner]!;
    const otherRole = secondary ? 'primary' : 'secondary';
    out.push({
      code: 'compat-pair',
      host,
      compatId: id,
      otherHost: c.hostIds[partner]!,
      otherCompatId: other,
      message: `compat id ${id} ≠ ${other} of the ${otherRole}'s host ${c.hostIds[partner]!}`,
    });
  }
  for (const r of c.hostRulesOf[vm]!) {
    const rule = c.hostRules[r]!;
    if (!rule.hard) continue;
    const inside = rule.inGroup[h] === 1;
    if (rule.type === 'must' ? inside : !inside) continue;
    if (!out) return false;
    ok = false;
    out.push({
      code: 'vm-host-rule',
      host,
      rule: rule.id,
      type: rule.type as 'must' | 'must-not',
      group: rule.group,
      message:
        rule.type === 'must'
          ? `rule ${rule.id}: ${c.vmIds[vm]!} must run in host group ${rule.group}, ${host} is not in it`
          : `rule ${rule.id}: ${c.vmIds[vm]!} must not run in host group ${rule.group}, ${host} is in it`,
    });
  }
  for (const r of c.splitRulesOf[vm]!) {
    const rule = c.splitRules[r]!;
    const here = rule.sites[h]!;
    const shared = ft && partner >= 0 && partner !== h ? here & rule.sites[partner]! : 0;
    if (here !== 0 && shared === 0) continue;
    if (!out) return false;
    ok = false;
    const otherRole = secondary ? 'primary' : 'secondary';
    const named = (bits: number) => rule.groups.filter((_, i) => (bits >>> i) & 1);
    out.push({
      code: 'ft-split',
      host,
      rule: rule.id,
      groups: [...rule.groups],
      ...(here !== 0 ? { otherHost: c.hostIds[partner]! } : {}),
      message:
        here === 0
          ? `rule ${rule.id}: ${c.vmIds[vm]!} runs only in host groups ${rule.groups.join(', ')}, ${host} is in none of them`
          : `rule ${rule.id}: the ${otherRole} of ${c.vmIds[vm]!} is on ${c.hostIds[partner]!} in ${named(shared).join(', ')}, and the two halves must be in different groups of ${rule.groups.join(', ')}`,
    });
  }
  if (!secondary) {
    for (const r of c.vmRulesOf[vm]!) {
      const rule = c.vmRules[r]!;
      if (!rule.hard) continue;
      const { at, placed } = ruleMates(s, r, vm, h, ignore);
      const broken = rule.type === 'affinity' ? at < placed : at > 0;
      if (!broken) continue;
      if (!out) return false;
      ok = false;
      const vms = mateNames(c, s, r, vm, h, rule.type === 'anti-affinity', ignore);
      out.push({
        code: 'vm-vm-rule',
        host,
        rule: rule.id,
        type: rule.type,
        vms,
        message:
          rule.type === 'affinity'
            ? `rule ${rule.id}: affinity with ${vms.join(', ')}`
            : `rule ${rule.id}: anti-affinity with ${vms.join(', ')} on ${host}`,
      });
    }
  }
  return ok;
}

/** Soft VM-host rules broken on `h` (1 each). Bind both halves. */
export function softHostScore(c: Cluster, vm: number, h: number): number {
  let n = 0;
  for (const r of c.hostRulesOf[vm]!) {
    const rule = c.hostRules[r]!;
    if (rule.hard) continue;
    const inside = rule.inGroup[h] === 1;
    if (rule.type === 'should' ? !inside : inside) n++;
  }
  return n;
}

/** Broken pairs of soft VM-VM rules if the VM's primary ran on `h`. */
export function softVmScore(c: Cluster, s: State, vm: number, h: number, ignore = -1): number {
  let n = 0;
  for (const r of c.vmRulesOf[vm]!) {
    const rule = c.vmRules[r]!;
    if (rule.hard) continue;
    const { at, placed } = ruleMates(s, r, vm, h, ignore);
    n += rule.type === 'affinity' ? placed - at : at;
  }
  return n;
}

/** Soft score of a half on `h`: what placement and balancing minimise before load. */
export function softScore(c: Cluster, s: State, vm: number, secondary: boolean, h: number, ignore = -1): number {
  return softHostScore(c, vm, h) + (secondary ? 0 : softVmScore(c, s, vm, h, ignore));
}

/** The soft rules a half would break on `h`, spelled out. */
export function softDetails(c: Cluster, s: State, vm: number, secondary: boolean, h: number, ignore = -1): SoftViolation[] {
  const host = c.hostIds[h]!;
  const out: SoftViolation[] = [];
  for (const r of c.hostRulesOf[vm]!) {
    const rule = c.hostRules[r]!;
    if (rule.hard) continue;
    const inside = rule.inGroup[h] === 1;
    if (rule.type === 'should' ? inside : !inside) continue;
    out.push({
      rule: rule.id,
      type: rule.type as 'should' | 'should-not',
      host,
      vms: [],
      weight: 1,
      message:
        rule.type === 'should'
          ? `soft rule ${rule.id}: ${c.vmIds[vm]!} should run in host group ${rule.group}, ${host} is not in it`
          : `soft rule ${rule.id}: ${c.vmIds[vm]!} should not run in host group ${rule.group}, ${host} is in it`,
    });
  }
  if (secondary) return out;
  for (const r of c.vmRulesOf[vm]!) {
    const rule = c.vmRules[r]!;
    if (rule.hard) continue;
    const { at, placed } = ruleMates(s, r, vm, h, ignore);
    const weight = rule.type === 'affinity' ? placed - at : at;
    if (weight === 0) continue;
    const vms = mateNames(c, s, r, vm, h, rule.type === 'anti-affinity', ignore);
    out.push({
      rule: rule.id,
      type: rule.type,
      host,
      vms,
      weight,
      message:
        rule.type === 'affinity'
          ? `soft rule ${rule.id}: affinity with ${vms.join(', ')}`
          : `soft rule ${rule.id}: anti-affinity with ${vms.join(', ')} on ${host}`,
    });
  }
  return out;
}

/** A hard rule a running half breaks where it is now. */
export interface HardViolation {
  vm: string;
  role: Role;
  host: string;
  rejection: Rejection;
}

/** A host whose running halves use more than a limit allows (after a failover, or as given). */
export interface Overcommit {
  host: string;
  resource: 'mips' | 'memory' | 'log-bandwidth' | 'ft-vms' | 'ft-vcpus';
  used: number;
  limit: number;
  message: string;
}

/** A soft rule a running half breaks where it is now. */
export interface SoftFinding {
  vm: string;
  role: Role;
  violation: SoftViolation;
}

/** Partner host of a half for rule checks: the other half's host if it runs, else -1. */
export function partnerOf(s: State, vm: number, secondary: boolean): number {
  if (!s.c.ft[vm]) return -1;
  return s.running(vm, !secondary) ? s.hostOf(vm, !secondary) : -1;
}

/** Hard rules a running half breaks where it is (capacity is a host matter, see {@link overcommits}). */
export function hardViolationsOf(c: Cluster, s: State, vm: number, secondary: boolean): Rejection[] {
  if (!s.running(vm, secondary)) return [];
  const out: Rejection[] = [];
  checkRules(c, s, vm, secondary, s.hostOf(vm, secondary), partnerOf(s, vm, secondary), -1, out);
  return out;
}

/** Whether a running half breaks a hard rule where it is. */
export function breaksHardRule(c: Cluster, s: State, vm: number, secondary: boolean): boolean {
  return s.running(vm, secondary) && !checkRules(c, s, vm, secondary, s.hostOf(vm, secondary), partnerOf(s, vm, secondary), -1, null);
}

/** Hosts over a limit. */
export function overcommits(c: Cluster, s: State): Overcommit[] {
  const out: Overcommit[] = [];
  for (let h = 0; h < c.hostIds.length; h++) {
    if (!c.alive[h]) continue;
    const host = c.hostIds[h]!;
    const over = (resource: Overcommit['resource'], used: number, limit: number, f: (n: number) => string): void => {
      if (used > limit) out.push({ host, resource, used, limit, message: `${host}: ${resource} ${f(used)} in use, limit ${f(limit)}` });
    };
    over('mips', s.usedMips[h]!, c.limMips[h]!, formatMips);
    over('memory', s.usedMem[h]!, c.limMem[h]!, formatBytes);
    over('log-bandwidth', s.usedLog[h]!, c.limLog[h]!, formatRate);
    over('ft-vms', s.ftVms[h]!, c.maxFtVms[h]!, String);
    over('ft-vcpus', s.ftVcpus[h]!, c.maxFtVcpus[h]!, String);
  }
  return out;
}

/** Every hard and soft rule broken by running halves, in VM order. */
export function ruleFindings(c: Cluster, s: State): { hard: HardViolation[]; soft: SoftFinding[] } {
  const hard: HardViolation[] = [];
  const soft: SoftFinding[] = [];
  for (let vm = 0; vm < c.vmIds.length; vm++) {
    for (const secondary of c.ft[vm] ? [false, true] : [false]) {
      if (!s.running(vm, secondary)) continue;
      const role = roleOf(c, vm, secondary);
      const h = s.hostOf(vm, secondary);
      for (const rejection of hardViolationsOf(c, s, vm, secondary)) hard.push({ vm: c.vmIds[vm]!, role, host: c.hostIds[h]!, rejection });
      for (const violation of softDetails(c, s, vm, secondary, h)) soft.push({ vm: c.vmIds[vm]!, role, violation });
    }
  }
  return { hard, soft };
}
