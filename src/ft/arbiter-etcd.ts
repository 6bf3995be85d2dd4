// The `etcd` arbiter back-end: one key per VM holding its highest claimed epoch, advanced only by a
// compare-and-swap transaction on the key's mod revision. Never writes without a compare.
import type { Etcd3, IKeyValue } from 'etcd3';
import { OptionError } from '../errors.js';
import { etcdClientFor, describeEtcdError, isEtcdDenied, type EtcdConnectionOptions } from '../cluster/store/etcd-client.js';
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
  type ClaimRecord,
  type ClaimResult,
  type EpochHolder,
} from './arbiter.js';

/** Options of {@link EtcdArbiter}: where etcd is (unless `client` is given), and how to use it. */
export interface EtcdArbiterOptions extends Partial<EtcdConnectionOptions> {
  /**
   * Use this client instead of connecting (`endpoints`, `auth`, `tls` are then ignored); it is not
   * closed by {@link EtcdArbiter.close}.
   */
  client?: Etcd3;
  /** Prefix of lockstep's keys (default `'lockstep/'`): the epoch key is `<prefix>arbiter/<vmId>/epoch`. */
  prefix?: string;
  /** Default time limit of each call in milliseconds (default 5000). */
  timeoutMs?: number;
  /**
   * How many compare-and-swap rounds one claim may lose to concurrent claims of lower epochs
   * before giving up with `ERR_LOCKSTEP_ARBITER_CONTENDED` (default 16).
   */
  maxAttempts?: number;
}

/**
 * Arbiter on etcd. The key `<prefix>arbiter/<vmId>/epoch` holds the JSON record
 * `{ vmId, epoch, owner, claimedAt }` of the highest claimed epoch. A claim of `n`:
 * 1. reads the key (value and `mod_revision`);
 * 2. if the stored epoch is `>= n`, loses (`stale`, or `taken` — or `reclaimed`, a win, when the
 *    stored owner is the caller);
 * 3. otherwise commits the transaction `if mod_revision(key) == seen then put(n, owner) else get(key)`
 *    (for an absent key: `if create_revision(key) == 0`). etcd executes a transaction atomically at
 *    one revision, so the put happens only if nobody wrote the key since step 1; if somebody did,
 *    the else branch returns what they wrote and the claim goes back to step 2 with it.
 * Every successful write raises the stored epoch, so each lost round means the key moved up: a
 * claim ends after at most `n − stored` rounds, and is bounded by `maxAttempts` anyway. Exactly
 * one claimant of an epoch can see it absent-or-lower and win the compare at the same revision.
 */
export class EtcdArbiter implements Arbiter {
  /** Always `'etcd'`. */
  readonly kind = 'etcd' as const;
  readonly #client: Etcd3;
  readonly #ownsClient: boolean;
  readonly #prefix: string;
  readonly #timeoutMs: number;
  readonly #maxAttempts: number;
  #closed = false;

  /** @throws OptionError when an option is not usable. */
  constructor(options: EtcdArbiterOptions) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_ARBITER_TIMEOUT_MS;
    validateTimeout('timeoutMs', timeoutMs);
    const maxAttempts = options.maxAttempts ?? 16;
    if (!Number.isSafeInteger(maxAttempts) || maxAttempts < 1) throw new OptionError('maxAttempts', 'must be a positive integer');
    const prefix = options.prefix ?? 'lockstep/';
    if (typeof prefix !== 'string') throw new OptionError('prefix', 'must be a string such as "lockstep/"');
    this.#prefix = prefix;
    this.#timeoutMs = timeoutMs;
    this.#maxAttempts = maxAttempts;
    const { client, owned } = etcdClientFor(options, timeoutMs);
    this.#client = client;
    this.#ownsClient = owned;
  }

  /** The etcd key that holds the epoch of `vmId`. */
  keyOf(vmId: string): string {
    validateVmId(vmId);
    return `${this.#prefix}arbiter/${vmId}/epoch`;
  }

  /** {@inheritDoc Arbiter.claim} */
  async claim(vmId: string, epoch: number, ownerId: string, options?: ArbiterCallOptions): Promise<ClaimResult> {
    validateVmId(vmId);
    validateEpoch(epoch);
    validateOwnerId(ownerId);
    return publishClaim({ kind: this.kind, vmId, epoch, ownerId }, this.#run(vmId, options, 'claim an epoch of', (deadline, signal) => this.#claim(vmId, epoch, ownerId, deadline, signal)));
  }

  /** {@inheritDoc Arbiter.current} */
  async current(vmId: string, options?: ArbiterCallOptions): Promise<EpochHolder | null> {
    validateVmId(vmId);
    return this.#run(vmId, options, 'read the epoch of', async (deadline) => {
      const res = await this.#client.get(this.keyOf(vmId)).options({ deadline }).exec();
      const kv = res.kvs[0];
      return kv === undefined ? null : toHolder(this.#parse(vmId, kv));
    });
  }

  /** {@inheritDoc Arbiter.close} */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#ownsClient) this.#client.close();
  }

  async #run<T>(vmId: string, options: ArbiterCallOptions | undefined, what: string, work: (deadline: Date, signal: AbortSignal) => Promise<T>): Promise<T> {
    if (this.#closed) throw new ArbiterError('ERR_LOCKSTEP_ARBITER_CLOSED', 'the etcd arbiter is closed', { vmId });
    const timeoutMs = options?.timeoutMs ?? this.#timeoutMs;
    validateTimeout('timeoutMs', timeoutMs);
    const deadline = new Date(Date.now() + timeoutMs);
    try {
      return await withDeadline(
        timeoutMs,
        () =>
          new ArbiterError(
            'ERR_LOCKSTEP_ARBITER_UNAVAILABLE',
            `could not ${what} VM ${vmId} on etcd within ${timeoutMs} ms: etcd is not answering; treat as not won`,
            { vmId },
          ),
        (signal) => work(deadline, signal),
        { signal: options?.signal, onAbort: () => abortedError(vmId, what) },
      );
    } catch (err) {
      if (err instanceof ArbiterError || err instanceof OptionError) throw err;
      const denied = isEtcdDenied(err);
      throw new ArbiterError(
        denied ? 'ERR_LOCKSTEP_ARBITER_DENIED' : 'ERR_LOCKSTEP_ARBITER_UNAVAILABLE',
        `could not ${what} VM ${vmId} on etcd: ${describeEtcdError(err)} (${
          denied ? 'check the user, password and its permission on the key prefix' : 'check that the endpoints are right and etcd is up'
        }); treat as not won`,
        { cause: err, vmId },
      );
    }
  }

  async #claim(vmId: string, epoch: number, owner: string, deadline: Date, signal: AbortSignal): Promise<ClaimResult> {
    const key = this.keyOf(vmId);
    let seen: IKeyValue | undefined = (await this.#client.get(key).options({ deadline }).exec()).kvs[0];
    for (let attempt = 0; attempt < this.#maxAttempts; attempt++) {
      let guard;
      if (seen !== undefined) {
        const stored = this.#parse(vmId, seen);
        if (stored.epoch > epoch) return { won: false, reason: 'stale', vmId, epoch, holder: toHolder(stored) };
        if (stored.epoch === epoch) {
          const mine = stored.owner === owner;
          return { won: mine, reason: mine ? 'reclaimed' : 'taken', vmId, epoch, holder: toHolder(stored) };
        }
        guard = this.#client.if(key, 'Mod', '==', seen.mod_revision);
      } else {
        guard = this.#client.if(key, 'Create', '==', 0);
      }
      // The commit is the irrevocable step: a caller that gave up (halted) or a call past its time limit
      // must not take the epoch after it was told "not won".
      if (signal.aborted) throw abortedError(vmId, 'claim an epoch of');
      const record: ClaimRecord = { vmId, epoch, owner, claimedAt: new Date().toISOString() };
      const res = await guard
        .then(this.#client.put(key).value(JSON.stringify(record)))
        .else(this.#client.get(key))
        .options({ deadline })
        .commit();
      if (res.succeeded) return { won: true, reason: 'claimed', vmId, epoch, holder: toHolder(record) };
      // Someone wrote the key since we read it; the else branch read it again in the same transaction.
      seen = res.responses[0]?.response_range?.kvs[0];
    }
    throw new ArbiterError(
      'ERR_LOCKSTEP_ARBITER_CONTENDED',
      `claim of epoch ${epoch} of VM ${vmId} lost ${this.#maxAttempts} compare-and-swap rounds to concurrent lower claims; treat as not won and retry`,
      { vmId },
    );
  }

  #parse(vmId: string, kv: IKeyValue): ClaimRecord {
    const record = parseClaimRecord(kv.value.toString('utf8'));
    if (record === null || record.vmId !== vmId) {
      throw new ArbiterError(
        'ERR_LOCKSTEP_ARBITER_CORRUPT',
        `the etcd key ${kv.key.toString('utf8')} does not hold an epoch record of VM ${vmId} (mod revision ${kv.mod_revision}): something else writes under the arbiter prefix; fix or remove the key by hand`,
        { vmId },
      );
    }
    return record;
  }
}

function toHolder(r: ClaimRecord): EpochHolder {
  return { vmId: r.vmId, epoch: r.epoch, owner: r.owner, claimedAt: r.claimedAt };
}
