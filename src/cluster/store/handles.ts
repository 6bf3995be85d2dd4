// Pieces both stores' liveness and leadership handles share: the local deadline (lease loss can be
// noticed late, so a handle stops trusting its lease on its own clock) and the leadership events.
import { EventEmitter } from 'node:events';
import { performance } from 'node:perf_hooks';
import { StoreError } from './store.js';

/**
 * A deadline on the monotonic clock that only moves forward and calls `onExpire` once when it
 * passes without having been extended.
 */
export class LocalDeadline {
  #at = -Infinity;
  #timer: NodeJS.Timeout | undefined;
  readonly #onExpire: () => void;
  #stopped = false;

  constructor(onExpire: () => void) {
    this.#onExpire = onExpire;
  }

  /** The deadline in `performance.now()` ms (`-Infinity` before the first extension). */
  get at(): number {
    return this.#at;
  }

  /** Whether the deadline is in the future. */
  get valid(): boolean {
    return !this.#stopped && performance.now() < this.#at;
  }

  /** Move the deadline to `at` if that is later; (re)arm the expiry timer. */
  extend(at: number): void {
    if (this.#stopped || at <= this.#at) return;
    this.#at = at;
    this.#arm();
  }

  /** Forget the deadline without calling `onExpire`. */
  stop(): void {
    this.#stopped = true;
    this.#at = -Infinity;
    clearTimeout(this.#timer);
  }

  /** Forget the deadline and allow extending it again later (a new lease). */
  reset(): void {
    clearTimeout(this.#timer);
    this.#at = -Infinity;
    this.#stopped = false;
  }

  #arm(): void {
    clearTimeout(this.#timer);
    // +1 ms: setTimeout may fire a hair early relative to performance.now().
    this.#timer = setTimeout(() => this.#check(), Math.max(0, this.#at - performance.now()) + 1);
    this.#timer.unref();
  }

  #check(): void {
    if (this.#stopped) return;
    if (performance.now() < this.#at) return this.#arm();
    this.#onExpire();
  }
}

/**
 * Leadership state and events common to both stores; a store drives it with `gain`, `renew`
 * and `lose`.
 * @internal
 */
export class LeadershipBase extends EventEmitter {
  readonly election: string;
  readonly candidateId: string;
  #token: number | null = null;
  readonly #deadline: LocalDeadline;
  protected resigned = false;

  constructor(election: string, candidateId: string) {
    super();
    this.election = election;
    this.candidateId = candidateId;
    this.#deadline = new LocalDeadline(() =>
      this.lose(new StoreError('ERR_LOCKSTEP_STORE_LEASE_LOST', `leadership of ${election} not renewed before its local deadline`, { key: election })),
    );
  }

  get isLeader(): boolean {
    return this.#token !== null && this.#deadline.valid;
  }

  get token(): number | null {
    return this.isLeader ? this.#token : null;
  }

  get deadline(): number {
    return this.#token === null ? -Infinity : this.#deadline.at;
  }

  elected(timeoutMs: number): Promise<number> {
    if (this.isLeader) return Promise.resolve(this.#token!);
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this.off('elected', onElected);
        this.off('resigned', onResigned);
      };
      const onElected = (token: number) => {
        done();
        resolve(token);
      };
      const onResigned = () => {
        done();
        reject(new StoreError('ERR_LOCKSTEP_STORE_CLOSED', `${this.candidateId} resigned from ${this.election} before being elected`, { key: this.election }));
      };
      const timer = setTimeout(() => {
        done();
        reject(new StoreError('ERR_LOCKSTEP_STORE_UNAVAILABLE', `${this.candidateId} was not elected leader of ${this.election} within ${timeoutMs} ms`, { key: this.election }));
      }, timeoutMs);
      this.on('elected', onElected);
      this.on('resigned', onResigned);
    });
  }

  /** Became leader with `token`, sure of it until `deadline`. */
  protected gain(token: number, deadline: number): void {
    if (this.resigned) return;
    const was = this.isLeader;
    this.#deadline.reset();
    this.#token = token;
    this.#deadline.extend(deadline);
    if (!was) this.emit('elected', token);
  }

  /** Still leader, sure of it until `deadline`. */
  protected renew(deadline: number): void {
    if (this.#token !== null) this.#deadline.extend(deadline);
  }

  /** No longer leader (emits `lost` if it was). */
  protected lose(err: StoreError): void {
    const was = this.#token !== null;
    this.#token = null;
    this.#deadline.reset();
    if (was && !this.resigned) this.emit('lost', err);
  }

  /** Stop for good. */
  protected markResigned(): void {
    this.resigned = true;
    this.#token = null;
    this.#deadline.stop();
    this.emit('resigned');
  }
}
