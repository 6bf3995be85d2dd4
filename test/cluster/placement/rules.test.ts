// One test per rule, through place(): each hard rule rejects exactly the hosts it should, with its
// numbers in the message; soft rules steer the choice; ties go to the smaller host id.
import { describe, expect, it } from 'vitest';
import {
  type Candidate,
  type ClusterSnapshot,
  type PlaceResult,
  Placement,
  type Rejection,
} from '../../../src/cluster/placement/index.js';
import { GiB, ftVm, host, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

function rejectionsOf(cands: readonly Candidate[], h: string): Rejection[] {
  const c = cands.find((x) => x.host === h)!;
  return c.ok ? [] : c.rejections;
}

function pairOf(r: PlaceResult): { primary: string; secondary: string } {
  if (r.kind !== 'placed-pair') throw new Error(`not placed: ${JSON.stringify(r)}`);
  return { primary: r.primary.host, secondary: r.secondary.host };
}

function hostOf(r: PlaceResult): string {
  if (r.kind !== 'placed') throw new Error(`not placed: ${JSON.stringify(r)}`);
  return r.host;
}

describe('FT anti-affinity (primary and secondary never share a host)', () => {
  it('rejects the primary host for a new secondary, naming the primary', () => {
    const snap: ClusterSnapshot = { hosts: [host('host-1'), host('host-2')], vms: [ftVm('vm-3', { host: 'host-2' })], compatBaseline: BASE };
    const r = new Placement(snap).placeSecondary('vm-3');
    expect(r.kind).toBe('secondary-placed');
    if (r.kind !== 'secondary-placed') return;
    expect(r.host).toBe('host-1');
    expect(rejectionsOf(r.candidates, 'host-2').map((x) => x.message)).toEqual(['anti-affinity with primary vm-3 on host-2']);
  });

  it('leaves an FT pair unplaced in a one-host cluster and says why', () => {
    const r = new Placement({ hosts: [host('only')], vms: [ftVm('v')], compatBaseline: BASE }).place('v');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.role).toBe('secondary');
    expect(r.primaryHost).toBe('only');
    expect(rejectionsOf(r.candidates, 'only')[0]!.code).toBe('ft-anti-affinity');
  });
});

describe('capacity', () => {
  it('rejects a host without the memory, with the numbers', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { memGiB: 4 }), host('h2', { memGiB: 64 })],
      vms: [vm('big', { memGiB: 3.5 }), vm('fill', { memGiB: 2.8, host: 'h1' })],
    };
    const r = new Placement(snap).place('big');
    expect(hostOf(r)).toBe('h2');
    if (r.kind !== 'placed') return;
    const [rej] = rejectionsOf(r.candidates, 'h1');
    expect(rej).toMatchObject({ code: 'capacity', resource: 'memory', needed: 3.5 * GiB });
    expect(rej!.message).toMatch(/^memory 3\.5 GiB needed, 1\.2 GiB free of 4\.0 GiB$/);
  });

  it('counts CPU and FT log bandwidth, each half of a pair needing all of it on its own host', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { logMB: 15 }), host('h2'), host('h3', { mips: 500 }), host('h4')],
      vms: [ftVm('f', { logMB: 20, mips: 1000 })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).place('f');
    expect(pairOf(r)).toEqual({ primary: 'h2', secondary: 'h4' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1').map((x) => x.message)).toEqual(['FT logging bandwidth 20.0 MB/s needed, 15.0 MB/s free of 15.0 MB/s']);
    expect(rejectionsOf(r.candidates.secondary, 'h3').map((x) => x.message)).toEqual(['CPU 1000 MIPS needed, 500 MIPS free of 500 MIPS']);
  });

  it('places nothing where CPU would be overcommitted, unless the overcommit ratio allows it', () => {
    const hosts = [host('h1', { mips: 1000 })];
    const vms = [vm('a', { mips: 800, host: 'h1' }), vm('b', { mips: 600 })];
    const strict = new Placement({ hosts, vms }).place('b');
    expect(strict.kind).toBe('unplaceable');
    if (strict.kind === 'unplaceable') expect(strict.candidates[0]!.ok ? '' : strict.candidates[0]!.rejections[0]!.message).toBe('CPU 600 MIPS needed, 200 MIPS free of 1000 MIPS');
    const loose = new Placement({ hosts, vms, options: { overcommit: { mips: 1.5 } } }).place('b');
    expect(hostOf(loose)).toBe('h1');
  });
});

describe('FT caps', () => {
  it('allows at most 4 FT VMs per host by default, counting primaries and secondaries alike', () => {
    // h1 carries two primaries and two secondaries: four FT VMs.
    const vms = [
      ftVm('p1', { host: 'h1', secondaryHost: 'h2' }),
      ftVm('p2', { host: 'h1', secondaryHost: 'h2' }),
      ftVm('s1', { host: 'h2', secondaryHost: 'h1' }),
      ftVm('s2', { host: 'h3', secondaryHost: 'h1' }),
      ftVm('new'),
    ];
    const r = new Placement({ hosts: [host('h1'), host('h2'), host('h3')], vms, compatBaseline: BASE }).place('new');
    if (r.kind !== 'placed-pair' && r.kind !== 'unplaceable') throw new Error(r.kind);
    const cands = r.kind === 'placed-pair' ? r.candidates.primary : r.candidates;
    expect(rejectionsOf(cands, 'h1').map((x) => x.message)).toEqual(['FT VM cap 4 reached (4 FT VMs on h1)']);
    // h2 has three FT VMs: one more fits.
    expect(rejectionsOf(cands, 'h2')).toEqual([]);
  });

  it('takes the cap from the host, else from the options, else 4', () => {
    const vms = [ftVm('a', { host: 'h1', secondaryHost: 'h2' }), ftVm('b')];
    const hosts = (over = {}): ReturnType<typeof host>[] => [host('h1', over), host('h2'), host('h3'), host('h4')];
    // Default 4: the emptiest hosts win.
    expect(pairOf(new Placement({ hosts: hosts(), vms, compatBaseline: BASE }).place('b'))).toEqual({ primary: 'h3', secondary: 'h4' });
    // A host's own cap: h1 (cap 1) is full, h2 is not.
    const own = new Placement({ hosts: hosts({ maxFtVms: 1 }), vms, compatBaseline: BASE, options: { maxFtVmsPerHost: 9 } }).place('b');
    if (own.kind !== 'placed-pair') throw new Error(own.kind);
    expect(rejectionsOf(own.candidates.primary, 'h1').map((x) => x.code)).toEqual(['ft-vm-cap']);
    expect(rejectionsOf(own.candidates.primary, 'h2')).toEqual([]);
    // The cluster option: h1 and h2 are both full.
    const opt = new Placement({ hosts: hosts(), vms, compatBaseline: BASE, options: { maxFtVmsPerHost: 1 } }).place('b');
    if (opt.kind !== 'placed-pair') throw new Error(opt.kind);
    expect(rejectionsOf(opt.candidates.primary, 'h2').map((x) => x.message)).toEqual(['FT VM cap 1 reached (1 FT VMs on h2)']);
  });

  it('allows at most 8 FT vCPUs per host by default', () => {
    const vms = [ftVm('a', { vcpus: 6, host: 'h1', secondaryHost: 'h2' }), ftVm('b', { vcpus: 3 })];
    const r = new Placement({ hosts: [host('h1'), host('h2'), host('h3'), host('h4')], vms, compatBaseline: BASE }).place('b');
    expect(pairOf(r)).toEqual({ primary: 'h3', secondary: 'h4' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1').map((x) => x.message)).toEqual(['FT vCPU cap 8: 6 in use, 3 needed']);
  });

  it('does not count non-FT VMs against the FT caps', () => {
    const vms = [...['a', 'b', 'c', 'd', 'e'].map((id) => vm(id, { host: 'h1', mips: 10, memGiB: 1, vcpus: 4 })), ftVm('f', { mips: 10, memGiB: 1 })];
    const r = new Placement({ hosts: [host('h1'), host('h2')], vms, compatBaseline: BASE }).place('f');
    expect(r.kind).toBe('placed-pair');
  });
});

describe('FT compatibility', () => {
  it('in integrated mode places both halves only on hosts whose id equals the baseline', () => {
    const hosts = [host('h1', { ftCompatId: 'rv32imac-v1' }), host('h2', { ftCompatId: 'rv32imac-v2' }), host('h3', { ftCompatId: 'rv32imac-v2' })];
    const r = new Placement({ hosts, vms: [ftVm('v')], compatBaseline: 'rv32imac-v2' }).place('v');
    expect(pairOf(r)).toEqual({ primary: 'h2', secondary: 'h3' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1').map((x) => x.message)).toEqual(['compat id rv32imac-v1 ≠ baseline rv32imac-v2']);
  });

  it('does not hold non-FT VMs to the baseline', () => {
    const r = new Placement({ hosts: [host('h1', { ftCompatId: 'other' })], vms: [vm('v')], compatBaseline: BASE }).place('v');
    expect(hostOf(r)).toBe('h1');
  });

  it('in legacy mode puts the secondary on a host with the same id as the primary', () => {
    const hosts = [host('a', { ftCompatId: 'x' }), host('b', { ftCompatId: 'y' }), host('c', { ftCompatId: 'x' })];
    const r = new Placement({ hosts, vms: [ftVm('v', { registeredHost: 'a' })] }).place('v');
    expect(pairOf(r)).toEqual({ primary: 'a', secondary: 'c' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.secondary, 'b').map((x) => x.message)).toEqual(["compat id y ≠ x of the primary's host a"]);
  });

  it("honours a VM's required compat id", () => {
    const hosts = [host('a', { ftCompatId: 'x' }), host('b', { ftCompatId: 'y' }), host('c', { ftCompatId: 'y' })];
    const r = new Placement({ hosts, vms: [ftVm('v', { ftCompatId: 'y', registeredHost: 'b' })] }).place('v');
    expect(pairOf(r)).toEqual({ primary: 'b', secondary: 'c' });
    const nonFt = new Placement({ hosts, vms: [vm('w', { ftCompatId: 'x' })] }).place('w');
    expect(hostOf(nonFt)).toBe('a');
  });

  it('says why a pair has no compatible second host when only one host has the primary’s id', () => {
    const hosts = [host('a', { ftCompatId: 'x' }), host('b', { ftCompatId: 'y' })];
    const r = new Placement({ hosts, vms: [ftVm('v', { registeredHost: 'a' })] }).place('v');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.role).toBe('secondary');
    expect(r.reason).toMatch(/b: compat id y ≠ x/);
    expect(rejectionsOf(r.candidates, 'b')[0]!.code).toBe('compat-pair');
  });
});

describe('VM-host rules', () => {
  const hosts = [host('h1', { groups: ['rack-a'] }), host('h2', { groups: ['rack-a'] }), host('h3', { groups: ['rack-b'] }), host('h4')];

  it('a must rule binds both halves of an FT pair to the group', () => {
    // Load h1 and h2 so that, without the rule, h3 and h4 would win.
    const vms = [vm('x', { host: 'h1', mips: 5000 }), vm('y', { host: 'h2', mips: 5000 }), ftVm('f')];
    const rules = [{ kind: 'vm-host', id: 'r1', type: 'must', vms: ['f'], hostGroup: 'rack-a' } as const];
    const r = new Placement({ hosts, vms, rules, compatBaseline: BASE }).place('f');
    expect(pairOf(r)).toEqual({ primary: 'h1', secondary: 'h2' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.secondary, 'h3').map((x) => x.message)).toEqual(['rule r1: f must run in host group rack-a, h3 is not in it']);
  });

  it('a must-not rule keeps both halves out of the group', () => {
    const rules = [{ kind: 'vm-host', id: 'r2', type: 'must-not', vms: ['f'], hostGroup: 'rack-a' } as const];
    const r = new Placement({ hosts, vms: [ftVm('f')], rules, compatBaseline: BASE }).place('f');
    expect(pairOf(r)).toEqual({ primary: 'h3', secondary: 'h4' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1')[0]!.message).toBe('rule r2: f must not run in host group rack-a, h1 is in it');
  });

  it('a should rule wins over load but yields when the group is full', () => {
    const rules = [{ kind: 'vm-host', id: 'r3', type: 'should', vms: ['v'], hostGroup: 'rack-b' } as const];
    const loaded = [vm('x', { host: 'h3', mips: 6000 }), vm('v', { mips: 1000 })];
    const r = new Placement({ hosts, vms: loaded, rules }).place('v');
    expect(hostOf(r)).toBe('h3');
    const full = [vm('x', { host: 'h3', mips: 9500 }), vm('v', { mips: 1000 })];
    const r2 = new Placement({ hosts, vms: full, rules }).place('v');
    expect(hostOf(r2)).toBe('h1');
    if (r2.kind !== 'placed') return;
    expect(r2.score.soft).toBe(1);
    expect(r2.soft.map((s) => s.message)).toEqual(['soft rule r3: v should run in host group rack-b, h1 is not in it']);
  });

  it('a should-not rule steers away from the group', () => {
    const rules = [{ kind: 'vm-host', id: 'r4', type: 'should-not', vms: ['v'], hostGroup: 'rack-a' } as const];
    const r = new Placement({ hosts: hosts.slice(0, 3), vms: [vm('x', { host: 'h3', mips: 6000 }), vm('v')], rules }).place('v');
    expect(hostOf(r)).toBe('h3');
  });
});

describe('VM-VM rules', () => {
  const hosts = [host('h1'), host('h2'), host('h3')];

  it('hard anti-affinity keeps VMs apart', () => {
    const rules = [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['a', 'b'] } as const];
    const vms = [vm('a', { host: 'h2' }), vm('b'), vm('load', { host: 'h1', mips: 3000 }), vm('load3', { host: 'h3', mips: 3000 })];
    const r = new Placement({ hosts, vms, rules }).place('b');
    expect(hostOf(r)).not.toBe('h2');
    if (r.kind !== 'placed') return;
    expect(rejectionsOf(r.candidates, 'h2').map((x) => x.message)).toEqual(['rule apart: anti-affinity with a on h2']);
  });

  it('hard affinity keeps VMs together even on the busier host', () => {
    const rules = [{ kind: 'vm-vm', id: 'together', type: 'affinity', hard: true, vms: ['a', 'b'] } as const];
    const vms = [vm('a', { host: 'h2', mips: 5000 }), vm('b')];
    const r = new Placement({ hosts, vms, rules }).place('b');
    expect(hostOf(r)).toBe('h2');
    if (r.kind !== 'placed') return;
    expect(rejectionsOf(r.candidates, 'h1').map((x) => x.message)).toEqual(['rule together: affinity with a on h2']);
  });

  it('binds the primary of an FT VM only: the secondary may sit beside an anti-affine VM', () => {
    const rules = [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f', 'x'] } as const];
    // x on h1; h1 is the emptiest for everything else, so the secondary should land there.
    const vms = [vm('x', { host: 'h1', mips: 10, memGiB: 0.5 }), ftVm('f'), vm('l2', { host: 'h2', mips: 4000, memGiB: 20 }), vm('l3', { host: 'h3', mips: 3000, memGiB: 10 })];
    const r = new Placement({ hosts, vms, rules, compatBaseline: BASE }).place('f');
    expect(pairOf(r)).toEqual({ primary: 'h3', secondary: 'h1' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1')[0]!.code).toBe('vm-vm-rule');
  });

  it('soft affinity is preferred over load, counted per broken pair', () => {
    const rules = [{ kind: 'vm-vm', id: 'near', type: 'affinity', hard: false, vms: ['a', 'b', 'c'] } as const];
    const vms = [vm('a', { host: 'h2', mips: 4000 }), vm('b', { host: 'h2' }), vm('c')];
    const r = new Placement({ hosts, vms, rules }).place('c');
    expect(hostOf(r)).toBe('h2');
    if (r.kind !== 'placed') return;
    const h1 = r.candidates.find((x) => x.host === 'h1')!;
    expect(h1.ok && h1.score.soft).toBe(2);
  });
});

describe('host state and legacy mode', () => {
  it('rejects disconnected and maintenance hosts with one reason each', () => {
    const hosts = [host('dead', { connected: false }), host('maint', { maintenance: true }), host('ok')];
    const r = new Placement({ hosts, vms: [vm('v')] }).place('v');
    expect(hostOf(r)).toBe('ok');
    if (r.kind !== 'placed') return;
    expect(rejectionsOf(r.candidates, 'dead').map((x) => x.message)).toEqual(['dead is not connected']);
    expect(rejectionsOf(r.candidates, 'maint').map((x) => x.message)).toEqual(['maint is in maintenance mode']);
  });

  it('legacy mode powers an FT primary on only on its registered host; the secondary is chosen freely', () => {
    const hosts = [host('h1'), host('h2'), host('h3')];
    const vms = [vm('load', { host: 'h2', mips: 5000 }), ftVm('f', { registeredHost: 'h2' })];
    const r = new Placement({ hosts, vms }).place('f');
    expect(pairOf(r)).toEqual({ primary: 'h2', secondary: 'h1' });
    if (r.kind !== 'placed-pair') return;
    expect(rejectionsOf(r.candidates.primary, 'h1').map((x) => x.message)).toEqual([
      'legacy mode: an FT primary powers on only on its registered host h2',
    ]);
  });

  it('legacy mode cannot power on an FT VM without a registered host, and says so', () => {
    const r = new Placement({ hosts: [host('h1'), host('h2')], vms: [ftVm('f')] }).place('f');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.role).toBe('primary');
    expect(rejectionsOf(r.candidates, 'h1')[0]!.message).toBe('legacy mode: an FT primary powers on only on its registered host, and f has none');
  });

  it('breaks ties between equal hosts by host id, whatever the input order', () => {
    const hosts = [host('h-b'), host('h-c'), host('h-a')];
    expect(hostOf(new Placement({ hosts, vms: [vm('v')] }).place('v'))).toBe('h-a');
    expect(hostOf(new Placement({ hosts: [...hosts].reverse(), vms: [vm('v')] }).place('v'))).toBe('h-a');
  });

  it('orders host ids by code unit, not by locale', () => {
    // 'B' (0x42) sorts before 'a' (0x61) in code-unit order; a locale compare would put 'a' first.
    const r = new Placement({ hosts: [host('a'), host('B')], vms: [vm('v')] }).place('v');
    expect(hostOf(r)).toBe('B');
  });
});
