// What a primary serves besides its guest: Prometheus metrics and the operations API, wired the same way
// for a primary started as one and for a secondary promoted at go-live (which retries an address its
// frozen old primary may still hold, instead of failing).
import type { HostPort } from '../config/index.js';
import type { Registry } from 'prom-client';
import { RefusalLog, startMetricsServer, type FtVmMetrics, type MetricsServer } from '../observability/index.js';
import { startControlServer, type ControlServer } from './control-server.js';
import { bindFtMetrics } from './metrics.js';
import type { FtPrimary } from './primary.js';

/** Events of {@link startPrimaryServices}, as the CLI prints them (src/ft/event-lines.ts). */
export type PrimaryServiceEvent =
  | { event: 'metrics'; url: string }
  | { event: 'control'; url: string }
  | { event: 'retrying'; what: string; attempts: number; message: string }
  | { event: 'recovered'; what: string; attempts: number }
  | { event: 'warning'; message: string };

export interface PrimaryServicesOptions {
  /** The pair's key (the operations API derives its request key from it). */
  key: Uint8Array;
  /** Serve the registry (prom-client) at `listen`, feeding the VM's metric set from the primary. */
  metrics?: { registry: Registry; vm: FtVmMetrics; listen: HostPort };
  /** Serve the operations API here. */
  control?: HostPort;
  /**
   * Keep trying, with backoff, an address that cannot be bound instead of failing: for a secondary that
   * went live on the host where its frozen old primary still holds the addresses. Without it, a taken
   * address rejects the returned promise (with a ListenError).
   */
  retry?: boolean;
  /** Hears what the services do (listening, retrying, refusals summarised). */
  onEvent?: (e: PrimaryServiceEvent) => void;
}

/** The running services; {@link close} stops them (and any retry) and unbinds the metrics. */
export interface PrimaryServices {
  readonly metrics: MetricsServer | undefined;
  readonly control: ControlServer | undefined;
  close(): Promise<void>;
}

/**
 * Starts the metrics endpoint and the operations API of `primary` as `options` say. The operations
 * API's refusals are counted in the metrics and summarised as warnings.
 */
export async function startPrimaryServices(primary: FtPrimary, options: PrimaryServicesOptions): Promise<PrimaryServices> {
  const say = options.onEvent ?? (() => {});
  const refusals = new RefusalLog({ what: 'operations API', log: (message) => say({ event: 'warning', message }) });
  const vm = options.metrics?.vm;
  const unbind = vm ? bindFtMetrics(primary, vm) : () => {};
  const retries: { stop(): void }[] = [];
  const state: { metrics: MetricsServer | undefined; control: ControlServer | undefined; closed: boolean } = { metrics: undefined, control: undefined, closed: false };
  const services: PrimaryServices = {
    get metrics() {
      return state.metrics;
    },
    get control() {
      return state.control;
    },
    async close() {
      state.closed = true;
      for (const r of retries) r.stop();
      unbind();
      refusals.close();
      await state.metrics?.close();
      await state.control?.close();
    },
  };
  const start = async <T>(what: string, open: () => Promise<T>, up: (v: T) => void): Promise<void> => {
    if (!options.retry) return up(await open());
    retries.push(keepStarting(what, open, say, up));
  };
  try {
    const m = options.metrics;
    if (m) {
      await start('the metrics endpoint', () => startMetricsServer(m.registry, { host: m.listen.host, port: m.listen.port }), (s) => {
        state.metrics = s;
        say({ event: 'metrics', url: s.url });
      });
    }
    const control = options.control;
    if (control) {
      const onRefused = (remote: string, reason: string) => {
        vm?.rejected('control').inc();
        refusals.refused(remote, reason);
      };
      await start('the operations API', () => startControlServer(() => primary, options.key, { ...control, onRefused }), (c) => {
        state.control = c;
        say({ event: 'control', url: c.url });
      });
    }
  } catch (err) {
    await services.close();
    throw err;
  }
  return services;
}

/** Starts something that needs an address, retrying with backoff while it fails; reports once per 10 s. */
function keepStarting<T>(what: string, start: () => Promise<T>, say: (e: PrimaryServiceEvent) => void, up: (v: T) => void): { stop(): void } {
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let reported = -Infinity;
  const attempt = (n: number): void => {
    start().then(
      (v) => {
        if (stopped) return void (v as { close?: () => unknown }).close?.();
        if (n > 0) say({ event: 'recovered', what, attempts: n + 1 });
        up(v);
      },
      (err: unknown) => {
        if (stopped) return;
        const delay = Math.min(5000, 100 * 2 ** Math.min(n, 10));
        if (performance.now() - reported >= 10_000) {
          reported = performance.now();
          say({ event: 'retrying', what, attempts: n + 1, message: (err as Error).message });
        }
        timer = setTimeout(() => attempt(n + 1), delay);
        timer.unref();
      },
    );
  };
  attempt(0);
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
