// The FT metric set on prom-client: the series the hand-written registry showed (a golden scrape it
// made), registration on an application's registry beside its own metrics, and the refusals.
import { readFileSync } from 'node:fs';
import { Counter, Gauge, Registry, register } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LockstepError } from '../../src/errors.js';
import { createFtMetrics, LOG_BUDGET_BYTES_PER_SECOND } from '../../src/observability/index.js';

/**
 * A scrape as comparable text: no blank lines, and label pairs sorted in every sample (prom-client
 * writes a histogram's `le` first, the old registry last; Prometheus reads both the same).
 */
function normalise(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => line.replace(/\{([^}]*)\}/, (_all, labels: string) => `{${labels.split(/,(?=[a-z_]+=")/).sort().join(',')}}`));
}

/** Two VMs' figures, as scripted when ft-metrics.golden.prom was made with the hand-written registry. */
function scenario(r: Registry): void {
  const kv1 = createFtMetrics(r).forVm('kv1');
  const kv2 = createFtMetrics(r).forVm('kv2');
  kv1.logBytes.inc(1000);
  kv1.setLogBandwidth(LOG_BUDGET_BYTES_PER_SECOND / 4);
  kv1.lagSeconds.set(0.05);
  kv1.lagInstructions.set(12345);
  kv1.ackLatency.observe(0.0003);
  kv1.ackLatency.observe(0.002);
  kv1.outputDelay.observe(0.0004);
  kv1.mips.set(250.5);
  kv1.setProtected(true);
  kv2.setProtected(false);
  kv2.failovers.inc();
  kv1.throttleRatio.set(0.25);
  kv1.unackedBytes.set(4096);
  kv1.clonePause.observe(0.02);
  kv1.rejected('channel').inc(2);
  kv2.rejected('control').inc();
  kv1.setNetworkAttached(true);
}

describe('FT metric set', () => {
  const NAMES = [
    ['lockstep_log_bytes_total', 'counter'],
    ['lockstep_log_bandwidth_bytes_per_second', 'gauge'],
    ['lockstep_log_budget_ratio', 'gauge'],
    ['lockstep_lag_seconds', 'gauge'],
    ['lockstep_lag_instructions', 'gauge'],
    ['lockstep_ack_latency_seconds', 'histogram'],
    ['lockstep_output_delay_seconds', 'histogram'],
    ['lockstep_mips', 'gauge'],
    ['lockstep_failovers_total', 'counter'],
    ['lockstep_protected', 'gauge'],
    ['lockstep_throttle_ratio', 'gauge'],
    ['lockstep_unacked_bytes', 'gauge'],
    ['lockstep_clone_pause_seconds', 'histogram'],
  ] as const;

  it('shows exactly the series, types and help texts the hand-written registry showed', async () => {
    const r = new Registry();
    scenario(r);
    const golden = readFileSync(new URL('ft-metrics.golden.prom', import.meta.url), 'utf8');
    expect(normalise(await r.metrics())).toEqual(normalise(golden));
  });

  it('declares every metric with its type and a vm label, once per registry', async () => {
    const r = new Registry();
    const ft = createFtMetrics(r);
    const text = await r.metrics();
    for (const [name, type] of NAMES) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
      expect((await r.getSingleMetric(name)!.get()).type).toBe(type);
    }
    expect(createFtMetrics(r)).toBe(ft);
    expect(createFtMetrics(new Registry())).not.toBe(ft);
    // A registry the application cleared gets the set again.
    r.clear();
    expect(createFtMetrics(r)).not.toBe(ft);
    expect(await r.metrics()).toContain('# TYPE lockstep_mips gauge\n');
  });

  it("records one VM's figures under its label, the budget ratio from the bandwidth, and drops them on remove", async () => {
    const r = new Registry();
    const kv1 = createFtMetrics(r).forVm('kv1');
    const kv2 = createFtMetrics(r).forVm('kv2');
    kv1.setLogBandwidth(LOG_BUDGET_BYTES_PER_SECOND / 4);
    kv1.ackLatency.observe(0.0003);
    kv2.setProtected(true);
    const text = await r.metrics();
    for (const line of [
      'lockstep_log_budget_ratio{vm="kv1"} 0.25',
      'lockstep_ack_latency_seconds_bucket{le="0.00025",vm="kv1"} 0',
      'lockstep_ack_latency_seconds_bucket{le="0.0005",vm="kv1"} 1',
      'lockstep_protected{vm="kv2"} 1',
      // A new VM's counters read 0 before their first update (rate() needs the series to exist).
      'lockstep_failovers_total{vm="kv1"} 0',
    ]) {
      expect(text).toContain(`\n${line}\n`);
    }
    kv1.remove();
    const after = await r.metrics();
    expect(after).not.toContain('vm="kv1"');
    expect(after).toContain('lockstep_protected{vm="kv2"} 1');
    // Asking for a VM again does not reset the figures it already has.
    createFtMetrics(r).forVm('kv2');
    expect(await r.metrics()).toContain('lockstep_protected{vm="kv2"} 1');
  });

  it("joins an application's registry: one scrape shows the application's metrics and lockstep's", async () => {
    const app = new Registry();
    app.setDefaultLabels({ service: 'shop' });
    const orders = new Counter({ name: 'shop_orders_total', help: 'Orders taken.', registers: [app] });
    const queue = new Gauge({ name: 'shop_queue_length', help: 'Orders waiting.', labelNames: ['region'], registers: [app] });
    orders.inc(3);
    queue.set({ region: 'eu' }, 7);
    createFtMetrics(app).forVm('kv1').setProtected(true);
    const text = await app.metrics();
    expect(text).toContain('\nshop_orders_total{service="shop"} 3\n');
    expect(text).toContain('\nshop_queue_length{region="eu",service="shop"} 7\n');
    expect(text).toContain('\nlockstep_protected{vm="kv1",service="shop"} 1\n');
    expect(text).toContain('# HELP lockstep_lag_seconds ');
    // And the application's JSON view (prom-client's getMetricsAsJSON) has them side by side.
    const names = (await app.getMetricsAsJSON()).map((m) => m.name);
    expect(names).toEqual(expect.arrayContaining(['shop_orders_total', 'shop_queue_length', 'lockstep_protected', 'lockstep_rejected_connections_total']));
  });

  it("works on prom-client's default registry, and merges with another registry", async () => {
    const vm = createFtMetrics(register).forVm('kv1');
    try {
      vm.mips.set(42);
      expect(await register.metrics()).toContain('\nlockstep_mips{vm="kv1"} 42\n');
      const own = new Registry();
      new Counter({ name: 'other_total', help: 'Other.', registers: [own] }).inc();
      const merged = Registry.merge([register, own]);
      const text = await merged.metrics();
      expect(text).toContain('\nlockstep_mips{vm="kv1"} 42\n');
      expect(text).toContain('\nother_total 1\n');
    } finally {
      register.clear();
    }
  });

  it("refuses a registry that already holds one of its names, and registers nothing then", async () => {
    const app = new Registry();
    new Gauge({ name: 'lockstep_mips', help: 'Something else of the application.', registers: [app] });
    const err = (() => {
      try {
        createFtMetrics(app);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(LockstepError);
    expect((err as LockstepError).code).toBe('ERR_LOCKSTEP_METRICS_CONFLICT');
    expect((err as Error).message).toContain('lockstep_mips');
    expect((await app.getMetricsAsJSON()).map((m) => m.name)).toEqual(['lockstep_mips']);
  });
});
