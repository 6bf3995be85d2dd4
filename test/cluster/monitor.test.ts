// HA VM monitoring, the pure part: when a VM's heartbeat or progress counts as stopped (by the caller's
// clock, after the minimum uptime), and the reset limit.
import { describe, expect, it } from 'vitest';
import { DEFAULT_VM_MONITORING, ProgressTracker, resetAllowed, vmMonitoringOf, type VmMonitoringSettings } from '../../src/cluster/manager/monitor.js';

const S: VmMonitoringSettings = { mode: 'heartbeat', failureIntervalMs: 10_000, minUptimeMs: 0, maxResets: 2, resetWindowMs: 60_000 };

describe('VM monitoring', () => {
  it('finds a VM whose heartbeat stopped for the failure interval, not one still beating', () => {
    const t = new ProgressTracker();
    t.observe('a', 'i1', { instret: '100', beats: 1 }, 0);
    t.observe('b', 'i1', { instret: '5', beats: 1 }, 0);
    // a keeps beating (its instret idle, as a guest waiting in WFI); b stops.
    for (let now = 1_000; now <= 12_000; now += 1_000) t.observe('a', 'i1', { instret: '100', beats: 1 + now / 1_000 }, now);
    t.observe('b', 'i1', { instret: '5', beats: 1 }, 12_000);
    expect(t.stall('a', S, 12_000)).toBeUndefined();
    expect(t.stall('b', S, 9_999)).toBeUndefined();
    expect(t.stall('b', S, 12_000)).toEqual({ what: 'heartbeat', forMs: 12_000, instret: '5', watchdog: null });
    // In progress mode the idle one stopped too: its instret has not moved.
    expect(t.stall('a', { ...S, mode: 'progress' }, 12_000)).toEqual({ what: 'progress', forMs: 12_000, instret: '100', watchdog: null });
    // In watchdog mode it did not: its guest never pet a watchdog, so only the heartbeat judges it.
    expect(t.stall('a', { ...S, mode: 'watchdog' }, 12_000)).toBeUndefined();
    expect(t.stall('b', { ...S, mode: 'watchdog' }, 12_000)?.what).toBe('heartbeat');
    expect(t.stall('a', { ...S, mode: 'off' }, 12_000)).toBeUndefined();
  });

  it('in watchdog mode, finds a guest that pet its watchdog and stopped, while it runs and reports, not one still petting', () => {
    const W: VmMonitoringSettings = { ...S, mode: 'watchdog' };
    const t = new ProgressTracker();
    for (let now = 0; now <= 12_000; now += 1_000) {
      const beats = 1 + now / 1_000;
      // Both run (instret advances) and report; 'quiet' pet 3 times early on and then no more.
      t.observe('quiet', 'i1', { instret: String(1000 * beats), beats, watchdog: now === 0 ? '1' : '3' }, now);
      t.observe('petting', 'i1', { instret: String(1000 * beats), beats, watchdog: String(beats) }, now);
    }
    expect(t.stall('petting', W, 12_000)).toBeUndefined();
    expect(t.stall('quiet', W, 10_999)).toBeUndefined();
    expect(t.stall('quiet', W, 12_000)).toEqual({ what: 'watchdog', forMs: 11_000, instret: '13000', watchdog: '3' });
    // Progress mode does not see it: its instructions advance.
    expect(t.stall('quiet', { ...W, mode: 'progress' }, 12_000)).toBeUndefined();
    // A count back at 0 (a new machine under the same incarnation) is not armed; older agents report none.
    t.observe('zero', 'i1', { instret: '1', beats: 1, watchdog: '0' }, 0);
    t.observe('zero', 'i1', { instret: '1', beats: 2, watchdog: '0' }, 12_000);
    expect(t.stall('zero', W, 12_000)).toBeUndefined();
  });

  it('judges nothing before the minimum uptime, and starts afresh for a new incarnation', () => {
    const t = new ProgressTracker();
    t.observe('v', 'i1', null, 0);
    expect(t.stall('v', { ...S, minUptimeMs: 120_000 }, 60_000)).toBeUndefined();
    expect(t.stall('v', { ...S, minUptimeMs: 120_000 }, 120_000)?.what).toBe('heartbeat');
    t.observe('v', 'i2', { instret: '1', beats: 1 }, 120_000);
    expect(t.stall('v', S, 125_000)).toBeUndefined();
    t.retain(new Set());
    expect(t.size).toBe(0);
  });

  it('allows at most maxResets resets within the window', () => {
    expect(resetAllowed([], S, 100_000)).toEqual({ allowed: true, recent: [] });
    expect(resetAllowed([50_000], S, 100_000)).toEqual({ allowed: true, recent: [50_000] });
    expect(resetAllowed([50_000, 90_000], S, 100_000)).toEqual({ allowed: false, recent: [50_000, 90_000] });
    // The oldest left the window.
    expect(resetAllowed([30_000, 90_000], S, 100_000)).toEqual({ allowed: true, recent: [90_000] });
  });

  it('reads stored settings with the defaults for anything missing or malformed', () => {
    expect(vmMonitoringOf(undefined)).toEqual(DEFAULT_VM_MONITORING);
    expect(vmMonitoringOf({ mode: 'progress', failureIntervalMs: 5_000, maxResets: 1 })).toEqual({ ...DEFAULT_VM_MONITORING, mode: 'progress', maxResets: 1 });
    expect(vmMonitoringOf({ mode: 'sometimes' }).mode).toBe('off');
  });
});
