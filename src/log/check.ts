// Whole-log checks an offline replay makes before it runs anything: every record decodes, nothing follows
// the end record, and the periodic state hashes the header promises are all there. Pure: batches in.
import { decodeRecords, EventKind, LogFormatError, type BatchView, type LogEvent, type LogMetadata } from './format.js';

/** What {@link checkLog} found in a log that passed. */
export interface LogSummary {
  /** Records in the log. */
  events: number;
  /** Position of the first batch (where the recording started). */
  startInstret: bigint;
  /** Position of the last record. */
  lastInstret: bigint;
  /** The end record, when the log has one (a recording cut short has none). */
  end: LogEvent | undefined;
  /** The record right before the end record is a state hash at the same position: the final state can be verified. */
  finalHash: boolean;
}

/**
 * Decodes every record of `batches` (already framed and CRC-checked by LogReader) and checks what holds for
 * every log the recorder writes:
 * - no record follows the end record (a recording ends once);
 * - with `meta.hashInterval` = H > 0, a state hash at every multiple of H from the first batch's position
 *   up to (not including) the last record's: the recorder logs one whenever the guest reaches such a
 *   position and keeps running, so a missing one means records were removed.
 * @throws LogFormatError (`ERR_LOCKSTEP_LOG_CORRUPT`) naming the batch and what is wrong.
 */
export function checkLog(meta: LogMetadata, batches: readonly BatchView[]): LogSummary {
  const interval = BigInt(meta.hashInterval);
  const start = batches[0]?.baseInstret ?? 0n;
  // The next multiple of the interval that still needs its hash (checked once a record lies beyond it).
  let due = interval === 0n ? undefined : ((start + interval - 1n) / interval) * interval;
  let end: LogEvent | undefined;
  let previous: LogEvent | undefined;
  let finalHash = false;
  let events = 0;
  let last = start;
  for (const batch of batches) {
    const corrupt = (problem: string): never => {
      throw new LogFormatError('ERR_LOCKSTEP_LOG_CORRUPT', `batch ${batch.lsn} at offset ${batch.offset}: ${problem}`, { batch: batch.lsn, offset: batch.offset });
    };
    for (const e of decodeRecords(batch)) {
      if (end !== undefined) corrupt(`a record (kind ${e.kind} at instret ${e.instret}) follows the end record at instret ${end.instret}; a recording ends once`);
      if (e.instret < last) corrupt(`a record at instret ${e.instret} goes back before instret ${last}`);
      if (due !== undefined && e.instret > due) {
        corrupt(`no state hash at instret ${due}, though the log records one every ${interval} instructions (the record at instret ${e.instret} is past it): records were removed`);
      }
      if (due !== undefined && e.kind === EventKind.StateHash && e.instret === due) due += interval;
      if (e.kind === EventKind.End) {
        end = e;
        finalHash = previous?.kind === EventKind.StateHash && previous.instret === e.instret && previous.pc === e.pc && previous.check === e.check;
      }
      previous = e;
      last = e.instret;
      events++;
    }
  }
  return { events, startInstret: start, lastInstret: last, end, finalHash };
}
