// FT Metro-style placement (`ft-split` rules): the two halves of an FT VM each in one of the rule's host
// groups (sites), never both in one — through placement, re-protection, evacuation, balancing and audit.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, PlacementInputError, applyAnswer } from '../../../src/cluster/placement/index.js';
import { ftVm, hardProblems, host, vm } from './helpers.js';

const BASE = 'rv32imac-v1';
const SPLIT = { kind: 'ft-split' as const, id: 'metro', vms: ['f'], hostGroups: ['site-a', 'site-b'] };

/** Site a: two big empty hosts; site b: two hosts already loaded. Without the rule both halves go to a. */
function metro(extra: Partial<ClusterSnapshot> = {}): ClusterSnapshot {
  return {
    hosts: [
      host('a1', { groups: ['site-a'], mips: 40_000 }),
      host('a2', { groups: ['site-a'], mips: 40_000 }),
      host('b1', { groups: ['site-b'] }),
      host('b2', { groups: ['site-b'] }),
      host('x', { mips: 100_000, memGiB: 512 }), // in no site
    ],
    vms: [vm('load-b1', { host: 'b1', mips: 5000 }), vm('load-b2', { host: 'b2', mips: 6000 }), ftVm('f')],
    rules: [SPLIT],
    compatBaseline: BASE,
    ...extra,
  };
}

describe('FT split (Metro) rules', () => {
  it('places the primary and the secondary in different sites, and nothing outside them', () => {
    const free = new Placement({ ...metro(), rules: [] }).place('f');
    expect(free.kind === 'placed-pair' && [free.primary.host, free.secondary.host].sort()).toEqual(['a1', 'a2']);
    const r = new Placement(metro()).place('f');
    expect(r.kind).toBe('placed-pair');
    if (r.kind !== 'placed-pair') return;
    expect([r.primary.host, r.secondary.host]).toEqual(['a1', 'b1']);
    const x = r.candidates.secondary.find((k) => k.host === 'x');
    expect(x?.ok === false && x.rejections.map((j) => j.message)).toEqual(['rule metro: f runs only in host groups site-a, site-b, x is in none of them']);
    const a2 = r.candidates.secondary.find((k) => k.host === 'a2');
    expect(a2?.ok === false && a2.rejections[0]).toMatchObject({ code: 'ft-split', otherHost: 'a1', message: 'rule metro: the primary of f is on a1 in site-a, and the two halves must be in different groups of site-a, site-b' });
  });

  it('re-protects in the other site, and says so when the other site is full', () => {
    const snap = metro({ vms: [vm('load-b1', { host: 'b1', mips: 5000 }), vm('load-b2', { host: 'b2', mips: 6000 }), ftVm('f', { host: 'a2' })] });
    const r = new Placement(snap).placeSecondary('f');
    expect(r.kind === 'secondary-placed' && r.host).toBe('b1');
    const full = metro({ vms: [vm('load-b1', { host: 'b1', mips: 10_000 }), vm('load-b2', { host: 'b2', mips: 10_000 }), ftVm('f', { host: 'a2' })] });
    const u = new Placement(full).placeSecondary('f');
    expect(u.kind).toBe('unplaceable');
    if (u.kind !== 'unplaceable') return;
    expect(u.reason).toMatch(/no host can run a new secondary of f beside its primary on a2 \(a1: rule metro: the primary of f is on a2 in site-a, .*; b1: CPU 1000 MIPS needed, 0 MIPS free/);
  });

  it('evacuates a secondary within its site and never breaks the rule when balancing', () => {
    const snap = metro({ vms: [ftVm('f', { host: 'a1', secondaryHost: 'b1' }), vm('v1', { host: 'a1' }), vm('v2', { host: 'a1' }), vm('v3', { host: 'a1' })] });
    const ev = new Placement(snap).evacuate('b1');
    expect(ev.complete).toBe(true);
    expect(ev.steps.map((st) => st.move)).toEqual([expect.objectContaining({ kind: 'move-secondary', vm: 'f', from: 'b1', to: 'b2' })]);
    const b = new Placement(snap).balance();
    const after = applyAnswer(snap, b);
    expect(new Placement(after).audit().hard).toEqual([]);
    expect(hardProblems(after)).toEqual([]);
    expect(hardProblems(metro({ vms: [ftVm('f', { host: 'a1', secondaryHost: 'a2' })] }))).toEqual(['f: rule metro (ft-split) broken: both halves in site-a']);
    const f = after.vms.find((v) => v.id === 'f')!;
    const site = (h: string | undefined) => (h?.startsWith('a') ? 'a' : h?.startsWith('b') ? 'b' : 'none');
    expect([site(f.host), site(f.secondaryHost)].sort()).toEqual(['a', 'b']);
  });

  it('is reported by the audit when both halves share a site, and validated', () => {
    const bad = metro({ vms: [ftVm('f', { host: 'a1', secondaryHost: 'a2' })] });
    expect(new Placement(bad).audit().hard.map((x) => `${x.role}@${x.host}: ${x.rejection.code}`)).toEqual(['primary@a1: ft-split', 'secondary@a2: ft-split']);
    expect(() => new Placement(metro({ rules: [{ ...SPLIT, hostGroups: ['site-a', 'site-z'] }] }))).toThrow(PlacementInputError);
    expect(() => new Placement(metro({ rules: [{ ...SPLIT, hostGroups: ['site-a', 'site-z'] }] }))).toThrow(/rules\[0\]\.hostGroups\[1\]: no host is in group "site-z"/);
  });
});
