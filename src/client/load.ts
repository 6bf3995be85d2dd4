// Load generator for a memcached-UDP server: N logical clients (one socket each) run a set/get/incr
// mix, every answer is verified against the write history and every increment against its counter
// (exactly once), acknowledged writes are listed, latency goes into a histogram. It reads the clock
// only to measure latency and to stop a timed run.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { OptionError } from '../errors.js';
import { ClientError } from './errors.js';
import { LatencyHistogram, type LatencySummary } from './histogram.js';
import { RegisterHistory, type ReadViolation } from './history.js';
import { KvClient, type BackoffOptions, type Endpoint, type KvClientCounters } from './memcached-udp.js';
import { MAX_DATAGRAM_SIZE, UDP_HEADER_SIZE, keyProblem } from './protocol.js';
import { prng } from './prng.js';

/** Options of {@link LoadGenerator}. */
export interface LoadOptions {
  /** Servers, in fail-over order (every logical client gets the whole list). */
  endpoints: readonly Endpoint[];
  /** Logical clients running at once, each with its own socket and one request outstanding. Default 4. */
  clients?: number;
  /** Fraction of requests that are sets (the rest are gets), 0 … 1. Default 0.5. */
  setRatio?: number;
  /**
   * Fraction of requests that are `incr` of the logical client's own counter (`<prefix>ctr<n>`), taken
   * before the set/get choice, 0 … 1. Default 0. Every answer is checked: an increment applied twice
   * or lost shows at once (see {@link CounterSummary}).
   */
  incrRatio?: number;
  /** Number of distinct keys. Default 100. */
  keys?: number;
  /**
   * Prefix of every key (`<prefix><n>`). Default `lockstep:<runTag>:`, so runs against the same store
   * do not see each other's values (which the history would rightly flag as never written).
   */
  keyPrefix?: string;
  /** Value size in bytes, fixed or uniform in [min, max]. At least 24. Default 32. */
  valueSize?: number | { min: number; max: number };
  /** Stop after this long. At least one of `durationMs` and `requests` is required; the first reached ends the run. */
  durationMs?: number;
  /** Stop after this many requests in total (over all clients). */
  requests?: number;
  /**
   * Offered load, requests per second over all clients: each request waits for its slot of a shared
   * schedule, so two systems can be compared at the same rate (CPU per request depends on it). Default:
   * none, each client sends as soon as its previous request is answered (closed loop).
   */
  ratePerSecond?: number;
  /** Seed of the operation and key choices (same seed, same sequence per logical client). Default 1. */
  seed?: number;
  /** Interval of `progress` events. Default 1000. */
  progressIntervalMs?: number;
  /** Per-request options of every logical client. */
  timeoutMs?: number;
  retries?: number;
  backoff?: Partial<BackoffOptions>;
  /** Violation details kept in the result (all are counted). Default 100. */
  maxViolations?: number;
  /** Passed to every logical client ({@link KvClientOptions.retryWindowMs}). */
  retryWindowMs?: number;
  /** Tag in every value, making values unique across runs against the same store. Default: random. */
  runTag?: string;
}

/** A snapshot of a run in progress. */
export interface LoadProgress {
  elapsedMs: number;
  sent: number;
  acknowledged: number;
  failed: number;
  retries: number;
  violations: number;
  /** Acknowledged requests per second since the start. */
  rate: number;
  p50Ms: number;
  p99Ms: number;
}

/**
 * Exactly-once accounting of the `incr` requests. Each logical client increments its own counter by 1,
 * so each answer must be the previous value plus one, plus at most the increments whose outcome is
 * unknown (no reply after every retry: applied once or not at all) since the last answer.
 */
export interface CounterSummary {
  /** Increments answered with the new value. */
  acknowledged: number;
  /** Increments that failed (no valid answer): each may have been applied once, or not at all. */
  failed: number;
  /** Increments applied more than once: the amount by which a counter exceeded every allowed value. */
  appliedTwice: number;
  /** Acknowledged increments missing: the amount by which a counter fell below the allowed values. */
  lost: number;
  /** Counters whose final value could not be read at the end of the run. */
  unverified: number;
}

/** A write the server acknowledged. */
export interface AcknowledgedWrite {
  key: string;
  value: string;
}

/** The outcome of a run. */
export interface LoadResult {
  elapsedMs: number;
  /** Requests started. */
  sent: number;
  /** Requests that got a valid answer (STORED for a set; a hit or miss for a get). */
  acknowledged: number;
  /** Requests that ended in an error (time-out, protocol, server error, unexpected status). */
  failed: number;
  /** Attempts after the first, over all requests. */
  retries: number;
  sets: number;
  gets: number;
  hits: number;
  misses: number;
  /** Reads whose answer the history rules out. */
  violationCount: number;
  /** The first `maxViolations` of them. */
  violations: ReadViolation[];
  /** Failed requests by error code. */
  errors: Record<string, number>;
  /** Every acknowledged set, in acknowledgement order. */
  acknowledgedWrites: AcknowledgedWrite[];
  /** Latency of every completed request (acknowledged or failed), retries included. */
  latency: LatencySummary;
  histogram: LatencyHistogram;
  /** Sum of the logical clients' counters (datagrams, malformed and unexpected replies, …). */
  clientCounters: KvClientCounters;
  /** The `incr` requests and their exactly-once check (all zero without `incrRatio`). */
  increments: CounterSummary;
  /** The generator's write history (shared by its runs), for {@link verifyStore} after the run. */
  history: RegisterHistory;
}

/** Events of {@link LoadGenerator}. */
export interface LoadEvents {
  progress: [LoadProgress];
  violation: [ReadViolation];
}

const MIN_VALUE_SIZE = 24;

function integer(field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new OptionError(field, `must be an integer from ${min} to ${max}, got ${String(v)}`);
  }
  return v;
}

function zeroCounters(): KvClientCounters {
  return { requests: 0, datagramsSent: 0, retries: 0, timeouts: 0, failovers: 0, replies: 0, malformed: 0, unexpected: 0, sendErrors: 0, socketErrors: 0 };
}

/**
 * Runs a set/get load against memcached-UDP endpoints and verifies every answer.
 *
 * Values are unique per write (`<runTag>-<write number>.` padded with filler), so each get names the
 * write it saw and {@link RegisterHistory} decides whether that write could be current. Emits
 * `progress` every `progressIntervalMs` and `violation` for every read the history rules out.
 */
export class LoadGenerator extends EventEmitter<LoadEvents> {
  readonly #o: Required<Omit<LoadOptions, 'durationMs' | 'requests' | 'backoff' | 'valueSize' | 'retryWindowMs' | 'ratePerSecond'>> & {
    durationMs: number | undefined;
    requests: number | undefined;
    ratePerSecond: number | undefined;
    backoff: Partial<BackoffOptions> | undefined;
    retryWindowMs: number | undefined;
    valueMin: number;
    valueMax: number;
  };
  #stopped = false;
  #running = false;
  /** The clients of the run in progress (for abort()). */
  #clients: KvClient[] = [];
  /** Kept across runs: a later run of the same generator continues verifying the same keys. */
  readonly #history = new RegisterHistory();
  #writeNumber = 0;

  constructor(options: LoadOptions) {
    super();
    if (options === null || typeof options !== 'object') throw new OptionError('options', 'must be an object');
    const clients = integer('clients', options.clients ?? 4, 1, 10_000);
    const setRatio = options.setRatio ?? 0.5;
    if (typeof setRatio !== 'number' || !(setRatio >= 0 && setRatio <= 1)) throw new OptionError('setRatio', `must be a number from 0 to 1, got ${String(setRatio)}`);
    const incrRatio = options.incrRatio ?? 0;
    if (typeof incrRatio !== 'number' || !(incrRatio >= 0 && incrRatio <= 1)) throw new OptionError('incrRatio', `must be a number from 0 to 1, got ${String(incrRatio)}`);
    const keys = integer('keys', options.keys ?? 100, 1);
    const runTag = options.runTag ?? Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, '0');
    if (typeof runTag !== 'string' || !/^[0-9a-z]{1,8}$/.test(runTag)) throw new OptionError('runTag', `must be 1 to 8 characters of [0-9a-z], got ${JSON.stringify(runTag)}`);
    const keyPrefix = options.keyPrefix ?? `lockstep:${runTag}:`;
    const longestKey = `${keyPrefix}${keys - 1}`;
    for (const k of [longestKey, `${keyPrefix}ctr${clients - 1}`]) {
      const kp = keyProblem(k);
      if (kp !== undefined) throw new OptionError('keyPrefix', `makes key ${JSON.stringify(k)}, which ${kp}`);
    }
    const vs = options.valueSize ?? 32;
    const [valueMin, valueMax] = typeof vs === 'number' ? [vs, vs] : [vs?.min, vs?.max];
    integer('valueSize.min', valueMin, MIN_VALUE_SIZE);
    integer('valueSize.max', valueMax, valueMin as number);
    const overhead = UDP_HEADER_SIZE + Buffer.byteLength(`set ${longestKey} 0 0 ${valueMax}\r\n\r\n`);
    if ((valueMax as number) + overhead > MAX_DATAGRAM_SIZE) {
      throw new OptionError('valueSize', `max ${valueMax} does not fit one datagram with key ${JSON.stringify(longestKey)}; at most ${MAX_DATAGRAM_SIZE - overhead} bytes do`);
    }
    const durationMs = options.durationMs === undefined ? undefined : integer('durationMs', options.durationMs, 1);
    const requests = options.requests === undefined ? undefined : integer('requests', options.requests, 1);
    if (durationMs === undefined && requests === undefined) throw new OptionError('durationMs', 'or requests must be given: a run needs an end');
    const rate = options.ratePerSecond;
    if (rate !== undefined && !(typeof rate === 'number' && Number.isFinite(rate) && rate > 0)) {
      throw new OptionError('ratePerSecond', `must be a positive number of requests per second, got ${String(rate)}`);
    }
    this.#o = {
      endpoints: options.endpoints,
      clients,
      setRatio,
      incrRatio,
      keys,
      keyPrefix,
      valueMin: valueMin as number,
      valueMax: valueMax as number,
      durationMs,
      requests,
      ratePerSecond: rate,
      seed: integer('seed', options.seed ?? 1, 0, 0xffff_ffff),
      progressIntervalMs: integer('progressIntervalMs', options.progressIntervalMs ?? 1000, 1),
      timeoutMs: options.timeoutMs ?? 250,
      retries: options.retries ?? 3,
      backoff: options.backoff,
      retryWindowMs: options.retryWindowMs,
      maxViolations: integer('maxViolations', options.maxViolations ?? 100, 0),
      runTag,
    };
    // Fail on bad endpoints or client options now, not in the middle of a run.
    void new KvClient(this.#clientOptions()).close();
  }

  #clientOptions(): ConstructorParameters<typeof KvClient>[0] {
    const o = this.#o;
    return {
      endpoints: o.endpoints,
      timeoutMs: o.timeoutMs,
      retries: o.retries,
      ...(o.backoff === undefined ? {} : { backoff: o.backoff }),
      ...(o.retryWindowMs === undefined ? {} : { retryWindowMs: o.retryWindowMs }),
    };
  }

  /** Ends a run early: every logical client finishes its current request, then `run()` resolves. */
  stop(): void {
    this.#stopped = true;
  }

  /**
   * Ends a run at once, for a server known to be gone: unlike {@link stop}, the requests in flight are
   * not waited for (against a server that never answers, each would retry for `timeoutMs` × `retries`):
   * the run's clients are closed, so those requests fail with `ERR_LOCKSTEP_CLIENT_CLOSED` (counted in
   * `failed`, their writes kept as possibly applied) and the counters left unverified; then `run()`
   * resolves.
   */
  abort(): void {
    this.#stopped = true;
    for (const c of this.#clients) void c.close();
  }

  /**
   * Runs the load to its end (duration, request count or `stop()`). One run per generator at a time;
   * a later run continues the same write history (counters and acknowledged writes are per run).
   */
  async run(): Promise<LoadResult> {
    if (this.#running) throw new ClientError('ERR_LOCKSTEP_CLIENT_REQUEST_INVALID', 'a run is already in progress on this generator', { field: 'run' });
    this.#running = true;
    this.#stopped = false;
    const o = this.#o;
    const history = this.#history;
    const histogram = new LatencyHistogram();
    const acknowledgedWrites: AcknowledgedWrite[] = [];
    const violations: ReadViolation[] = [];
    const errors: Record<string, number> = {};
    const r = { sent: 0, acknowledged: 0, failed: 0, sets: 0, gets: 0, hits: 0, misses: 0, violationCount: 0 };
    const clients = Array.from({ length: o.clients }, () => new KvClient(this.#clientOptions()));
    this.#clients = clients;
    const start = performance.now();
    const deadline = o.durationMs === undefined ? Infinity : start + o.durationMs;
    const retriesNow = (): number => clients.reduce((n, c) => n + c.counters.retries, 0);
    const progress = (): LoadProgress => {
      const elapsedMs = performance.now() - start;
      return {
        elapsedMs,
        sent: r.sent,
        acknowledged: r.acknowledged,
        failed: r.failed,
        retries: retriesNow(),
        violations: r.violationCount,
        rate: elapsedMs > 0 ? (r.acknowledged * 1000) / elapsedMs : 0,
        p50Ms: histogram.percentile(50),
        p99Ms: histogram.percentile(99),
      };
    };
    const ticker = setInterval(() => this.emit('progress', progress()), o.progressIntervalMs);
    ticker.unref();

    const claim = (): boolean => {
      if (this.#stopped || performance.now() >= deadline) return false;
      if (o.requests !== undefined && r.sent >= o.requests) return false;
      r.sent++;
      return true;
    };
    const makeValue = (random: () => number): string => {
      const size = o.valueMin + Math.floor(random() * (o.valueMax - o.valueMin + 1));
      const tag = `${o.runTag}-${(this.#writeNumber++).toString(36)}.`;
      // Filler repeats the tag so a value cut or shifted by a server bug does not look like another value.
      return tag.repeat(Math.ceil(size / tag.length)).slice(0, size);
    };
    const failedWith = (err: unknown): void => {
      r.failed++;
      const code = err instanceof ClientError ? err.code : err instanceof Error ? err.name : 'unknown';
      errors[code] = (errors[code] ?? 0) + 1;
    };

    const increments: CounterSummary = { acknowledged: 0, failed: 0, appliedTwice: 0, lost: 0, unverified: 0 };
    /** Judges a counter's value against [expected + step, expected + step + uncertain], then trusts it. */
    const judge = (c: { expected: bigint; uncertain: bigint }, value: bigint, step: bigint): void => {
      const lo = c.expected + step;
      const hi = lo + c.uncertain;
      if (value < lo) increments.lost += Number(lo - value);
      if (value > hi) increments.appliedTwice += Number(value - hi);
      c.expected = value;
      c.uncertain = 0n;
    };

    const logical = async (index: number, client: KvClient): Promise<void> => {
      const random = prng((o.seed + Math.imul(index + 1, 0x9e3779b1)) >>> 0);
      const counterKey = `${o.keyPrefix}ctr${index}`;
      // The counter's last known value and the increments since whose outcome is unknown; undefined
      // until a set to 0 was acknowledged.
      let counter: { expected: bigint; uncertain: bigint } | undefined;
      while (claim()) {
        if (o.ratePerSecond !== undefined) {
          // This request's slot: the schedule is shared, so a client answered late does not lower the rate.
          // Timers have whole-millisecond resolution and may fire up to a millisecond early against
          // performance.now(), so wait again until the slot has really come.
          const slot = start + ((r.sent - 1) * 1000) / o.ratePerSecond;
          for (let wait = slot - performance.now(); wait > 0; wait = slot - performance.now()) {
            await new Promise((res) => setTimeout(res, Math.ceil(wait)));
          }
        }
        if (o.incrRatio > 0 && random() < o.incrRatio) {
          const t0 = performance.now();
          try {
            if (counter === undefined) {
              const status = await client.set(counterKey, '0');
              if (status !== 'stored') throw new ClientError('ERR_LOCKSTEP_CLIENT_PROTOCOL', `set ${counterKey} answered ${status}`);
              counter = { expected: 0n, uncertain: 0n };
              r.acknowledged++;
            } else {
              const value = await client.incr(counterKey, 1);
              increments.acknowledged++;
              r.acknowledged++;
              if (value === null) {
                increments.lost += Number(counter.expected); // the counter itself is gone
                counter = undefined;
              } else {
                judge(counter, value, 1n);
              }
            }
          } catch (err) {
            if (counter !== undefined) {
              increments.failed++;
              counter.uncertain++;
            }
            failedWith(err);
          }
          histogram.record(performance.now() - t0);
          continue;
        }
        const key = `${o.keyPrefix}${Math.floor(random() * o.keys)}`;
        const isSet = random() < o.setRatio;
        const t0 = performance.now();
        if (isSet) {
          r.sets++;
          const value = makeValue(random);
          const w = history.beginWrite(key, value);
          try {
            const status = await client.set(key, value);
            if (status === 'stored') {
              history.acknowledge(w);
              r.acknowledged++;
              acknowledgedWrites.push({ key, value });
            } else {
              history.fail(w);
              failedWith(new ClientError('ERR_LOCKSTEP_CLIENT_PROTOCOL', `set ${key} answered ${status}`));
            }
          } catch (err) {
            history.fail(w);
            failedWith(err);
          }
        } else {
          r.gets++;
          const read = history.beginRead(key);
          try {
            const item = await client.get(key);
            r.acknowledged++;
            if (item === null) r.misses++;
            else r.hits++;
            const violation = history.checkRead(read, item === null ? null : item.value.toString('latin1'));
            if (violation !== undefined) {
              r.violationCount++;
              if (violations.length < o.maxViolations) violations.push(violation);
              this.emit('violation', violation);
            }
          } catch (err) {
            failedWith(err);
          }
        }
        histogram.record(performance.now() - t0);
      }
      if (counter !== undefined) {
        try {
          const item = await client.get(counterKey);
          const text = item?.value.toString('latin1');
          if (text === undefined || !/^[0-9]{1,20}$/.test(text)) increments.lost += Number(counter.expected);
          else judge(counter, BigInt(text), 0n);
        } catch {
          increments.unverified++;
        }
      }
    };

    try {
      await Promise.all(clients.map((c, i) => logical(i, c)));
    } finally {
      clearInterval(ticker);
      this.#running = false;
      this.#clients = [];
    }
    const last = progress();
    this.emit('progress', last);
    const clientCounters = zeroCounters();
    for (const c of clients) {
      const k = c.counters;
      for (const name of Object.keys(clientCounters) as (keyof KvClientCounters)[]) clientCounters[name] += k[name];
    }
    await Promise.all(clients.map((c) => c.close()));
    return {
      elapsedMs: last.elapsedMs,
      ...r,
      retries: clientCounters.retries,
      violations,
      errors,
      acknowledgedWrites,
      latency: histogram.summary(),
      histogram,
      clientCounters,
      increments,
      history,
    };
  }
}

/**
 * Reads every key of `history` through `client` and checks each answer as a read sent now: after a
 * run (or a server restart) every acknowledged write must still be visible unless a later write
 * replaced it. Returns the violations (empty when the store is consistent) and the number of keys read.
 */
export async function verifyStore(client: KvClient, history: RegisterHistory): Promise<{ keys: number; violations: ReadViolation[] }> {
  const violations: ReadViolation[] = [];
  let keys = 0;
  for (const key of [...history.keys()]) {
    const read = history.beginRead(key);
    const item = await client.get(key);
    keys++;
    const v = history.checkRead(read, item === null ? null : item.value.toString('latin1'));
    if (v !== undefined) violations.push(v);
  }
  return { keys, violations };
}
