// Keeps one liveness key of the store holding the latest value of a record. The store's liveness keys
// cannot be rewritten in place (an etcd put without the lease would detach the key from it), so each
// update registers the key again — a new lease carrying the new value, one atomic write for readers —
// and then revokes the previous registration, which no longer owns the key.
import type { ClusterStore, JsonValue, LivenessHandle } from '../store/store.js';

/** Publishes the latest value of one record as a liveness key; updates are coalesced. */
export class RecordPublisher {
  readonly key: string;
  readonly #store: ClusterStore;
  readonly #ttlMs: number;
  readonly #onError: (err: Error) => void;
  #latest: JsonValue | undefined;
  #dirty = false;
  #running: Promise<void> | undefined;
  #handle: LivenessHandle | undefined;
  #closed = false;
  #published = 0;
  #lostDeadline = 0;

  constructor(store: ClusterStore, key: string, ttlMs: number, onError: (err: Error) => void) {
    this.#store = store;
    this.key = key;
    this.#ttlMs = ttlMs;
    this.#onError = onError;
  }

  /** `performance.now()` of the last successful publication (0: never). */
  get publishedAt(): number {
    return this.#published;
  }

  /**
   * Until when (`performance.now()` ms) the key is surely held by the store: renewals move it on; it
   * stays in the past while the store cannot be reached. 0 before the first publication.
   */
  get deadline(): number {
    return this.#handle?.deadline ?? this.#lostDeadline;
  }

  /** Publish `value` (soon; a later update supersedes one not yet written). */
  update(value: JsonValue): void {
    if (this.#closed) return;
    this.#latest = value;
    this.#dirty = true;
    this.#running ??= this.#loop().finally(() => (this.#running = undefined));
  }

  /** Resolves when every update so far has been written (or given up on because of close()). */
  async flush(): Promise<void> {
    while (this.#running !== undefined) await this.#running;
  }

  /** Stop publishing and delete the key. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#running;
    const h = this.#handle;
    this.#handle = undefined;
    await h?.revoke().catch((err: unknown) => this.#onError(err as Error));
  }

  async #loop(): Promise<void> {
    let pause = 100;
    while (this.#dirty && !this.#closed) {
      this.#dirty = false;
      const value = this.#latest!;
      try {
        const h = await this.#store.register(this.key, value, this.#ttlMs);
        if (this.#closed) {
          await h.revoke();
          break;
        }
        const old = this.#handle;
        this.#handle = h;
        this.#published = performance.now();
        // Lost (not renewed in time, e.g. the store was unreachable): write it again while we live.
        h.once('lost', () => {
          if (this.#handle === h) {
            this.#lostDeadline = h.deadline;
            this.#handle = undefined;
            if (this.#latest !== undefined) this.update(this.#latest);
          }
        });
        // The key belongs to the new registration now: revoking the old one leaves it in place.
        await old?.revoke().catch(() => undefined);
        pause = 100;
      } catch (err) {
        this.#onError(err as Error);
        this.#dirty = true;
        await new Promise((r) => setTimeout(r, pause));
        pause = Math.min(pause * 2, 2_000);
      }
    }
  }
}
