// The `file` arbiter back-end: epochs as exclusively created files on a shared directory (local or
// NFS v3/v4). Claim files are never rewritten or deleted by the arbiter; the directory is the record.
import { hostname } from 'node:os';
import { join } from 'node:path';
import { mkdir, open, readdir, readFile, stat } from 'node:fs/promises';
import { OptionError } from '../errors.js';
import {
  abortedError,
  ArbiterError,
  DEFAULT_ARBITER_TIMEOUT_MS,
  parseClaimRecord,
  publishClaim,
  validateEpoch,
  validateOwnerId,
  validateTimeout,
  validateVmId,
  withDeadline,
  type Arbiter,
  type ArbiterCallOptions,
  type ArbiterErrorCode,
  type ClaimRecord,
  type ClaimResult,
  type EpochHolder,
} from './arbiter.js';

/** Options of {@link FileArbiter}. */
export interface FileArbiterOptions {
  /**
   * The shared arbiter directory, the same on both hosts of every pair. It must exist: the arbiter
   * creates the per-VM directories in it but never the directory itself.
   */
  dir: string;
  /** Default time limit of each call in milliseconds (default 5000). */
  timeoutMs?: number;
  /**
   * Require the marker file that {@link FileArbiter.prepare} writes (default `false`). Turn it on
   * for a network share: if the share is not mounted on one host, its mount point is an empty
   * local directory, and without the marker that host would arbitrate on its local disk — both
   * sides would win. With it, the unmounted host gets `ERR_LOCKSTEP_ARBITER_UNAVAILABLE`.
   */
  requireMarker?: boolean;
}

/** Name of the marker file that {@link FileArbiter.prepare} creates in the arbiter directory. */
export const FILE_ARBITER_MARKER = '.lockstep-arbiter';

const EPOCH_FILE = /^epoch-([1-9][0-9]{0,15})$/;
/** How long a loser waits for the winner to finish writing the claim file it created. */
const RECORD_READ_ATTEMPTS = 40;
const RECORD_READ_PAUSE_MS = 5;

/**
 * Arbiter on a shared directory. The claim of epoch `n` for VM `v` is the file `<dir>/<v>/epoch-<n>`,
 * created with `open(path, 'wx')` (`O_CREAT | O_EXCL`); its content is a JSON record of owner and
 * time, written and fsynced (file, then directory) before the claim reports a win.
 *
 * Why this is a correct test-and-set:
 * 1. *One winner per epoch.* `O_CREAT|O_EXCL` is atomic in the file system that holds the
 *    directory: of any number of concurrent creators of one name, exactly one succeeds and the
 *    others get `EEXIST`. On NFS this holds from v3 on: the client sends an EXCLUSIVE CREATE (v3)
 *    or OPEN with EXCLUSIVE4/EXCLUSIVE4_1 (v4) and the *server* decides; a retransmitted request
 *    is recognised by its verifier, so a lost reply does not turn our own success into `EEXIST`.
 *    (NFSv2 has no exclusive create and is not supported.) Only the creator of `epoch-n` can win
 *    `n`, so two wins of one epoch are impossible.
 * 2. *A stale claim loses.* After creating `epoch-n`, the claimer lists the directory; if any
 *    `epoch-m` with `m > n` is there, it reports a loss (`stale`). Claim files are never deleted,
 *    so if `epoch-m` was created before our create, it is still there when our listing runs, which
 *    is after our create completed. The listing sees it: on a local file system trivially; on NFS
 *    because our own create changed the directory, which makes the client drop its cached listing
 *    and read the directory from the server (and, with the default close-to-open consistency,
 *    opening the directory revalidates it anyway). So a claim wins only if no higher epoch existed
 *    when its file was created: the claim takes effect at that create, and claims are linearisable.
 *    A claim that loses here has still created `epoch-n`, so nobody wins `n`; that is fine, `n`
 *    is superseded by `m` already.
 * 3. *Durability.* The winner fsyncs the file and the directory before answering, so a crash of
 *    the storage server after the answer does not forget the claim (NFS servers commit CREATE to
 *    stable storage before replying in any case).
 * A claimer that dies between creating and writing the file leaves an empty `epoch-n`: the epoch
 * is taken by a dead process, readers report its owner as `null`, and the survivor claims `n + 1`.
 */
export class FileArbiter implements Arbiter {
  /** Always `'file'`. */
  readonly kind = 'file' as const;
  readonly #dir: string;
  readonly #timeoutMs: number;
  readonly #requireMarker: boolean;
  #closed = false;

  /**
   * Make `dir` an arbiter directory: create it if needed and write the marker file (see
   * {@link FileArbiterOptions.requireMarker}). Run once per share, from a host that has it mounted.
   */
  static async prepare(dir: string): Promise<void> {
    try {
      await mkdir(dir, { recursive: true });
      const fh = await open(join(dir, FILE_ARBITER_MARKER), 'a');
      try {
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsyncDir(dir);
    } catch (err) {
      throw ioError(err, `cannot prepare arbiter directory ${dir}`);
    }
  }

  /** @throws OptionError when `dir` or `timeoutMs` are not usable. */
  constructor(options: FileArbiterOptions) {
    if (typeof options?.dir !== 'string' || options.dir.length === 0) {
      throw new OptionError('dir', 'the arbiter directory must be a non-empty path');
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_ARBITER_TIMEOUT_MS;
    validateTimeout('timeoutMs', timeoutMs);
    this.#dir = options.dir;
    this.#timeoutMs = timeoutMs;
    this.#requireMarker = options.requireMarker ?? false;
  }

  /** The arbiter directory. */
  get dir(): string {
    return this.#dir;
  }

  /** {@inheritDoc Arbiter.claim} */
  async claim(vmId: string, epoch: number, ownerId: string, options?: ArbiterCallOptions): Promise<ClaimResult> {
    validateVmId(vmId);
    validateEpoch(epoch);
    validateOwnerId(ownerId);
    return publishClaim({ kind: this.kind, vmId, epoch, ownerId }, this.#run(vmId, options, 'claim', (signal) => this.#claim(vmId, epoch, ownerId, signal)));
  }

  /** {@inheritDoc Arbiter.current} */
  async current(vmId: string, options?: ArbiterCallOptions): Promise<EpochHolder | null> {
    validateVmId(vmId);
    return this.#run(vmId, options, 'read the epoch of', async (signal) => {
      await this.#checkMarker();
      const vmDir = join(this.#dir, vmId);
      const highest = await highestEpoch(vmDir);
      if (highest !== null) return readHolder(vmDir, vmId, highest, signal);
      // No claim yet, or no arbiter directory at all: the second must not read as "no claim".
      if (!(await stat(this.#dir)).isDirectory()) throw Object.assign(new Error(`${this.#dir} is not a directory`), { code: 'ENOTDIR' });
      return null;
    });
  }

  /** {@inheritDoc Arbiter.close} */
  async close(): Promise<void> {
    this.#closed = true;
  }

  async #run<T>(vmId: string, options: ArbiterCallOptions | undefined, what: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ArbiterError('ERR_LOCKSTEP_ARBITER_CLOSED', 'the file arbiter is closed', { vmId });
    const timeoutMs = options?.timeoutMs ?? this.#timeoutMs;
    validateTimeout('timeoutMs', timeoutMs);
    try {
      return await withDeadline(
        timeoutMs,
        () =>
          new ArbiterError(
            'ERR_LOCKSTEP_ARBITER_UNAVAILABLE',
            `could not ${what} VM ${vmId} in ${this.#dir} within ${timeoutMs} ms: the shared directory is not answering (hung NFS mount?); treat as not won`,
            { vmId },
          ),
        work,
        { signal: options?.signal, onAbort: () => abortedError(vmId, what) },
      );
    } catch (err) {
      if (err instanceof ArbiterError) throw err;
      throw ioError(err, `could not ${what} VM ${vmId} in ${this.#dir}`, vmId);
    }
  }

  async #checkMarker(): Promise<void> {
    if (!this.#requireMarker) return;
    try {
      await stat(join(this.#dir, FILE_ARBITER_MARKER));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new ArbiterError(
          'ERR_LOCKSTEP_ARBITER_UNAVAILABLE',
          `${this.#dir} is not an arbiter directory (no ${FILE_ARBITER_MARKER} in it): is the shared file system mounted? Prepare a new share once with FileArbiter.prepare()`,
          { cause: err },
        );
      }
      throw err;
    }
  }

  async #claim(vmId: string, epoch: number, owner: string, signal: AbortSignal): Promise<ClaimResult> {
    await this.#checkMarker();
    const vmDir = join(this.#dir, vmId);
    try {
      // Not recursive: the arbiter directory itself must already exist (see FileArbiterOptions.dir).
      await mkdir(vmDir);
      await fsyncDir(this.#dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }

    // Shortcut only, not needed for safety: a claim below an existing epoch loses without
    // leaving a file behind. The check that makes it safe is the listing after the create.
    const before = await highestEpoch(vmDir);
    if (before !== null && before > epoch) {
      return lost(vmId, epoch, 'stale', await readHolder(vmDir, vmId, before, signal));
    }

    const path = join(vmDir, `epoch-${epoch}`);
    let reason: 'claimed' | 'reclaimed';
    let mine: EpochHolder;
    let fh;
    // The create is the irrevocable step: a caller that gave up (halted) or a call past its time limit
    // must not take the epoch after it was told "not won".
    if (signal.aborted) throw abortedError(vmId, 'claim an epoch of');
    try {
      fh = await open(path, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    if (fh !== undefined) {
      try {
        const record: ClaimRecord = { vmId, epoch, owner, claimedAt: new Date().toISOString() };
        mine = { ...record };
        await fh.writeFile(`${JSON.stringify({ ...record, host: hostname(), pid: process.pid })}\n`);
        await fh.sync();
      } finally {
        await fh.close();
      }
      await fsyncDir(vmDir);
      reason = 'claimed';
    } else {
      const holder = await readHolder(vmDir, vmId, epoch, signal);
      if (holder.owner !== owner) {
        const highest = await highestEpoch(vmDir);
        if (highest !== null && highest > epoch) {
          return lost(vmId, epoch, 'stale', await readHolder(vmDir, vmId, highest, signal));
        }
        return lost(vmId, epoch, 'taken', holder);
      }
      mine = holder;
      reason = 'reclaimed';
    }

    // The listing after the create: see argument 2 in the class comment.
    const after = await highestEpoch(vmDir);
    if (after !== null && after > epoch) {
      return lost(vmId, epoch, 'stale', await readHolder(vmDir, vmId, after, signal));
    }
    return { won: true, reason, vmId, epoch, holder: mine };
  }
}

function lost(vmId: string, epoch: number, reason: 'taken' | 'stale', holder: EpochHolder): ClaimResult {
  return { won: false, reason, vmId, epoch, holder };
}

/** The highest `epoch-<n>` in `vmDir`, or `null` if there is none or the directory does not exist. */
async function highestEpoch(vmDir: string): Promise<number | null> {
  let names: string[];
  try {
    names = await readdir(vmDir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
  let highest: number | null = null;
  for (const name of names) {
    const m = EPOCH_FILE.exec(name);
    if (m === null) continue;
    const n = Number(m[1]);
    if (Number.isSafeInteger(n) && (highest === null || n > highest)) highest = n;
  }
  return highest;
}

/**
 * Read the record of `epoch-<n>`. Its creator may not have written it yet (the file exists from
 * the instant of the create), so an empty or partial record is re-read a few times; if it stays
 * unreadable, the creator most likely died and the owner is reported as `null`.
 */
async function readHolder(vmDir: string, vmId: string, epoch: number, signal: AbortSignal): Promise<EpochHolder> {
  const path = join(vmDir, `epoch-${epoch}`);
  for (let attempt = 0; attempt < RECORD_READ_ATTEMPTS && !signal.aborted; attempt++) {
    const record = parseClaimRecord(await readFile(path, 'utf8'));
    if (record !== null && record.epoch === epoch) return { vmId, epoch, owner: record.owner, claimedAt: record.claimedAt };
    await new Promise((resolve) => setTimeout(resolve, RECORD_READ_PAUSE_MS));
  }
  return { vmId, epoch, owner: null, claimedAt: null };
}

/** fsync a directory so a create or rename in it is durable; file systems that refuse are tolerated. */
async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'EINVAL' && code !== 'ENOTSUP' && code !== 'EISDIR') throw err;
  } finally {
    await fh.close();
  }
}

function ioError(err: unknown, what: string, vmId?: string): ArbiterError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const denied = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
  const errCode: ArbiterErrorCode = denied ? 'ERR_LOCKSTEP_ARBITER_DENIED' : 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE';
  const hint = denied
    ? 'check that this user may create files there and that the share is mounted read-write'
    : 'check that the shared directory exists, is mounted and is reachable';
  return new ArbiterError(errCode, `${what}: ${(err as Error)?.message ?? String(err)} (${hint}); treat as not won`, {
    cause: err,
    ...(vmId === undefined ? {} : { vmId }),
  });
}
