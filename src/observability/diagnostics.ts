// Diagnostics without a forced logger: named node:diagnostics_channel channels the FT code publishes to,
// a pino-compatible Logger interface with a no-op default, and a bridge from the channels to a logger.
import diagnosticsChannel from 'node:diagnostics_channel';

/** Which half of a pair is speaking. */
export type FtRole = 'primary' | 'secondary';

/** `lockstep:ft:state`: a half's protection state changed. */
export interface FtStateMessage {
  vm: string;
  role: FtRole;
  /** The new state (`protected`, `needs-secondary`, `cloning`, …). */
  state: string;
  /** Why, when there is more to say. */
  detail?: string;
}

/** `lockstep:ft:failover`: a secondary went live. */
export interface FtFailoverMessage {
  vm: string;
  /** The epoch won at the arbiter. */
  epoch: number;
  /** Why the primary was declared lost (`connection closed`, `timeout after 600 ms`, …). */
  reason: string;
  /** From noticing the loss to serving, ms. */
  outageMs?: number;
}

/** `lockstep:ft:clone`: a new secondary is being made from the running primary. */
export interface FtCloneMessage {
  vm: string;
  phase: 'start' | 'done' | 'failed';
  rounds?: number;
  pages?: number;
  bytes?: number;
  /** The guest was stopped this long for the final copy, ms. */
  pauseMs?: number;
  totalMs?: number;
  error?: string;
}

/** `lockstep:ft:halt`: a half stopped for good (lost the arbiter, handed over, fenced). */
export interface FtHaltMessage {
  vm: string;
  role: FtRole;
  reason: string;
}

/** `lockstep:ft:warning`: something an operator should know (output rule off, arbiter unreachable). */
export interface FtWarningMessage {
  vm?: string;
  message: string;
}

/** Channel names, stable across versions (`lockstep:<area>:<event>`). */
export const CHANNEL_NAMES = {
  state: 'lockstep:ft:state',
  failover: 'lockstep:ft:failover',
  clone: 'lockstep:ft:clone',
  halt: 'lockstep:ft:halt',
  warning: 'lockstep:ft:warning',
} as const;

/** A channel whose messages have type `T`. */
export interface TypedChannel<T> {
  readonly name: string;
  /** Whether anyone listens: skip building a message nobody reads. */
  readonly hasSubscribers: boolean;
  publish(message: T): void;
}

function typed<T>(name: string): TypedChannel<T> {
  const ch = diagnosticsChannel.channel(name);
  return {
    name,
    get hasSubscribers() {
      return ch.hasSubscribers;
    },
    publish: (message: T) => ch.publish(message),
  };
}

/**
 * The FT diagnostics channels. Subscribe with `diagnostics_channel.subscribe(name, fn)` from
 * anywhere (even without importing lockstep), or with {@link logDiagnostics}.
 */
export const ftChannels = Object.freeze({
  state: typed<FtStateMessage>(CHANNEL_NAMES.state),
  failover: typed<FtFailoverMessage>(CHANNEL_NAMES.failover),
  clone: typed<FtCloneMessage>(CHANNEL_NAMES.clone),
  halt: typed<FtHaltMessage>(CHANNEL_NAMES.halt),
  warning: typed<FtWarningMessage>(CHANNEL_NAMES.warning),
});

/** One log method: pino's `(obj, msg)` form. */
export type LogFn = (obj: Record<string, unknown>, msg?: string) => void;

/** The subset of pino's logger lockstep uses; a pino logger is one. */
export interface Logger {
  debug: LogFn;
  info: LogFn;
  warn: LogFn;
  error: LogFn;
}

const noop: LogFn = () => {};

/** A logger that drops everything: the default wherever a logger is optional. */
export const noopLogger: Logger = Object.freeze({ debug: noop, info: noop, warn: noop, error: noop });

/**
 * Logs every FT diagnostics message to `logger`: failovers, halts and warnings at `warn`, state
 * changes and clones at `info` (a failed clone at `error`). Returns a function that unsubscribes.
 */
export function logDiagnostics(logger: Logger): () => void {
  const subs: [string, (message: unknown) => void][] = [
    [CHANNEL_NAMES.state, (m) => logger.info({ ...(m as FtStateMessage), event: 'ft-state' }, `FT state: ${(m as FtStateMessage).state}`)],
    [CHANNEL_NAMES.failover, (m) => logger.warn({ ...(m as FtFailoverMessage), event: 'ft-failover' }, `failover: ${(m as FtFailoverMessage).reason}`)],
    [
      CHANNEL_NAMES.clone,
      (m) => {
        const c = m as FtCloneMessage;
        if (c.phase === 'failed') logger.error({ ...c, event: 'ft-clone' }, `clone failed: ${c.error ?? 'unknown error'}`);
        else logger.info({ ...c, event: 'ft-clone' }, `clone ${c.phase === 'start' ? 'started' : 'done'}`);
      },
    ],
    [CHANNEL_NAMES.halt, (m) => logger.warn({ ...(m as FtHaltMessage), event: 'ft-halt' }, `halted: ${(m as FtHaltMessage).reason}`)],
    [CHANNEL_NAMES.warning, (m) => logger.warn({ ...(m as FtWarningMessage), event: 'ft-warning' }, (m as FtWarningMessage).message)],
  ];
  for (const [name, fn] of subs) diagnosticsChannel.subscribe(name, fn);
  return () => {
    for (const [name, fn] of subs) diagnosticsChannel.unsubscribe(name, fn);
  };
}
