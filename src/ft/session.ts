// The primary's state of one secondary: its channel, failure detector, log stream and clone. Made when a
// secondary joins and dropped when it is lost, so nothing of one secondary leaks into the next.
import { performance } from 'node:perf_hooks';
import type { ReplicationLink } from '../machine/replication-port.js';
import { CLOSE_LINGER_MS, type Channel } from '../protocol/channel.js';
import { encodeMessage, type Message } from '../protocol/messages.js';
import { FailureDetector } from './control.js';

/** What a finished clone sent (the primary's `cloned` event adds the total time). */
export interface CloneFigures {
  rounds: number;
  pages: number;
  bytes: number;
  /** The guest was stopped this long for the final copy, ms. */
  pauseMs: number;
}

/**
 * One secondary as the primary sees it, from its join to its loss.
 *
 * ```
 *  join ──▶ clone (queued batches wait) ──clone-final──▶ stream: sent ─ack─▶ acked ─release─▶ released
 * ```
 *
 * After the clone the connection usually moves to a native link (`link`): the log and its ACKs then
 * never pass through JavaScript, and {@link send} / {@link close} go through the link.
 */
export class SecondarySession {
  readonly channel: Channel;
  /** The native data path, once the channel was handed over to it. */
  link: ReplicationLink | undefined;
  /** The log goes through a native link (decided when recording starts). */
  native = false;
  #linkEnded = false;
  #closing: Promise<void> | undefined;
  #closed: (() => void) | undefined;
  readonly detector: FailureDetector;
  /** When it joined (performance.now()): the clone's total time counts from here. */
  readonly joinedAt: number;
  /** Where it listens once it is the primary (its hello), for a test failover's report. */
  listen: string | undefined;
  /** Its owner token at the arbiter (its hello): a migration's target claims the next epoch under it. */
  owner: string | undefined;
  /** It answered a live migration's follow notice: it will join the target at the hand-over point. */
  following = false;
  // The clone.
  /** Batches recorded before the clone's final state went out; sent right after it. */
  queued: Uint8Array[] = [];
  cloneSent = false;
  clone: CloneFigures | undefined;
  // The log stream.
  sentLsn = -1n;
  ackedLsn = -1n;
  sentBytes = 0;
  ackedBytes = 0;
  /** Send time of each unacknowledged batch, in send order (for ack latency and release delay). */
  readonly sentAt = new Map<bigint, number>();
  /** Batches of this turn of the event loop, leaving as one LOG frame. */
  outbox: Uint8Array[] = [];
  releasedLsn = -1n;
  releaseSent = -1n;
  releaseScheduled = false;
  /** Why it was lost (set once, by the first loss noticed). */
  lost: string | undefined;
  /** It processed everything sent before a CONTROL `sync` (its `synced`). */
  synced = false;
  /** It restored the clone's final state (its CONTROL `cloned`). */
  restored = false;
  /** A move brings it in: the arbiter record the primary claims to call the move off, and the epoch to claim there. */
  move: { key: string; epoch: number } | undefined;
  /** A live migration's target: once in lockstep the VM is handed over to it. */
  target = false;
  /** Where its replay stood at its last ack. */
  instret = 0n;
  /** Its replay speed while it had a backlog (instructions/s), from its acks. */
  replayRate = 0;
  rateSample = { at: 0, instret: 0n, busy: false };

  /** `cloneTimeoutMs`: the silence tolerated until it restored the clone's final state (0: no clone, none). */
  constructor(channel: Channel, timeoutMs: number, heartbeatMs: number, cloneTimeoutMs: number) {
    this.channel = channel;
    this.joinedAt = performance.now();
    this.detector = new FailureDetector(timeoutMs, this.joinedAt, { checkEveryMs: heartbeatMs, graceMs: cloneTimeoutMs });
  }

  /** True once the connection is closed or closing (by either side); sending then does nothing. */
  get closed(): boolean {
    return this.link ? this.#linkEnded || this.#closing !== undefined || this.link.stopped : this.channel.closed;
  }

  /** Sends one message through the channel or the link; a BYE closes, as {@link close} does. */
  send(m: Message): boolean {
    if (!this.link) return this.channel.send(m);
    if (this.closed) return false;
    if (m.type === 'bye') {
      void this.close(m.reason);
      return false;
    }
    const { code, payload } = encodeMessage(m);
    return this.link.send(code, payload);
  }

  /**
   * Closes with a BYE saying `reason`. Through a link: the BYE and the log before it are flushed, and the
   * link stops once the peer closed (or after the channel's linger); resolves then.
   */
  close(reason: string): Promise<void> {
    const link = this.link;
    if (!link) {
      this.channel.close(reason);
      return Promise.resolve();
    }
    if (this.#closing) return this.#closing;
    if (this.#linkEnded || link.stopped) {
      link.stop();
      this.#closing = Promise.resolve();
      return this.#closing;
    }
    const { code, payload } = encodeMessage({ type: 'bye', reason: reason.length > 1000 ? `${reason.slice(0, 999)}…` : reason });
    link.send(code, payload);
    link.finish();
    this.#closing = new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.#closed?.(), CLOSE_LINGER_MS);
      timer.unref();
      this.#closed = () => {
        clearTimeout(timer);
        this.#closed = undefined;
        link.stop();
        resolve();
      };
    });
    return this.#closing;
  }

  /** The link ended (its end event): a close in progress completes now. */
  linkEnded(): void {
    this.#linkEnded = true;
    if (this.#closed) this.#closed();
    else this.link?.stop();
  }

  /** Log sent and not yet acknowledged, bytes. */
  get unackedBytes(): number {
    return Math.max(0, this.sentBytes - this.ackedBytes);
  }

  /** Records the ack of everything through `lsn`: the send times of the oldest batch it covers and of `lsn`'s. */
  acknowledge(lsn: bigint, bytes: number, instret: bigint): { oldest: number | undefined; sent: number | undefined } {
    let oldest: number | undefined;
    let sent: number | undefined;
    for (const [k, t] of this.sentAt) {
      if (k > lsn) break;
      oldest ??= t;
      if (k === lsn) sent = t;
      this.sentAt.delete(k);
    }
    this.ackedLsn = lsn;
    this.ackedBytes = Math.max(this.ackedBytes, bytes);
    if (instret > this.instret) this.instret = instret; // an early ACK may report less than the clone point
    return { oldest, sent };
  }
}
