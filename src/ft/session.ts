// The primary's state of one secondary: its channel, failure detector, log stream and clone. Made when a
// secondary joins and dropped when it is lost, so nothing of one secondary leaks into the next.
import { performance } from 'node:perf_hooks';
import type { Channel } from '../protocol/channel.js';
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
 */
export class SecondarySession {
  readonly channel: Channel;
  readonly detector: FailureDetector;
  /** When it joined (performance.now()): the clone's total time counts from here. */
  readonly joinedAt: number;
  /** Where it listens once it is the primary (its hello), for a test failover's report. */
  listen: string | undefined;
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
  /** Where its replay stood at its last ack. */
  instret = 0n;
  /** Its replay speed while it had a backlog (instructions/s), from its acks. */
  replayRate = 0;
  rateSample = { at: 0, instret: 0n, busy: false };

  constructor(channel: Channel, timeoutMs: number) {
    this.channel = channel;
    this.joinedAt = performance.now();
    this.detector = new FailureDetector(timeoutMs, this.joinedAt);
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
    this.instret = instret;
    return { oldest, sent };
  }
}
