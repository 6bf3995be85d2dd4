// The fault-tolerance metric set (log bandwidth against the 1 Gbit/s budget, lag, ack latency, output
// delay, MIPS, failovers, clone pause), created on a registry the application passes in. Every series
// carries a `vm` label. Units are Prometheus base units: bytes and seconds.
import type { Counter, CounterChild, Gauge, GaugeChild, Histogram, HistogramChild, Registry } from './metrics.js';

/** The logging channel's bandwidth budget: 1 Gbit/s, in bytes per second. */
export const LOG_BUDGET_BYTES_PER_SECOND = 125_000_000;

/** Buckets of latencies around one channel round trip (100 µs .. 1 s). */
export const LATENCY_BUCKETS_SECONDS = Object.freeze([0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1]);
/** Buckets of the clone's stop-and-copy pause (1 ms .. 10 s). */
export const PAUSE_BUCKETS_SECONDS = Object.freeze([0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]);

/** The metrics themselves, for every VM of the process. */
export interface FtMetrics {
  readonly logBytes: Counter;
  readonly logBandwidth: Gauge;
  readonly logBudgetRatio: Gauge;
  readonly lagSeconds: Gauge;
  readonly lagInstructions: Gauge;
  readonly ackLatency: Histogram;
  readonly outputDelay: Histogram;
  readonly mips: Gauge;
  readonly failovers: Counter;
  readonly protected: Gauge;
  readonly throttleRatio: Gauge;
  readonly unackedBytes: Gauge;
  readonly clonePause: Histogram;
  readonly rejectedConnections: Counter;
  readonly networkAttached: Gauge;
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
   * Drops this VM's series from every metric (the VM left this process). The handles of this object
   * are dead afterwards: call {@link FtMetrics.forVm} again if the VM comes back.
   */
  remove(): void;
}

/**
 * Creates the FT metric set on `registry` (or returns the one already there: call it once per VM if
 * that is simpler). Nothing is registered globally and nothing starts a server.
 *
 * ```ts
 * const registry = new Registry();
 * const kv1 = createFtMetrics(registry).forVm('kv1');
 * primary.on('ack', (ms) => kv1.ackLatency.observe(ms / 1000));
 * ```
 */
export function createFtMetrics(registry: Registry): FtMetrics {
  const labelNames = ['vm'] as const;
  const m = {
    logBytes: registry.counter({ name: 'lockstep_log_bytes_total', help: 'Log bytes sent from the primary to its secondary.', labelNames }),
    logBandwidth: registry.gauge({ name: 'lockstep_log_bandwidth_bytes_per_second', help: 'Log bandwidth over the last second, bytes per second.', labelNames }),
    logBudgetRatio: registry.gauge({ name: 'lockstep_log_budget_ratio', help: 'Log bandwidth as a fraction of the 1 Gbit/s (125 MB/s) budget.', labelNames }),
    lagSeconds: registry.gauge({ name: 'lockstep_lag_seconds', help: "The lockstep interval: the secondary's execution lag behind the primary, seconds.", labelNames }),
    lagInstructions: registry.gauge({ name: 'lockstep_lag_instructions', help: "The secondary's execution lag behind the primary, instructions.", labelNames }),
    ackLatency: registry.histogram({ name: 'lockstep_ack_latency_seconds', help: 'Round trip of a log batch from sending to acknowledgement, seconds.', labelNames, buckets: LATENCY_BUCKETS_SECONDS }),
    outputDelay: registry.histogram({ name: 'lockstep_output_delay_seconds', help: 'Time an output waited for the output rule before release, seconds.', labelNames, buckets: LATENCY_BUCKETS_SECONDS }),
    mips: registry.gauge({ name: 'lockstep_mips', help: 'Guest speed, millions of instructions per second.', labelNames }),
    failovers: registry.counter({ name: 'lockstep_failovers_total', help: 'Failovers: a secondary went live.', labelNames }),
    protected: registry.gauge({ name: 'lockstep_protected', help: '1 while the VM has a secondary in lockstep, 0 otherwise.', labelNames }),
    throttleRatio: registry.gauge({ name: 'lockstep_throttle_ratio', help: "Fraction of each time slice the primary's vCPU sleeps to bound the lag (0: full speed).", labelNames }),
    unackedBytes: registry.gauge({ name: 'lockstep_unacked_bytes', help: 'Log bytes sent and not yet acknowledged.', labelNames }),
    clonePause: registry.histogram({ name: 'lockstep_clone_pause_seconds', help: "Guest pause of a clone's final stop-and-copy, seconds.", labelNames, buckets: PAUSE_BUCKETS_SECONDS }),
    rejectedConnections: registry.counter({
      name: 'lockstep_rejected_connections_total',
      help: 'Connections or requests refused (failed handshakes or signatures, over the connection cap), by endpoint.',
      labelNames: ['vm', 'endpoint'],
    }),
    networkAttached: registry.gauge({ name: 'lockstep_network_attached', help: "1 while the host side of the guest's network is up, 0 while its port is being retried.", labelNames }),
  };
  const all = Object.values(m);
  return Object.freeze({
    ...m,
    forVm(vm: string): FtVmMetrics {
      const l = { vm };
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
          return m.rejectedConnections.labels({ vm, endpoint });
        },
        setNetworkAttached(attached: boolean) {
          m.networkAttached.labels(l).set(attached ? 1 : 0);
        },
        remove() {
          for (const metric of all) if (metric !== m.rejectedConnections) metric.remove(l);
          for (const endpoint of ['channel', 'control']) m.rejectedConnections.remove({ vm, endpoint });
        },
      });
    },
  });
}
