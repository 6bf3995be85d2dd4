// A small Prometheus registry: counters, gauges and fixed-bucket histograms with labels, rendered in the
// text exposition format 0.0.4. Nothing global: the application creates a registry and passes it in.
// No timers, no I/O (metrics-server.ts serves it).

/** Label values of one series, by label name. */
export type Labels = Readonly<Record<string, string | number>>;

/** Content-Type of {@link Registry.metrics}'s text. */
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** `# HELP` text: backslash and newline escaped. */
function escapeHelp(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
}

/** A label value: backslash, double quote and newline escaped. */
function escapeLabelValue(s: string): string {
  return s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** A sample value as the format writes it (`+Inf`, `-Inf`, `NaN`, or the shortest round-trip decimal). */
export function formatValue(v: number): string {
  if (v === Infinity) return '+Inf';
  if (v === -Infinity) return '-Inf';
  if (Number.isNaN(v)) return 'NaN';
  return String(v);
}

/** What every metric is made from. */
export interface MetricOptions {
  /** `[a-zA-Z_:][a-zA-Z0-9_:]*`; counters should end in `_total`, and units be base units (seconds, bytes). */
  name: string;
  /** One line saying what is measured, with its unit. */
  help: string;
  /** Names of the labels every series of this metric has, in order. */
  labelNames?: readonly string[];
}

/** Options of a {@link Histogram}. */
export interface HistogramOptions extends MetricOptions {
  /** Upper bounds, strictly increasing and finite; `+Inf` is added. */
  buckets: readonly number[];
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/** Common part of the three kinds: name, help, label names and the series by label values. */
abstract class Metric<S> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: MetricType;
  /** Series by the key of their label values, in creation order (which is the rendering order). */
  readonly #series = new Map<string, { labels: string[]; state: S }>();

  constructor(options: MetricOptions, reserved: readonly string[] = []) {
    if (!METRIC_NAME.test(options.name)) throw new TypeError(`metric name ${JSON.stringify(options.name)} must match ${METRIC_NAME.source}`);
    const labelNames = [...(options.labelNames ?? [])];
    for (const l of labelNames) {
      if (!LABEL_NAME.test(l) || l.startsWith('__')) throw new TypeError(`${options.name}: label name ${JSON.stringify(l)} must match ${LABEL_NAME.source} and not start with __`);
      if (reserved.includes(l)) throw new TypeError(`${options.name}: the label name ${l} is reserved`);
    }
    if (new Set(labelNames).size !== labelNames.length) throw new TypeError(`${options.name}: label names repeat`);
    this.name = options.name;
    this.help = options.help;
    this.labelNames = Object.freeze(labelNames);
  }

  protected abstract initial(): S;

  /** The series for `labels` (created on first use); throws when the labels are not exactly the declared ones. */
  protected series(labels: Labels | undefined): S {
    const values = this.labelNames.map((n) => {
      const v = labels?.[n];
      if (v === undefined) throw new TypeError(`${this.name}: missing label ${n} (labels are ${this.labelNames.join(', ') || 'none'})`);
      return String(v);
    });
    if (labels) {
      for (const k of Object.keys(labels)) {
        if (!this.labelNames.includes(k)) throw new TypeError(`${this.name}: unknown label ${k} (labels are ${this.labelNames.join(', ') || 'none'})`);
      }
    }
    const key = values.join('\u0000');
    let s = this.#series.get(key);
    if (!s) {
      s = { labels: values, state: this.initial() };
      this.#series.set(key, s);
    }
    return s.state;
  }

  /** Forgets the series of `labels` (e.g. a VM that was removed); it reappears on its next update. */
  remove(labels?: Labels): void {
    const key = this.labelNames.map((n) => String(labels?.[n] ?? '')).join('\u0000');
    this.#series.delete(key);
  }

  /** Forgets every series. */
  reset(): void {
    this.#series.clear();
  }

  /** `{a="x",b="y"}` for a series (with `extra` appended), or `''` without labels. */
  protected labelText(values: readonly string[], extra?: [string, string]): string {
    const parts = values.map((v, i) => `${this.labelNames[i]}="${escapeLabelValue(v)}"`);
    if (extra) parts.push(`${extra[0]}="${escapeLabelValue(extra[1])}"`);
    return parts.length === 0 ? '' : `{${parts.join(',')}}`;
  }

  protected abstract renderSeries(values: readonly string[], state: S, out: string[]): void;

  /** This metric's lines of the exposition text. */
  render(out: string[]): void {
    out.push(`# HELP ${this.name} ${escapeHelp(this.help)}`, `# TYPE ${this.name} ${this.type}`);
    // A metric without labels has one series from the start, so that it reads 0 before its first update.
    if (this.labelNames.length === 0 && this.#series.size === 0) this.series(undefined);
    for (const { labels, state } of this.#series.values()) this.renderSeries(labels, state, out);
  }

  /** Whether `other` was declared the same way (re-registration under one name is allowed only then). */
  sameShape(type: MetricType, options: MetricOptions & { buckets?: readonly number[] }): boolean {
    return type === this.type && options.help === this.help && (options.labelNames ?? []).join() === this.labelNames.join();
  }
}

/** A series of a {@link Counter} with its labels bound. */
export interface CounterChild {
  inc(value?: number): void;
  get(): number;
}

/** A value that only goes up (resets only with the process). */
export class Counter extends Metric<{ value: number }> {
  readonly type = 'counter' as const;
  protected initial() {
    return { value: 0 };
  }

  /** Adds `value` (default 1, must be ≥ 0) to the series of `labels`. */
  inc(value?: number): void;
  inc(labels: Labels, value?: number): void;
  inc(a?: Labels | number, b?: number): void {
    const [labels, value] = typeof a === 'object' ? [a, b ?? 1] : [undefined, a ?? 1];
    if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`${this.name}: a counter only goes up by a finite amount, got ${value}`);
    this.series(labels).value += value;
  }

  /** The current value of the series of `labels`. */
  get(labels?: Labels): number {
    return this.series(labels).value;
  }

  /** The series of `labels`, to update without naming the labels each time. */
  labels(labels: Labels): CounterChild {
    const s = this.series(labels);
    const name = this.name;
    return {
      inc(value = 1) {
        if (!(value >= 0) || !Number.isFinite(value)) throw new RangeError(`${name}: a counter only goes up by a finite amount, got ${value}`);
        s.value += value;
      },
      get: () => s.value,
    };
  }

  protected renderSeries(values: readonly string[], state: { value: number }, out: string[]): void {
    out.push(`${this.name}${this.labelText(values)} ${formatValue(state.value)}`);
  }
}

/** A series of a {@link Gauge} with its labels bound. */
export interface GaugeChild {
  set(value: number): void;
  inc(value?: number): void;
  dec(value?: number): void;
  get(): number;
}

/** A value that goes up and down. */
export class Gauge extends Metric<{ value: number }> {
  readonly type = 'gauge' as const;
  protected initial() {
    return { value: 0 };
  }

  /** Sets the series of `labels` to `value`. */
  set(value: number): void;
  set(labels: Labels, value: number): void;
  set(a: Labels | number, b?: number): void {
    if (typeof a === 'object') this.series(a).value = b ?? 0;
    else this.series(undefined).value = a;
  }

  inc(value?: number): void;
  inc(labels: Labels, value?: number): void;
  inc(a?: Labels | number, b?: number): void {
    if (typeof a === 'object') this.series(a).value += b ?? 1;
    else this.series(undefined).value += a ?? 1;
  }

  dec(value?: number): void;
  dec(labels: Labels, value?: number): void;
  dec(a?: Labels | number, b?: number): void {
    if (typeof a === 'object') this.series(a).value -= b ?? 1;
    else this.series(undefined).value -= a ?? 1;
  }

  get(labels?: Labels): number {
    return this.series(labels).value;
  }

  labels(labels: Labels): GaugeChild {
    const s = this.series(labels);
    return {
      set: (v) => void (s.value = v),
      inc: (v = 1) => void (s.value += v),
      dec: (v = 1) => void (s.value -= v),
      get: () => s.value,
    };
  }

  protected renderSeries(values: readonly string[], state: { value: number }, out: string[]): void {
    out.push(`${this.name}${this.labelText(values)} ${formatValue(state.value)}`);
  }
}

interface HistogramState {
  /** Observations per bucket, not cumulative (the last entry is the +Inf bucket's own). */
  counts: number[];
  sum: number;
  count: number;
}

/** A series of a {@link Histogram} with its labels bound. */
export interface HistogramChild {
  observe(value: number): void;
}

/** A distribution over fixed buckets, exposed as cumulative `_bucket{le=…}` counts, `_sum` and `_count`. */
export class Histogram extends Metric<HistogramState> {
  readonly type = 'histogram' as const;
  /** Upper bounds, without the implicit `+Inf`. */
  readonly buckets: readonly number[];

  constructor(options: HistogramOptions) {
    super(options, ['le']);
    const b = [...options.buckets];
    if (b.length === 0) throw new TypeError(`${options.name}: a histogram needs at least one bucket`);
    for (let i = 0; i < b.length; i++) {
      if (!Number.isFinite(b[i]!) || (i > 0 && !(b[i]! > b[i - 1]!))) throw new TypeError(`${options.name}: buckets must be finite and strictly increasing`);
    }
    this.buckets = Object.freeze(b);
  }

  protected initial(): HistogramState {
    return { counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
  }

  #observe(s: HistogramState, value: number): void {
    if (Number.isNaN(value)) throw new RangeError(`${this.name}: cannot observe NaN`);
    // Buckets are few (a dozen): a linear scan beats a binary search here.
    let i = 0;
    while (i < this.buckets.length && value > this.buckets[i]!) i++;
    s.counts[i]!++;
    s.sum += value;
    s.count++;
  }

  /** Records one observation in the series of `labels`. */
  observe(value: number): void;
  observe(labels: Labels, value: number): void;
  observe(a: Labels | number, b?: number): void {
    if (typeof a === 'object') this.#observe(this.series(a), b ?? NaN);
    else this.#observe(this.series(undefined), a);
  }

  /** Count, sum and cumulative bucket counts of the series of `labels` (the last bucket is `+Inf`). */
  get(labels?: Labels): { count: number; sum: number; buckets: { le: number; count: number }[] } {
    const s = this.series(labels);
    let acc = 0;
    const buckets = s.counts.map((c, i) => ({ le: this.buckets[i] ?? Infinity, count: (acc += c) }));
    return { count: s.count, sum: s.sum, buckets };
  }

  labels(labels: Labels): HistogramChild {
    const s = this.series(labels);
    return { observe: (v) => this.#observe(s, v) };
  }

  protected renderSeries(values: readonly string[], state: HistogramState, out: string[]): void {
    let acc = 0;
    for (let i = 0; i <= this.buckets.length; i++) {
      acc += state.counts[i]!;
      const le = i < this.buckets.length ? formatValue(this.buckets[i]!) : '+Inf';
      out.push(`${this.name}_bucket${this.labelText(values, ['le', le])} ${acc}`);
    }
    out.push(`${this.name}_sum${this.labelText(values)} ${formatValue(state.sum)}`);
    out.push(`${this.name}_count${this.labelText(values)} ${state.count}`);
  }

  override sameShape(type: MetricType, options: MetricOptions & { buckets?: readonly number[] }): boolean {
    return super.sameShape(type, options) && (options.buckets ?? []).join() === this.buckets.join();
  }
}

/**
 * A set of metrics rendered together. Asking twice for a metric of the same name and shape returns the
 * same metric (so that several VMs in one process can share the FT metric set); a different shape
 * under a taken name throws.
 *
 * ```ts
 * const registry = new Registry();
 * const requests = registry.counter({ name: 'app_requests_total', help: 'Requests served.', labelNames: ['vm'] });
 * requests.inc({ vm: 'kv1' });
 * registry.metrics(); // '# HELP app_requests_total Requests served.\n# TYPE …'
 * ```
 */
export class Registry {
  readonly #metrics = new Map<string, Counter | Gauge | Histogram>();
  readonly #collectors = new Set<() => void>();

  #register<M extends Counter | Gauge | Histogram>(type: MetricType, options: MetricOptions & { buckets?: readonly number[] }, make: () => M): M {
    const existing = this.#metrics.get(options.name);
    if (existing) {
      if (!existing.sameShape(type, options)) {
        throw new TypeError(`metric ${options.name} is already registered with another type, help, label names or buckets`);
      }
      return existing as M;
    }
    const m = make();
    this.#metrics.set(options.name, m);
    return m;
  }

  counter(options: MetricOptions): Counter {
    return this.#register('counter', options, () => new Counter(options));
  }

  gauge(options: MetricOptions): Gauge {
    return this.#register('gauge', options, () => new Gauge(options));
  }

  histogram(options: HistogramOptions): Histogram {
    return this.#register('histogram', options, () => new Histogram(options));
  }

  /** The metric registered under `name`. */
  get(name: string): Counter | Gauge | Histogram | undefined {
    return this.#metrics.get(name);
  }

  /**
   * Calls `collect` before every rendering, to pull values that are cheaper read on demand (a
   * machine's counters, say). Returns a function that removes it.
   */
  addCollector(collect: () => void): () => void {
    this.#collectors.add(collect);
    return () => this.#collectors.delete(collect);
  }

  /** Every metric in the text exposition format 0.0.4 (registration order; ends with a newline). */
  metrics(): string {
    for (const c of this.#collectors) c();
    const out: string[] = [];
    for (const m of this.#metrics.values()) m.render(out);
    return out.length === 0 ? '' : `${out.join('\n')}\n`;
  }
}
