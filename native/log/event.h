// The event log's record and batch layout, version 2: the single definition both the native codec
// (codec.h) and the TypeScript reader (src/log/format.ts) follow. Changing anything here means a new
// kLogFormatVersion. Version 2 is version 1's encoding, but a clock read may have no record: the
// recorder logs a clock step, not every read (a replay takes a value where the log has one).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

/// Version of the record and batch encoding below (and of the file header in src/log/format.ts).
constexpr uint32_t kLogFormatVersion = 2;

/// What an event is. Synchronous events answer a read the guest made at exactly their position;
/// asynchronous ones were delivered by the recording side at an instruction boundary of its choice
/// and are applied by the replayer at exactly the same boundary, before it checks for interrupts.
enum class EventKind : uint8_t {
  kClockRead = 1,     ///< sync: the guest read mtime (CLINT, `time` CSR, semihosting clock); payload: value
  kClockSample = 2,   ///< async: the recorder advanced the clock so a timer interrupt became due; payload: value
  kUartRx = 3,        ///< async: bytes entered the UART receiver; payload: varint n, n bytes
  kWallTime = 4,      ///< sync: semihosting SYS_TIME (seconds since the epoch); payload: varint seconds
  kStateHash = 5,     ///< async check: the state hash (registers + RAM) here; payload: u64 little-endian
  kEnd = 6,           ///< async: the recording ended here; payload: varint reason, zigzag varint code
  kMark = 7,          ///< async: the recording reached this position (no payload); sent at each flush so a
                      ///< live replayer knows it may run this far: nothing else happens before it
  kEntropy = 8,       ///< sync: bytes virtio-rng handed the guest at a queue notify; payload: varint n, n bytes
  kBlockDone = 9,     ///< async: a virtio-blk request completed; payload: varint head, u8 status, varint n,
                      ///< n bytes (the data of a read; 0 for writes, flushes and errors)
  kNetRx = 10,        ///< async: a frame entered virtio-net's receive queue; payload: varint n, n bytes
};

/// Largest data payload of kEntropy, kBlockDone and kNetRx (a record must fit a 1 MiB batch).
constexpr uint32_t kMaxEventData = 64 * 1024;

/// Why a recording ended (kEnd payload).
enum class EndReason : uint8_t { kExit = 0, kTrap = 1, kHalted = 2, kBudget = 3, kStopped = 4 };

/// A decoded event. Payload bytes (kUartRx) point into the batch they were decoded from.
struct Event {
  EventKind kind;
  uint64_t instret;   ///< position: instructions retired before the event takes effect
  uint64_t branches;  ///< cross-check: branches retired at that position
  uint32_t pc;        ///< cross-check: pc at that position
  uint64_t value;     ///< clock value, seconds, hash, (kEnd) reason, (kBlockDone) head | status << 16
  int64_t code;       ///< kEnd: exit code
  const uint8_t* data;
  uint32_t size;
};

// Record encoding. Varints are unsigned LEB128 (7 bits per byte, low first, at most 10 bytes); zigzag
// maps signed to unsigned ((v << 1) ^ (v >> 63)). Deltas are from the previous record of the same batch,
// or from the batch header's base for its first record:
//
//   +------+------------------+-------------------+-------------------+------------------------+
//   | kind | varint d_instret | varint d_branches | zigzag varint d_pc | payload (by kind)      |
//   | u8   | >= 0             | >= 0              | signed             |                        |
//   +------+------------------+-------------------+-------------------+------------------------+
//
//   payloads: kClockRead, kClockSample  zigzag varint (value - previous clock value of the batch,
//                                       starting from the header's base clock)
//             kUartRx                   varint n (1..4096), n bytes
//             kWallTime                 varint seconds
//             kStateHash                u64 little-endian
//             kEnd                      varint reason, zigzag varint code
//             kMark                     (none)
//             kEntropy, kNetRx          varint n (1..65536), n bytes
//             kBlockDone                varint head, u8 status, varint n (0..65536), n bytes
//
// A timer interrupt or a clock read therefore costs about 4-8 bytes.

/// Batch: a header and whole records. The CRC covers everything after the CRC field.
///
///   0        4        8        16             24              32       36            40       48
///   +--------+--------+--------+--------------+---------------+--------+-------------+--------+-----------+
///   | length | crc32c | lsn    | base instret | base branches | base pc| record count| base   | records   |
///   | u32    | u32    | u64    | u64          | u64           | u32    | u32         | clock  | (length   |
///   |        |        |        |              |               |        |             | u64    |  bytes)   |
///   +--------+--------+--------+--------------+---------------+--------+-------------+--------+-----------+
///
/// length counts the record bytes after the 48-byte header. lsn numbers batches from 0 without gaps.
struct BatchLayout {
  static constexpr size_t kLength = 0;
  static constexpr size_t kCrc = 4;
  static constexpr size_t kLsn = 8;
  static constexpr size_t kBaseInstret = 16;
  static constexpr size_t kBaseBranches = 24;
  static constexpr size_t kBasePc = 32;
  static constexpr size_t kCount = 36;
  static constexpr size_t kBaseClock = 40;
  static constexpr size_t kHeader = 48;
  /// Largest record payload a batch may carry; larger lengths are corruption.
  static constexpr uint32_t kMaxLength = 1u << 20;
};
static_assert(BatchLayout::kHeader == BatchLayout::kBaseClock + 8, "batch header is 48 bytes");

}  // namespace lockstep
