// Load balancing: moves from hot to cold hosts only when worth their cost, FT halves moved only in
// integrated mode (a primary by a controlled switch), rule repairs after a failover, and limits kept.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, applyAnswer, explain } from '../../../src/cluster/placement/index.js';
import { ftVm, hardProblems, host, oracleSpread, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

/** Two identical hosts, all load on the first. */
function lopsided(extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    hosts: [host('hot'), host('cold')],
    vms: [1, 2, 3, 4].map((i) => vm(`v${i}`, { host: 'hot', mips: 2000, memGiB: 8 })),
    ...extra,
  };
}

describe('balance', () => {
  it('moves load from the hot host to the cold one until it is even, each move explained with its numbers', () => {
    const snap = lopsided();
    const r = new Placement(snap).balance();
    expect(r.recommendations.map((x) => x.move)).toEqual([
      { kind: 'migrate', vm: 'v1', from: 'hot', to: 'cold' },
      { kind: 'migrate', vm: 'v2', from: 'hot', to: 'cold' },
    ]);
    const first = r.recommendations[0]!;
    expect(first.reason.code).toBe('balance');
    if (first.reason.code !== 'balance') return;
    expect(first.reason.benefit).toBeGreaterThan(first.reason.required);
    expect(first.reason.required).toBeCloseTo(0.001 + 0.0002 * 8, 12);
    expect(first.source).toMatchObject({ host: 'hot', cpuBefore: 0.8, cpuAfter: 0.6 });
    expect(first.destination).toMatchObject({ host: 'cold', cpuBefore: 0, cpuAfter: 0.2 });
    expect(first.message).toMatch(/^migrate v1 hot → cold — balance: imbalance −0\.\d+ ≥ cost 0\.0016 \(8\.0 GiB\) \+ threshold 0\.0010/);
    expect(r.spreadBefore.combined).toBeGreaterThan(0.3);
    expect(r.spreadAfter.combined).toBeLessThan(1e-12);
    expect(r.spreadAfter.combined).toBeCloseTo(oracleSpread(applyAnswer(snap, r)), 12);
    expect(r.stop.code).toBe('no-beneficial-move');
  });

  it('skips a move whose improvement is below the threshold and says by how much', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('a'), host('b')],
      vms: [
        vm('x', { host: 'a', mips: 1000, memGiB: 4 }),
        vm('y', { host: 'a', mips: 100, memGiB: 1 }),
        vm('y2', { host: 'a', mips: 100, memGiB: 1 }),
        vm('z', { host: 'b', mips: 1000, memGiB: 4 }),
      ],
    };
    const r = new Placement(snap).balance();
    expect(r.recommendations).toEqual([]);
    expect(r.stop.code).toBe('below-threshold');
    if (r.stop.code !== 'below-threshold') return;
    expect(r.stop.best.move).toEqual({ kind: 'migrate', vm: 'y', from: 'a', to: 'b' });
    expect(r.stop.best.benefit).toBeLessThan(r.stop.best.required);
    expect(r.stop.message).toMatch(/best remaining move \(migrate y a → b\) reduces the imbalance by .* less than its cost/);
    // A lower bar lets the same move through.
    expect(new Placement(snap).balance({ minBenefit: 1e-9, costPerGiB: 0 }).recommendations.map((x) => x.move)).toEqual([r.stop.best.move]);
  });

  it('prices migrations by memory: a high cost per GiB keeps big VMs in place', () => {
    const snap = lopsided();
    expect(new Placement(snap).balance({ costPerGiB: 0.1 }).recommendations).toEqual([]);
    expect(new Placement(snap).balance({ costPerGiB: 0.001 }).recommendations.length).toBeGreaterThan(0);
  });

  it('never moves onto a host in maintenance or disconnected, nor past capacity', () => {
    const snap = lopsided();
    snap.hosts = [host('hot'), host('cold', { maintenance: true }), host('dead', { connected: false }), host('small', { mips: 2500, memGiB: 9 })];
    const r = new Placement(snap).balance();
    expect(r.recommendations.map((x) => x.move)).toEqual([{ kind: 'migrate', vm: 'v1', from: 'hot', to: 'small' }]);
    expect(hardProblems(applyAnswer(snap, r))).toEqual([]);
  });

  it('respects maxMoves and says it stopped there', () => {
    const r = new Placement(lopsided()).balance({ maxMoves: 1 });
    expect(r.recommendations).toHaveLength(1);
    expect(r.stop.code).toBe('max-moves');
  });

  it('in legacy mode leaves FT VMs where they are (disabled) and balances the rest', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [ftVm('f1', { host: 'h1', secondaryHost: 'h2', mips: 3000, memGiB: 16 }), ftVm('f2', { host: 'h1', secondaryHost: 'h2', mips: 3000, memGiB: 16 }), vm('n', { host: 'h1', mips: 1000, memGiB: 4 })],
    };
    const r = new Placement(snap).balance();
    expect(r.recommendations.map((x) => x.move)).toEqual([{ kind: 'migrate', vm: 'n', from: 'h1', to: 'h3' }]);
    expect(r.frozen.map((f) => [f.vm, f.reason])).toEqual([
      ['f1', 'legacy-disabled'],
      ['f2', 'legacy-disabled'],
    ]);
    expect(explain(r)).toMatch(/f1: FT VM disabled for load balancing \(legacy mode: no compatibility baseline\)/);
  });

  it('in integrated mode moves secondaries and moves primaries by a controlled switch', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3'), host('h4')],
      vms: [ftVm('f1', { host: 'h1', secondaryHost: 'h2', mips: 3000, memGiB: 16 }), ftVm('f2', { host: 'h1', secondaryHost: 'h2', mips: 3000, memGiB: 16 })],
      compatBaseline: BASE,
    };
    const r = new Placement(snap).balance();
    const kinds = r.recommendations.map((x) => x.move.kind).sort();
    expect(kinds).toEqual(['move-secondary', 'switch-primary']);
    const sw = r.recommendations.find((x) => x.move.kind === 'switch-primary')!;
    // The secondary move came first (preferred to a switch on a tie); the switch then empties h1 of a primary.
    expect(r.recommendations[0]!.move).toEqual({ kind: 'move-secondary', vm: 'f1', from: 'h2', to: 'h3', primaryHost: 'h1' });
    expect(sw.move).toEqual({ kind: 'switch-primary', vm: 'f1', from: 'h1', newPrimaryHost: 'h3', newSecondaryHost: 'h4' });
    expect(sw.message).toMatch(/^switch f1: the primary on h1 stops, the secondary on h3 goes live, a new secondary starts on h4/);
    const after = applyAnswer(snap, r);
    expect(hardProblems(after)).toEqual([]);
    expect(r.spreadAfter.combined).toBeLessThan(1e-12);
  });

  it('after a failover, moves a VM away from the new primary that a hard anti-affinity rule forbids', () => {
    // f failed over from h1 to h2, where x runs: the rule f/x (primaries only) is now broken.
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [ftVm('f', { host: 'h2', secondaryHost: 'h3' }), vm('x', { host: 'h2' })],
      rules: [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f', 'x'] }],
      compatBaseline: BASE,
    };
    expect(hardProblems(snap)).toHaveLength(1);
    const r = new Placement(snap).balance();
    const first = r.recommendations[0]!;
    expect(first.reason.code).toBe('fix-hard-rule');
    expect(first.message).toMatch(/repairs a broken hard rule: rule apart: anti-affinity with x on h2/);
    expect(hardProblems(applyAnswer(snap, r))).toEqual([]);
    expect(r.remaining.hard).toEqual([]);
  });

  it('in legacy mode repairs such a rule by moving the non-FT VM, never the FT one', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2'), host('h3')],
      vms: [ftVm('f', { host: 'h2', secondaryHost: 'h3' }), vm('x', { host: 'h2' })],
      rules: [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f', 'x'] }],
    };
    const r = new Placement(snap).balance();
    expect(r.recommendations[0]!.move).toEqual({ kind: 'migrate', vm: 'x', from: 'h2', to: 'h1' });
  });

  it('moves a VM off a host its should-not rule names, even against the load', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1', { groups: ['noisy'] }), host('h2')],
      vms: [vm('v', { host: 'h1', mips: 100, memGiB: 1 }), vm('w', { host: 'h2', mips: 5000, memGiB: 30 })],
      rules: [{ kind: 'vm-host', id: 'quiet', type: 'should-not', vms: ['v'], hostGroup: 'noisy' }],
    };
    const r = new Placement(snap).balance();
    expect(r.recommendations[0]).toMatchObject({ move: { kind: 'migrate', vm: 'v', to: 'h2' }, reason: { code: 'fix-soft-rule', softBefore: 1, softAfter: 0 } });
  });

  it('does not break a soft rule to gain balance', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('h1'), host('h2')],
      vms: [vm('a', { host: 'h1', mips: 3000, memGiB: 8 }), vm('b', { host: 'h1', mips: 3000, memGiB: 8 })],
      rules: [{ kind: 'vm-vm', id: 'near', type: 'affinity', hard: false, vms: ['a', 'b'] }],
    };
    const r = new Placement(snap).balance();
    expect(r.recommendations).toEqual([]);
  });

  it('leaves an unprotected FT VM alone and says it needs a secondary first', () => {
    const snap: ClusterSnapshot = { hosts: [host('h1'), host('h2')], vms: [ftVm('f', { host: 'h1', mips: 5000, memGiB: 30 })], compatBaseline: BASE };
    const r = new Placement(snap).balance();
    expect(r.recommendations).toEqual([]);
    expect(r.frozen).toMatchObject([{ vm: 'f', reason: 'not-protected' }]);
  });

  it('proposes nothing on an even cluster', () => {
    const snap: ClusterSnapshot = { hosts: [host('a'), host('b')], vms: [vm('x', { host: 'a' }), vm('y', { host: 'b' })] };
    const r = new Placement(snap).balance();
    expect(r.recommendations).toEqual([]);
    expect(r.stop.code).toBe('no-beneficial-move');
  });

  it('finds the moves in a large cluster by widening its window', () => {
    // 200 hosts; the hot one holds 10 VMs, everything else is evenly half loaded.
    const hosts = Array.from({ length: 200 }, (_, i) => host(`h${String(i).padStart(3, '0')}`));
    const vms = hosts.flatMap((h, i) =>
      i === 0 ? Array.from({ length: 10 }, (_, k) => vm(`hot${k}`, { host: h.id, mips: 900, memGiB: 6 })) : [vm(`v${i}`, { host: h.id, mips: 5000, memGiB: 32 })],
    );
    const r = new Placement({ hosts, vms }).balance({ window: 2 });
    expect(r.recommendations.length).toBeGreaterThan(0);
    expect(r.recommendations.every((x) => x.move.kind === 'migrate' && x.move.from === 'h000')).toBe(true);
    expect(r.spreadAfter.combined).toBeLessThan(r.spreadBefore.combined);
  });
});
