// Property tests over thousands of random clusters from a seeded PRNG: no answer breaks a hard rule or
// a limit (checked by the test's own oracle, also after the balancer's moves one by one), answers do
// not depend on input order, legacy mode never moves FT VMs, and every answer explains itself.
import { describe, expect, it } from 'vitest';
import { type ClusterSnapshot, Placement, applyAnswer, explain } from '../../../src/cluster/placement/index.js';
import { Rng, applyMove, destinations, hardProblems, oracleSpread, randomCluster, shuffled } from './helpers.js';

/** A random cluster with its VMs placed by the engine's own power-on plan. */
function placedCluster(rng: Rng): ClusterSnapshot {
  const snap = randomCluster(rng);
  return applyAnswer(snap, new Placement(snap).placeAll({ window: rng.pick([0, 2, 32]) }));
}

const hostsOf = (s: ClusterSnapshot): Map<string, { maintenance?: boolean; connected?: boolean }> => new Map(s.hosts.map((h) => [h.id, h]));

describe('placement properties', () => {
  it('power-on plans and single placements never break a hard rule or a limit (1500 clusters)', () => {
    const rng = new Rng(1);
    let placed = 0;
    let unplaceable = 0;
    for (let i = 0; i < 1500; i++) {
      const snap = randomCluster(rng);
      const p = new Placement(snap);
      const plan = p.placeAll({ window: rng.pick([0, 2, 32]) });
      const after = applyAnswer(snap, plan);
      expect(hardProblems(after), `cluster ${i}`).toEqual([]);
      placed += plan.placements.length;
      unplaceable += plan.unplaceable.length;
      for (const u of plan.unplaceable) {
        expect(u.candidates.length).toBe(snap.hosts.length);
        for (const c of u.candidates) if (!c.ok) expect(c.rejections.length).toBeGreaterThan(0);
      }
      const hosts = hostsOf(after);
      for (const e of plan.placements) {
        for (const h of [e.host, e.secondaryHost]) {
          if (h === undefined) continue;
          expect(hosts.get(h)!.maintenance, `${e.vm} on maintenance host`).not.toBe(true);
          expect(hosts.get(h)!.connected, `${e.vm} on dead host`).not.toBe(false);
        }
        const v = snap.vms.find((x) => x.id === e.vm)!;
        // Legacy mode: an FT primary powers on only on its registered host.
        if (v.ft && snap.compatBaseline === undefined) expect(e.host).toBe(v.registeredHost);
      }
      // Single placements on the power-on result: each VM that is still off, one at a time.
      for (const u of plan.unplaceable.slice(0, 2)) {
        const r = new Placement(after).place(u.vm);
        expect(r.kind).toBe('unplaceable');
        expect(explain(r).length).toBeGreaterThan(0);
      }
    }
    // The generator must exercise both outcomes, or the test proves little.
    expect(placed).toBeGreaterThan(5000);
    expect(unplaceable).toBeGreaterThan(200);
  });

  it('balancing from a valid placement keeps every hard rule after each recommended move (1000 clusters)', () => {
    const rng = new Rng(2);
    let moves = 0;
    let ftMoves = 0;
    for (let i = 0; i < 1000; i++) {
      let snap = placedCluster(rng);
      const r = new Placement(snap).balance({ minBenefit: rng.pick([0.0001, 0.001, 0.01]), costPerGiB: rng.pick([0, 0.001]) });
      expect(explain(r).length).toBeGreaterThan(0);
      const before = oracleSpread(snap);
      const hosts = hostsOf(snap);
      for (const rec of r.recommendations) {
        for (const d of destinations(rec.move)) {
          expect(hosts.get(d)!.maintenance).not.toBe(true);
          expect(hosts.get(d)!.connected).not.toBe(false);
        }
        snap = applyMove(snap, rec.move);
        expect(hardProblems(snap), `cluster ${i}, after ${rec.message}`).toEqual([]);
        if (snap.vms.find((v) => v.id === rec.move.vm)!.ft) ftMoves++;
        moves++;
      }
      // Balancing moves only: the spread must not grow (repairs may trade load for rules).
      if (r.recommendations.every((x) => x.reason.code === 'balance')) expect(oracleSpread(snap)).toBeLessThanOrEqual(before + 1e-12);
      expect(r.spreadAfter.combined).toBeCloseTo(oracleSpread(snap), 9);
    }
    expect(moves).toBeGreaterThan(500);
    expect(ftMoves).toBeGreaterThan(50);
  });

  it('balancing from a random (possibly broken) placement never adds a hard-rule problem (1000 clusters)', () => {
    const rng = new Rng(3);
    let repairs = 0;
    for (let i = 0; i < 1000; i++) {
      let snap = randomCluster(rng, { placeRandomly: true });
      // Validation rejects a pair on one host; the generator never makes one.
      const r = new Placement(snap).balance();
      let problems = hardProblems(snap).length;
      const hosts = hostsOf(snap);
      for (const rec of r.recommendations) {
        for (const d of destinations(rec.move)) expect(hosts.get(d)!.maintenance).not.toBe(true);
        snap = applyMove(snap, rec.move);
        const now = hardProblems(snap).length;
        expect(now, `cluster ${i}, after ${rec.message}`).toBeLessThanOrEqual(problems);
        if (rec.reason.code === 'fix-hard-rule') {
          repairs++;
        }
        problems = now;
      }
    }
    expect(repairs).toBeGreaterThan(50);
  });

  it('legacy mode never moves an FT VM in balancing (1000 clusters)', () => {
    const rng = new Rng(4);
    let legacyWithFt = 0;
    for (let i = 0; i < 1000; i++) {
      const snap = randomCluster(rng, { placeRandomly: rng.chance(0.5) });
      delete snap.compatBaseline;
      const r = new Placement(snap).balance({ minBenefit: 0.0001 });
      const ft = new Set(snap.vms.filter((v) => v.ft).map((v) => v.id));
      if (ft.size) legacyWithFt++;
      for (const rec of r.recommendations) {
        expect(ft.has(rec.move.vm), rec.message).toBe(false);
        expect(rec.move.kind).toBe('migrate');
      }
      expect(r.frozen.map((f) => f.vm)).toEqual([...ft].sort());
    }
    expect(legacyWithFt).toBeGreaterThan(800);
  });

  it('identical input gives identical answers, whatever the order of hosts, VMs and rules (400 clusters)', () => {
    const rng = new Rng(5);
    for (let i = 0; i < 400; i++) {
      const snap = rng.chance(0.5) ? placedCluster(rng) : randomCluster(rng, { placeRandomly: true });
      const other = shuffled(rng, snap);
      const a = new Placement(snap);
      const b = new Placement(other);
      const json = (x: unknown): string => JSON.stringify(x);
      expect(json(b.balance())).toBe(json(a.balance()));
      expect(json(b.placeAll())).toBe(json(a.placeAll()));
      expect(json(b.audit())).toBe(json(a.audit()));
      const h = rng.pick(snap.hosts).id;
      expect(json(b.evacuate(h))).toBe(json(a.evacuate(h)));
      expect(explain(b.evacuate(h))).toBe(explain(a.evacuate(h)));
      for (const v of snap.vms.slice(0, 4)) {
        const ra = (p: Placement): unknown => {
          try {
            return v.ft ? [p.place(v.id), p.placeSecondary(v.id)] : p.place(v.id);
          } catch (e) {
            return (e as Error).message;
          }
        };
        expect(json(ra(b))).toBe(json(ra(a)));
      }
    }
  });

  it('evacuation plans empty the host or name what stays and why, breaking nothing (800 clusters)', () => {
    const rng = new Rng(6);
    let complete = 0;
    let blocked = 0;
    let switches = 0;
    for (let i = 0; i < 800; i++) {
      const snap = placedCluster(rng);
      const live = snap.hosts.filter((h) => h.connected !== false);
      if (live.length === 0) continue;
      const x = rng.pick(live).id;
      const plan = new Placement(snap).evacuate(x);
      expect(explain(plan).length).toBeGreaterThan(0);
      let after = snap;
      plan.steps.forEach((st, k) => {
        for (const d of destinations(st.move)) expect(d).not.toBe(x);
        after = applyMove(after, st.move);
        // A unit (an affinity group leaving together) keeps every rule once its last step is done.
        if (plan.steps[k + 1]?.unit !== st.unit) expect(hardProblems(after), `cluster ${i}: ${st.message}`).toEqual([]);
        if (st.move.kind === 'switch-primary') switches++;
      });
      const left: string[] = [];
      for (const v of after.vms) {
        if (v.host === x) left.push(`${v.id}/${v.ft ? 'primary' : 'vm'}`);
        if (v.ft && v.secondaryHost === x) left.push(`${v.id}/secondary`);
      }
      expect(left.sort()).toEqual(plan.blocked.map((b) => `${b.vm}/${b.role}`).sort());
      for (const b of plan.blocked) expect(b.reason.length).toBeGreaterThan(0);
      if (plan.complete) complete++;
      else blocked++;
    }
    expect(complete).toBeGreaterThan(100);
    expect(blocked).toBeGreaterThan(20);
    expect(switches).toBeGreaterThan(50);
  });

  it('a new secondary never breaks a hard rule, including after a failover (800 clusters)', () => {
    const rng = new Rng(7);
    let failovers = 0;
    let placedSecondaries = 0;
    for (let i = 0; i < 800; i++) {
      const base = placedCluster(rng);
      // Kill one live host: its primaries fail over, its secondaries are lost.
      const live = base.hosts.filter((h) => h.connected !== false);
      if (live.length === 0) continue;
      const dead = rng.pick(live).id;
      const snap: ClusterSnapshot = { ...base, hosts: base.hosts.map((h) => (h.id === dead ? { ...h, connected: false } : h)) };
      let cur = snap;
      for (const v of snap.vms) {
        if (!v.ft || (v.host !== dead && v.secondaryHost !== dead)) continue;
        const r = new Placement(cur).placeSecondary(v.id);
        expect(explain(r).length).toBeGreaterThan(0);
        if (r.kind === 'secondary-placed') {
          placedSecondaries++;
          if (r.failover) {
            failovers++;
            expect(r.failover.lostHost).toBe(dead);
            expect(r.primaryHost).toBe(v.secondaryHost);
          } else {
            expect(r.primaryHost).toBe(v.host);
          }
          expect(r.host).not.toBe(r.primaryHost);
          // A failover may leave the new primary where a VM-VM rule did not expect it (the balancer's
          // job); the new secondary itself must add no problem to the failed-over cluster.
          const promoted: ClusterSnapshot = {
            ...cur,
            vms: cur.vms.map((x) => (x.id === v.id ? { ...x, host: r.primaryHost, secondaryHost: undefined } : x)),
          };
          cur = applyAnswer(cur, r);
          expect(hardProblems(cur), `cluster ${i}: ${explain(r)}`).toEqual(hardProblems(promoted));
        } else if (r.kind === 'unplaceable') {
          expect(r.candidates.every((c) => c.ok || c.rejections.length > 0)).toBe(true);
          expect(r.candidates.some((c) => c.ok)).toBe(false);
        }
      }
    }
    expect(failovers).toBeGreaterThan(30);
    expect(placedSecondaries).toBeGreaterThan(100);
  });
});
