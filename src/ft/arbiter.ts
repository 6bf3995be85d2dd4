// The split-brain arbiter's contract: an atomic test-and-set on a per-VM epoch (the fencing token).
// Back-ends (arbiter-file.ts, arbiter-etcd.ts) implement it; this file holds no I/O.
import { channel } from 'node:diagnostics_channel';
import { LockstepError, OptionError } from '../errors.js';

/** Message of {@link claimChannel}: one finished claim, won, lost or failed. */
export interface ClaimDiagnostic {
  kind: ArbiterKind;
  vmId: string;
  epoch: number;
  ownerId: string;
  /** The outcome, when the storage answered. */
  result?: ClaimResult;
  /** The failure, when it did not. */
  error?: ArbiterError;
}

/**
 * The back-ends: shared storage (`file`, `etcd`), or `local` — no shared storage at all, for a VM
 * without FT whose only other copy is a live migration's target (arbiter-local.ts).
 */
export type ArbiterKind = 'file' | 'etcd' | 'local';

/** `lockstep:arbiter:claim`: every claim's outcome ({@link ClaimDiagnostic}), for logs and metrics. */
export const claimChannel = channel('lockstep:arbiter:claim');

/** @internal Publish a claim's outcome on {@link claimChannel} and pass it through. */
export async function publishClaim(d: Omit<ClaimDiagnostic, 'result' | 'error'>, claim: Promise<ClaimResult>): Promise<ClaimResult> {
  try {
    const result = await claim;
    if (claimChannel.hasSubscribers) claimChannel.publish({ ...d, result } satisfies ClaimDiagnostic);
    return result;
  } catch (err) {
    if (claimChannel.hasSubscribers && err instanceof ArbiterError) claimChannel.publish({ ...d, error: err } satisfies ClaimDiagnostic);
    throw err;
  }
}

/** The epoch a VM's first pair claims when it starts for the first time. */
export const INITIAL_EPOCH = 1;

/** Default per-call time limit of every arbiter operation, in milliseconds. */
export const DEFAULT_ARBITER_TIMEOUT_MS = 5_000;

/** Error codes of {@link ArbiterError}. Every one of them means "not won": halt, do not go live. */
export type ArbiterErrorCode =
  /** The storage could not be reached or failed the I/O, or the call ran past its time limit. */
  | 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE'
  /** The storage refused access (permissions, authentication, read-only file system). */
  | 'ERR_LOCKSTEP_ARBITER_DENIED'
  /** The compare-and-swap kept losing to concurrent writers of lower epochs past the retry bound. */
  | 'ERR_LOCKSTEP_ARBITER_CONTENDED'
  /** A stored epoch record cannot be parsed, so epochs cannot be compared. */
  | 'ERR_LOCKSTEP_ARBITER_CORRUPT'
  /** The arbiter was closed. */
  | 'ERR_LOCKSTEP_ARBITER_CLOSED'
  /**
   * The caller gave the call up through its `signal` (a side that halts stops claiming). A claim call
   * checks the signal right before its irrevocable step, so one aborted before that step took nothing.
   */
  | 'ERR_LOCKSTEP_ARBITER_ABORTED';

/**
 * An arbiter operation could not be completed. The outcome of a claim that fails this way is
 * unknown to the caller (it may have reached the storage before the failure), and the caller must
 * treat it as **not won**: a secondary does not go live, a primary halts. Retrying the same claim
 * with the same `ownerId` is safe and reports `won: true, reason: 'reclaimed'` if the first
 * attempt did reach the storage (`claimEpoch` in claim.ts does exactly that).
 */
export class ArbiterError extends LockstepError {
  declare readonly code: ArbiterErrorCode;
  /** The VM whose epoch was being read or claimed, when there is one. */
  readonly vmId: string | undefined;
  constructor(code: ArbiterErrorCode, message: string, options?: { cause?: unknown; vmId?: string }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.vmId = options?.vmId;
  }
}

/** Who holds an epoch of a VM. */
export interface EpochHolder {
  /** The VM. */
  vmId: string;
  /** The claimed epoch. */
  epoch: number;
  /**
   * The `ownerId` of the claim that won this epoch; `null` when the claim's record cannot be read
   * (file back-end only: its creator died between creating the claim file and writing it — the
   * epoch is still taken).
   */
  owner: string | null;
  /** The claimer's wall-clock time of the claim (ISO 8601), for people; `null` when unknown. */
  claimedAt: string | null;
}

/** Why a claim was won or lost. */
export type ClaimReason =
  /** This call took the epoch. */
  | 'claimed'
  /**
   * The epoch was already held by exactly this `ownerId` (an earlier attempt of this owner reached the
   * storage). Only the identical token counts: owner ids are compared as whole strings, never by part.
   */
  | 'reclaimed'
  /** Another owner holds exactly this epoch. */
  | 'taken'
  /** A higher epoch is already claimed: this claim is stale. */
  | 'stale';

/** The outcome of {@link Arbiter.claim}. A loss is a value, not an error. */
export interface ClaimResult {
  /** Whether the caller now holds `epoch` (and may act as the VM's one live side under it). */
  won: boolean;
  /** Why. */
  reason: ClaimReason;
  /** The VM. */
  vmId: string;
  /** The epoch that was asked for. */
  epoch: number;
  /**
   * The highest claimed epoch as the call saw it last, and its owner: on a win, the caller; on a
   * loss, the holder of the asked-for epoch (`taken`) or of the higher one (`stale`).
   */
  holder: EpochHolder;
}

/** Options of each arbiter call. */
export interface ArbiterCallOptions {
  /**
   * Time limit of this call in milliseconds (default: the arbiter's `timeoutMs`). Past it the
   * call rejects with `ERR_LOCKSTEP_ARBITER_UNAVAILABLE`; storage I/O already started may still
   * complete afterwards, which is why a timed-out claim counts as "not won, outcome unknown".
   */
  timeoutMs?: number;
  /**
   * Gives the call up: it rejects with `ERR_LOCKSTEP_ARBITER_ABORTED` as soon as the signal fires. A
   * claim checks the signal once more right before its irrevocable step (the exclusive create, the
   * compare-and-swap commit) and does not take that step once it has fired; after that step the
   * storage holds the claim whatever the caller is told.
   */
  signal?: AbortSignal;
}

/**
 * Atomic test-and-set on a per-VM **epoch**, the fencing token of an FT pair.
 *
 * A pair runs under epoch `e`. When one side decides the other is dead (the secondary going live,
 * or the primary going on alone), it calls `claim(vmId, e + 1, ownerId)` — with the `e` it has been
 * running under, never with one read from {@link Arbiter.current} (a stale process would otherwise
 * supersede a live pair). Exactly one claim of a given `(vmId, epoch)` wins, whatever the races
 * (at most one, if a higher epoch is claimed at the same moment: then the higher one supersedes
 * it); a claim for an epoch lower than or equal to an already claimed one loses and learns the
 * holder. Whoever loses halts.
 *
 * `ownerId` names one incarnation of one side: two processes must never share it, since a repeated
 * claim by the same owner counts as a win (`reclaimed`). Host name and pid are not enough (PID
 * namespaces, containers, hosts with equal pids): make it with `newOwnerId` (claim.ts), which adds the
 * boot id and 128 random bits.
 */
export interface Arbiter {
  /** The back-end: `'file'` or `'etcd'` (shared storage), or `'local'` (none: arbiter-local.ts). */
  readonly kind: ArbiterKind;
  /**
   * Try to take `epoch` for `vmId`. Resolves with the outcome (won or lost); rejects with an
   * {@link ArbiterError} only when the storage could not be consulted — which the caller treats
   * as not won.
   */
  claim(vmId: string, epoch: number, ownerId: string, options?: ArbiterCallOptions): Promise<ClaimResult>;
  /** The highest claimed epoch of `vmId` and its owner, or `null` if none was ever claimed. */
  current(vmId: string, options?: ArbiterCallOptions): Promise<EpochHolder | null>;
  /** Release client resources (connections). Claims stay claimed; the storage is the record. */
  close(): Promise<void>;
}

/**
 * Establish the initial epoch of a VM at its first start: `claim(vmId, INITIAL_EPOCH, ownerId)`.
 * Won by exactly one starter; a VM that has run before (any epoch claimed) loses with the holder,
 * and its pair must then be started under the epoch recorded by its management, not anew.
 */
export function claimInitialEpoch(
  arbiter: Arbiter,
  vmId: string,
  ownerId: string,
  options?: ArbiterCallOptions,
): Promise<ClaimResult> {
  return arbiter.claim(vmId, INITIAL_EPOCH, ownerId, options);
}

const VM_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/**
 * Check that `vmId` is a safe single path component and etcd key segment: 1–128 characters of
 * `[A-Za-z0-9._-]`, starting with a letter or digit (so never `.`, `..`, empty, or containing `/`).
 * @throws OptionError (`ERR_LOCKSTEP_OPTION_INVALID`) otherwise.
 */
export function validateVmId(vmId: unknown): asserts vmId is string {
  if (typeof vmId !== 'string' || !VM_ID.test(vmId)) {
    throw new OptionError(
      'vmId',
      `${JSON.stringify(String(vmId)).slice(0, 80)} is not a valid VM id: use 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit`,
    );
  }
}

/**
 * Check an epoch: a positive safe integer.
 * @throws OptionError otherwise.
 */
export function validateEpoch(epoch: unknown): asserts epoch is number {
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < INITIAL_EPOCH) {
    throw new OptionError('epoch', `${String(epoch)} is not a valid epoch: use an integer from ${INITIAL_EPOCH} to ${Number.MAX_SAFE_INTEGER}`);
  }
}

/**
 * Check an owner id: 1–256 characters without control characters.
 * @throws OptionError otherwise.
 */
export function validateOwnerId(ownerId: unknown): asserts ownerId is string {
  // eslint-disable-next-line no-control-regex
  if (typeof ownerId !== 'string' || ownerId.length === 0 || ownerId.length > 256 || /[\u0000-\u001f\u007f]/.test(ownerId)) {
    throw new OptionError('ownerId', 'must be 1-256 characters without control characters, unique to one process incarnation (newOwnerId makes one)');
  }
}

/**
 * Check a time limit in milliseconds: a positive finite number.
 * @throws OptionError otherwise.
 */
export function validateTimeout(field: string, ms: unknown): asserts ms is number {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms <= 0) {
    throw new OptionError(field, `${String(ms)} is not a valid time limit: use a positive number of milliseconds`);
  }
}

/**
 * Run `work` with a time limit: rejects with `onTimeout()` when it passes, or with `onAbort()` when the
 * caller's `abort` signal fires first. `work` receives an AbortSignal that fires in either case so it
 * can stop early (and must check it before any irrevocable step); work that cannot be aborted (a file
 * system call) keeps running in the background and its outcome is dropped.
 * @internal
 */
export async function withDeadline<T>(
  ms: number,
  onTimeout: () => Error,
  work: (signal: AbortSignal) => Promise<T>,
  abort?: { signal: AbortSignal | undefined; onAbort: () => Error },
): Promise<T> {
  const caller = abort?.signal;
  if (caller?.aborted) throw abort!.onAbort();
  const controller = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let onCallerAbort: (() => void) | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      controller.abort();
      reject(onTimeout());
    }, ms);
    if (caller) {
      onCallerAbort = () => {
        controller.abort();
        reject(abort!.onAbort());
      };
      caller.addEventListener('abort', onCallerAbort, { once: true });
    }
  });
  try {
    return await Promise.race([work(controller.signal), expired]);
  } finally {
    clearTimeout(timer);
    if (onCallerAbort) caller!.removeEventListener('abort', onCallerAbort);
  }
}

/** @internal The error of a call given up through its signal. */
export function abortedError(vmId: string, what: string): ArbiterError {
  return new ArbiterError('ERR_LOCKSTEP_ARBITER_ABORTED', `gave up trying to ${what} VM ${vmId}: the caller aborted; not won`, { vmId });
}

/** @internal The wire/record form of a claim, shared by the back-ends. */
export interface ClaimRecord {
  vmId: string;
  epoch: number;
  owner: string;
  claimedAt: string;
}

/** @internal Parse a stored claim record; `null` if it is not one. */
export function parseClaimRecord(text: string): ClaimRecord | null {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const r = v as Record<string, unknown>;
  if (typeof r.vmId !== 'string' || typeof r.owner !== 'string' || typeof r.claimedAt !== 'string') return null;
  if (typeof r.epoch !== 'number' || !Number.isSafeInteger(r.epoch) || r.epoch < INITIAL_EPOCH) return null;
  return { vmId: r.vmId, epoch: r.epoch, owner: r.owner, claimedAt: r.claimedAt };
}
