// Per-key write history for verifying reads of a store under concurrent writers, retries and
// fail-over. Uses a logical clock (a counter bumped at every send and every completion), never time.
//
// A read sent at s and answered at r may return the value of write W only if W was sent before r
// and W was not overwritten before s, where "W was overwritten before s" means some write W2 of the
// same key was sent after W was acknowledged and was itself acknowledged before s. A read may find
// the key missing only if no write of it had been acknowledged before s. A write that failed (no
// acknowledgement after every retry) may still have been applied, at any later time: its value stays
// allowed until a later acknowledged write overwrites it, as for an acknowledged one. Values must be
// unique per write so a read names the write it saw.
//
//   floor(key) = max send tick over the writes of key acknowledged so far; a write W is stale for a
//   read iff W.ackedAt < floor(key) as the read was sent (W2 with the max send tick is the witness).

/** A write in the history. */
export interface WriteRecord {
  readonly key: string;
  readonly value: string;
  /** Logical tick when the write was sent. */
  readonly sentAt: number;
  /** Logical tick when it was acknowledged; `undefined` while in flight or after it failed. */
  ackedAt: number | undefined;
  /** The write ended without acknowledgement (it may or may not have been applied). */
  failed: boolean;
}

/** A read in the history, from {@link RegisterHistory.beginRead}. */
export interface ReadRecord {
  readonly key: string;
  readonly sentAt: number;
  /** floor(key) when the read was sent. */
  readonly floor: number;
  /** Whether some write of the key had been acknowledged when the read was sent. */
  readonly ackedBefore: boolean;
}

/** Why a read's answer cannot be right. */
export interface ReadViolation {
  key: string;
  /** The value returned (`null` for a miss). */
  got: string | null;
  kind: 'stale' | 'unknown-value' | 'wrong-key' | 'lost';
  /** Values the read could legitimately have returned (at most 8 shown), and whether a miss could. */
  allowed: string[];
  missAllowed: boolean;
  message: string;
}

interface KeyState {
  floor: number;
  acknowledged: number;
  /** Writes that are not yet known stale, by value. */
  live: Map<string, WriteRecord>;
}

/** The write history of every key, and the check of a read against it. */
export class RegisterHistory {
  #tick = 0;
  readonly #keys = new Map<string, KeyState>();
  /** Every write ever begun, by value: names stale and misplaced values precisely. */
  readonly #byValue = new Map<string, WriteRecord>();

  #state(key: string): KeyState {
    let s = this.#keys.get(key);
    if (s === undefined) {
      s = { floor: 0, acknowledged: 0, live: new Map() };
      this.#keys.set(key, s);
    }
    return s;
  }

  /** Keys written or read so far. */
  keys(): IterableIterator<string> {
    return this.#keys.keys();
  }

  /** Records a write about to be sent. `value` must not have been written before (any key). */
  beginWrite(key: string, value: string): WriteRecord {
    if (this.#byValue.has(value)) throw new RangeError(`value ${JSON.stringify(value)} was already written; values must be unique per write`);
    const w: WriteRecord = { key, value, sentAt: ++this.#tick, ackedAt: undefined, failed: false };
    this.#byValue.set(value, w);
    this.#state(key).live.set(value, w);
    return w;
  }

  /** Records the acknowledgement of `w`. */
  acknowledge(w: WriteRecord): void {
    w.ackedAt = ++this.#tick;
    const s = this.#state(w.key);
    s.acknowledged++;
    if (w.sentAt > s.floor) {
      s.floor = w.sentAt;
      // Writes acknowledged before the new floor can never be read again: drop them from the live set.
      for (const [v, old] of s.live) if (old.ackedAt !== undefined && old.ackedAt < s.floor) s.live.delete(v);
    }
  }

  /** Records that `w` ended without acknowledgement: it may have been applied, so it stays allowed. */
  fail(w: WriteRecord): void {
    w.failed = true;
    ++this.#tick;
  }

  /** Records a read about to be sent. */
  beginRead(key: string): ReadRecord {
    const s = this.#state(key);
    return { key, sentAt: ++this.#tick, floor: s.floor, ackedBefore: s.acknowledged > 0 };
  }

  /** What a read sent now could return for `key`. */
  allowedNow(key: string): { values: string[]; missAllowed: boolean } {
    const s = this.#keys.get(key);
    if (s === undefined) return { values: [], missAllowed: true };
    return { values: [...s.live.keys()], missAllowed: s.acknowledged === 0 };
  }

  /** Checks the answer to read `r` (`null` for a miss); `undefined` when it is allowed. */
  checkRead(r: ReadRecord, got: string | null): ReadViolation | undefined {
    ++this.#tick;
    const s = this.#state(r.key);
    const allowed = (): string[] =>
      [...s.live.values()].filter((w) => w.ackedAt === undefined || w.ackedAt >= r.floor).map((w) => w.value).slice(0, 8);
    const violation = (kind: ReadViolation['kind'], message: string): ReadViolation => ({
      key: r.key,
      got,
      kind,
      allowed: allowed(),
      missAllowed: !r.ackedBefore,
      message,
    });
    if (got === null) {
      if (!r.ackedBefore) return undefined;
      return violation('lost', `key ${JSON.stringify(r.key)} is missing although a write of it was acknowledged before the read was sent`);
    }
    const w = this.#byValue.get(got);
    if (w === undefined) return violation('unknown-value', `key ${JSON.stringify(r.key)} returned ${JSON.stringify(short(got))}, which was never written`);
    if (w.key !== r.key) return violation('wrong-key', `key ${JSON.stringify(r.key)} returned ${JSON.stringify(short(got))}, which was written to key ${JSON.stringify(w.key)}`);
    if (w.ackedAt !== undefined && w.ackedAt < r.floor) {
      return violation('stale', `key ${JSON.stringify(r.key)} returned ${JSON.stringify(short(got))}, a value overwritten by a later acknowledged write before the read was sent`);
    }
    return undefined;
  }
}

function short(v: string): string {
  return v.length > 40 ? `${v.slice(0, 40)}…` : v;
}
