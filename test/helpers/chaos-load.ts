// The client side of the chaos harness (chaos.ts): an `incr` load whose counters prove exactly-once
// (every acknowledged increment applied once, none twice), a clock of acknowledgements for outages,
// and a prober that catches two sides of one VM answering at once. Talks memcached-UDP only.
import { performance } from 'node:perf_hooks';
import { ClientError, KvClient, type Endpoint } from '../../src/client/index.js';
import { prng } from '../cpu/prng.js';

/** What one counter saw: increments sent, acknowledged, of unknown outcome, and the values answered. */
export interface CounterTally {
  key: string;
  sent: number;
  acknowledged: number;
  /** Increments that ended without an answer after every retry: applied once or not at all. */
  unknown: number;
  /** Increments the server refused (an error reply): not applied. */
  refused: number;
  /** Acknowledged increments answered NOT_FOUND: the counter itself was gone. */
  notFound: number;
  /** Acknowledged answers equal to an earlier acknowledged answer of the same counter. */
  duplicateAnswers: number;
  /**
   * Acknowledged answers not above an answer acknowledged before the increment was sent: an
   * acknowledged increment was not seen by a later one (it was lost, or another side answered).
   */
  rollbacks: number;
}

/** The verdict on one counter after the final read. */
export interface CounterVerdict extends CounterTally {
  /** The value read at the end (`null`: the key is missing). */
  final: string | null;
  /** Acknowledged increments missing from the final value. */
  lost: number;
  /** Increments applied beyond those acknowledged plus those of unknown outcome. */
  appliedTwice: number;
}

/** Per-request options of the load's clients: a retry every `timeoutMs`, the same request id each time. */
export interface RetryPolicy {
  timeoutMs: number;
  retries: number;
}

/**
 * Logical clients (one socket each) doing `incr <counter> 1` on seeded random counters, with retries
 * that resend the same datagram. The counters start at 0 (set by {@link CounterLoad.init}); at the
 * end, {@link CounterLoad.verify} reads each and compares it with what the clients were told.
 */
export class CounterLoad {
  readonly #endpoints: readonly Endpoint[];
  readonly #clients: KvClient[];
  readonly #tally: CounterTally[];
  readonly #seed: number;
  readonly #onAck: () => void;
  /** Per counter: answers acknowledged so far (as decimal text), and the highest one. */
  readonly #answers: Set<string>[];
  readonly #highest: bigint[];
  #stopped = false;
  #running: Promise<void> | undefined;

  constructor(o: { endpoints: readonly Endpoint[]; clients: number; counters: number; seed: number; retry: RetryPolicy; onAck: () => void }) {
    this.#endpoints = o.endpoints;
    this.#seed = o.seed;
    this.#onAck = o.onAck;
    this.#tally = Array.from({ length: o.counters }, (_, i) => ({ key: `chaos:counter:${i}`, sent: 0, acknowledged: 0, unknown: 0, refused: 0, notFound: 0, duplicateAnswers: 0, rollbacks: 0 }));
    this.#answers = this.#tally.map(() => new Set<string>());
    this.#highest = this.#tally.map(() => -1n);
    this.#clients = Array.from(
      { length: o.clients },
      () => new KvClient({ endpoints: o.endpoints, timeoutMs: o.retry.timeoutMs, retries: o.retry.retries, backoff: { initialMs: 0, maxMs: 0 } }),
    );
  }

  /** Sets every counter to 0 (before any fault, so a missing counter later means a lost write). */
  async init(): Promise<void> {
    const c = new KvClient({ endpoints: this.#endpoints, timeoutMs: 200, retries: 50 });
    try {
      for (const t of this.#tally) {
        const r = await c.set(t.key, '0');
        if (r !== 'stored') throw new Error(`chaos: set ${t.key} 0 answered ${r}`);
      }
    } finally {
      await c.close();
    }
  }

  /** Starts the clients; they run until {@link CounterLoad.stop}. */
  start(): void {
    this.#running = Promise.all(this.#clients.map((c, i) => this.#client(c, prng((this.#seed + Math.imul(i + 1, 0x9e3779b1)) >>> 0)))).then(() => undefined);
  }

  async #client(c: KvClient, random: () => number): Promise<void> {
    while (!this.#stopped) {
      const k = Math.floor(random() * this.#tally.length);
      const t = this.#tally[k]!;
      const floor = this.#highest[k]!; // answers acknowledged before this increment was sent
      t.sent++;
      let value: bigint | null;
      try {
        value = await c.incr(t.key, 1);
      } catch (err) {
        if (err instanceof ClientError && err.code === 'ERR_LOCKSTEP_CLIENT_SERVER') t.refused++;
        else t.unknown++;
        continue;
      }
      t.acknowledged++;
      this.#onAck();
      if (value === null) {
        t.notFound++;
        continue;
      }
      const text = value.toString();
      if (this.#answers[k]!.has(text)) t.duplicateAnswers++;
      this.#answers[k]!.add(text);
      if (value <= floor) t.rollbacks++;
      if (value > this.#highest[k]!) this.#highest[k] = value;
    }
  }

  /** Lets every client finish its current increment (answered or given up), then resolves. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    await Promise.all(this.#clients.map((c) => c.close()));
  }

  /** Requests sent and acknowledged so far, over every counter. */
  get totals(): { sent: number; acknowledged: number; unknown: number; refused: number } {
    const sum = (f: (t: CounterTally) => number) => this.#tally.reduce((n, t) => n + f(t), 0);
    return { sent: sum((t) => t.sent), acknowledged: sum((t) => t.acknowledged), unknown: sum((t) => t.unknown), refused: sum((t) => t.refused) };
  }

  /**
   * Reads every counter (after {@link CounterLoad.stop}) and judges it: the value must lie between the
   * increments acknowledged and those plus the ones whose outcome the client never learned.
   */
  async verify(client: KvClient): Promise<CounterVerdict[]> {
    const out: CounterVerdict[] = [];
    for (const t of this.#tally) {
      const item = await client.get(t.key);
      const final = item === null ? null : item.value.toString();
      // A counter answered NOT_FOUND was acknowledged without being applied: lost as well.
      const applied = t.acknowledged - t.notFound;
      const n = final === null ? 0 : /^\d+$/.test(final) ? Number(final) : NaN;
      const lost = Number.isNaN(n) ? applied : Math.max(0, applied - n) + t.notFound;
      const appliedTwice = Number.isNaN(n) ? 0 : Math.max(0, n - applied - t.unknown);
      out.push({ ...t, final, lost, appliedTwice });
    }
    return out;
  }
}

/**
 * Client-visible outage around a fault: the longest gap between two acknowledgements (of any client)
 * from the last one before the fault until the window closes.
 */
export class AckClock {
  #last = performance.now();
  #open = false;
  #gap = 0;

  /** An acknowledgement arrived. */
  note(): void {
    const now = performance.now();
    if (this.#open) this.#gap = Math.max(this.#gap, now - this.#last);
    this.#last = now;
  }

  /** A fault begins: the gap from the last acknowledgement before it counts. */
  open(): void {
    this.#open = true;
    this.#gap = 0;
  }

  /** The recovery is over; returns the longest gap seen (a silence still running counts up to now). */
  close(): number {
    const gap = Math.max(this.#gap, performance.now() - this.#last);
    this.#open = false;
    return gap;
  }
}

/**
 * Asks every host slot the same question at the same moment, round after round, each on its own
 * socket with one attempt: a round in which two slots answer means two sides of the VM were releasing
 * outputs at once (split brain). A side waiting for its arbiter or fenced by the output rule stays
 * silent, so the check cannot fire on a correct failover.
 */
export class Prober {
  readonly #clients: KvClient[];
  readonly #onBoth: (slots: number[]) => void;
  #stopped = false;
  #running: Promise<void> | undefined;
  rounds = 0;

  constructor(endpoints: readonly Endpoint[], timeoutMs: number, onBoth: (slots: number[]) => void) {
    this.#clients = endpoints.map((e) => new KvClient({ endpoints: [e], timeoutMs, retries: 0 }));
    this.#onBoth = onBoth;
  }

  start(): void {
    this.#running = (async () => {
      while (!this.#stopped) {
        const answers = await Promise.allSettled(this.#clients.map((c) => c.get('chaos:probe')));
        this.rounds++;
        const slots = answers.flatMap((a, i) => (a.status === 'fulfilled' ? [i] : []));
        if (slots.length >= 2 && !this.#stopped) this.#onBoth(slots);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
    await Promise.all(this.#clients.map((c) => c.close()));
  }
}
