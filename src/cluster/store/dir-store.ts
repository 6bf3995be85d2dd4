// The embedded ClusterStore: a directory on one machine, shared by any number of processes there.
// Mutual exclusion by exclusively created generation files; atomic writes by temp + fsync + rename.
import { randomBytes, createHash } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { OptionError } from '../../errors.js';
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

/** Options of {@link DirStore.open}. */
export interface DirStoreOptions {
  /** The store's directory (created if missing). Only processes on this machine may share it. */
  dir: string;
  /** Time limit of each operation, ms (default 5000). */
  timeoutMs?: number;
  /** How often watches and candidates look for changes, ms (default 100). */
  pollIntervalMs?: number;
  /** How long deleted keys are remembered for watches that fell behind, ms (default 60000). */
  tombstoneRetentionMs?: number;
}

/** Format of the directory, in its marker file. */
export const DIR_STORE_FORMAT = 1;

/** The file that makes a directory a lockstep store (written by the first {@link DirStore.open}). */
export const DIR_STORE_MARKER = 'lockstep-store.json';
const MARKER = DIR_STORE_MARKER;

/*
 * Layout of the directory:
 *
 *   lockstep-store.json   {"format":1}
 *   gen/<g>               lock generation g, made by link(2) of a complete temp file: {pid,start,boot,host}
 *   gen/<g>.done          generation g released
 *   data/<name>           one key: {key,value,revision,createRevision[,lease][,deleted,deletedAt]}
 *   elections/<name>      one election: {candidateId,owner,token,expiresAt}
 *   tmp/                  temp files, renamed or linked into place
 *
 * The lock: the holder of the highest generation g holds it until gen/<g>.done exists. To take it,
 * a process links gen/<g+1> into place — link fails with EEXIST if another got there first — but
 * only once gen/<g> is done or its holder's process is dead (pid, start time and boot id checked:
 * one machine). It then lists gen/ again and gives up if a higher generation exists (its listing
 * was older than a clean-up). The highest generation file is never deleted (holders delete only
 * those below g - 1), so the test is sound. Each mutation happens under its own generation, and
 * its revision *is* that generation: revisions increase, with gaps.
 *
 * Watches: writes of revision <= g are complete once gen/<g+1> exists or gen/<g>.done does, so a
 * poller reads the stable revision R first, then the keys, and delivers what changed in
 * (last R, R] in revision order; later changes wait for the next poll.
 */

interface KeyRecord {
  key: string;
  value: JsonValue;
  revision: number;
  createRevision: number;
  lease?: { owner: string; expiresAt: number };
  deleted?: true;
  deletedAt?: number;
}

interface ElectionRecord {
  election: string;
  candidateId: string;
  owner: string;
  token: number;
  expiresAt: number;
}

interface GenHolder {
  pid: number;
  start: string | null;
  boot: string | null;
  host: string;
}

const BOOT_ID = readProc('/proc/sys/kernel/random/boot_id');

/**
 * {@link ClusterStore} in a directory, for one machine. Correct for several processes sharing the
 * directory; not for several machines (the lock recovers from dead holders by their pid) — use
 * {@link EtcdStore} there.
 *
 * Differences from etcd that callers may see: `list` is not one atomic snapshot; watch events of
 * one key between two polls are merged into one carrying the latest state; liveness expiry relies
 * on the wall clock, which all processes of one machine share.
 */
export class DirStore implements ClusterStore {
  /** Always `'dir'`. */
  readonly kind = 'dir' as const;
  readonly #dir: string;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #retentionMs: number;
  readonly #me: string;
  readonly #nonce = randomBytes(6).toString('hex');
  #tmpCounter = 0;
  #chain: Promise<void> = Promise.resolve();
  #closed = false;
  readonly #closers = new Set<() => Promise<void>>();

  /**
   * Open (creating if needed) a store directory.
   * @throws OptionError for bad options; StoreError if the directory cannot be used.
   */
  static async open(options: DirStoreOptions): Promise<DirStore> {
    const store = new DirStore(options);
    await store.#init();
    return store;
  }

  private constructor(options: DirStoreOptions) {
    if (typeof options?.dir !== 'string' || options.dir.length === 0) throw new OptionError('dir', 'the store directory must be a non-empty path');
    const timeoutMs = options.timeoutMs ?? DEFAULT_STORE_TIMEOUT_MS;
    validateMs('timeoutMs', timeoutMs);
    const pollMs = options.pollIntervalMs ?? 100;
    validateMs('pollIntervalMs', pollMs);
    const retentionMs = options.tombstoneRetentionMs ?? 60_000;
    validateMs('tombstoneRetentionMs', retentionMs);
    this.#dir = options.dir;
    this.#timeoutMs = timeoutMs;
    this.#pollMs = Math.min(pollMs, 1_000);
    this.#retentionMs = retentionMs;
    const holder: GenHolder = { pid: process.pid, start: processStart(process.pid), boot: BOOT_ID, host: hostname() };
    this.#me = JSON.stringify(holder);
  }

  /** The store's directory. */
  get dir(): string {
    return this.#dir;
  }

  async #init(): Promise<void> {
    try {
      for (const sub of ['gen', 'data', 'elections', 'tmp']) await mkdir(join(this.#dir, sub), { recursive: true });
      const markerPath = join(this.#dir, MARKER);
      let text: string | undefined;
      try {
        text = await readFile(markerPath, 'utf8');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
      if (text === undefined) {
        await this.#atomicWrite(markerPath, JSON.stringify({ format: DIR_STORE_FORMAT }));
      } else {
        let format: unknown;
        try {
          format = (JSON.parse(text) as { format?: unknown }).format;
        } catch {
          format = undefined;
        }
        if (format !== DIR_STORE_FORMAT) {
          throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `${markerPath} is not a lockstep store of format ${DIR_STORE_FORMAT}; use another directory`);
        }
      }
    } catch (err) {
      throw this.#ioError(err, `cannot open the store directory ${this.#dir}`);
    }
  }

  // ---- key-value operations ------------------------------------------------------------------

  /** {@inheritDoc ClusterStore.get} */
  async get(key: string): Promise<StoreEntry | null> {
    validateKey(key);
    return this.#op(`get ${key}`, key, async () => {
      const rec = await this.#readKey(key);
      return rec !== null && live(rec, Date.now()) ? toEntry(rec) : null;
    });
  }

  /** {@inheritDoc ClusterStore.put} */
  async put(key: string, value: JsonValue): Promise<number> {
    validateKey(key);
    const text = encodeValue(value);
    return this.#op(`put ${key}`, key, (signal) =>
      this.#locked(signal, async (rev) => {
        const cur = await this.#readKey(key);
        await this.#writeKey(nextRecord(key, JSON.parse(text) as JsonValue, cur, rev));
        return rev;
      }),
    );
  }

  /** {@inheritDoc ClusterStore.delete} */
  async delete(key: string): Promise<boolean> {
    validateKey(key);
    return this.#op(`delete ${key}`, key, (signal) =>
      this.#locked(signal, async (rev) => {
        const cur = await this.#readKey(key);
        if (cur === null || !live(cur, Date.now())) return false;
        await this.#writeKey(tombstone(cur, rev));
        return true;
      }),
    );
  }

  /** {@inheritDoc ClusterStore.list} */
  async list(prefix: string): Promise<StoreEntry[]> {
    validatePrefix(prefix);
    return this.#op(`list ${prefix}`, prefix, async () => {
      const now = Date.now();
      return (await this.#scan(prefix)).filter((r) => live(r, now)).map(toEntry);
    });
  }

  /** {@inheritDoc ClusterStore.compareAndSet} */
  async compareAndSet(key: string, expectedRevision: number | null, value: JsonValue): Promise<boolean> {
    validateKey(key);
    if (expectedRevision !== null && (!Number.isSafeInteger(expectedRevision) || expectedRevision < 1)) {
      throw new OptionError('expectedRevision', 'must be a revision (a positive integer) or null for "does not exist"');
    }
    const text = encodeValue(value);
    return this.#op(`compare-and-set ${key}`, key, (signal) =>
      this.#locked(signal, async (rev) => {
        const cur = await this.#readKey(key);
        const present = cur !== null && live(cur, Date.now());
        if (expectedRevision === null ? present : !present || cur.revision !== expectedRevision) return false;
        await this.#writeKey(nextRecord(key, JSON.parse(text) as JsonValue, cur, rev));
        return true;
      }),
    );
  }

  // ---- watch -------------------------------------------------------------------------------

  /** {@inheritDoc ClusterStore.watch} */
  async watch(prefix: string, callback: (event: WatchEvent) => void, options?: WatchOptions): Promise<Unsubscribe> {
    validatePrefix(prefix);
    if (typeof callback !== 'function') throw new OptionError('callback', 'must be a function');
    const start = await this.#op(`watch ${prefix}`, prefix, async () => {
      const rev = await this.#stableRevision();
      const now = Date.now();
      const known = new Map<string, number>();
      const expiries = new Map<string, number>();
      for (const r of await this.#scan(prefix)) {
        if (r.revision <= rev && live(r, now)) known.set(r.key, r.revision);
        if (r.lease !== undefined && r.deleted !== true) expiries.set(r.key, r.lease.expiresAt);
      }
      return { rev, known, expiries };
    });
    let last = start.rev;
    const known = start.known;
    // Expiry times of liveness keys as last read: when one passes, this watch sweeps, so that the
    // key's disappearance becomes a delete event even if no other write happens.
    let expiries = start.expiries;
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let running: Promise<void> = Promise.resolve();
    const report = (err: unknown) => {
      try {
        options?.onError?.(err instanceof Error ? err : new Error(String(err)));
      } catch {
        // An error handler that throws has nowhere left to report to.
      }
    };

    const poll = async () => {
      const now = Date.now();
      let due = false;
      for (const t of expiries.values()) if (t <= now) due = true;
      if (due) await this.#op('sweep expired keys', prefix, (signal) => this.#sweep(signal));
      const rev = await this.#stableRevision();
      if (rev <= last && !due) return;
      const records = await this.#scan(prefix);
      const seen = new Set<string>();
      const events: WatchEvent[] = [];
      const nextExpiries = new Map<string, number>();
      for (const r of records) {
        seen.add(r.key);
        if (r.lease !== undefined && r.deleted !== true) nextExpiries.set(r.key, r.lease.expiresAt);
        if (r.revision <= last || r.revision > rev) continue;
        if (r.deleted === true) {
          if (known.delete(r.key)) events.push({ type: 'delete', key: r.key, value: null, revision: r.revision });
        } else {
          known.set(r.key, r.revision);
          events.push({ type: 'put', key: r.key, value: r.value, revision: r.revision });
        }
      }
      // Deleted longer ago than the tombstones are kept: report at the current revision.
      for (const k of [...known.keys()]) {
        if (!seen.has(k)) {
          known.delete(k);
          events.push({ type: 'delete', key: k, value: null, revision: rev });
        }
      }
      expiries = nextExpiries;
      last = Math.max(last, rev);
      events.sort((a, b) => a.revision - b.revision || (a.key < b.key ? -1 : 1));
      for (const e of events) {
        if (stopped) return;
        try {
          callback(e);
        } catch (err) {
          report(err);
        }
      }
    };
    const schedule = () => {
      if (stopped) return;
      timer = setTimeout(() => {
        running = poll().catch(report).finally(schedule);
      }, this.#pollMs);
    };
    schedule();
    const unsubscribe = async () => {
      stopped = true;
      clearTimeout(timer);
      this.#closers.delete(unsubscribe);
      await running;
    };
    this.#closers.add(unsubscribe);
    return unsubscribe;
  }

  // ---- liveness ----------------------------------------------------------------------------

  /** {@inheritDoc ClusterStore.register} */
  async register(key: string, value: JsonValue, ttlMs: number): Promise<LivenessHandle> {
    validateKey(key);
    validateMs('ttlMs', ttlMs);
    const text = encodeValue(value);
    const owner = `${this.#nonce}:${randomBytes(4).toString('hex')}`;
    const started = performance.now();
    const rev = await this.#op(`register ${key}`, key, (signal) =>
      this.#locked(signal, async (rev) => {
        const cur = await this.#readKey(key);
        const rec = nextRecord(key, JSON.parse(text) as JsonValue, cur, rev);
        rec.lease = { owner, expiresAt: Date.now() + ttlMs };
        await this.#writeKey(rec);
        return rev;
      }),
    );
    const handle = new DirLiveness(key, ttlMs, String(rev), started + ttlMs, {
      refresh: () =>
        this.#op(`refresh ${key}`, key, (signal) =>
          this.#locked(signal, async () => {
            const cur = await this.#readKey(key);
            if (cur === null || !live(cur, Date.now()) || cur.lease?.owner !== owner) return false;
            await this.#writeKey({ ...cur, lease: { owner, expiresAt: Date.now() + ttlMs } });
            return true;
          }),
        ),
      revoke: () =>
        this.#op(`revoke ${key}`, key, (signal) =>
          this.#locked(signal, async (rev) => {
            const cur = await this.#readKey(key);
            if (cur !== null && live(cur, Date.now()) && cur.lease?.owner === owner) await this.#writeKey(tombstone(cur, rev));
          }),
        ),
      forget: (closer) => this.#closers.delete(closer),
    });
    this.#closers.add(handle.closer);
    return handle;
  }

  // ---- elections ---------------------------------------------------------------------------

  /** {@inheritDoc ClusterStore.campaign} */
  async campaign(election: string, candidateId: string, options?: CampaignOptions): Promise<Leadership> {
    validateName(election, 'election');
    validateName(candidateId, 'candidateId');
    const ttlMs = options?.ttlMs ?? 5_000;
    validateMs('ttlMs', ttlMs);
    this.#assertOpen();
    const owner = `${this.#nonce}:${randomBytes(4).toString('hex')}`;
    const path = join(this.#dir, 'elections', fileName(election));
    const leadership = new DirLeadership(election, candidateId, ttlMs, Math.min(this.#pollMs, ttlMs / 3), {
      // One campaign step: take the election if free or expired, renew it if ours. Resolves with
      // [token, deadline] when leader, null when another candidate leads.
      step: async () => {
        const peek = await this.#readElection(path);
        if (peek !== null && peek.owner !== owner && peek.expiresAt > Date.now()) return null;
        const started = performance.now();
        return this.#op(`campaign in ${election}`, election, (signal) =>
          this.#locked(signal, async (rev) => {
            const cur = await this.#readElection(path);
            const now = Date.now();
            if (cur !== null && cur.owner !== owner && cur.expiresAt > now) return null;
            const token = cur !== null && cur.owner === owner && cur.expiresAt > now ? cur.token : rev;
            const rec: ElectionRecord = { election, candidateId, owner, token, expiresAt: now + ttlMs };
            await this.#atomicWrite(path, JSON.stringify(rec));
            return [token, started + ttlMs] as const;
          }),
        );
      },
      resign: () =>
        this.#op(`resign from ${election}`, election, (signal) =>
          this.#locked(signal, async () => {
            const cur = await this.#readElection(path);
            if (cur !== null && cur.owner === owner) await unlinkIfThere(path);
          }),
        ),
      forget: (closer) => this.#closers.delete(closer),
    });
    this.#closers.add(leadership.closer);
    leadership.start();
    return leadership;
  }

  /** {@inheritDoc ClusterStore.leader} */
  async leader(election: string): Promise<LeaderInfo | null> {
    validateName(election, 'election');
    return this.#op(`read the leader of ${election}`, election, async () => {
      const cur = await this.#readElection(join(this.#dir, 'elections', fileName(election)));
      return cur !== null && cur.expiresAt > Date.now() ? { candidateId: cur.candidateId, token: cur.token } : null;
    });
  }

  /** {@inheritDoc ClusterStore.close} */
  async close(): Promise<void> {
    if (this.#closed) return;
    const closers = [...this.#closers];
    await Promise.allSettled(closers.map((c) => c()));
    this.#closed = true;
  }

  // ---- internals ---------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new StoreError('ERR_LOCKSTEP_STORE_CLOSED', `the store in ${this.#dir} is closed`);
  }

  async #op<T>(what: string, key: string, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.#assertOpen();
    try {
      return await withTimeout(
        this.#timeoutMs,
        () =>
          new StoreError(
            'ERR_LOCKSTEP_STORE_UNAVAILABLE',
            `${what}: no answer from the store in ${this.#dir} within ${this.#timeoutMs} ms (a process holding its lock is stuck, or the disk is); a write may still take effect`,
            { key },
          ),
        work,
      );
    } catch (err) {
      if (err instanceof StoreError || err instanceof OptionError) throw err;
      throw this.#ioError(err, what, key);
    }
  }

  #ioError(err: unknown, what: string, key?: string): StoreError {
    if (err instanceof StoreError) return err;
    const code = (err as NodeJS.ErrnoException)?.code;
    const denied = code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
    return new StoreError(
      denied ? 'ERR_LOCKSTEP_STORE_DENIED' : 'ERR_LOCKSTEP_STORE_UNAVAILABLE',
      `${what}: ${(err as Error)?.message ?? String(err)} (${denied ? 'check the permissions of' : 'check'} ${this.#dir})`,
      { cause: err, ...(key === undefined ? {} : { key }) },
    );
  }

  /** Run `fn` holding the store's lock, with the lock's generation as the revision of its writes. */
  async #locked<T>(signal: AbortSignal, fn: (rev: number) => Promise<T>): Promise<T> {
    // In-process queue first, so this process's own operations do not poll for the lock.
    const previous = this.#chain;
    let release!: () => void;
    this.#chain = new Promise<void>((r) => (release = r));
    try {
      await previous;
      const gen = await this.#acquire(signal);
      try {
        return await fn(gen);
      } finally {
        await this.#release(gen);
      }
    } finally {
      release();
    }
  }

  async #acquire(signal: AbortSignal): Promise<number> {
    let pause = 1;
    for (;;) {
      if (signal.aborted) throw new StoreError('ERR_LOCKSTEP_STORE_UNAVAILABLE', `timed out waiting for the lock of ${this.#dir}`);
      const { max, done } = await this.#generations();
      let free = max === 0 || done.has(max);
      if (!free) {
        const dead = await this.#holderDead(max);
        if (dead === 'gone') continue;
        free = dead;
      }
      if (free) {
        const g = max + 1;
        const tmp = await this.#tmpWrite(this.#me);
        let got = false;
        try {
          // link(2) creates gen/<g> complete or not at all, and fails with EEXIST if it exists.
          await link(tmp, this.#genPath(g));
          got = true;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        } finally {
          await unlinkIfThere(tmp);
        }
        if (got) {
          const after = await this.#generations();
          if (after.max === g) {
            await this.#cleanGenerations(after.all, g);
            return g;
          }
          await unlinkIfThere(this.#genPath(g));
        }
        continue;
      }
      await sleep(pause, signal);
      pause = Math.min(pause * 2, 16);
    }
  }

  async #release(g: number): Promise<void> {
    // The .done file publishes every write made under g (see the layout comment).
    await writeFile(`${this.#genPath(g)}.done`, '');
  }

  async #cleanGenerations(all: number[], g: number): Promise<void> {
    for (const k of all) {
      if (k >= g - 1) continue;
      await unlinkIfThere(`${this.#genPath(k)}.done`);
      await unlinkIfThere(this.#genPath(k));
    }
  }

  #genPath(g: number): string {
    return join(this.#dir, 'gen', String(g));
  }

  async #generations(): Promise<{ max: number; done: Set<number>; all: number[] }> {
    const names = await readdir(join(this.#dir, 'gen'));
    let max = 0;
    const done = new Set<number>();
    const all: number[] = [];
    for (const name of names) {
      const m = /^([1-9][0-9]*)(\.done)?$/.exec(name);
      if (m === null) continue;
      const g = Number(m[1]);
      if (m[2] === undefined) {
        all.push(g);
        if (g > max) max = g;
      } else {
        done.add(g);
      }
    }
    return { max, done, all };
  }

  /** Every write of a revision <= the result is complete and visible. */
  async #stableRevision(): Promise<number> {
    const { max, done } = await this.#generations();
    return done.has(max) ? max : Math.max(0, max - 1);
  }

  async #holderDead(g: number): Promise<boolean | 'gone'> {
    let holder: GenHolder;
    try {
      holder = JSON.parse(await readFile(this.#genPath(g), 'utf8')) as GenHolder;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 'gone';
      // Not readable as ours: something else writes here; refuse to guess.
      throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `lock generation ${this.#genPath(g)} cannot be read: ${(err as Error).message}`);
    }
    if (holder.host !== hostname()) return false; // another machine: cannot tell; see the class comment
    if (holder.boot !== null && BOOT_ID !== null && holder.boot !== BOOT_ID) return true;
    if (holder.pid === process.pid) return false;
    try {
      process.kill(holder.pid, 0);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
    }
    // The pid lives; if it is another process that reused the pid, its start time differs.
    return holder.start !== null && processStart(holder.pid) !== holder.start;
  }

  async #readKey(key: string): Promise<KeyRecord | null> {
    return this.#readRecord(join(this.#dir, 'data', fileName(key)), key);
  }

  async #readRecord(path: string, key?: string): Promise<KeyRecord | null> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    let rec: KeyRecord;
    try {
      rec = JSON.parse(text) as KeyRecord;
    } catch {
      throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `${path} is not a store record; remove it by hand`, key === undefined ? undefined : { key });
    }
    if (typeof rec?.key !== 'string' || !Number.isSafeInteger(rec.revision) || (key !== undefined && rec.key !== key)) {
      throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `${path} is not a store record of ${key ?? 'a key'}; remove it by hand`, key === undefined ? undefined : { key });
    }
    return rec;
  }

  async #readElection(path: string): Promise<ElectionRecord | null> {
    let text: string;
    try {
      text = await readFile(path, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    try {
      return JSON.parse(text) as ElectionRecord;
    } catch {
      throw new StoreError('ERR_LOCKSTEP_STORE_CORRUPT', `${path} is not an election record; remove it by hand`);
    }
  }

  /** All records (tombstones too) whose key starts with `prefix`, sorted by key. */
  async #scan(prefix: string): Promise<KeyRecord[]> {
    const dataDir = join(this.#dir, 'data');
    const out: KeyRecord[] = [];
    for (const name of await readdir(dataDir)) {
      const rec = await this.#readRecord(join(dataDir, name));
      if (rec !== null && rec.key.startsWith(prefix)) out.push(rec);
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  async #writeKey(rec: KeyRecord): Promise<void> {
    await this.#atomicWrite(join(this.#dir, 'data', fileName(rec.key)), JSON.stringify(rec));
  }

  /** Tombstone expired liveness keys, forget old tombstones and dead processes' temp files. */
  async #sweep(signal: AbortSignal): Promise<void> {
    await this.#locked(signal, async (rev) => {
      const now = Date.now();
      const dataDir = join(this.#dir, 'data');
      for (const rec of await this.#scan('')) {
        if (rec.deleted === true) {
          if ((rec.deletedAt ?? 0) < now - this.#retentionMs) await unlinkIfThere(join(dataDir, fileName(rec.key)));
        } else if (rec.lease !== undefined && rec.lease.expiresAt <= now) {
          await this.#writeKey(tombstone(rec, rev));
        }
      }
      const tmpDir = join(this.#dir, 'tmp');
      for (const name of await readdir(tmpDir)) {
        const st = await stat(join(tmpDir, name)).catch(() => null);
        if (st !== null && st.mtimeMs < now - 60_000) await unlinkIfThere(join(tmpDir, name));
      }
    });
  }

  async #tmpWrite(text: string): Promise<string> {
    const path = join(this.#dir, 'tmp', `${process.pid}-${this.#nonce}-${this.#tmpCounter++}`);
    const fh = await open(path, 'wx');
    try {
      await fh.writeFile(text);
    } finally {
      await fh.close();
    }
    return path;
  }

  /** Write temp, fsync, rename over `path`, fsync the directory: readers see old or new, whole. */
  async #atomicWrite(path: string, text: string): Promise<void> {
    const tmp = join(this.#dir, 'tmp', `${process.pid}-${this.#nonce}-${this.#tmpCounter++}`);
    const fh = await open(tmp, 'wx');
    try {
      await fh.writeFile(text);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    const dir = await open(join(path, '..'), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}

/** Liveness handle of the directory store: a timer renews the key's expiry every ttl/3. */
class DirLiveness extends EventEmitter implements LivenessHandle {
  readonly key: string;
  readonly ttlMs: number;
  readonly token: string;
  readonly closer: () => Promise<void>;
  readonly #deadline: LocalDeadline;
  readonly #ops: { refresh: () => Promise<boolean>; revoke: () => Promise<void>; forget: (c: () => Promise<void>) => void };
  #timer: NodeJS.Timeout | undefined;
  #ended = false;
  #refreshing: Promise<void> = Promise.resolve();

  constructor(
    key: string,
    ttlMs: number,
    token: string,
    deadline: number,
    ops: { refresh: () => Promise<boolean>; revoke: () => Promise<void>; forget: (c: () => Promise<void>) => void },
  ) {
    super();
    this.key = key;
    this.ttlMs = ttlMs;
    this.token = token;
    this.#ops = ops;
    this.#deadline = new LocalDeadline(() => this.#lose(`not renewed within its TTL of ${ttlMs} ms`));
    this.#deadline.extend(deadline);
    this.closer = () => this.revoke();
    this.#schedule();
  }

  get held(): boolean {
    return !this.#ended && this.#deadline.valid;
  }

  get deadline(): number {
    return this.#deadline.at;
  }

  async revoke(): Promise<void> {
    if (this.#ended) return;
    this.#end();
    await this.#refreshing;
    await this.#ops.revoke();
  }

  #schedule(): void {
    if (this.#ended) return;
    this.#timer = setTimeout(() => {
      const started = performance.now();
      this.#refreshing = this.#ops.refresh().then(
        (ok) => {
          if (this.#ended) return;
          if (ok) this.#deadline.extend(started + this.ttlMs);
          else this.#lose('the key was deleted or taken over (it had expired)');
        },
        () => {
          // Not renewed this time; the local deadline decides when that means lost.
        },
      ).finally(() => this.#schedule());
    }, this.ttlMs / 3);
  }

  #lose(why: string): void {
    if (this.#ended) return;
    this.#end();
    this.emit('lost', new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `liveness key ${this.key} lost: ${why}`, { key: this.key }));
  }

  #end(): void {
    this.#ended = true;
    clearTimeout(this.#timer);
    this.#deadline.stop();
    this.#ops.forget(this.closer);
  }
}

type CampaignStep = () => Promise<readonly [number, number] | null>;

/** Leadership handle of the directory store: polls the election record, renews it while leader. */
class DirLeadership extends LeadershipBase implements Leadership {
  readonly closer: () => Promise<void>;
  readonly #ttlMs: number;
  readonly #followerPollMs: number;
  readonly #ops: { step: CampaignStep; resign: () => Promise<void>; forget: (c: () => Promise<void>) => void };
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> = Promise.resolve();

  constructor(
    election: string,
    candidateId: string,
    ttlMs: number,
    followerPollMs: number,
    ops: { step: CampaignStep; resign: () => Promise<void>; forget: (c: () => Promise<void>) => void },
  ) {
    super(election, candidateId);
    this.#ttlMs = ttlMs;
    this.#followerPollMs = followerPollMs;
    this.#ops = ops;
    this.closer = () => this.resign();
  }

  start(): void {
    this.#tick(0);
  }

  async resign(): Promise<void> {
    if (this.resigned) return;
    this.markResigned();
    clearTimeout(this.#timer);
    this.#ops.forget(this.closer);
    await this.#running;
    // Delete the election record if it is ours, so another candidate need not wait for its expiry.
    await this.#ops.resign();
  }

  #tick(delay: number): void {
    if (this.resigned) return;
    this.#timer = setTimeout(() => {
      this.#running = this.#ops.step().then(
        (r) => {
          if (this.resigned) return;
          if (r === null) {
            if (this.token !== null) this.lose(new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `another candidate took over ${this.election}`, { key: this.election }));
          } else if (this.isLeader && this.token === r[0]) {
            this.renew(r[1]);
          } else {
            this.gain(r[0], r[1]);
          }
        },
        (err: unknown) => {
          if (!this.resigned && this.listenerCount('error') > 0) this.emit('error', err);
        },
      ).finally(() => this.#tick(this.isLeader ? this.#ttlMs / 3 : this.#followerPollMs));
    }, delay);
  }
}

function live(rec: KeyRecord, now: number): boolean {
  return rec.deleted !== true && (rec.lease === undefined || rec.lease.expiresAt > now);
}

function toEntry(rec: KeyRecord): StoreEntry {
  return { key: rec.key, value: rec.value, revision: rec.revision, createRevision: rec.createRevision };
}

function nextRecord(key: string, value: JsonValue, cur: KeyRecord | null, rev: number): KeyRecord {
  const keep = cur !== null && live(cur, Date.now());
  return { key, value, revision: rev, createRevision: keep ? cur.createRevision : rev };
}

function tombstone(cur: KeyRecord, rev: number): KeyRecord {
  return { key: cur.key, value: null, revision: rev, createRevision: cur.createRevision, deleted: true, deletedAt: Date.now() };
}

/** A file name for a key or election name: readable when short, a hash when the escaped form is too long. */
function fileName(key: string): string {
  const escaped = encodeURIComponent(key).replace(/[!'()*~]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
  return escaped.length <= 200 ? `k${escaped}` : `h${createHash('sha256').update(key).digest('hex')}`;
}

async function unlinkIfThere(path: string): Promise<void> {
  try {
    await unlink(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

function readProc(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return null;
  }
}

/** A process's start time in clock ticks since boot (Linux), to tell a reused pid; null elsewhere. */
function processStart(pid: number): string | null {
  const stat = readProc(`/proc/${pid}/stat`);
  if (stat === null) return null;
  // Field 22; the command name (field 2) is in parentheses and may contain spaces.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return fields[19] ?? null;
}
