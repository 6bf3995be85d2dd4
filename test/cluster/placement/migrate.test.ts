// Live migration of one half (`Placement.migrate`): a target is checked against every hard rule,
// capacity and FT cap with the half's usage freed and its partner fixed, and a refusal names what is
// broken; without a target the best other valid host is chosen.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, PlacementInputError, applyMoves } from '../../../src/cluster/placement/index.js';
import { ftVm, hardProblems, host, vm } from './helpers.js';

const BASE = 'rv32imac-v1';

function cluster(extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    hosts: [host('h1'), host('h2'), host('h3'), host('h4')],
    vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' }), ftVm('g', { host: 'h3', secondaryHost: 'h4' })],
    compatBaseline: BASE,
    ...extra,
  };
}

describe('Placement.migrate', () => {
  it('moves an FT primary to a valid target while its secondary stays, and the result breaks no rule', () => {
    const snap = cluster();
    const r = new Placement(snap).migrate('f', 'primary', 'h4');
    expect(r.kind).toBe('half-migration');
    if (r.kind !== 'half-migration') return;
    expect([r.from, r.to, r.partnerHost, r.role]).toEqual(['h1', 'h4', 'h2', 'primary']);
    expect(r.message).toBe('migrate the primary of f h1 → h4 (its secondary stays on h2)');
    expect(hardProblems(applyMoves(snap, [{ kind: 'migrate', vm: 'f', from: 'h1', to: 'h4' }]))).toEqual([]);
  });

  it('refuses the secondary’s own host, naming the FT anti-affinity', () => {
    const r = new Placement(cluster()).migrate('f', 'primary', 'h2');
    expect(r.kind).toBe('unplaceable');
    if (r.kind !== 'unplaceable') return;
    expect(r.reason).toBe('h2 cannot take the primary of f: anti-affinity with secondary f on h2');
  });

  it('refuses a target where a hard VM-VM rule binds the primaries, naming the rule', () => {
    const snap = cluster({ rules: [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f', 'g'] }] });
    const r = new Placement(snap).migrate('f', 'primary', 'h3');
    expect(r.kind === 'unplaceable' && r.reason).toBe('h3 cannot take the primary of f: rule apart: anti-affinity with g on h3');
    // The secondary is not bound by a VM-VM rule: it may go there.
    expect(new Placement(snap).migrate('f', 'secondary', 'h3').kind).toBe('half-migration');
  });

  it('refuses a target at its FT VM cap or out of capacity, naming the cap and the numbers', () => {
    const full = cluster({ hosts: [host('h1'), host('h2'), host('h3', { maxFtVms: 1 }), host('h4', { mips: 1500 })] });
    const cap = new Placement(full).migrate('f', 'primary', 'h3');
    expect(cap.kind === 'unplaceable' && cap.reason).toMatch(/^h3 cannot take the primary of f: FT VM cap 1 reached \(1 FT VMs on h3\)/);
    const cpu = new Placement(full).migrate('f', 'primary', 'h4');
    expect(cpu.kind === 'unplaceable' && cpu.reason).toMatch(/^h4 cannot take the primary of f: .*MIPS/);
  });

  it('without a target chooses the best other valid host, and says why none when there is none', () => {
    const r = new Placement(cluster({ vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' }), vm('x', { host: 'h3', mips: 5000 })] })).migrate('f', 'primary');
    expect(r.kind === 'half-migration' && r.to).toBe('h4'); // h3 is loaded, h2 holds the secondary
    const none = new Placement({ hosts: [host('h1'), host('h2')], vms: [ftVm('f', { host: 'h1', secondaryHost: 'h2' })], compatBaseline: BASE }).migrate('f', 'primary');
    expect(none.kind === 'unplaceable' && none.reason).toBe('no other host can take the primary of f (there is no other host)');
  });

  it('refuses a half that does not run, the host it is already on, and a secondary of a VM without FT', () => {
    const snap = cluster({ vms: [ftVm('f', { host: 'h1' }), vm('x', { host: 'h3' })] });
    const p = new Placement(snap);
    expect(p.migrate('f', 'secondary').kind === 'unplaceable' && (p.migrate('f', 'secondary') as { reason: string }).reason).toBe(
      'the secondary of f does not run on a connected host: there is nothing to migrate',
    );
    expect((p.migrate('f', 'primary', 'h1') as { reason: string }).reason).toBe('the primary of f already runs on h1');
    expect((p.migrate('x', 'secondary') as { reason: string }).reason).toBe('x has no FT, so no secondary to migrate');
    const x = p.migrate('x', 'vm', 'h2');
    expect(x.kind === 'half-migration' && x.message).toBe('migrate the VM of x h3 → h2');
    expect(() => p.migrate('f', 'primary', 'h9')).toThrow(PlacementInputError);
  });
});
