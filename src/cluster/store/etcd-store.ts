// ClusterStore over etcd (several machines): keys under <prefix>kv/, leases with keep-alive for
// liveness, elections as lease-bound keys ordered by create revision (etcd's own recipe).
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Etcd3, IKeyValue, Lease, Namespace, Watcher } from 'etcd3';
import { OptionError } from '../../errors.js';
import { describeEtcdError, etcdClientFor, isEtcdDenied, type EtcdConnectionOptions } from './etcd-client.js';
import { LeadershipBase, LocalDeadline } from './handles.js';
import {
  DEFAULT_STORE_TIMEOUT_MS,
  StoreError,
  encodeValue,
  sleep,
  validateKey,
  validateMs,
  validateName,
  validatePrefix,
  withTimeout,
  type CampaignOptions,
  type ClusterStore,
  type JsonValue,
  type LeaderInfo,
  type Leadership,
  type LivenessHandle,
  type StoreEntry,
  type Unsubscribe,
  type WatchEvent,
  type WatchOptions,
} from './store.js';

/** Options of {@link EtcdStore.open}: where etcd is (unless `client` is given) and how to use it. */
export interface EtcdStoreOptions extends Partial<EtcdConnectionOptions> {
  /** Use this client instead of connecting; it is not closed by {@link EtcdStore.close}. */
  client?: Etcd3;
  /** Prefix of lockstep's keys (default `'lockstep/'`): data under `<prefix>kv/`, elections under `<prefix>election/`. */
  prefix?: string;
  /** Time limit of each operation, ms (default 5000). */
  timeoutMs?: number;
}

/**
 * {@link ClusterStore} on etcd. Revisions are etcd's (`mod_revision`, `create_revision`); a watch
 * delivers every change in revision order and resumes after reconnecting; liveness keys are
 * attached to a lease kept alive by the client; an election is the etcd recipe — each candidate
 * puts `<prefix>election/<name>/<lease id>` on its own lease, and the key with the lowest create
 * revision leads. That create revision is the leader's fencing token: it rises with every change
 * of leader, since a new leader's key is younger than every key that led before it.
 *
 * TTLs are whole seconds in etcd (rounded up here), and etcd raises a TTL below its minimum
 * (1.5 election timeouts, 1.5 s with the default settings) to that minimum.
 */
export class EtcdStore implements ClusterStore {
  /** Always `'etcd'`. */
  readonly kind = 'etcd' as const;
  readonly #client: Etcd3;
  readonly #ownsClient: boolean;
  readonly #kv: Namespace;
  readonly #elections: Namespace;
  readonly #timeoutMs: number;
  readonly #prefix: string;
  readonly #closers = new Set<() => Promise<void>>();
  #closed = false;

  /**
   * Connect and check that etcd answers.
   * @throws OptionError for bad options; StoreError if etcd cannot be used.
   */
  static async open(options: EtcdStoreOptions): Promise<EtcdStore> {
    const store = new EtcdStore(options);
    try {
      await store.#op('connect', '', (deadline) => store.#kv.get('\u0001probe').options({ deadline }).exec());
    } catch (err) {
      await store.close();
      throw err;
    }
    return store;
  }

  private constructor(options: EtcdStoreOptions) {
    const timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    validateMs('timeoutMs', timeoutMs);
    const prefix = options.prefix ?? 'lockstep/';
    if (typeof prefix !== 'string') throw new OptionError('prefix', 'must be a string such as "lockstep/"');
    this.#timeoutMs = timeoutMs;
    this.#prefix = prefix;
    const { client, owned } = etcdClientFor(options, timeoutMs);
    this.#client = client;
    this.#ownsClient = owned;
    this.#kv = this.#client.namespace(`${prefix}kv/`);
    this.#elections = this.#client.namespace(`${prefix}election/`);
  }

  /** The etcd key that holds store key `key`. */
  etcdKey(key: string): string {
    return `${this.#prefix}kv/${key}`;
  }

  /** {@inheritDoc ClusterStore.get} */
  async get(key: string): Promise<StoreEntry | null> {
    validateKey(key);
    return this.#op(`get ${key}`, key, async (deadline) => {
      const kv = (await this.#kv.get(key).options({ deadline }).exec()).kvs[0];
      return kv === undefined ? null : toEntry(key, kv);
    });
  }

  /** {@inheritDoc ClusterStore.put} */
  async put(key: string, value: JsonValue): Promise<number> {
    validateKey(key);
    const text = encodeValue(value);
    return this.#op(`put ${key}`, key, async (deadline) => Number((await this.#kv.put(key).value(text).options({ deadline }).exec()).header.revision));
  }

  /** {@inheritDoc ClusterStore.delete} */
  async delete(key: string): Promise<boolean> {
    validateKey(key);
    return this.#op(`delete ${key}`, key, async (deadline) => Number((await this.#kv.delete().key(key).options({ deadline }).exec()).deleted) > 0);
  }

  /** {@inheritDoc ClusterStore.list} */
  async list(prefix: string): Promise<StoreEntry[]> {
    validatePrefix(prefix);
    return this.#op(`list ${prefix}`, prefix, async (deadline) => {
      const range = this.#kv.getAll();
      const res = await (prefix === '' ? range.all() : range.prefix(prefix)).sort('Key', 'Ascend').options({ deadline }).exec();
      return res.kvs.map((kv) => toEntry(kv.key.toString('utf8'), kv));
    });
  }

  /** {@inheritDoc ClusterStore.compareAndSet} */
  async compareAndSet(key: string, expectedRevision: number | null, value: JsonValue): Promise<boolean> {
    validateKey(key);
    if (expectedRevision !== null && (!Number.isSafeInteger(expectedRevision) || expectedRevision < 1)) {
      throw new OptionError('expectedRevision', 'must be a revision (a positive integer) or null for "does not exist"');
    }
    const text = encodeValue(value);
    return this.#op(`compare-and-set ${key}`, key, async (deadline) => {
      const guard = expectedRevision === null ? this.#kv.if(key, 'Create', '==', 0) : this.#kv.if(key, 'Mod', '==', expectedRevision);
      const res = await guard.then(this.#kv.put(key).value(text)).options({ deadline }).commit();
      return res.succeeded;
    });
  }

  /** {@inheritDoc ClusterStore.watch} */
  async watch(prefix: string, callback: (event: WatchEvent) => void, options?: WatchOptions): Promise<Unsubscribe> {
    validatePrefix(prefix);
    if (typeof callback !== 'function') throw new OptionError('callback', 'must be a function');
    const report = (err: unknown) => {
      try {
        options?.onError?.(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // An error handler that throws has nowhere left to report to.
      }
    };
    const deliver = (event: () => WatchEvent) => {
      let e: WatchEvent;
      try {
        e = event();
      } catch (err) {
        return report(err);
      }
      try {
        callback(e);
      } catch (err) {
        report(err);
      }
    };
    const watcher: Watcher = await this.#op(`watch ${prefix}`, prefix, () => {
      const builder = this.#kv.watch();
      return (prefix === '' ? builder.prefix('') : builder.prefix(prefix)).create();
    });
    watcher.on('put', (kv) => deliver(() => ({ type: 'put', key: kv.key.toString('utf8'), value: parseValue(kv.key.toString('utf8'), kv.value), revision: Number(kv.mod_revision) })));
    watcher.on('delete', (kv) => deliver(() => ({ type: 'delete', key: kv.key.toString('utf8'), value: null, revision: Number(kv.mod_revision) })));
    watcher.on('error', (err) => report(new StoreError('ERR_LOCKSTEP_STORE_UNAVAILABLE', `watch of ${prefix} failed: ${describeEtcdError(err)}`, { cause: err, key: prefix })));
    const unsubscribe = async () => {
      this.#closers.delete(unsubscribe);
      watcher.removeAllListeners('put').removeAllListeners('delete');
      await watcher.cancel().catch(() => undefined);
    };
    this.#closers.add(unsubscribe);
    return unsubscribe;
  }

  /** {@inheritDoc ClusterStore.register} */
  async register(key: string, value: JsonValue, ttlMs: number): Promise<LivenessHandle> {
    validateKey(key);
    validateMs('ttlMs', ttlMs);
    const text = encodeValue(value);
    this.#assertOpen();
    const ttlSec = Math.max(1, Math.ceil(ttlMs / 1000));
    const started = performance.now();
    const lease = this.#kv.lease(ttlSec, { autoKeepAlive: true });
    const handle = new EtcdLiveness(key, ttlSec * 1000, lease, started, (closer) => this.#closers.delete(closer));
    try {
      const id = await this.#op(`register ${key}`, key, async (deadline) => {
        const id = await lease.grant();
        await lease.put(key).value(text).options({ deadline }).exec();
        return id;
      });
      handle.granted(id);
    } catch (err) {
      handle.abandon();
      throw err;
    }
    this.#closers.add(handle.closer);
    return handle;
  }

  /** {@inheritDoc ClusterStore.campaign} */
  async campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    validateName(election, 'election');
    validateName(candidateId, 'candidateId');
    const ttlMs = options?.ttlMs ?? 5_000;
    validateMs('ttlMs', ttlMs);
    this.#assertOpen();
    const leadership = new EtcdLeadership(election, candidateId, Math.max(1, Math.ceil(ttlMs / 1000)), this.#elections, this.#timeoutMs, (closer) =>
      this.#closers.delete(closer),
    );
    this.#closers.add(leadership.closer);
    await leadership.start();
    return leadership;
  }

  /** {@inheritDoc ClusterStore.leader} */
  async leader(election: string): Promise<LeaderInfo | null> {
    validateName(election, 'election');
    return this.#op(`read the leader of ${election}`, election, async (deadline) => {
      const res = await this.#elections.getAll().prefix(`${election}/`).sort('Create', 'Ascend').limit(1).options({ deadline }).exec();
      const kv = res.kvs[0];
      return kv === undefined ? null : { candidateId: kv.value.toString('utf8'), token: Number(kv.create_revision) };
    });
  }

  /** {@inheritDoc ClusterStore.close} */
  async close(): Promise<void> {
    if (this.#closed) return;
    await Promise.allSettled([...this.#closers].map((c) => c()));
    this.#closed = true;
    if (this.#ownsClient) this.#client.close();
  }

  #assertOpen(): void {
    if (this.#closed) throw new StoreError('ERR_LOCKSTEP_STORE_CLOSED', 'the etcd store is closed');
  }

  async #op<T>(what: string, key: string, work: (deadline: Date) => Promise<T>): Promise<T> {
    this.#assertOpen();
    return etcdOp(what, key, this.#timeoutMs, work);
  }
}

/** Run one etcd call with a deadline, turning the client's errors into StoreErrors. */
async function etcdOp<T>(what: string, key: string, timeoutMs: number, work: (deadline: Date) => Promise<T>): Promise<T> {
  const deadline = new Date(Date.now() + timeoutMs);
  try {
    return await withTimeout(
      timeoutMs,
      () => new StoreError('ERR_LOCKSTEP_STORE_UNAVAILABLE', `${what}: etcd did not answer within ${timeoutMs} ms; a write may still take effect`, { key }),
      () => work(deadline),
    );
  } catch (err) {
    if (err instanceof StoreError || err instanceof OptionError) throw err;
    const denied = isEtcdDenied(err);
    throw new StoreError(
      denied ? 'ERR_LOCKSTEP_STORE_DENIED' : 'ERR_LOCKSTEP_STORE_UNAVAILABLE',
      `${what}: ${describeEtcdError(err)} (${denied ? 'check the user, password and permissions on the key prefix' : 'check that the endpoints are right and etcd is up'})`,
      { cause: err, key },
    );
  }
}

function parseValue(key: string, value: Buffer): JsonValue {
  try {
    return JSON.parse(value.toString('utf8')) as JsonValue;
  } catch {
    throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `the value of ${key} is not JSON: something else writes under the store's prefix`, { key });
  }
}

function toEntry(key: string, kv: IKeyValue): StoreEntry {
  return { key, value: parseValue(key, kv.value), revision: Number(kv.mod_revision), createRevision: Number(kv.create_revision) };
}

/**
 * Follows an etcd3 lease's keep-alives to keep a local deadline: the send time of the oldest
 * unanswered keep-alive plus the TTL the answer grants (the server counts from when it received
 * it, which is later). Calls `onRenewed(deadline)` on each answer.
 */
function trackLease(lease: Lease, onRenewed: (deadline: number) => void): void {
  const sent: number[] = [];
  lease.on('keepaliveFired', () => {
    if (sent.length < 64) sent.push(performance.now());
  });
  lease.on('keepaliveSucceeded', (res) => {
    const at = sent.shift();
    const ttl = Number(res.TTL);
    if (at !== undefined && ttl > 0) onRenewed(at + ttl * 1000);
  });
  lease.on('keepaliveFailed', () => {
    sent.length = 0;
  });
}

/** Liveness handle of the etcd store: a lease with keep-alive, watched by a local deadline. */
class EtcdLiveness extends EventEmitter implements LivenessHandle {
  readonly key: string;
  readonly ttlMs: number;
  readonly closer: () => Promise<void>;
  #token = '';
  readonly #lease: Lease;
  readonly #deadline: LocalDeadline;
  readonly #forget: (c: () => Promise<void>) => void;
  #ended = false;

  constructor(key: string, ttlMs: number, lease: Lease, started: number, forget: (c: () => Promise<void>) => void) {
    super();
    this.key = key;
    this.ttlMs = ttlMs;
    this.#lease = lease;
    this.#forget = forget;
    this.#deadline = new LocalDeadline(() => this.#lose(`no keep-alive answered within the TTL of ${ttlMs} ms`));
    this.#deadline.extend(started + ttlMs);
    this.closer = () => this.revoke();
    trackLease(lease, (d) => this.#deadline.extend(d));
    lease.on('lost', (err) => this.#lose(`etcd reports the lease lost (${describeEtcdError(err)})`));
  }

  get token(): string {
    return this.#token;
  }

  get held(): boolean {
    return !this.#ended && this.#deadline.valid;
  }

  get deadline(): number {
    return this.#deadline.at;
  }

  /** @internal */
  granted(id: string): void {
    this.#token = id;
  }

  /** @internal Registration failed: drop the lease quietly. */
  abandon(): void {
    this.#end();
    this.#lease.revoke().catch(() => this.#lease.release());
  }

  async revoke(): Promise<void> {
    if (this.#ended) return;
    this.#end();
    try {
      await this.#lease.revoke({ deadline: Date.now() + this.ttlMs });
    } catch {
      // etcd unreachable: stop the keep-alives, and the server expires the lease by itself.
      this.#lease.release();
    }
  }

  #lose(why: string): void {
    if (this.#ended) return;
    this.#end();
    // No longer trusted here, so let it go there too: stop keep-alives, revoke if etcd answers.
    this.#lease.revoke().catch(() => this.#lease.release());
    this.emit('lost', new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `liveness key ${this.key} lost: ${why}`, { key: this.key }));
  }

  #end(): void {
    this.#ended = true;
    this.#deadline.stop();
    this.#forget(this.closer);
  }
}

/** Leadership handle of the etcd store: runs sessions (lease + candidate key) until resigned. */
class EtcdLeadership extends LeadershipBase implements Leadership {
  readonly closer: () => Promise<void>;
  readonly #ttlSec: number;
  readonly #ns: Namespace;
  readonly #timeoutMs: number;
  readonly #forget: (c: () => Promise<void>) => void;
  #endSession: (() => void) | undefined;
  #loop: Promise<void> = Promise.resolve();

  constructor(election: string, candidateId: string, ttlSec: number, ns: Namespace, timeoutMs: number, forget: (c: () => Promise<void>) => void) {
    super(election, candidateId);
    this.#ttlSec = ttlSec;
    this.#ns = ns;
    this.#timeoutMs = timeoutMs;
    this.#forget = forget;
    this.closer = () => this.resign();
  }

  /** Start campaigning; resolves once the first candidacy is recorded (or rejects if it cannot be). */
  async start(): Promise<void> {
    let first: ((err?: unknown) => void) | undefined;
    const recorded = new Promise<void>((resolve, reject) => {
      first = (err) => (err === undefined ? resolve() : reject(err));
    });
    this.#loop = (async () => {
      let pause = 100;
      while (!this.resigned) {
        try {
          await this.#session(() => {
            first?.();
            first = undefined;
          });
          pause = 100;
        } catch (err) {
          if (first !== undefined) {
            first(err);
            first = undefined;
            this.markResigned();
            this.#forget(this.closer);
            return;
          }
          if (!this.resigned && this.listenerCount('error') > 0) this.emit('error', err);
          await sleep(pause);
          pause = Math.min(pause * 2, 2_000);
        }
      }
    })();
    await recorded;
  }

  async resign(): Promise<void> {
    if (this.resigned) return;
    this.markResigned();
    this.#forget(this.closer);
    this.#endSession?.();
    await this.#loop;
  }

  protected override lose(err: StoreError): void {
    super.lose(err);
    // Not trusted any more: this session is over; a new one (new lease, new key, new token) follows.
    this.#endSession?.();
  }

  /** One session: a lease, our key on it, and a watch for deletions, until something ends it. */
  async #session(onRecorded: () => void): Promise<void> {
    const prefix = `${this.election}/`;
    const started = performance.now();
    let sessionDeadline = started + this.#ttlSec * 1000;
    const lease = this.#ns.lease(this.#ttlSec, { autoKeepAlive: true });
    let ended!: () => void;
    const over = new Promise<void>((resolve) => (ended = resolve));
    this.#endSession = ended;
    trackLease(lease, (d) => {
      sessionDeadline = Math.max(sessionDeadline, d);
      this.renew(sessionDeadline);
    });
    lease.on('lost', (err) =>
      this.lose(new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `etcd reports the lease of ${this.election} lost (${describeEtcdError(err)})`, { key: this.election })),
    );
    lease.on('lost', () => ended());
    let watcher: Watcher | undefined;
    try {
      const id = await etcdOp(`campaign in ${this.election}`, this.election, this.#timeoutMs, () => lease.grant());
      const myKey = `${prefix}${BigInt(id).toString(16)}`;
      const res = await etcdOp(`campaign in ${this.election}`, this.election, this.#timeoutMs, (deadline) =>
        this.#ns
          .if(myKey, 'Create', '==', 0)
          .then(lease.put(myKey).value(this.candidateId), this.#ns.get(myKey))
          .else(this.#ns.get(myKey))
          .options({ deadline })
          .commit(),
      );
      const mine = res.succeeded ? res.responses[1]?.response_range.kvs[0] : res.responses[0]?.response_range.kvs[0];
      if (mine === undefined) throw new StoreError('ERR_LOCKSTEP_STORE_UNAVAILABLE', `the candidate key of ${this.election} vanished as it was written`);
      const myRev = Number(mine.create_revision);
      // Watch before the first look, so a deletion between the two is not missed.
      watcher = await etcdOp(`watch ${this.election}`, this.election, this.#timeoutMs, () => this.#ns.watch().prefix(prefix).only('delete').create());
      let evaluating = Promise.resolve();
      const evaluate = () => {
        evaluating = evaluating.then(async () => {
          if (this.resigned) return;
          try {
            const first = await etcdOp(`campaign in ${this.election}`, this.election, this.#timeoutMs, (deadline) =>
              this.#ns.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).options({ deadline }).exec(),
            );
            const head = first.kvs[0];
            if (head !== undefined && Number(head.create_revision) === myRev) this.gain(myRev, sessionDeadline);
          } catch (err) {
            if (this.listenerCount('error') > 0) this.emit('error', err);
            setTimeout(evaluate, 200).unref();
          }
        });
      };
      watcher.on('delete', (kv) => {
        if (kv.key.toString('utf8') === myKey) {
          this.lose(new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `the candidate key of ${this.election} was deleted (lease expired)`, { key: this.election }));
          ended();
        } else {
          evaluate();
        }
      });
      watcher.on('error', () => ended());
      onRecorded();
      evaluate();
      await over;
      await evaluating;
    } finally {
      this.#endSession = undefined;
      if (this.token !== null) this.lose(new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `session of ${this.election} ended`, { key: this.election }));
      await watcher?.cancel().catch(() => undefined);
      // Resigning or starting over: our key goes with the lease, so the next candidate need not wait.
      await lease.revoke({ deadline: Date.now() + this.#timeoutMs }).catch(() => lease.release());
    }
  }
}
