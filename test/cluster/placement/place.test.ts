// Initial placement by load, placement of a new secondary (with and without a failover), and batch
// power-on plans: who goes where, by which score, and what is reported when nothing fits.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, applyAnswer } from '../../../src/cluster/placement/index.js';
import { Rng, ftVm, hardProblems, host, randomCluster, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

describe('place', () => {
  it('puts a VM on the host where it least increases the imbalance, reporting the score', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [vm('x', { host: 'h1', mips: 6000, memGiB: 40 }), vm('y', { host: 'h2', mips: 2000, memGiB: 10 }), vm('z', { host: 'h3', mips: 4000, memGiB: 20 }), vm('new')],
    };
    const r = new Placement(snap).place('new');
    expect(r.kind).toBe('placed');
    if (r.kind !== 'placed') return;
    expect(r.host).toBe('h2');
    expect(r.score.cpuAfter).toBeCloseTo(0.3, 9);
    expect(r.score.memoryAfter).toBeCloseTo(14 / 64, 9);
    // Every host is listed, in id order, with the chosen one scoring best.
    expect(r.candidates.map((c) => c.host)).toEqual(['h1', 'h2', 'h3']);
    const deltas = r.candidates.map((c) => (c.ok ? c.score.imbalanceDelta : NaN));
    expect(Math.min(...deltas)).toBe(deltas[1]);
    expect(deltas[0]).toBeGreaterThan(0);
    expect(r.spreadAfter.hosts).toBe(3);
  });

  it('places an FT pair: the primary on the best host, the secondary on the best other one', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [vm('x', { host: 'h2', mips: 3000 }), vm('y', { host: 'h3', mips: 1000 }), ftVm('f')],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).place('f');
    expect(r.kind).toBe('placed-pair');
    if (r.kind !== 'placed-pair') return;
    expect([r.primary.host, r.secondary.host]).toEqual(['h1', 'h3']);
    // The secondary's candidates were checked with the primary already on h1.
    expect(r.candidates.secondary.find((c) => c.host === 'h1')).toMatchObject({ ok: false, rejections: [{ code: 'ft-anti-affinity' }] });
  });

  it('restarts a VM whose host was lost, as an initial placement', () => {
    const snap: ClusterSnapshot = { hosts: [host('h1', { connected: false }), host('h2')], vms: [vm('v', { host: 'h1' })] };
    const r = new Placement(snap).place('v');
    expect(r).toMatchObject({ kind: 'placed', host: 'h2' });
  });
});

describe('placeSecondary', () => {
  const hosts = [host('h1'), host('h2'), host('h3'), host('h4')];

  it('keeps the primary where it is and places a new secondary elsewhere', () => {
    const snap: ClusterSnapshot = { hosts, vms: [ftVm('f', { host: 'h3' }), vm('l1', { host: 'h1', mips: 5000 })], compatBaseline: BASE };
    const r = new Placement(snap).placeSecondary('f');
    expect(r).toMatchObject({ kind: 'secondary-placed', primaryHost: 'h3', host: 'h2' });
    expect(r.kind === 'secondary-placed' && r.failover).toBeUndefined();
  });

  it('replaces a secondary lost with its host', () => {
    const snap: ClusterSnapshot = {
      hosts: hosts.map((h) => (h.id === 'h2' ? { ...h, connected: false } : h)),
      vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).placeSecondary('f');
    expect(r).toMatchObject({ kind: 'secondary-placed', primaryHost: 'h1', host: 'h3' });
  });

  it('fails over when the primary was lost: the secondary goes live and a new secondary goes to a third host', () => {
    const snap: ClusterSnapshot = {
      hosts: hosts.map((h) => (h.id === 'h1' ? { ...h, connected: false } : h)),
      vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).placeSecondary('f');
    expect(r).toMatchObject({ kind: 'secondary-placed', primaryHost: 'h2', host: 'h3', failover: { lostHost: 'h1', newPrimaryHost: 'h2' } });
    const after = applyAnswer(snap, r);
    expect(after.vms[0]).toMatchObject({ host: 'h2', secondaryHost: 'h3' });
  });

  it('works in legacy mode too (the secondary is placed automatically)', () => {
    const snap: ClusterSnapshot = { hosts, vms: [ftVm('f', { host: 'h4', registeredHost: 'h4' })] };
    expect(new Placement(snap).placeSecondary('f')).toMatchObject({ kind: 'secondary-placed', primaryHost: 'h4', host: 'h1', mode: 'legacy' });
  });

  it('answers already-protected and no-live-half without placing anything', () => {
    const ok = new Placement({ hosts, vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' })], compatBaseline: BASE }).placeSecondary('f');
    expect(ok).toMatchObject({ kind: 'already-protected', primaryHost: 'h1', secondaryHost: 'h2' });
    const down = new Placement({
      hosts: hosts.map((h) => ({ ...h, connected: h.id === 'h1' || h.id === 'h2' ? false : true })),
      vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' })],
      compatBaseline: BASE,
    }).placeSecondary('f');
    expect(down.kind).toBe('no-live-half');
    expect(down.kind === 'no-live-half' && down.reason).toMatch(/neither half of f runs.*place\(\)/);
  });

  it('reports every host with its reasons when no secondary fits', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { memGiB: 2 }), host('h3', { maintenance: true })],
      vms: [ftVm('f', { host: 'h1', memGiB: 4 })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).placeSecondary('f');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.primaryHost).toBe('h1');
    expect(r.candidates.map((c) => (c.ok ? 'ok' : c.rejections.map((x) => x.code).join('+')))).toEqual([
      'ft-anti-affinity',
      'capacity',
      'host-maintenance',
    ]);
  });
});

describe('placeAll', () => {
  it('powers on every VM that runs nowhere, FT pairs first, and leaves running VMs alone', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [vm('small', { memGiB: 1 }), vm('big', { memGiB: 8 }), ftVm('f'), vm('running', { host: 'h1' })],
      compatBaseline: BASE,
    };
    const plan = new Placement(snap).placeAll();
    expect(plan.placements.map((p) => p.vm)).toEqual(['f', 'big', 'small']);
    expect(plan.unplaceable).toEqual([]);
    const after = applyAnswer(snap, plan);
    expect(hardProblems(after)).toEqual([]);
    expect(after.vms.find((v) => v.id === 'running')!.host).toBe('h1');
    expect(after.vms.find((v) => v.id === 'f')!.secondaryHost).toBeDefined();
  });

  it('reports what does not fit, with the per-host reasons against the plan so far', () => {
    const snap: ClusterSnapshot = { hosts: [host('h1', { memGiB: 10 })], vms: [vm('a', { memGiB: 6 }), vm('b', { memGiB: 6 })] };
    const plan = new Placement(snap).placeAll();
    expect(plan.placements.map((p) => p.vm)).toEqual(['a']);
    expect(plan.unplaceable).toHaveLength(1);
    expect(plan.unplaceable[0]!.candidates[0]).toMatchObject({ ok: false, rejections: [{ code: 'capacity', resource: 'memory' }] });
  });

  it('gives the same plan with a window as wide as the cluster as with exact scoring', () => {
    const rng = new Rng(11);
    for (let i = 0; i < 200; i++) {
      const snap = randomCluster(rng);
      const p = new Placement(snap);
      const exact = p.placeAll({ window: 0 });
      const wide = p.placeAll({ window: 64 });
      expect(wide.placements.map((e) => [e.vm, e.host, e.secondaryHost])).toEqual(exact.placements.map((e) => [e.vm, e.host, e.secondaryHost]));
    }
  });

  it('spreads identical VMs evenly over identical hosts', () => {
    const hosts = Array.from({ length: 10 }, (_, i) => host(`h${i}`));
    const vms = Array.from({ length: 50 }, (_, i) => vm(`v${String(i).padStart(2, '0')}`, { memGiB: 2 }));
    const plan = new Placement({ hosts, vms }).placeAll({ window: 2 });
    const perHost = new Map<string, number>();
    for (const e of plan.placements) perHost.set(e.host, (perHost.get(e.host) ?? 0) + 1);
    expect([...perHost.values()]).toEqual(Array(10).fill(5));
    expect(plan.spreadAfter.combined).toBeLessThan(1e-12);
    expect(plan.placements.every((e) => e.searched === 'window')).toBe(true);
  });

  it('draws the window of an FT pair from the hosts of its compat id, not from hosts it cannot use', () => {
    // The emptiest hosts (a0…a9) have another compat id and stay empty: FT VMs must not fall back to a full scan.
    const hosts = [
      ...Array.from({ length: 10 }, (_, i) => host(`a${i}`, { ftCompatId: 'old' })),
      ...Array.from({ length: 10 }, (_, i) => host(`b${i}`)),
    ];
    const vms = Array.from({ length: 8 }, (_, i) => ftVm(`f${i}`, { mips: 100, memGiB: 1 }));
    const plan = new Placement({ hosts, vms, compatBaseline: BASE }).placeAll({ window: 2 });
    expect(plan.placements).toHaveLength(8);
    expect(plan.placements.every((e) => e.searched === 'window' && e.host.startsWith('b') && e.secondaryHost!.startsWith('b'))).toBe(true);
  });

  it('uses every host for a VM with soft rules, and the window for the others', () => {
    const hosts = Array.from({ length: 8 }, (_, i) => host(`h${i}`, i === 7 ? { groups: ['far'] } : {}));
    const vms = [vm('a'), vm('b', { memGiB: 1 })];
    const rules = [{ kind: 'vm-host', id: 'pref', type: 'should', vms: ['b'], hostGroup: 'far' } as const];
    const plan = new Placement({ hosts, vms, rules }).placeAll({ window: 1 });
    expect(plan.placements).toMatchObject([
      { vm: 'a', host: 'h0', searched: 'window' },
      { vm: 'b', host: 'h7', searched: 'all', soft: 0 },
    ]);
  });
});
