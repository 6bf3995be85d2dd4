// Explanations and applying answers: explain() names the decision and every host's reasons, long
// lists are summed up by reason; applyMoves() refuses stale plans; audit() lists what is broken.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, PlacementInputError, applyAnswer, applyMoves, explain } from '../../../src/cluster/placement/index.js';
import { ftVm, host, vm } from './helpers.js';

describe('explain', () => {
  it('explains a placement with the chosen host, its score and every candidate', () => {
    const snap: ClusterSnapshot = { hosts: [host('host-1', { memGiB: 2 }), host('host-2')], vms: [vm('vm-1', { memGiB: 3.5 })] };
    const text = explain(new Placement(snap).place('vm-1'));
    expect(text).toMatch(/^vm-1 → host-2 \(legacy mode\): soft 0, imbalance \+/);
    expect(text).toMatch(/candidates: 2 hosts, 1 valid, 1 rejected/);
    expect(text).toMatch(/host-1: rejected — memory 3\.5 GiB needed, 2\.0 GiB free of 2\.0 GiB/);
    expect(text).toMatch(/host-2: valid — soft 0/);
  });

  it('explains an impossible pair with the reasons per host and sums up the hosts past maxHosts', () => {
    const hosts = Array.from({ length: 30 }, (_, i) => host(`h${String(i).padStart(2, '0')}`, { ftCompatId: i === 0 ? 'rv32imac-v2' : 'rv32imac-v1', memGiB: i < 10 ? 1 : 64 }));
    const snap: ClusterSnapshot = { hosts, vms: [ftVm('f', { memGiB: 2, host: 'h15', secondaryHost: 'h16' })], compatBaseline: 'rv32imac-v2' };
    const dead = { ...snap, hosts: snap.hosts.map((h) => (h.id === 'h15' || h.id === 'h16' ? { ...h, connected: false } : h)) };
    const r = new Placement(dead).place('f');
    expect(r.kind).toBe('unplaceable');
    const text = explain(r, { maxHosts: 5 });
    expect(text).toMatch(/^f: no valid host for the primary \(integrated mode\)/);
    expect(text).toMatch(/h00: rejected — memory 2\.0 GiB needed, 1\.0 GiB free of 1\.0 GiB/);
    expect(text).toMatch(/h01: rejected — memory .*; compat id rv32imac-v1 ≠ baseline rv32imac-v2/);
    expect(text).toMatch(/… 25 more hosts: 0 valid; rejections: compat-baseline ×23, capacity ×5, host-disconnected ×2/);
    expect(explain(r, { maxHosts: Infinity }).split('\n')).toHaveLength(2 + 30);
  });

  it('explains a failover and the new secondary', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('a', { connected: false }), host('b'), host('c')],
      vms: [ftVm('f', { host: 'a', secondaryHost: 'b' })],
      compatBaseline: 'rv32imac-v1',
    };
    const text = explain(new Placement(snap).placeSecondary('f'));
    expect(text.split('\n').slice(0, 2)).toEqual([
      'f: a lost; the secondary on b goes live as the primary',
      expect.stringMatching(/^f: new secondary → c \(primary on b, integrated mode\)/) as unknown as string,
    ]);
  });

  it('every answer kind explains itself in at least one line', () => {
    const snap: ClusterSnapshot = { hosts: [host('a'), host('b')], vms: [vm('x', { host: 'a', mips: 9000 }), vm('y', { host: 'a' }), ftVm('f', { host: 'a', secondaryHost: 'b' })], compatBaseline: 'rv32imac-v1' };
    const p = new Placement(snap);
    for (const answer of [p.balance(), p.evacuate('a'), p.audit(), p.placeAll(), p.placeSecondary('f')]) {
      expect(explain(answer).length, answer.kind).toBeGreaterThan(10);
    }
    expect(p.explain(p.audit())).toBe(explain(p.audit()));
  });
});

describe('audit', () => {
  it('lists broken hard rules, overcommitted hosts and unprotected FT VMs', () => {
    const snap: ClusterSnapshot = {
      hosts: [host('a', { mips: 1000 }), host('b'), host('c', { connected: false })],
      vms: [vm('x', { host: 'a', mips: 1500 }), ftVm('f', { host: 'b', secondaryHost: 'c' }), vm('y', { host: 'b' })],
      rules: [{ kind: 'vm-vm', id: 'apart', type: 'anti-affinity', hard: true, vms: ['f', 'y'] }],
    };
    const a = new Placement(snap).audit();
    expect(a.overcommitted.map((o) => o.message)).toEqual(['a: mips 1500 MIPS in use, limit 1000 MIPS']);
    expect(a.hard.map((h) => `${h.vm}: ${h.rejection.message}`)).toEqual(['f: rule apart: anti-affinity with y on b', 'y: rule apart: anti-affinity with f on b']);
    expect(a.unprotected).toEqual(['f']);
    expect(a.disabled).toEqual(['f']);
  });
});

describe('applyMoves / applyAnswer', () => {
  it('applies moves in order and refuses a stale plan, naming the move', () => {
    const snap: ClusterSnapshot = { hosts: [host('a'), host('b')], vms: [vm('x', { host: 'a' })] };
    const next = applyMoves(snap, [{ kind: 'migrate', vm: 'x', from: 'a', to: 'b' }]);
    expect(next.vms[0]!.host).toBe('b');
    expect(snap.vms[0]!.host).toBe('a');
    expect(() => applyMoves(next, [{ kind: 'migrate', vm: 'x', from: 'a', to: 'b' }])).toThrow(PlacementInputError);
    expect(() => applyMoves(next, [{ kind: 'migrate', vm: 'x', from: 'a', to: 'b' }])).toThrow(/^moves\[0\]\.from: x is on b, not a: the plan is stale/);
    expect(() => applyMoves(next, [{ kind: 'migrate', vm: 'nope', from: 'a', to: 'b' }])).toThrow(/^moves\[0\]\.vm: unknown VM/);
  });

  it('applies a switch: the secondary’s host becomes the primary’s and the new secondary is set', () => {
    const snap: ClusterSnapshot = { hosts: [host('a'), host('b'), host('c')], vms: [ftVm('f', { host: 'a', secondaryHost: 'b' })] };
    const next = applyMoves(snap, [{ kind: 'switch-primary', vm: 'f', from: 'a', newPrimaryHost: 'b', newSecondaryHost: 'a' }]);
    expect(next.vms[0]).toMatchObject({ host: 'b', secondaryHost: 'a' });
  });

  it('leaves the snapshot as it was for an answer that changes nothing', () => {
    const snap: ClusterSnapshot = { hosts: [host('a')], vms: [vm('x', { memGiB: 100 })] };
    const r = new Placement(snap).place('x');
    expect(r.kind).toBe('unplaceable');
    expect(applyAnswer(snap, r)).toEqual(snap);
  });
});
