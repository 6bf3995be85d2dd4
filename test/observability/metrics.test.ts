// The Prometheus registry: exact exposition text, escaping, cumulative histogram buckets, label checks,
// and the FT metric set's names and labels.
import { describe, expect, it } from 'vitest';
import { Counter, Registry, createFtMetrics, formatValue, LOG_BUDGET_BYTES_PER_SECOND } from '../../src/observability/index.js';

describe('Registry exposition', () => {
  it('renders a small registry exactly (format 0.0.4)', () => {
    const r = new Registry();
    const requests = r.counter({ name: 'app_requests_total', help: 'Requests served.', labelNames: ['method'] });
    const temp = r.gauge({ name: 'app_temperature_celsius', help: 'Temperature, degrees Celsius.' });
    const latency = r.histogram({ name: 'app_latency_seconds', help: 'Request latency, seconds.', labelNames: ['method'], buckets: [0.1, 1] });
    requests.inc({ method: 'get' });
    requests.inc({ method: 'get' });
    requests.inc({ method: 'post' }, 3);
    temp.set(21.5);
    latency.observe({ method: 'get' }, 0.25);
    latency.observe({ method: 'get' }, 0.5);
    latency.observe({ method: 'get' }, 2);
    latency.observe({ method: 'get' }, 0.1);
    expect(r.metrics()).toBe(
      [
        '# HELP app_requests_total Requests served.',
        '# TYPE app_requests_total counter',
        'app_requests_total{method="get"} 2',
        'app_requests_total{method="post"} 3',
        '# HELP app_temperature_celsius Temperature, degrees Celsius.',
        '# TYPE app_temperature_celsius gauge',
        'app_temperature_celsius 21.5',
        '# HELP app_latency_seconds Request latency, seconds.',
        '# TYPE app_latency_seconds histogram',
        'app_latency_seconds_bucket{method="get",le="0.1"} 1',
        'app_latency_seconds_bucket{method="get",le="1"} 3',
        'app_latency_seconds_bucket{method="get",le="+Inf"} 4',
        'app_latency_seconds_sum{method="get"} 2.85',
        'app_latency_seconds_count{method="get"} 4',
        '',
      ].join('\n'),
    );
  });

  it('shows an unlabelled metric as 0 before its first update, and a labelled one with no series', () => {
    const r = new Registry();
    r.counter({ name: 'a_total', help: 'A.' });
    r.gauge({ name: 'b', help: 'B.', labelNames: ['vm'] });
    expect(r.metrics()).toBe('# HELP a_total A.\n# TYPE a_total counter\na_total 0\n# HELP b B.\n# TYPE b gauge\n');
    expect(new Registry().metrics()).toBe('');
  });

  it('escapes help text and label values', () => {
    const r = new Registry();
    const g = r.gauge({ name: 'esc', help: 'Back\\slash and\nnewline "quotes" kept.', labelNames: ['path'] });
    g.set({ path: 'C:\\dir\n"x"' }, 1);
    expect(r.metrics()).toBe(
      '# HELP esc Back\\\\slash and\\nnewline "quotes" kept.\n# TYPE esc gauge\nesc{path="C:\\\\dir\\n\\"x\\""} 1\n',
    );
  });

  it('writes special values as the format spells them', () => {
    expect([Infinity, -Infinity, NaN, 0, -0, 1e21, 0.1, 12345678].map(formatValue)).toEqual(['+Inf', '-Inf', 'NaN', '0', '0', '1e+21', '0.1', '12345678']);
    const r = new Registry();
    r.gauge({ name: 'g', help: 'G.' }).set(-Infinity);
    expect(r.metrics()).toContain('\ng -Inf\n');
  });

  it('keeps histogram buckets cumulative, with values on a bound counted in that bucket', () => {
    const r = new Registry();
    const h = r.histogram({ name: 'h_seconds', help: 'H.', buckets: [1, 2, 5] });
    for (const v of [0, 1, 1.5, 2, 2, 4.9, 5, 7, 100, -3]) h.observe(v);
    const { count, sum, buckets } = h.get();
    expect(count).toBe(10);
    expect(sum).toBeCloseTo(120.4);
    expect(buckets).toEqual([
      { le: 1, count: 3 },
      { le: 2, count: 6 },
      { le: 5, count: 8 },
      { le: Infinity, count: 10 },
    ]);
    const lines = r.metrics().split('\n').filter((l) => l.startsWith('h_seconds_bucket'));
    expect(lines).toEqual(['h_seconds_bucket{le="1"} 3', 'h_seconds_bucket{le="2"} 6', 'h_seconds_bucket{le="5"} 8', 'h_seconds_bucket{le="+Inf"} 10']);
    const counts = lines.map((l) => Number(l.split(' ')[1]));
    expect([...counts].sort((a, b) => a - b)).toEqual(counts);
  });

  it('refuses bad names, labels, buckets and decreasing counters', () => {
    const r = new Registry();
    expect(() => r.counter({ name: '1bad', help: '' })).toThrow(TypeError);
    expect(() => r.gauge({ name: 'g', help: '', labelNames: ['__x'] })).toThrow(TypeError);
    expect(() => r.gauge({ name: 'g2', help: '', labelNames: ['a', 'a'] })).toThrow(/repeat/);
    expect(() => r.histogram({ name: 'h', help: '', labelNames: ['le'], buckets: [1] })).toThrow(/reserved/);
    expect(() => r.histogram({ name: 'h', help: '', buckets: [2, 1] })).toThrow(/strictly increasing/);
    expect(() => r.histogram({ name: 'h', help: '', buckets: [] })).toThrow(/at least one/);
    const c = r.counter({ name: 'c_total', help: 'C.', labelNames: ['vm'] });
    expect(() => c.inc({ vm: 'a' }, -1)).toThrow(RangeError);
    expect(() => c.inc({ vm: 'a' }, NaN)).toThrow(RangeError);
    expect(() => c.inc()).toThrow(/missing label vm/);
    expect(() => c.inc({ vm: 'a', host: 'b' })).toThrow(/unknown label host/);
    expect(() => r.histogram({ name: 'h3', help: '', buckets: [1] }).observe(NaN)).toThrow(RangeError);
  });

  it('returns the same metric for the same declaration and refuses a different one under a taken name', () => {
    const r = new Registry();
    const a = r.counter({ name: 'x_total', help: 'X.', labelNames: ['vm'] });
    expect(r.counter({ name: 'x_total', help: 'X.', labelNames: ['vm'] })).toBe(a);
    expect(r.get('x_total')).toBe(a);
    expect(a).toBeInstanceOf(Counter);
    expect(() => r.gauge({ name: 'x_total', help: 'X.', labelNames: ['vm'] })).toThrow(/already registered/);
    expect(() => r.counter({ name: 'x_total', help: 'X.', labelNames: ['host'] })).toThrow(/already registered/);
    r.histogram({ name: 'y', help: 'Y.', buckets: [1, 2] });
    expect(() => r.histogram({ name: 'y', help: 'Y.', buckets: [1, 3] })).toThrow(/already registered/);
  });

  it('runs collectors before rendering, until removed', () => {
    const r = new Registry();
    const g = r.gauge({ name: 'pulled', help: 'P.' });
    let n = 0;
    const remove = r.addCollector(() => g.set(++n));
    expect(r.metrics()).toContain('pulled 1\n');
    expect(r.metrics()).toContain('pulled 2\n');
    remove();
    expect(r.metrics()).toContain('pulled 2\n');
  });

  it('binds children to their labels and removes series', () => {
    const r = new Registry();
    const g = r.gauge({ name: 'lag', help: 'L.', labelNames: ['vm'] });
    const kv1 = g.labels({ vm: 'kv1' });
    kv1.set(5);
    kv1.inc(2);
    kv1.dec();
    g.inc({ vm: 'kv2' }, 4);
    expect([kv1.get(), g.get({ vm: 'kv2' })]).toEqual([6, 4]);
    g.remove({ vm: 'kv1' });
    expect(r.metrics()).toBe('# HELP lag L.\n# TYPE lag gauge\nlag{vm="kv2"} 4\n');
  });
});

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

  it('declares every metric with its type and a vm label', () => {
    const r = new Registry();
    const ft = createFtMetrics(r);
    const text = r.metrics();
    for (const [name, type] of NAMES) {
      expect(text).toContain(`# TYPE ${name} ${type}\n`);
      expect(r.get(name)?.labelNames).toEqual(['vm']);
    }
    expect(createFtMetrics(r).logBytes).toBe(ft.logBytes);
  });

  it("records one VM's figures under its label, the budget ratio from the bandwidth", () => {
    const r = new Registry();
    const kv1 = createFtMetrics(r).forVm('kv1');
    const kv2 = createFtMetrics(r).forVm('kv2');
    kv1.logBytes.inc(1000);
    kv1.setLogBandwidth(LOG_BUDGET_BYTES_PER_SECOND / 4);
    kv1.lagSeconds.set(0.05);
    kv1.lagInstructions.set(12345);
    kv1.ackLatency.observe(0.0003);
    kv1.outputDelay.observe(0.0004);
    kv1.mips.set(250.5);
    kv1.setProtected(true);
    kv2.setProtected(false);
    kv2.failovers.inc();
    kv1.throttleRatio.set(0.25);
    kv1.unackedBytes.set(4096);
    kv1.clonePause.observe(0.02);
    const text = r.metrics();
    for (const line of [
      'lockstep_log_bytes_total{vm="kv1"} 1000',
      'lockstep_log_bandwidth_bytes_per_second{vm="kv1"} 31250000',
      'lockstep_log_budget_ratio{vm="kv1"} 0.25',
      'lockstep_lag_seconds{vm="kv1"} 0.05',
      'lockstep_lag_instructions{vm="kv1"} 12345',
      'lockstep_ack_latency_seconds_bucket{vm="kv1",le="0.0005"} 1',
      'lockstep_ack_latency_seconds_bucket{vm="kv1",le="0.00025"} 0',
      'lockstep_output_delay_seconds_count{vm="kv1"} 1',
      'lockstep_mips{vm="kv1"} 250.5',
      'lockstep_protected{vm="kv1"} 1',
      'lockstep_protected{vm="kv2"} 0',
      'lockstep_failovers_total{vm="kv2"} 1',
      'lockstep_throttle_ratio{vm="kv1"} 0.25',
      'lockstep_unacked_bytes{vm="kv1"} 4096',
      'lockstep_clone_pause_seconds_bucket{vm="kv1",le="0.025"} 1',
      'lockstep_clone_pause_seconds_sum{vm="kv1"} 0.02',
    ]) {
      expect(text).toContain(`\n${line}\n`);
    }
    kv1.remove();
    expect(r.metrics()).not.toContain('vm="kv1"');
    expect(r.metrics()).toContain('lockstep_protected{vm="kv2"} 0');
  });
});
