// Issue 14, bugs 5 and 8: unplaceable answers name the real cause (the FT VM cap, a host the caller
// closed for its own reason, not "maintenance mode"), and a cap of 0 means no limit, as vSphere's
// das.maxftvmsperhost.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement } from '../../../src/cluster/placement/index.js';
import { ftVm, host } from './helpers.js';

const BASE = 'rv32imac-v1';

describe('unplaceable reasons', () => {
  it('names the FT VM cap when it is what leaves no host for the secondary of a new pair', () => {
    // h1 is free; h2 is at its cap of one FT VM. The pair's primary fits on h1, the secondary nowhere.
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { maxFtVms: 1 })],
      vms: [ftVm('busy', { host: 'h1', secondaryHost: 'h2', mips: 10 }), ftVm('f', { mips: 10 })],
      compatBaseline: BASE,
      options: { maxFtVmsPerHost: 2 },
    };
    const r = new Placement(snap).place('f');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.reason).toMatch(/FT VM cap 1 reached \(1 FT VMs on h2\)/);
    expect(r.reason).not.toMatch(/compat id/);
  });

  it('names the FT VM cap when it is what leaves no host for a new secondary', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { maxFtVms: 1 })],
      vms: [ftVm('busy', { host: 'h2', mips: 10 }), ftVm('f', { host: 'h1', mips: 10 })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).placeSecondary('f');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.reason).toMatch(/h2: FT VM cap 1 reached/);
  });

  it('says why a host the caller closed takes nothing, and does not call it maintenance mode', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { unavailable: 'its agent could not be reached lately' })],
      vms: [ftVm('f', { host: 'h1', mips: 10 })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).placeSecondary('f');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    const h2 = r.candidates.find((c) => c.host === 'h2');
    expect(h2 !== undefined && !h2.ok && h2.rejections.map((x) => x.code)).toEqual(['host-unavailable']);
    expect(r.reason).toMatch(/h2 takes no new VM half: its agent could not be reached lately/);
    expect(r.reason).not.toMatch(/maintenance/);
  });

  it('refuses an empty unavailable reason', () => {
    expect(() => new Placement({ hosts: [host('h1', { unavailable: '' })], vms: [] })).toThrow(/hosts\[0\]\.unavailable/);
  });
});

describe('FT caps of 0', () => {
  it('maxFtVmsPerHost 0 means no limit (as vSphere das.maxftvmsperhost), per cluster and per host', () => {
    const vms = Array.from({ length: 6 }, (_, i) => ftVm(`f${i}`, { host: 'h1', secondaryHost: 'h2', mips: 10, memGiB: 1, logMB: 1 }));
    const extra = ftVm('x', { mips: 10, memGiB: 1, logMB: 1 });
    const cluster = new Placement({ hosts: [host('h1'), host('h2')], vms: [...vms, extra], compatBaseline: BASE, options: { maxFtVmsPerHost: 0, maxFtVcpusPerHost: 0 } }).place('x');
    expect(cluster.kind).toBe('placed-pair');
    const perHost = new Placement({ hosts: [host('h1', { maxFtVms: 0, maxFtVcpus: 0 }), host('h2', { maxFtVms: 0, maxFtVcpus: 0 })], vms: [...vms, extra], compatBaseline: BASE }).place('x');
    expect(perHost.kind).toBe('placed-pair');
    // The default (4 FT VMs, 8 vCPUs per host) still applies when nothing says 0.
    const capped = new Placement({ hosts: [host('h1'), host('h2')], vms: [...vms, extra], compatBaseline: BASE }).place('x');
    expect(capped.kind).toBe('unplaceable');
  });
});
