// The short chaos run: one cycle of each fault (kill -9 and SIGSTOP of either side, a partition of the
// logging channel) against lockstep processes in separate PID namespaces under a verifying load, a new
// secondary after every loss. Nothing acknowledged lost, nothing applied twice, never two sides live.
import { describe, expect, it } from 'vitest';
import { ChaosRun, FAULT_KINDS, pidNamespacesAvailable, planChaos, SOAK, type FaultKind } from '../helpers/chaos.js';
import { until } from '../helpers/wait.js';

// A failover first, so the later races for an epoch are between two secondaries (promoted or not) whose
// processes are pid 1 of their namespaces alike.
const SCHEDULE: FaultKind[] = ['kill-primary', 'stop-secondary', 'partition', 'stop-primary', 'kill-secondary'];

const pidns = pidNamespacesAvailable();
if (!pidns.ok) console.log(`test/ft/chaos.test.ts: ${pidns.why}; the halves share the test's PID namespace`);

describe('chaos (processes, faults from a fixed schedule)', () => {
  it('the schedule is a function of the seed: the same seed repeats it, another changes it, every kind gets picked', () => {
    const a = planChaos({ cycles: 200, seed: 42 });
    expect(planChaos({ cycles: 200, seed: 42 })).toEqual(a);
    expect(planChaos({ cycles: 200, seed: 43 })).not.toEqual(a);
    for (const kind of FAULT_KINDS) expect(a.some((p) => p.fault === kind)).toBe(true);
    // Stops outlast the detection timeout; kills have no duration.
    for (const p of a) {
      if (p.fault.startsWith('stop')) expect(p.faultMs).toBeGreaterThan(600);
      if (p.fault.startsWith('kill')) expect(p.faultMs).toBe(0);
    }
    expect(planChaos({ cycles: 7, seed: 1, schedule: SCHEDULE }).map((p) => p.fault)).toEqual([...SCHEDULE, ...SCHEDULE.slice(0, 2)]);
    // A soak is never picked unless named, and lasts soakMs.
    expect(a.some((p) => p.fault === SOAK)).toBe(false);
    expect(planChaos({ cycles: 3, seed: 5, faults: [SOAK], soakMs: 1234 }).map((p) => [p.fault, p.faultMs])).toEqual([
      [SOAK, 1234],
      [SOAK, 1234],
      [SOAK, 1234],
    ]);
  });

  it('counts a failover nobody caused (the primary stalled past the timeout in a soak cycle) as false, and not those of an injected fault', async () => {
    const log: string[] = [];
    const run = new ChaosRun({
      cycles: 2,
      seed: 20261205,
      schedule: ['kill-primary', SOAK],
      // Long enough for any stall and failover; the test ends the soak once it has seen its failover.
      soakMs: 120_000,
      timeoutMs: 1000,
      heartbeatMs: 100,
      counterClients: 2,
      registerClients: 1,
      pidNamespaces: pidns.ok,
      onLog: (line) => log.push(line),
    });
    const done = run.run().finally(() => run.kill());
    try {
      // Outside the harness's faults: the soak's primary stops (a host stall), until its secondary goes live.
      await until('the soak cycle', () => run.status().phase.startsWith('soak'), { timeoutMs: 240_000, everyMs: 20 });
      const p = run.halves().find((h) => h.live && !h.exited && h.role === 'primary');
      expect(p, JSON.stringify(run.halves())).toBeDefined();
      process.kill(p!.pid, 'SIGSTOP');
      try {
        await until('the secondary going live', () => run.halves().some((h) => h.name !== p!.name && h.live && h.role === 'primary'), { timeoutMs: 60_000, everyMs: 20 });
      } finally {
        process.kill(p!.pid, 'SIGCONT');
      }
      // Nothing more to wait for in the soak: the cycle settles (the stalled primary, resumed, reports
      // its lost secondary late and halts) and the run ends.
      run.endSoak();
    } catch (err) {
      run.kill();
      await done.catch(() => undefined);
      throw err;
    }
    const r = await done;
    const detail = JSON.stringify({ log, perCycle: r.perCycle, falseFailovers: r.falseFailovers }, null, 1);
    expect(r.aborted, detail).toBeUndefined();
    expect([r.faults['kill-primary'], r.faults[SOAK]]).toEqual([1, 1]);
    // The kill's failover is the harness's; the stall's is false. The stalled primary's late report of
    // its lost secondary (at an epoch already superseded) is the same incident, not a second one.
    expect({ promotions: r.falseFailovers.promotions, secondaryLosses: r.falseFailovers.secondaryLosses }, detail).toEqual({ promotions: 1, secondaryLosses: 0 });
    expect(r.falseFailovers.events[0], detail).toMatch(/^cycle 2: \S+ went live at epoch \d+ with no fault injected$/);
    expect(r.falseFailovers.quietMs).toBeGreaterThan(0);
    expect({ lost: r.lost, appliedTwice: r.appliedTwice, splitBrainCycles: r.splitBrain }, detail).toEqual({ lost: 0, appliedTwice: 0, splitBrainCycles: 0 });
  }, 300_000);

  it('kill -9, SIGSTOP of each side and a partition, halves in separate PID namespaces: nothing acknowledged lost, nothing applied twice, never two sides live', async () => {
    const log: string[] = [];
    const run = new ChaosRun({
      cycles: SCHEDULE.length,
      seed: 20261204,
      schedule: SCHEDULE,
      // 1 s: with 300 ms a starved machine (the suite beside stress-ng --cpu 2) dismissed every new
      // secondary during its clone. Stops and partitions scale with it.
      timeoutMs: 1000,
      heartbeatMs: 100,
      counterClients: 4,
      registerClients: 1,
      pidNamespaces: pidns.ok,
      onLog: (line) => log.push(line),
    });
    const r = await run.run().finally(() => run.kill());
    const detail = JSON.stringify({ log, perCycle: r.perCycle, counters: r.counters.verdicts.filter((v) => v.lost + v.appliedTwice > 0), registers: r.registers.examples, epochs: r.epochs }, null, 1);
    expect(r.aborted, detail).toBeUndefined();
    expect(r.verified, detail).toBe(true);
    expect(r.cycles).toBe(SCHEDULE.length);
    for (const kind of SCHEDULE) expect(r.faults[kind]).toBe(1);
    expect(r.counters.acknowledged).toBeGreaterThan(0);
    expect(r.registers.acknowledged).toBeGreaterThan(0);
    // A lockstep process that crashed (rather than halting or leaving) is a failure too.
    const crashes = [...r.anomalies, ...r.perCycle.flatMap((c) => c.anomalies)].filter((a) => / exited with /.test(a));
    expect(crashes, detail).toEqual([]);
    expect({ lost: r.lost, appliedTwice: r.appliedTwice, splitBrainCycles: r.splitBrain }, detail).toEqual({ lost: 0, appliedTwice: 0, splitBrainCycles: 0 });
  }, 300_000);
});
