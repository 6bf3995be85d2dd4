// HA VM monitoring (vSphere's "VM monitoring"): which running VMs stopped making progress — their
// heartbeat (the VM process's report, every second, carried by its agent) stopped, or, in `progress`
// mode, their instructions retired stopped advancing, or, in `watchdog` mode, their guest stopped
// petting its watchdog (the guest's own heartbeat, as VMware Tools' is to vSphere) — and whether the
// reset limit allows another reset. Pure: the caller passes the time; no I/O.

/**
 * `off`; `heartbeat`: the VM process stops reporting; `progress`: that, or the guest's instret stops
 * advancing; `watchdog`: the heartbeat, or a guest that has pet its watchdog stops petting it (a guest
 * that never pets it is judged by the heartbeat alone).
 */
export type VmMonitoringMode = 'off' | 'heartbeat' | 'progress' | 'watchdog';

export const VM_MONITORING_MODES: readonly VmMonitoringMode[] = ['off', 'heartbeat', 'progress', 'watchdog'];

/** VM monitoring settings (part of the cluster's HA settings). */
export interface VmMonitoringSettings {
  mode: VmMonitoringMode;
  /** No heartbeat (or no progress) for this long: the VM is reset, ms (vSphere's failure interval). */
  failureIntervalMs: number;
  /** A VM is not judged until it has run this long, ms (vSphere's minimum uptime). */
  minUptimeMs: number;
  /** At most this many resets of one VM … */
  maxResets: number;
  /** … within this window, ms. */
  resetWindowMs: number;
}

/**
 * vSphere's defaults ("high" sensitivity: 30 s failure interval, 120 s minimum uptime, 3 resets per
 * hour), with monitoring off as vSphere ships it.
 */
export const DEFAULT_VM_MONITORING: VmMonitoringSettings = { mode: 'off', failureIntervalMs: 30_000, minUptimeMs: 120_000, maxResets: 3, resetWindowMs: 3_600_000 };

/**
 * The shortest failure interval, ms: an agent publishes a VM's figures at most every 5 s, so a shorter
 * interval would take a healthy VM for a stopped one.
 */
export const MIN_FAILURE_INTERVAL_MS = 10_000;

/** What a VM's record says about its progress (`InstanceRecord.progress`). */
export interface ProgressReport {
  /** Instructions retired, decimal. */
  instret: string;
  /** Reports the agent received from the VM process so far. */
  beats: number;
  /** The guest watchdog's pets so far, decimal (absent: an agent that does not report them). */
  watchdog?: string;
}

/** A VM that stopped making progress. */
export interface Stall {
  /**
   * `heartbeat`: no report from the VM process; `progress`: reports, but instret does not advance;
   * `watchdog`: reports, but the guest's watchdog pets (it did pet it) do not advance.
   */
  what: 'heartbeat' | 'progress' | 'watchdog';
  /** How long, ms. */
  forMs: number;
  /** The instret it is stuck at (`progress`), or the last one reported. */
  instret: string | null;
  /** The watchdog pets it is stuck at (`watchdog`), or the last count reported. */
  watchdog: string | null;
}

interface Seen {
  incarnation: string;
  /** When this incarnation was first seen. */
  since: number;
  beats: number;
  beatAt: number;
  instret: string | null;
  instretAt: number;
  watchdog: string | null;
  watchdogAt: number;
}

/**
 * Follows the running instance of each monitored VM across the manager's passes: when its heartbeat
 * count and its instret last changed, by the caller's clock (the manager's, so an agent's clock never
 * enters it). A new incarnation (restarted, or a secondary gone live) starts afresh.
 */
export class ProgressTracker {
  readonly #seen = new Map<string, Seen>();

  /** The instance `incarnation` of `vm` was seen at `now` with `report` (null: it reports nothing yet). */
  observe(vm: string, incarnation: string, report: ProgressReport | null | undefined, now: number): void {
    const s = this.#seen.get(vm);
    const beats = report?.beats ?? 0;
    const instret = report?.instret ?? null;
    const watchdog = report?.watchdog ?? null;
    if (s === undefined || s.incarnation !== incarnation) {
      this.#seen.set(vm, { incarnation, since: now, beats, beatAt: now, instret, instretAt: now, watchdog, watchdogAt: now });
      return;
    }
    if (beats !== s.beats) {
      s.beats = beats;
      s.beatAt = now;
    }
    if (instret !== s.instret) {
      s.instret = instret;
      s.instretAt = now;
    }
    if (watchdog !== s.watchdog) {
      s.watchdog = watchdog;
      s.watchdogAt = now;
    }
  }

  /** Forget `vm` (not running, not monitored). */
  forget(vm: string): void {
    this.#seen.delete(vm);
  }

  /** Forget every VM not in `vms` (no longer running, or monitoring turned off). */
  retain(vms: ReadonlySet<string>): void {
    for (const vm of [...this.#seen.keys()]) if (!vms.has(vm)) this.#seen.delete(vm);
  }

  /** VMs followed now. */
  get size(): number {
    return this.#seen.size;
  }

  /** Whether `vm` stopped making progress under `settings` at `now`; undefined when it did not (or is not judged yet). */
  stall(vm: string, settings: VmMonitoringSettings, now: number): Stall | undefined {
    const s = this.#seen.get(vm);
    if (s === undefined || settings.mode === 'off') return undefined;
    // Judged only once it has run for the minimum uptime, and for a whole failure interval after that.
    if (now - s.since < Math.max(settings.minUptimeMs, settings.failureIntervalMs)) return undefined;
    const at = { instret: s.instret, watchdog: s.watchdog };
    if (now - s.beatAt >= settings.failureIntervalMs) return { what: 'heartbeat', forMs: now - s.beatAt, ...at };
    if (settings.mode === 'progress' && now - s.instretAt >= settings.failureIntervalMs) return { what: 'progress', forMs: now - s.instretAt, ...at };
    // Armed once the guest has pet it at all: a guest that never does is not judged by it.
    const armed = s.watchdog !== null && s.watchdog !== '0';
    if (settings.mode === 'watchdog' && armed && now - s.watchdogAt >= settings.failureIntervalMs) return { what: 'watchdog', forMs: now - s.watchdogAt, ...at };
    return undefined;
  }
}

/** Resets of a VM within the window ending at `now`, and whether one more is allowed. */
export function resetAllowed(resets: readonly number[], settings: VmMonitoringSettings, now: number): { allowed: boolean; recent: number[] } {
  const recent = resets.filter((t) => now - t < settings.resetWindowMs);
  return { allowed: recent.length < settings.maxResets, recent };
}

/** The monitoring settings in a stored value, any missing or malformed field taken from the defaults. */
export function vmMonitoringOf(value: unknown): VmMonitoringSettings {
  const r = (typeof value === 'object' && value !== null ? value : {}) as Partial<Record<keyof VmMonitoringSettings, unknown>>;
  const ms = (x: unknown, d: number, min = 0) => (typeof x === 'number' && Number.isSafeInteger(x) && x >= min ? x : d);
  return {
    mode: VM_MONITORING_MODES.includes(r.mode as VmMonitoringMode) ? (r.mode as VmMonitoringMode) : DEFAULT_VM_MONITORING.mode,
    failureIntervalMs: ms(r.failureIntervalMs, DEFAULT_VM_MONITORING.failureIntervalMs, MIN_FAILURE_INTERVAL_MS),
    minUptimeMs: ms(r.minUptimeMs, DEFAULT_VM_MONITORING.minUptimeMs),
    maxResets: ms(r.maxResets, DEFAULT_VM_MONITORING.maxResets),
    resetWindowMs: ms(r.resetWindowMs, DEFAULT_VM_MONITORING.resetWindowMs, 1),
  };
}
