// The ClusterStore contract the manager and agents build on: keys with JSON values and revisions,
// compare-and-set, watch, liveness keys and leader election. No I/O here; see dir-store.ts, etcd-store.ts.
import type { EventEmitter } from 'node:events';
import { LockstepError, OptionError } from '../../errors.js';

/** A value the store keeps: anything JSON can carry exactly (no `undefined`, functions, NaN, Infinity). */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Default time limit of one store operation, ms. */
export const DEFAULT_STORE_TIMEOUT_MS = 5_000;

/** Longest key, in UTF-16 code units. */
export const MAX_KEY_LENGTH = 200;

/** Largest value, in bytes of its JSON text (etcd's default request limit is 1.5 MiB). */
export const MAX_VALUE_BYTES = 1 << 20;

/** Error codes of {@link StoreError}. */
export type StoreErrorCode =
  /** The storage could not be reached, failed the I/O, or the call ran past its time limit. */
  | 'ERR_LOCKSTEP_STORE_UNAVAILABLE'
  /** The storage refused access (permissions, authentication). */
  | 'ERR_LOCKSTEP_STORE_DENIED'
  /** Something stored cannot be read back (not written by this store, or damaged). */
  | 'ERR_LOCKSTEP_STORE_CORRUPT'
  /** A liveness key or a leadership was lost: its lease expired or could not be renewed in time. */
  | 'ERR_LOCKSTEP_STORE_LEASE_LOST'
  /** The store (or the handle) was closed. */
  | 'ERR_LOCKSTEP_STORE_CLOSED';

/** A store operation failed. Invalid keys and values are {@link OptionError}s instead. */
export class StoreError extends LockstepError {
  declare readonly code: StoreErrorCode;
  /** The key (or election name) concerned, when there is one. */
  readonly key: string | undefined;
  constructor(code: StoreErrorCode, message: string, options?: { cause?: unknown; key?: string }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.key = options?.key;
  }
}

/** One key as stored. */
export interface StoreEntry {
  key: string;
  value: JsonValue;
  /** Revision of the last write of this key: the `expectedRevision` for {@link ClusterStore.compareAndSet}. */
  revision: number;
  /** Revision at which the key was created (since it last did not exist). */
  createRevision: number;
}

/** A change seen by {@link ClusterStore.watch}. */
export interface WatchEvent {
  type: 'put' | 'delete';
  key: string;
  /** The new value (`put`), or `null` (`delete`). */
  value: JsonValue | null;
  /** Revision of the change. Events of one watch arrive in non-decreasing revision order. */
  revision: number;
}

/** Options of {@link ClusterStore.watch}. */
export interface WatchOptions {
  /**
   * Called when the watch fails for good or the callback throws; the watch keeps going after a
   * callback error and after transient connection losses (it resumes where it was).
   */
  onError?: (err: Error) => void;
}

/** Stops a watch; resolves when no more events will be delivered. */
export type Unsubscribe = () => Promise<void>;

/**
 * A key that exists while its owner process lives (an etcd lease with keep-alive; an expiry time
 * refreshed by a timer in the directory store). If the process dies, the key disappears about
 * `ttlMs` later; if the owner cannot renew it in time, it emits `lost`.
 *
 * Lease loss can be noticed late (etcd's client reports it only after two TTLs without contact),
 * so the handle keeps its own deadline: the start of the last successful renewal plus the TTL.
 * Past it, {@link LivenessHandle.held} is false and `lost` fires, whatever the storage says.
 *
 * Events: `'lost' (err: StoreError)` — once; the key is no longer kept alive.
 */
export interface LivenessHandle extends EventEmitter {
  /** The key. */
  readonly key: string;
  /** The TTL actually in force, ms (etcd rounds up to whole seconds). */
  readonly ttlMs: number;
  /**
   * An identifier of this registration that writes can carry as a fencing token: the etcd lease id
   * (decimal), or the revision that created the key in the directory store.
   */
  readonly token: string;
  /** Whether the key is known to be held now: not revoked, not lost, and the local deadline not passed. */
  readonly held: boolean;
  /** The local deadline, in `performance.now()` milliseconds: the key is surely held until then. */
  readonly deadline: number;
  /** Stop keeping the key alive and delete it. */
  revoke(): Promise<void>;
}

/** Options of {@link ClusterStore.campaign}. */
export interface CampaignOptions {
  /** How long leadership outlives a dead leader, ms (default 5000; etcd rounds up to whole seconds). */
  ttlMs?: number;
}

/**
 * A candidacy in a leader election. The candidate keeps campaigning until {@link Leadership.resign}
 * or the store's `close()`: after losing leadership (its lease lost or not renewed by the local
 * deadline) it emits `lost` and campaigns again.
 *
 * Events: `'elected' (token: number)`, `'lost' (err: StoreError)`, `'error' (err: Error)` (a
 * campaign step failed; it is retried).
 */
export interface Leadership extends EventEmitter {
  /** The election. */
  readonly election: string;
  /** This candidate. */
  readonly candidateId: string;
  /** Whether this candidate leads now (false once the local deadline passed without renewal). */
  readonly isLeader: boolean;
  /**
   * The fencing token of the current leadership, or `null` when not leader: a revision of the
   * store that increases with every change of leader. Put it in every write and message made as
   * leader; receivers reject tokens lower than the highest they have seen.
   */
  readonly token: number | null;
  /** The local deadline of the leadership in `performance.now()` ms (`-Infinity` when not leader). */
  readonly deadline: number;
  /** Resolves with the token when this candidate is elected; rejects at `timeoutMs` or on resign. */
  elected(timeoutMs: number): Promise<number>;
  /** Stop campaigning; if leader, step down so another candidate can take over at once. */
  resign(): Promise<void>;
}

/** The leader of an election as any client sees it. */
export interface LeaderInfo {
  candidateId: string;
  token: number;
}

/**
 * The cluster's state store: `DirStore` (a directory, for one machine — the embedded default) or
 * `EtcdStore` (several machines). Keys are strings of 1–200 characters; values are JSON.
 * Every operation rejects with a {@link StoreError} when the storage fails, and with an
 * {@link OptionError} for an invalid key or value.
 */
export interface ClusterStore {
  /** `'dir'` or `'etcd'`. */
  readonly kind: 'dir' | 'etcd';
  /** The key's entry, or `null` if it does not exist. */
  get(key: string): Promise<StoreEntry | null>;
  /** Set the key; resolves with the revision of the write. */
  put(key: string, value: JsonValue): Promise<number>;
  /** Delete the key; resolves with whether it existed. */
  delete(key: string): Promise<boolean>;
  /** The keys starting with `prefix` (`''` for all), sorted by key. Not one atomic snapshot in the directory store. */
  list(prefix: string): Promise<StoreEntry[]>;
  /**
   * Set the key only if its revision is `expectedRevision` (`null`: only if it does not exist).
   * Resolves with whether it was set.
   */
  compareAndSet(key: string, expectedRevision: number | null, value: JsonValue): Promise<boolean>;
  /**
   * Call `callback` for every change of a key starting with `prefix` that happens after the
   * returned promise resolves, in revision order. The directory store polls and may merge several
   * changes of one key between two polls into one event carrying the latest state.
   */
  watch(prefix: string, callback: (event: WatchEvent) => void, options?: WatchOptions): Promise<Unsubscribe>;
  /** Create (or take over) `key` as a liveness key of this process; see {@link LivenessHandle}. */
  register(key: string, value: JsonValue, ttlMs: number): Promise<LivenessHandle>;
  /** Enter `candidateId` in the election `election`; resolves once the candidacy is recorded. */
  campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership>;
  /** The current leader of `election`, or `null`. */
  leader(election: string): Promise<LeaderInfo | null>;
  /** Resign all campaigns, revoke all liveness keys, stop all watches, release resources. */
  close(): Promise<void>;
}

/**
 * Check a key: a string of 1–200 characters without control characters.
 * @throws OptionError otherwise.
 */
export function validateKey(key: unknown, field = 'key'): asserts key is string {
  if (typeof key !== 'string' || key.length === 0 || key.length > MAX_KEY_LENGTH || CONTROL.test(key)) {
    throw new OptionError(field, `${JSON.stringify(String(key)).slice(0, 60)} is not a valid key: use 1-${MAX_KEY_LENGTH} characters without control characters`);
  }
}

/**
 * Check a prefix: like a key, but may be empty.
 * @throws OptionError otherwise.
 */
export function validatePrefix(prefix: unknown): asserts prefix is string {
  if (prefix === '') return;
  validateKey(prefix, 'prefix');
}

/**
 * Check an election name or candidate id: 1–128 characters of `[A-Za-z0-9._:@-]`.
 * @throws OptionError otherwise.
 */
export function validateName(value: unknown, field: string): asserts value is string {
  if (typeof value !== 'string' || !/^[A-Za-z0-9._:@-]{1,128}$/.test(value)) {
    throw new OptionError(field, `${JSON.stringify(String(value)).slice(0, 60)} is not valid: use 1-128 characters of A-Z a-z 0-9 . _ : @ -`);
  }
}

/**
 * Check a duration in milliseconds: a positive finite number.
 * @throws OptionError otherwise.
 */
export function validateMs(field: string, ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
    throw new OptionError(field, `${String(ms)} is not valid: use a positive number of milliseconds`);
  }
}

/**
 * The JSON text of a value, after checking that JSON carries it exactly.
 * @throws OptionError (field `value`) otherwise.
 */
export function encodeValue(value: unknown): string {
  const problem = jsonProblem(value, 'value', new Set());
  if (problem !== null) throw new OptionError('value', `${problem}: store only what JSON carries exactly`);
  const text = JSON.stringify(value);
  if (Buffer.byteLength(text) > MAX_VALUE_BYTES) throw new OptionError('value', `is ${Buffer.byteLength(text)} bytes as JSON; the limit is ${MAX_VALUE_BYTES}`);
  return text;
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

function jsonProblem(v: unknown, path: string, seen: Set<object>): string | null {
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return null;
    case 'number':
      return Number.isFinite(v) ? null : `${path} is ${v}`;
    case 'object': {
      if (v === null) return null;
      if (seen.has(v)) return `${path} is a cycle`;
      seen.add(v);
      if (Array.isArray(v)) {
        for (let i = 0; i < v.length; i++) {
          const p = jsonProblem(v[i], `${path}[${i}]`, seen);
          if (p !== null) return p;
        }
      } else {
        const proto = Object.getPrototypeOf(v);
        if (proto !== Object.prototype && proto !== null) return `${path} is a ${(v as object).constructor?.name ?? 'non-plain'} object`;
        for (const [k, x] of Object.entries(v)) {
          const p = jsonProblem(x, `${path}.${k}`, seen);
          if (p !== null) return p;
        }
      }
      seen.delete(v);
      return null;
    }
    default:
      return `${path} is ${typeof v}`;
  }
}

/**
 * Run `work` with a time limit; rejects with `onTimeout()` when it passes. Work that cannot be
 * aborted keeps running in the background.
 * @internal
 */
export async function withTimeout<T>(ms: number, onTimeout: () => Error, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(onTimeout());
    }, ms);
  });
  try {
    return await Promise.race([work(controller.signal), expired]);
  } finally {
    clearTimeout(timer);
  }
}

/** @internal Sleep `ms`, waking early (without error) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
