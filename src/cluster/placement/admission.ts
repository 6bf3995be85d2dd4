// HA admission control ("host failures cluster tolerates", vSphere's slot policy): is there failover
// capacity to restart every VM, and re-protect every FT VM, after the loss of any N hosts? Pure.
import { formatBytes, formatMips } from './format.js';
import type { Cluster } from './model.js';

/** One host's failover capacity in slots. */
export interface AdmissionHost {
  host: string;
  /** Slots the host holds: min over CPU and memory of capacity (× overcommit) / slot size. */
  slots: number;
  /** Of those, slots an FT half may use (0 on a host of another compat id; capped by the FT caps). */
  ftSlots: number;
}

/** Why admission was refused. */
export type AdmissionCode = 'insufficient-failover-capacity' | 'insufficient-ft-failover-capacity' | 'too-few-hosts';

/** Answer of {@link admission}. */
export interface AdmissionResult {
  kind: 'admission';
  /** True when every counted VM could be restarted (and every FT VM re-protected) after the loss. */
  ok: boolean;
  /** Set when `ok` is false. */
  code?: AdmissionCode;
  /** The policy: host failures the cluster tolerates (0: admission control off, always ok). */
  hostFailures: number;
  /** The VM being admitted, if one was asked about (counted like every VM of the snapshot). */
  vm?: string;
  /** The slot: the largest CPU and memory demand of the VMs counted (0 when none is counted). */
  slot: { mips: number; memoryBytes: number };
  /** Hosts that count (connected, not in maintenance mode), with their slots, in id order. */
  hosts: AdmissionHost[];
  /** The hosts assumed lost: the N with the most slots (ties: the smaller id). */
  lost: string[];
  /** VM halves that must run after the loss: 1 per VM without FT, 2 per FT VM (a restart and its re-protection). */
  halvesNeeded: number;
  /** Slots on the hosts that remain. */
  slotsAfterFailure: number;
  /** FT VMs counted, and the FT slots that remain for their halves (at most one half of a VM per host). */
  ftVms: number;
  ftSlotsAfterFailure: number;
  /** Slots left over after the loss (negative: short by that many). */
  spareSlots: number;
  /** One line saying what was decided and with which numbers. */
  reason: string;
}

/** Largest slot count per host that is still a safe integer when a slot dimension is tiny. */
const MAX_SLOTS = 0x3fffffff;

function slotsOf(capacity: number, slot: number): number {
  if (slot <= 0) return MAX_SLOTS;
  return Math.min(MAX_SLOTS, Math.floor(capacity / slot));
}

/**
 * Failover capacity under the "host failures cluster tolerates" policy. Every VM of the snapshot is
 * counted, placed or not: the snapshot holds the VMs the cluster is to run (a VM down now is one HA is
 * to restart, and a record missing for a moment must not free its slot). `vm` names the VM being
 * admitted, for the reason. The slot is the largest MIPS and memory demand among them; a host holds min(CPU limit / slot MIPS, memory limit / slot memory) slots, and an FT half
 * also needs a host of the baseline's compat id under its FT VM and FT vCPU caps. The worst case loses
 * the `hostFailures` hosts with the most slots. Admitted when the rest hold every half: one per VM
 * without FT, two per FT VM (its restart and its new secondary, never on one host).
 */
export function admission(c: Cluster, hostFailures: number, vm = -1): AdmissionResult {
  const counted: number[] = [];
  for (let v = 0; v < c.vmIds.length; v++) counted.push(v);
  let slotMips = 0;
  let slotMem = 0;
  let maxFtVcpus = 0;
  let ftVms = 0;
  let halvesNeeded = 0;
  for (const v of counted) {
    slotMips = Math.max(slotMips, c.mips[v]!);
    slotMem = Math.max(slotMem, c.mem[v]!);
    if (c.ft[v]) {
      ftVms++;
      maxFtVcpus = Math.max(maxFtVcpus, c.vcpus[v]!);
      halvesNeeded += 2;
    } else halvesNeeded += 1;
  }
  const hosts: AdmissionHost[] = [];
  for (let h = 0; h < c.hostIds.length; h++) {
    // Maintenance mode takes a host out of the failover capacity; a host closed only for a while
    // (HostSpec.unavailable) still counts.
    if (!c.alive[h] || (c.maintenance[h] === 1 && c.unavailable[h] === undefined)) continue;
    const slots = Math.min(slotsOf(c.limMips[h]!, slotMips), slotsOf(c.limMem[h]!, slotMem));
    let ftSlots = 0;
    if (c.baseline === undefined || c.compat[h] === c.baseline) {
      ftSlots = Math.min(slots, c.maxFtVms[h]!, maxFtVcpus > 0 ? Math.floor(c.maxFtVcpus[h]! / maxFtVcpus) : MAX_SLOTS);
    }
    hosts.push({ host: c.hostIds[h]!, slots, ftSlots });
  }
  const n = Math.max(0, Math.floor(hostFailures));
  // Each constraint is checked against its own worst case: the N hosts that hold the most of it.
  const worst = (key: (x: AdmissionHost) => number): AdmissionHost[] =>
    [...hosts].sort((a, b) => key(b) - key(a) || (a.host < b.host ? -1 : a.host > b.host ? 1 : 0)).slice(0, n);
  const lostBySlots = worst((x) => x.slots);
  const lostByFt = worst((x) => x.ftSlots);
  const remaining = (lost: readonly AdmissionHost[]) => hosts.filter((x) => !lost.includes(x));
  const slotsAfterFailure = Math.min(MAX_SLOTS, remaining(lostBySlots).reduce((a, x) => a + x.slots, 0));
  // At most one half of each FT VM per host: a host contributes at most `ftVms` FT slots.
  const ftSlotsAfterFailure = Math.min(MAX_SLOTS, remaining(lostByFt).reduce((a, x) => a + Math.min(x.ftSlots, ftVms), 0));
  const lost = lostBySlots.map((x) => x.host);
  const base = {
    kind: 'admission' as const,
    hostFailures: n,
    ...(vm >= 0 ? { vm: c.vmIds[vm]! } : {}),
    slot: { mips: slotMips, memoryBytes: slotMem },
    hosts,
    lost,
    halvesNeeded,
    slotsAfterFailure,
    ftVms,
    ftSlotsAfterFailure,
    spareSlots: slotsAfterFailure - halvesNeeded,
  };
  const slotText = `slot ${formatMips(slotMips)}, ${formatBytes(slotMem)}`;
  const withVm = vm >= 0 ? ` with ${c.vmIds[vm]!}` : '';
  const policy = `HA admission control (${n} host failure${n === 1 ? '' : 's'} tolerated)`;
  if (n === 0) return { ...base, ok: true, reason: `${policy}: off` };
  if (counted.length === 0) return { ...base, ok: true, reason: `${policy}: no VM` };
  const lostText = lost.length > 0 ? `losing ${lost.join(', ')}` : 'the loss';
  if (hosts.length <= n) {
    return { ...base, ok: false, code: 'too-few-hosts', reason: `${policy}: the cluster has ${hosts.length} host(s) in service; after losing ${n} none would be left to restart VMs on` };
  }
  if (slotsAfterFailure < halvesNeeded) {
    return {
      ...base,
      ok: false,
      code: 'insufficient-failover-capacity',
      reason: `${policy}: after ${lostText}, ${slotsAfterFailure} slot(s) would remain for the ${halvesNeeded} VM half(s) that must run${withVm} (${slotText}; an FT VM needs 2)`,
    };
  }
  if (ftSlotsAfterFailure < 2 * ftVms) {
    const ftLost = lostByFt.map((x) => x.host).join(', ');
    return {
      ...base,
      ok: false,
      code: 'insufficient-ft-failover-capacity',
      reason: `${policy}: after losing ${ftLost}, the remaining hosts could run ${ftSlotsAfterFailure} FT half(s) (compat id, FT VM and FT vCPU caps, one half of a VM per host) for the ${2 * ftVms} of ${ftVms} FT VM(s)${withVm}`,
    };
  }
  return {
    ...base,
    ok: true,
    reason: `${policy}: after ${lostText}, ${slotsAfterFailure} slot(s) remain for ${halvesNeeded} VM half(s)${withVm} (${slotText}); ${slotsAfterFailure - halvesNeeded} spare`,
  };
}
