// The fault-tolerance metric set (log bandwidth against the 1 Gbit/s budget, lag, ack latency, output
// delay, MIPS, failovers, clone pause), registered on a prom-client Registry the application passes in
// (so its own /metrics shows lockstep's too). Every series carries a `vm` label; units are base units.
import type { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { LockstepError } from '../errors.js';
import { promClient } from './prom-client.js';

/** The logging channel's bandwidth budget: 1 Gbit/s, in bytes per second. */
export const LOG_BUDGET_BYTES_PER_SECOND = 125_000_000;

/** Buckets of latencies around one channel round trip (100 µs .. 1 s). */
export const LATENCY_BUCKETS_SECONDS = Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);
/** Buckets of the clone's stop-and-copy pause (1 ms .. 10 s). */
export const PAUSE_BUCKETS_SECONDS = Object.freeze([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** A counter's series with its labels bound (what prom-client's `counter.labels(…)` returns). */
export interface CounterChild {
  inc(value?: number): void;
}

/** A gauge's series with its labels bound. */
export interface GaugeChild {
  set(value: number): void;
  inc(value?: number): void;
  dec(value?: number): void;
}

/** A histogram's series with its labels bound. */
export interface HistogramChild {
  observe(value: number): void;
}

/** The metrics themselves (prom-client metrics), for every VM of the process. */
export interface FtMetrics {
  readonly logBytes: Counter<'vm'>;
  readonly logBandwidth: Gauge<'vm'>;
  readonly logBudgetRatio: Gauge<'vm'>;
  readonly lagSeconds: Gauge<'vm'>;
  readonly lagInstructions: Gauge<'vm'>;
  readonly ackLatency: Histogram<'vm'>;
  readonly outputDelay: Histogram<'vm'>;
  readonly mips: Gauge<'vm'>;
  readonly failovers: Counter<'vm'>;
  readonly protected: Gauge<'vm'>;
  readonly throttleRatio: Gauge<'vm'>;
  readonly unackedBytes: Gauge<'vm'>;
  readonly clonePause: Histogram<'vm'>;
  readonly rejectedConnections: Counter<'vm' | 'endpoint'>;
  readonly networkAttached: Gauge<'vm'>;
  /** The series of one VM, bound to its `vm` label. */
  forVm(vm: string): FtVmMetrics;
}

/** One VM's series. Times in seconds, sizes in bytes. */
export interface FtVmMetrics {
  readonly vm: string;
  /** Log bytes sent to a secondary. */
  readonly logBytes: CounterChild;
  /** Sets the log bandwidth (bytes/s) and with it the fraction of the 1 Gbit/s budget. */
  setLogBandwidth(bytesPerSecond: number): void;
  /** The lockstep interval: how far the secondary's execution is behind the primary's. */
  readonly lagSeconds: GaugeChild;
  readonly lagInstructions: GaugeChild;
  /** Round trip of one log batch: sent to acknowledged. */
  readonly ackLatency: HistogramChild;
  /** How long an output waited for the output rule before release. */
  readonly outputDelay: HistogramChild;
  readonly mips: GaugeChild;
  readonly failovers: CounterChild;
  /** Sets `lockstep_protected` to 1 or 0. */
  setProtected(isProtected: boolean): void;
  /** Fraction of each time slice the primary's vCPU sleeps to bound the lag (0: full speed; the FT code caps it at 0.95). */
  readonly throttleRatio: GaugeChild;
  readonly unackedBytes: GaugeChild;
  /** Stop-and-copy pause of a clone. */
  readonly clonePause: HistogramChild;
  /** Connections or requests refused at `endpoint` (`channel`: the logging channel, `control`: the operations API). */
  rejected(endpoint: 'channel' | 'control'): CounterChild;
  /** Sets `lockstep_network_attached` to 1 (the host side of the guest's network is up) or 0 (a bind is being retried). */
  setNetworkAttached(attached: boolean): void;
  /**
   * Drops this VM's series from every metric (the VM left this process). Using this object's handles
   * afterwards brings the series back: call {@link FtMetrics.forVm} again only if the VM comes back.
   */
  remove(): void;
}

/** The set already created on a registry, so that several VMs of one process share it. */
const created = new WeakMap<Registry, FtMetrics>();

/**
 * Creates the FT metric set on `registry`, a prom-client `Registry` (the application's own, or
 * prom-client's default `register`), or returns the one this lockstep already created there: call it
 * once per VM if that is simpler. Nothing starts a server; prom-client is loaded on this first call.
 *
 * ```ts
 * import { Registry } from 'prom-client';
 * const registry = new Registry(); // or the one the service's /metrics already serves
 * const kv1 = createFtMetrics(registry).forVm('kv1');
 * primary.on('ack', (ms) => kv1.ackLatency.observe(ms / 1000));
 * ```
 *
 * @throws {MissingPackageError} `ERR_LOCKSTEP_PACKAGE_MISSING` when prom-client is not installed
 * @throws {LockstepError} `ERR_LOCKSTEP_METRICS_CONFLICT` when the registry already holds a metric of
 *   the set's names that this lockstep did not register (nothing is registered then)
 */
export function createFtMetrics(registry: Registry): FtMetrics {
  const known = created.get(registry);
  // Unless the application cleared the registry since (registry.clear()): then the set is made anew.
  if (known && registry.getSingleMetric('lockstep_log_bytes_total') === known.logBytes) return known;
  const { Counter, Gauge, Histogram } = promClient();
  const registers = [registry];
  const labelNames = ['vm'] as const;
  const mine: string[] = [];
  // prom-client's own refusal of a taken name is a plain Error: said here with a code, and undone.
  const register = <M>(name: string, make: () => M): M => {
    if (registry.getSingleMetric(name) !== undefined) {
      throw new LockstepError(
        'ERR_LOCKSTEP_METRICS_CONFLICT',
        `metrics: the registry already holds ${name}, registered by the application or another copy of lockstep: create lockstep's metric set once per registry`,
      );
    }
    const metric = make();
    mine.push(name);
    return metric;
  };
  const counter = (name: string, help: string) => register(name, () => new Counter({ name, help, labelNames, registers }));
  const gauge = (name: string, help: string) => register(name, () => new Gauge({ name, help, labelNames, registers }));
  const histogram = (name: string, help: string, buckets: readonly number[]) => register(name, () => new Histogram({ name, help, labelNames, buckets: [...buckets], registers }));
  let m;
  try {
    m = {
      logBytes: counter('lockstep_log_bytes_total', 'Log bytes sent from the primary to its secondary.'),
      logBandwidth: gauge('lockstep_log_bandwidth_bytes_per_second', 'Log bandwidth over the last second, bytes per second.'),
      logBudgetRatio: gauge('lockstep_log_budget_ratio', 'Log bandwidth as a fraction of the 1 Gbit/s (125 MB/s) budget.'),
      lagSeconds: gauge('lockstep_lag_seconds', "The lockstep interval: the secondary's execution lag behind the primary, seconds."),
      lagInstructions: gauge('lockstep_lag_instructions', "The secondary's execution lag behind the primary, instructions."),
      ackLatency: histogram('lockstep_ack_latency_seconds', 'Round trip of a log batch from sending to acknowledgement, seconds.', LATENCY_BUCKETS_SECONDS),
      outputDelay: histogram('lockstep_output_delay_seconds', 'Time an output waited for the output rule before release, seconds.', LATENCY_BUCKETS_SECONDS),
      mips: gauge('lockstep_mips', 'Guest speed, millions of instructions per second.'),
      failovers: counter('lockstep_failovers_total', 'Failovers: a secondary went live.'),
      protected: gauge('lockstep_protected', '1 while the VM has a secondary in lockstep, 0 otherwise.'),
      throttleRatio: gauge('lockstep_throttle_ratio', "Fraction of each time slice the primary's vCPU sleeps to bound the lag (0: full speed)."),
      unackedBytes: gauge('lockstep_unacked_bytes', 'Log bytes sent and not yet acknowledged.'),
      clonePause: histogram('lockstep_clone_pause_seconds', "Guest pause of a clone's final stop-and-copy, seconds.", PAUSE_BUCKETS_SECONDS),
      rejectedConnections: register(
        'lockstep_rejected_connections_total',
        () =>
          new Counter({
            name: 'lockstep_rejected_connections_total',
            help: 'Connections or requests refused (failed handshakes or signatures, over the connection cap), by endpoint.',
            labelNames: ['vm', 'endpoint'] as const,
            registers,
          }),
      ),
      networkAttached: gauge('lockstep_network_attached', "1 while the host side of the guest's network is up, 0 while its port is being retried."),
    };
  } catch (err) {
    for (const name of mine) registry.removeSingleMetric(name);
    throw err;
  }
  const all = Object.values(m);
  /** VMs whose series exist: a new one's are made at 0 (prom-client makes a series on its first update). */
  const present = new Set<string>();
  const set: FtMetrics = Object.freeze({
    ...m,
    forVm(vm: string): FtVmMetrics {
      const l = { vm };
      if (!present.has(vm)) {
        // Scrapes show a VM's counters and histograms at 0 from the start, as rate() and increase() need.
        present.add(vm);
        for (const c of [m.logBytes, m.failovers]) c.inc(l, 0);
        for (const g of [m.logBandwidth, m.logBudgetRatio, m.lagSeconds, m.lagInstructions, m.mips, m.protected, m.throttleRatio, m.unackedBytes]) g.set(l, 0);
        for (const h of [m.ackLatency, m.outputDelay, m.clonePause]) h.zero(l);
      }
      const bandwidth = m.logBandwidth.labels(l);
      const budget = m.logBudgetRatio.labels(l);
      const prot = m.protected.labels(l);
      return Object.freeze({
        vm,
        logBytes: m.logBytes.labels(l),
        setLogBandwidth(bytesPerSecond: number) {
          bandwidth.set(bytesPerSecond);
          budget.set(bytesPerSecond / LOG_BUDGET_BYTES_PER_SECOND);
        },
        lagSeconds: m.lagSeconds.labels(l),
        lagInstructions: m.lagInstructions.labels(l),
        ackLatency: m.ackLatency.labels(l),
        outputDelay: m.outputDelay.labels(l),
        mips: m.mips.labels(l),
        failovers: m.failovers.labels(l),
        setProtected(isProtected: boolean) {
          prot.set(isProtected ? 1 : 0);
        },
        throttleRatio: m.throttleRatio.labels(l),
        unackedBytes: m.unackedBytes.labels(l),
        clonePause: m.clonePause.labels(l),
        rejected(endpoint: 'channel' | 'control') {
          m.rejectedConnections.inc({ vm, endpoint }, 0);
          return m.rejectedConnections.labels({ vm, endpoint });
        },
        setNetworkAttached(attached: boolean) {
          m.networkAttached.labels(l).set(attached ? 1 : 0);
        },
        remove() {
          present.delete(vm);
          for (const metric of all) if (metric !== m.rejectedConnections) (metric as Gauge<'vm'>).remove(l);
          for (const endpoint of ['channel', 'control']) m.rejectedConnections.remove({ vm, endpoint });
        },
      });
    },
  });
  created.set(registry, set);
  return set;
}
