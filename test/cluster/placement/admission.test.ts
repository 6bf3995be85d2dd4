// HA admission control ("host failures cluster tolerates", the slot policy): a VM is admitted only if
// every VM that runs, and it, could be restarted — and every FT VM re-protected — after the loss of the
// N hosts with the most slots. Pure answers of the placement engine.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, PlacementInputError } from '../../../src/cluster/placement/index.js';
import { ftVm, host, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

/** `n` VMs without FT, 1000 MIPS and 4 GiB each, spread over the given hosts round-robin. */
function running(n: number, hosts: string[]): ReturnType<typeof vm>[] {
  return Array.from({ length: n }, (_, i) => vm(`v${String(i).padStart(2, '0')}`, { host: hosts[i % hosts.length]! }));
}

describe('HA admission control', () => {
  it('admits anything when it tolerates 0 host failures (off)', () => {
    const snap: ClusterSnapshot = { hosts: [host('h1')], vms: [...running(10, ['h1']), vm('new')] };
    const r = new Placement(snap).admission({ hostFailures: 0, vm: 'new' });
    expect([r.ok, r.reason]).toEqual([true, 'HA admission control (0 host failures tolerated): off']);
  });

  it('refuses the VM that would leave fewer slots than VM halves after the loss of one host', () => {
    // Three hosts of 10 000 MIPS / 64 GiB; VMs of 1000 MIPS / 4 GiB: 10 slots a host (CPU-bound).
    const hosts = [host('h1'), host('h2'), host('h3')];
    const fits = new Placement({ hosts, vms: [...running(19, ['h1', 'h2', 'h3']), vm('new')] }).admission({ hostFailures: 1, vm: 'new' });
    expect([fits.ok, fits.slotsAfterFailure, fits.halvesNeeded, fits.spareSlots]).toEqual([true, 20, 20, 0]);
    expect(fits.hosts.map((h) => h.slots)).toEqual([10, 10, 10]);
    const full = new Placement({ hosts, vms: [...running(20, ['h1', 'h2', 'h3']), vm('new')] }).admission({ hostFailures: 1, vm: 'new' });
    expect(full.ok).toBe(false);
    expect(full.code).toBe('insufficient-failover-capacity');
    expect(full.lost).toEqual(['h1']);
    expect(full.reason).toBe(
      'HA admission control (1 host failure tolerated): after losing h1, 20 slot(s) would remain for the 21 VM half(s) that must run with new (slot 1000 MIPS, 4.0 GiB; an FT VM needs 2)',
    );
    // The same cluster tolerating two failures has room for 10 halves only.
    const two = new Placement({ hosts, vms: [...running(10, ['h1', 'h2', 'h3']), vm('new')] }).admission({ hostFailures: 2, vm: 'new' });
    expect([two.ok, two.slotsAfterFailure, two.lost]).toEqual([false, 10, ['h1', 'h2']]);
  });

  it('sizes the slot by the largest VM and assumes the hosts with the most slots are lost', () => {
    // One 32 GiB VM makes every slot 32 GiB: big (128 GiB) holds 4, the others 2.
    const snap: ClusterSnapshot = {
      hosts: [host('a'), host('big', { memGiB: 128, mips: 100_000 }), host('c')],
      vms: [vm('huge', { memGiB: 32, host: 'a' }), vm('s1', { host: 'c' }), vm('s2', { host: 'c' }), vm('new')],
    };
    const r = new Placement(snap).admission({ hostFailures: 1, vm: 'new' });
    expect(r.slot).toEqual({ mips: 1000, memoryBytes: 32 * 1024 ** 3 });
    expect(r.hosts).toEqual([
      { host: 'a', slots: 2, ftSlots: 2 },
      { host: 'big', slots: 4, ftSlots: 4 },
      { host: 'c', slots: 2, ftSlots: 2 },
    ]);
    expect([r.lost, r.slotsAfterFailure, r.halvesNeeded, r.ok]).toEqual([['big'], 4, 4, true]);
  });

  it('counts two halves per FT VM and refuses when the FT caps leave no room to re-protect', () => {
    // Plenty of slots, but each host takes one FT half: after losing one of three, 2 FT halves fit.
    const hosts = [host('h1', { maxFtVms: 1 }), host('h2', { maxFtVms: 1 }), host('h3', { maxFtVms: 1 })];
    const one = new Placement({ hosts, vms: [ftVm('f1')], compatBaseline: BASE }).admission({ hostFailures: 1, vm: 'f1' });
    expect([one.ok, one.halvesNeeded, one.ftVms, one.ftSlotsAfterFailure]).toEqual([true, 2, 1, 2]);
    const two = new Placement({ hosts, vms: [ftVm('f1', { host: 'h1', secondaryHost: 'h2' }), ftVm('f2')], compatBaseline: BASE }).admission({ hostFailures: 1, vm: 'f2' });
    expect(two.ok).toBe(false);
    expect(two.code).toBe('insufficient-ft-failover-capacity');
    expect(two.reason).toMatch(/could run 2 FT half\(s\) .* for the 4 of 2 FT VM\(s\) with f2$/);
  });

  it('gives no FT slot to a host of another compat id, and puts one half of a VM per host', () => {
    // h3 has 10 slots but an old compat id; h1 and h2 could take many FT halves, yet one FT VM's two
    // halves need two hosts: losing h1 leaves h2 alone.
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { maxFtVms: 0 }), host('h2', { maxFtVms: 0 }), host('h3', { ftCompatId: 'old' })],
      vms: [ftVm('f1')],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).admission({ hostFailures: 1, vm: 'f1' });
    expect(r.hosts.map((h) => h.ftSlots)).toEqual([8, 8, 0]); // the FT vCPU cap 8 / 1 vCPU
    expect([r.ok, r.code, r.ftSlotsAfterFailure]).toEqual([false, 'insufficient-ft-failover-capacity', 1]);
  });

  it('refuses when no host would be left, and leaves hosts in maintenance or disconnected out', () => {
    const alone = new Placement({ hosts: [host('h1')], vms: [vm('new')] }).admission({ hostFailures: 1, vm: 'new' });
    expect([alone.ok, alone.code]).toEqual([false, 'too-few-hosts']);
    expect(alone.reason).toMatch(/the cluster has 1 host\(s\) in service; after losing 1 none would be left/);
    const snap: ClusterSnapshot = { hosts: [host('h1'), host('h2', { maintenance: true }), host('h3', { connected: false })], vms: [vm('new')] };
    const r = new Placement(snap).admission({ hostFailures: 1, vm: 'new' });
    expect(r.hosts.map((h) => h.host)).toEqual(['h1']);
    expect(r.code).toBe('too-few-hosts');
    // A host closed only for a while (its agent was unreachable) still counts.
    const closed = new Placement({ hosts: [host('h1'), host('h2', { unavailable: 'its agent could not be reached' })], vms: [vm('new')] }).admission({ hostFailures: 1, vm: 'new' });
    expect([closed.ok, closed.hosts.length]).toEqual([true, 2]);
  });

  it('counts every VM of the snapshot, placed or not: each is one the cluster is to run', () => {
    // `down` runs nowhere now (its host was lost, or its record is missing for a moment): its slot stays.
    const snap: ClusterSnapshot = { hosts: [host('h1'), host('h2')], vms: [vm('on', { host: 'h1' }), vm('down', { memGiB: 30 }), vm('new')] };
    const r = new Placement(snap).admission({ hostFailures: 1, vm: 'new' });
    expect([r.ok, r.halvesNeeded, r.slot.memoryBytes, r.slotsAfterFailure]).toEqual([false, 3, 30 * 1024 ** 3, 2]);
    // Without a VM named: the same count, the reason naming none.
    const now = new Placement(snap).admission({ hostFailures: 1 });
    expect([now.ok, now.halvesNeeded, now.vm]).toEqual([false, 3, undefined]);
    expect(now.reason).toMatch(/2 slot\(s\) would remain for the 3 VM half\(s\) that must run \(slot/);
  });

  it('gives the same answer whatever order hosts and VMs are listed in', () => {
    const hosts = [host('h1', { mips: 5000 }), host('h2'), host('h3', { memGiB: 8 })];
    const vms = [...running(9, ['h1', 'h2']), ftVm('f', { host: 'h2', secondaryHost: 'h1' }), vm('new')];
    const a = new Placement({ hosts, vms, compatBaseline: BASE }).admission({ hostFailures: 1, vm: 'new' });
    const b = new Placement({ hosts: [...hosts].reverse(), vms: [...vms].reverse(), compatBaseline: BASE }).admission({ hostFailures: 1, vm: 'new' });
    expect(b).toEqual(a);
  });

  it('rejects a bad policy or an unknown VM with a PlacementInputError naming the field', () => {
    const p = new Placement({ hosts: [host('h1')], vms: [] });
    expect(() => p.admission({ hostFailures: -1 })).toThrow(PlacementInputError);
    expect(() => p.admission({ hostFailures: 1.5 })).toThrow(/hostFailures: must be a non-negative integer/);
    expect(() => p.admission({ hostFailures: 1, vm: 'nope' })).toThrow(/vm: unknown VM "nope"/);
  });
});
