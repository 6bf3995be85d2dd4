// Evacuation for maintenance mode: non-FT VMs migrate, secondaries move, primaries switch (with a
// relay when their secondary's host cannot take the primary role), affinity groups leave together,
// and whatever cannot leave is named with every host's reasons.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, applyAnswer, explain } from '../../../src/cluster/placement/index.js';
import { applyMove, ftVm, hardProblems, host, vm } from './helpers.js';

const BASE = 'rv32imac-v1';
const four = (): ReturnType<typeof host>[] => [host('h1'), host('h2'), host('h3'), host('h4')];

describe('evacuate', () => {
  it('migrates non-FT VMs, moves secondaries and switches primaries, then the host is empty', () => {
    const snap: ClusterSnapshot = {
      hosts: four(),
      vms: [vm('n', { host: 'h1' }), ftVm('p', { host: 'h1', secondaryHost: 'h2' }), ftVm('s', { host: 'h3', secondaryHost: 'h1' })],
      compatBaseline: BASE,
    };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.complete).toBe(true);
    expect(plan.blocked).toEqual([]);
    // Primaries first, then secondaries, then other VMs.
    expect(plan.steps.map((s) => [s.move.kind, s.move.vm, s.role])).toEqual([
      ['switch-primary', 'p', 'primary'],
      ['move-secondary', 's', 'secondary'],
      ['migrate', 'n', 'vm'],
    ]);
    expect(plan.steps[0]!.move).toMatchObject({ from: 'h1', newPrimaryHost: 'h2' });
    expect(plan.steps[0]!.message).toMatch(/^switch p: the primary on h1 stops, the secondary on h2 goes live, a new secondary starts on h[34]/);
    const after = applyAnswer(snap, plan);
    expect(after.hosts.find((h) => h.id === 'h1')!.maintenance).toBe(true);
    expect(after.vms.some((v) => v.host === 'h1' || v.secondaryHost === 'h1')).toBe(false);
    expect(hardProblems(after)).toEqual([]);
  });

  it('relays the secondary first when its host cannot take the primary role', () => {
    // p's secondary sits on h2 beside x, which p's primary must avoid (hard anti-affinity).
    const snap: ClusterSnapshot = {
      hosts: four(),
      vms: [ftVm('p', { host: 'h1', secondaryHost: 'h2' }), vm('x', { host: 'h2' })],
      rules: [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['p', 'x'] }],
      compatBaseline: BASE,
    };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.complete).toBe(true);
    expect(plan.steps.map((s) => s.move.kind)).toEqual(['move-secondary', 'switch-primary']);
    expect(plan.steps[0]!.move).toMatchObject({ from: 'h2', primaryHost: 'h1' });
    expect(plan.steps[0]!.unit).toBe(plan.steps[1]!.unit);
    let s = snap;
    for (const st of plan.steps) {
      s = applyMove(s, st.move);
      expect(hardProblems(s)).toEqual([]);
    }
    expect(s.vms[0]!.host).not.toBe('h2');
  });

  it('migrates a primary without a running secondary like a non-FT VM, and says it is unprotected', () => {
    const snap: ClusterSnapshot = { hosts: four(), vms: [ftVm('p', { host: 'h1' })], compatBaseline: BASE };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.steps.map((s) => s.move)).toEqual([{ kind: 'migrate', vm: 'p', from: 'h1', to: 'h2' }]);
    expect(plan.steps[0]!.message).toMatch(/migrated unprotected/);
  });

  it('names each VM that cannot leave, with every other host’s reasons', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { groups: ['only'] }), host('h2'), host('h3', { memGiB: 2 })],
      vms: [vm('pinned', { host: 'h1' }), vm('free', { host: 'h1' })],
      rules: [{ kind: 'vm-host', id: 'pin', type: 'must', vms: ['pinned'], hostGroup: 'only' }],
    };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.complete).toBe(false);
    expect(plan.steps.map((s) => s.move.vm)).toEqual(['free']);
    expect(plan.blocked).toHaveLength(1);
    const b = plan.blocked[0]!;
    expect(b).toMatchObject({ vm: 'pinned', role: 'vm' });
    expect(b.candidates.map((c) => (c.ok ? 'ok' : c.rejections.map((r) => r.message).join('; ')))).toEqual([
      'rule pin: pinned must run in host group only, h2 is not in it',
      'memory 4.0 GiB needed, 2.0 GiB free of 2.0 GiB; rule pin: pinned must run in host group only, h3 is not in it',
    ]);
    expect(explain(plan)).toMatch(/INCOMPLETE/);
    expect(explain(plan)).toMatch(/cannot evacuate pinned \(vm\)/);
    // An incomplete plan does not put the host in maintenance mode.
    expect(applyAnswer(snap, plan).hosts[0]!.maintenance).toBeUndefined();
  });

  it('moves a hard affinity group together, or keeps all of it and says which member is stuck', () => {
    const rules = [{ kind: 'vm-vm', id: 'pair', type: 'affinity', hard: true, vms: ['a', 'b'] } as const];
    const fits: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { memGiB: 10 }), host('h3', { memGiB: 16 })],
      vms: [vm('a', { host: 'h1', memGiB: 6 }), vm('b', { host: 'h1', memGiB: 6 })],
      rules,
    };
    const ok = new Placement(fits).evacuate('h1');
    expect(ok.complete).toBe(true);
    expect(new Set(ok.steps.map((s) => (s.move.kind === 'migrate' ? s.move.to : '')))).toEqual(new Set(['h3']));
    expect(ok.steps[0]!.unit).toBe(ok.steps[1]!.unit);

    const tight: ClusterSnapshot = { ...fits, hosts: [host('h1'), host('h2', { memGiB: 10 }), host('h3', { memGiB: 10 })] };
    const no = new Placement(tight).evacuate('h1');
    expect(no.steps).toEqual([]);
    expect(no.blocked.map((b) => b.vm).sort()).toEqual(['a', 'b']);
    expect(no.blocked.find((b) => b.vm === 'a')!.reason).toMatch(/held by its hard affinity group a, b: b cannot leave h1/);
  });

  it('gives the room a stuck affinity group would have taken to the VMs planned after it', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { memGiB: 10 }), host('h3', { memGiB: 4 })],
      vms: [vm('a', { host: 'h1', memGiB: 6 }), vm('b', { host: 'h1', memGiB: 6 }), vm('c', { host: 'h1', memGiB: 5 })],
      rules: [{ kind: 'vm-vm', id: 'pair', type: 'affinity', hard: true, vms: ['a', 'b'] }],
    };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.blocked.map((b) => b.vm).sort()).toEqual(['a', 'b']);
    expect(plan.steps.map((st) => st.move)).toEqual([{ kind: 'migrate', vm: 'c', from: 'h1', to: 'h2' }]);
  });

  it('evacuates FT VMs in legacy mode too: maintenance is an order, not load balancing', () => {
    const snap: ClusterSnapshot = { hosts: four(), vms: [ftVm('p', { host: 'h1', secondaryHost: 'h2', registeredHost: 'h1' })] };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.mode).toBe('legacy');
    expect(plan.steps.map((s) => s.move.kind)).toEqual(['switch-primary']);
  });

  it('says that nothing runs on a disconnected host rather than planning moves', () => {
    const snap: ClusterSnapshot = { hosts: [host('h1', { connected: false }), host('h2')], vms: [vm('v', { host: 'h1' })] };
    const plan = new Placement(snap).evacuate('h1');
    expect(plan.steps).toEqual([]);
    expect(plan.blocked[0]!.reason).toMatch(/h1 is not connected/);
  });

  it('an empty host needs no steps', () => {
    const plan = new Placement({ hosts: four(), vms: [vm('v', { host: 'h2' })] }).evacuate('h1');
    expect(plan).toMatchObject({ complete: true, steps: [], blocked: [] });
    expect(explain(plan)).toMatch(/evacuation of h1 .*0 steps.*complete/);
  });
});
