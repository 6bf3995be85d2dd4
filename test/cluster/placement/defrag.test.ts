// Defragmentation (`Placement.defragment`): a VM that no host can take only for want of room — or the new
// secondary of an FT primary running alone — gets the moves of other VMs' halves that make room; after
// them it places where the plan says, breaking no rule. The plan takes the fewest moves, then the least
// memory copied. A VM refused for a rule, one that fits already, and one no moves can make room for are
// told apart.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, PlacementInputError, applyAnswer, applyMoves } from '../../../src/cluster/placement/index.js';
import { Rng, ftVm, hardProblems, host, randomCluster, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

/** The plan carried out, then the VM placed: where it went, and what the oracle finds broken. */
function carryOut(snap: ClusterSnapshot, id: string) {
  const p = new Placement(snap).defragment(id);
  if (p.kind !== 'defrag') throw new Error(`no plan: ${p.reason}`);
  const after = applyMoves(snap, p.moves);
  expect(hardProblems(after)).toEqual([]);
  const r = new Placement(after).place(id);
  const placed = r.kind === 'placed' ? { host: r.host } : r.kind === 'placed-pair' ? { host: r.primary.host, secondaryHost: r.secondary.host } : { unplaceable: r.reason };
  const final = applyMoves({ ...after, vms: after.vms.map((v) => (v.id === id ? { ...v, ...placed } : v)) }, []);
  return { plan: p, placed, final };
}

describe('Placement.defragment', () => {
  it('migrates the one VM that frees enough CPU on a host for a VM without FT, and the VM places there', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2')],
      vms: [vm('a', { host: 'h1', mips: 5000 }), vm('b', { host: 'h1', mips: 2000 }), vm('c', { host: 'h2', mips: 5000 }), vm('d', { host: 'h2', mips: 2000 }), vm('x', { mips: 4000 })],
    };
    expect(new Placement(snap).place('x').kind).toBe('unplaceable');
    const { plan, placed, final } = carryOut(snap, 'x');
    // a (5000) cannot go to h2 (3000 free); b (2000) can, and then 5000 are free on h1.
    expect(plan.moves).toEqual([{ kind: 'migrate', vm: 'b', from: 'h1', to: 'h2' }]);
    expect(plan.placement).toEqual({ host: 'h1' });
    expect(plan.message).toBe('migrate b h1 → h2 makes room for x on h1');
    expect(placed).toEqual({ host: 'h1' });
    expect(hardProblems(final)).toEqual([]);
  });

  it('moves an FT primary off a host at its FT VM cap so that a new FT VM’s secondary fits, its own secondary staying put', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { maxFtVms: 2 }), host('h2', { maxFtVms: 2 }), host('h3', { maxFtVms: 2 }), host('h4', { mips: 1500, maxFtVms: 2 })],
      vms: [ftVm('f1', { host: 'h1', secondaryHost: 'h2' }), ftVm('g1', { host: 'h1', secondaryHost: 'h2' }), ftVm('f2', { mips: 3000 })],
      compatBaseline: BASE,
    };
    expect(new Placement(snap).place('f2').kind).toBe('unplaceable');
    const { plan, placed, final } = carryOut(snap, 'f2');
    expect(plan.moves).toEqual([{ kind: 'migrate', vm: 'f1', from: 'h1', to: 'h4' }]);
    expect(plan.placement).toEqual({ host: 'h3', secondaryHost: 'h1' });
    expect(placed).toEqual({ host: 'h3', secondaryHost: 'h1' });
    expect(final.vms.find((v) => v.id === 'f1')).toMatchObject({ host: 'h4', secondaryHost: 'h2' });
    expect(hardProblems(final)).toEqual([]);
  });

  it('tells apart a VM that fits already, one a rule refuses everywhere, and one no moves can make room for', () => {
    const base: ClusterSnapshot = { hosts: [host('h1', { groups: ['g'] }), host('h2')], vms: [vm('a', { host: 'h1', mips: 6000 }), vm('b', { host: 'h2', mips: 6000 })] };
    const fits = new Placement({ ...base, vms: [...base.vms, vm('x', { mips: 1000 })] }).defragment('x');
    expect(fits.kind === 'defrag-impossible' && fits.code).toBe('placeable');
    const ruled = new Placement({ ...base, vms: [...base.vms, vm('x', { mips: 1000 })], rules: [{ kind: 'vm-host', id: 'never', type: 'must-not', hostGroup: 'g', vms: ['x'] }, { kind: 'vm-host', id: 'only', type: 'must', hostGroup: 'g', vms: ['x'] }] }).defragment('x');
    expect(ruled.kind === 'defrag-impossible' && [ruled.code, ruled.reason]).toEqual(['rules', 'x is refused by every host for more than room (a rule, a compat id, maintenance): moving other VMs cannot help']);
    // 12 000 MIPS of 20 000 are used; x needs 9 000: no host can be emptied that far.
    const full = new Placement({ ...base, vms: [...base.vms, vm('x', { mips: 9000 })] }).defragment('x');
    expect(full.kind === 'defrag-impossible' && [full.code, full.reason]).toEqual(['no-room', "no host can be emptied enough for x with at most 8 move(s) of other VMs' halves"]);
  });

  it('stops at maxMoves, and refuses a VM that runs already', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2', { mips: 25_000 })],
      vms: [...[1, 2, 3, 4, 5].map((i) => vm(`s${i}`, { host: 'h1', mips: 1800 })), vm('big', { host: 'h2', mips: 16_000 }), vm('x', { mips: 9500 })],
    };
    // 1 000 MIPS free on h1, 9 000 on h2: all five small VMs must leave h1 (h1 then has 10 000 free).
    const two = new Placement(snap).defragment('x', { maxMoves: 2 });
    expect(two.kind === 'defrag-impossible' && two.code).toBe('no-room');
    const { plan } = carryOut(snap, 'x');
    expect(plan.moves.map((m) => m.vm)).toEqual(['s1', 's2', 's3', 's4', 's5']);
    expect(plan.placement).toEqual({ host: 'h1' });
    expect(() => new Placement(snap).defragment('s1')).toThrow(PlacementInputError);
  });

  it('moves the smallest half that is enough, not the largest: the least memory copied', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2')],
      vms: [vm('big', { host: 'h1', mips: 3000, memGiB: 8 }), vm('small', { host: 'h1', mips: 3000, memGiB: 1 }), vm('fill', { host: 'h1', mips: 3000 }), vm('w', { host: 'h2', mips: 7000 }), vm('x', { mips: 4000 })],
    };
    // h1 must free 3 000 MIPS: big or small alone does it, and h2 takes either; w cannot leave h2.
    const { plan, placed, final } = carryOut(snap, 'x');
    expect(plan.moves).toEqual([{ kind: 'migrate', vm: 'small', from: 'h1', to: 'h2' }]);
    expect(placed).toEqual({ host: 'h1' });
    expect(hardProblems(final)).toEqual([]);
  });

  it('empties the host that needs the fewest moves, not the first in id order', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3', { mips: 30_000, groups: ['g3'] })],
      vms: [
        ...[1, 2, 3, 4, 5].map((i) => vm(`s${i}`, { host: 'h1', mips: 1800 })),
        vm('t', { host: 'h2', mips: 5000 }),
        vm('u', { host: 'h2', mips: 4000 }),
        vm('big', { host: 'h3', mips: 16_000 }),
        vm('x', { mips: 5000 }),
      ],
      rules: [{ kind: 'vm-host', id: 'not-h3', type: 'must-not', hostGroup: 'g3', vms: ['x'] }],
    };
    // h1 needs three of its 1 800-MIPS VMs to leave; h2 only u (4 000).
    const { plan, placed } = carryOut(snap, 'x');
    expect(plan.moves).toEqual([{ kind: 'migrate', vm: 'u', from: 'h2', to: 'h3' }]);
    expect(placed).toEqual({ host: 'h2' });
  });

  it('makes room for the new secondary of an FT primary that runs alone, by moving another VM’s secondary when its primary could not move', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { maxFtVms: 1 }), host('h2', { maxFtVms: 1 }), host('h3', { maxFtVms: 1 }), host('h4', { maxFtVms: 1, groups: ['g4'] })],
      vms: [ftVm('f1', { host: 'h1', secondaryHost: 'h2' }), ftVm('g', { host: 'h3' }), vm('z', { host: 'h4' })],
      rules: [
        // f1's primary may not join z (VM-VM rules bind primaries): only its secondary can go to h4.
        { kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f1', 'z'] },
        { kind: 'vm-host', id: 'g-not-h4', type: 'must-not', hostGroup: 'g4', vms: ['g'] },
      ],
      compatBaseline: BASE,
    };
    expect(new Placement(snap).placeSecondary('g').kind).toBe('unplaceable');
    const p = new Placement(snap).defragment('g');
    if (p.kind !== 'defrag') throw new Error(`no plan: ${p.reason}`);
    expect(p.moves).toEqual([{ kind: 'move-secondary', vm: 'f1', from: 'h2', to: 'h4', primaryHost: 'h1' }]);
    expect(p.placement).toEqual({ host: 'h3', secondaryHost: 'h2' });
    expect(p.message).toBe('move the secondary of f1 h2 → h4 makes room for a secondary of g on h2 (its primary runs on h3)');
    const after = applyMoves(snap, p.moves);
    expect(hardProblems(after)).toEqual([]);
    const r = new Placement(after).placeSecondary('g');
    expect(r.kind === 'secondary-placed' && r.host).toBe('h2');
    // A VM that runs protected, or without FT, is refused: there is nothing to make room for.
    expect(() => new Placement(snap).defragment('f1')).toThrow(/runs already/);
    expect(() => new Placement(snap).defragment('z')).toThrow(/runs already/);
  });

  it('on random clusters powered on by placeAll: every plan leaves the rules whole and the VM placeable', () => {
    let plans = 0;
    let refused = 0;
    for (let seed = 1; seed <= 300; seed++) {
      const rng = new Rng(seed);
      const fresh = randomCluster(rng, { maxVms: 30 });
      const r = new Placement(fresh).placeAll();
      const on = applyAnswer(fresh, r);
      if (hardProblems(on).length > 0) continue; // placeAll keeps the rules; a random snapshot may not (disconnected hosts)
      for (const u of r.unplaceable) {
        const d = new Placement(on).defragment(u.vm);
        if (d.kind !== 'defrag') {
          refused++;
          expect(d.reason.length, `seed ${seed}`).toBeGreaterThan(0);
          continue;
        }
        plans++;
        const after = applyMoves(on, d.moves);
        expect(hardProblems(after), `seed ${seed}: ${d.message}`).toEqual([]);
        expect(new Placement(after).place(u.vm).kind, `seed ${seed}: ${d.message}`).not.toBe('unplaceable');
      }
    }
    console.log(`defragment on random clusters: ${plans} plan(s), ${refused} refused`);
    expect(plans).toBeGreaterThan(0);
  });
});
