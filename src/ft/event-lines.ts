// The JSON event lines `lockstep primary|secondary --events` print on stderr, typed once: the CLI writes
// them with {@link formatEventLine}, the cluster agent, the demo and the tests read them with
// {@link parseEventLine}. Bigints travel as decimal strings.
import type { GoLiveReport } from './secondary.js';
import type { CloneReport, FtPrimaryStats, MigrateReport, MoveReport } from './primary.js';
import type { Engine } from '../machine/types.js';

/** JSON form of a value: bigints become decimal strings. */
type Json<T> = T extends bigint ? string : T extends object ? { [K in keyof T]: Json<T[K]> } : T;
/** What a writer may pass for fields of type T: a bigint where the line carries its decimal string. */
export type Writable<T> = { [K in keyof T]: T[K] extends string ? T[K] | bigint : T[K] };

/** The fields of each event, by name. */
export interface FtEventFields {
  /** The logging channel listens (a primary, or a secondary once promoted); `engine` runs its machine. */
  listening: { host?: string; port?: number; epoch: number; engine?: Engine };
  /** The operations API listens. */
  control: { url: string };
  /** The Prometheus endpoint listens. */
  metrics: { url: string };
  /** The secondary joined its primary. */
  joined: { host: string; port: number };
  /** Primary: a secondary was cloned (CloneReport). Secondary: its clone arrived ({pages, ms}) and `engine` replays it. */
  cloned: Partial<CloneReport> & { pages: number; ms?: number; engine?: Engine };
  status: { protected: boolean; text: string };
  'secondary-lost': { reason: string; epoch: number };
  /** A move of the secondary finished: the new one protects the VM (MoveReport). */
  moved: MoveReport;
  /** A move of the secondary was called off; the old one protects the VM still. */
  'move-failed': { reason: string };
  /** Live migration done: the target is the primary; this side halts (after 'handed-over'). */
  migrated: MigrateReport;
  /** A migration's target: the VM's secondary resumed here without a clone. */
  followed: { waitedMs: number };
  /** Secondary: the primary migrated; this side follows the target from the hand-over point. */
  following: { primary: string; instret: string };
  /** Secondary: the migration's target took this side on (the pair is whole again). */
  rejoined: { primary: string; epoch: number };
  'handed-over': { epoch: number; listen?: string };
  halted: { reason: string; code?: string };
  ended: { result: string; code?: number };
  left: { reason: string };
  restart: Record<string, never>;
  'go-live': Json<GoLiveReport>;
  /** Every second: the primary's figures (status as text). */
  stats: Omit<FtPrimaryStats, 'status'> & { status: string };
  warning: { message: string };
  /** The VM's UDP port is bound. */
  net: { port: number };
  'net-unavailable': { address: string; attempts: number; code: string; message: string };
  signal: { signal: string; action: string };
  recovered: { what: string; attempts: number };
  retrying: { what: string; attempts: number; message: string };
  /** Every second: the guest's instructions retired and its watchdog pets (what VM monitoring watches advance). */
  progress: { instret: string; watchdog: string };
  /** The lease from the host agent ran out (`--lease-stdin`): the process kills itself now. */
  fenced: Record<string, never>;
  /** A VM without FT (`lockstep agent run-vm`) runs. */
  running: { vm: string; ft: boolean };
}

export type FtEventName = keyof FtEventFields;

/** One event line as printed: `{ event, t (ms since the epoch), ...fields }`. */
export type FtEventLine = { [N in FtEventName]: { event: N; t: number } & FtEventFields[N] }[FtEventName];

/** The line (without newline) for event `name`. */
export function formatEventLine<N extends FtEventName>(name: N, fields: Writable<FtEventFields[N]>, t = Date.now()): string {
  return JSON.stringify({ event: name, t, ...fields }, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
}

/** Any verb's event line (agents and managers print their own events besides the FT ones). */
export type EventLine = { event: string; t: number } & Record<string, unknown>;

/**
 * The event of one stderr line, or undefined when the line is not one (a plain message, say). The
 * line of a `primary` or `secondary` is an {@link FtEventLine}.
 */
export function parseEventLine(line: string): EventLine | undefined {
  if (!line.startsWith('{')) return undefined;
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (typeof v !== 'object' || v === null || typeof (v as { event?: unknown }).event !== 'string' || typeof (v as { t?: unknown }).t !== 'number') return undefined;
  return v as EventLine;
}
