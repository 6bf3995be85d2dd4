// Public surface of the memcached-UDP client and load generator: re-exports only.
export { KvClient, CLIENT_CHANNELS } from './memcached-udp.js';
export type {
  Endpoint,
  BackoffOptions,
  KvClientOptions,
  KvItem,
  KvCasItem,
  StoreOptions,
  StoreResult,
  DeleteResult,
  KvClientCounters,
} from './memcached-udp.js';
export { ClientError } from './errors.js';
export type { ClientErrorCode } from './errors.js';
export { LoadGenerator, verifyStore } from './load.js';
export type { LoadOptions, LoadProgress, LoadResult, LoadEvents, AcknowledgedWrite, CounterSummary } from './load.js';
export { RegisterHistory } from './history.js';
export type { WriteRecord, ReadRecord, ReadViolation } from './history.js';
export { LatencyHistogram } from './histogram.js';
export type { LatencySummary } from './histogram.js';
export {
  UDP_HEADER_SIZE,
  MAX_DATAGRAM_SIZE,
  MAX_KEY_LENGTH,
  MEMCACHED_PORT,
  EXACTLY_ONCE_MARK,
  REPLY_CACHE_WINDOW_MS,
  MAX_RETRY_WINDOW_MS,
  encodeFrame,
  decodeFrameHeader,
  parseReply,
  keyProblem,
} from './protocol.js';
export type { FrameHeader, Reply, ReplyExpectation, ParseResult, RawItem } from './protocol.js';
