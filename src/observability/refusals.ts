// Refused connections and requests, counted and logged without letting a flood become a flood of log
// lines: the first few of a burst in full, the rest as one summary line per interval.
import { performance } from 'node:perf_hooks';

/** Options of a {@link RefusalLog}. */
export interface RefusalLogOptions {
  /** What refuses, for the lines: `logging channel`, `operations API`. */
  what: string;
  /** Receives each line (without a newline). */
  log: (line: string) => void;
  /** Refusals of a burst written in full before summarising (default 5). */
  firstInFull?: number;
  /** The rest of a burst is summarised once per this many ms (default 10 000). */
  summaryEveryMs?: number;
}

/**
 * Counts refusals and writes at most `firstInFull` lines per interval plus one summary: a 3 000-connection
 * flood costs a handful of lines. The summary comes from a timer (unref'd) or {@link flush}.
 *
 * ```ts
 * const refusals = new RefusalLog({ what: 'logging channel', log: (l) => emit('warning', l) });
 * server.on('rejected', (reason, remote) => refusals.refused(remote, reason));
 * ```
 */
export class RefusalLog {
  readonly #o: Required<RefusalLogOptions>;
  #total = 0;
  #inWindow = 0;
  #windowStart = 0;
  #suppressed = 0;
  #suppressedFrom = new Set<string>();
  #lastReason = '';
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(options: RefusalLogOptions) {
    this.#o = { firstInFull: 5, summaryEveryMs: 10_000, ...options };
  }

  /** Refusals since creation. */
  get total(): number {
    return this.#total;
  }

  /** Refusals counted but not yet written in a summary. */
  get pending(): number {
    return this.#suppressed;
  }

  /** One refusal: of `remote` (an address), because of `reason`. */
  refused(remote: string, reason: string): void {
    this.#total++;
    const now = performance.now();
    if (now - this.#windowStart >= this.#o.summaryEveryMs && this.#suppressed === 0) {
      this.#windowStart = now;
      this.#inWindow = 0;
    }
    if (this.#inWindow < this.#o.firstInFull) {
      this.#inWindow++;
      this.#o.log(`${this.#o.what}: refused ${remote}: ${reason}`);
      return;
    }
    this.#suppressed++;
    if (this.#suppressedFrom.size < 1000) this.#suppressedFrom.add(remote.replace(/:\d+$/, ''));
    this.#lastReason = reason;
    if (this.#timer === undefined && !this.#closed) {
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.flush();
      }, Math.max(0, this.#o.summaryEveryMs - (now - this.#windowStart)));
      this.#timer.unref();
    }
  }

  /** Writes the summary of the refusals not yet written (if any) and starts a new interval. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#suppressed > 0) {
      const hosts = this.#suppressedFrom.size >= 1000 ? '1000 or more addresses' : `${this.#suppressedFrom.size} address${this.#suppressedFrom.size === 1 ? '' : 'es'}`;
      this.#o.log(`${this.#o.what}: refused ${this.#suppressed} more connection${this.#suppressed === 1 ? '' : 's'} from ${hosts} (${this.#total} in all; the last: ${this.#lastReason})`);
    }
    this.#suppressed = 0;
    this.#suppressedFrom = new Set();
    this.#windowStart = performance.now();
    this.#inWindow = 0;
  }

  /** Writes what is pending and stops the timer. */
  close(): void {
    this.#closed = true;
    this.flush();
  }
}
