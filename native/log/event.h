// The event log's record and batch layout, version 4: the single definition both the native codec
// (codec.h) and the TypeScript reader (src/log/format.ts) follow. Changing anything here means a new
// kLogFormatVersion. Version 2 is version 1's encoding, but a clock read may have no record: the
// recorder logs a clock step, not every read (a replay takes a value where the log has one). Version 3
// writes the compact layout below (a varint header, a one-byte position check instead of the branch
// count and pc in each record). Version 4 adds two flags to a compact record's kind byte: an
// asynchronous event may carry the clock (the recorder advances it as it delivers the event, so the
// guest's reads right after the interrupt need no records), and a clock delta may be in units of
// kClockUnit ticks. Version 1-3 batches are still read (they never set those bits).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lockstep {

/// Version of the record and batch encoding below (and of the file header in src/log/format.ts).
constexpr uint32_t kLogFormatVersion = 4;

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
  uint64_t branches;  ///< cross-check: branches retired at that position (recording side; decoded from version 1-2 records only)
  uint32_t pc;        ///< cross-check: pc at that position (as branches)
  uint64_t value;     ///< clock value, seconds, hash, (kEnd) reason, (kBlockDone) head | status << 16
  int64_t code;       ///< kEnd: exit code
  const uint8_t* data;
  uint32_t size;
  /// Decoded from a compact (version 3) record: `branches` and `pc` are unknown, `check` stands for them.
  bool check_only;
  uint8_t check;  ///< position_check(pc, branches) of a compact record
  /// An asynchronous event (kUartRx, kNetRx, kBlockDone) that also moves the guest clock to `clock`
  /// when it takes effect (version 4).
  bool has_clock;
  uint64_t clock;
  /// kClockRead (version 4): the clock's rate from here, ticks per 2^16 instructions (kKindClockRate).
  bool has_rate;
  uint32_t rate;
};

/// Version 4 compact records: the kind byte's low four bits are the kind; kKindClock marks an
/// asynchronous event carrying a clock value (a zigzag varint delta right after the check byte),
/// kKindClockUnits a clock delta (of a clock read or sample, or the carried one) counted in kClockUnit
/// ticks. The recorder keeps the clock on a grid of its step (100 µs by default, kClockUnit ticks at
/// 10 MHz), so a delta of a few steps takes one byte.
constexpr uint8_t kKindMask = 0x0f;
constexpr uint8_t kKindClockUnits = 0x10;
/// A clock read that also sets the guest clock's rate between logged values (varint ticks per 2^16
/// instructions, after the clock delta): see Machine::guest_time.
constexpr uint8_t kKindClockRate = 0x20;
/// A kBlockDone that succeeded with no data (a write or flush, or any request on a separate disk): its
/// status byte and data length are left out.
constexpr uint8_t kKindBlockOk = 0x40;
constexpr uint8_t kKindClock = 0x80;
constexpr uint64_t kClockUnit = 1000;

/// True for the kinds that may carry the clock (kKindClock).
inline bool may_carry_clock(EventKind k) { return k == EventKind::kUartRx || k == EventKind::kNetRx || k == EventKind::kBlockDone; }

/// A one-byte digest of the branch count and pc at a position: what a compact record keeps of them. A
/// replay that took another path shows a different digest 255 times in 256 at the next record, and the
/// periodic state hashes catch the rest. (Same mix in src/log/format.ts positionCheck.)
inline uint8_t position_check(uint32_t pc, uint64_t branches) {
  uint32_t h = (pc ^ 0x9E3779B9u) * 0x85EBCA6Bu;
  h ^= static_cast<uint32_t>(branches);
  h *= 0xC2B2AE35u;
  h ^= static_cast<uint32_t>(branches >> 32);
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  return static_cast<uint8_t>(h >> 24);
}

/// True if `logged` (decoded) was recorded where `here` (the machine's position) is: the same instret and
/// the same branch count and pc, or, for a compact record, the same position check.
inline bool same_position(const Event& logged, const Event& here) {
  if (logged.instret != here.instret) return false;
  if (logged.check_only) return logged.check == position_check(here.pc, here.branches);
  return logged.branches == here.branches && logged.pc == here.pc;
}

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
//
// Compact records (version 3) keep the kind, d_instret and payload, and replace d_branches and d_pc
// with one byte, position_check(pc, branches) at the record's position:
//
//   +------+------------------+----------+---------------------------------+------------------------+
//   | kind | varint d_instret | u8 check | (kKindClock) zigzag varint clock | payload (by kind)      |
//   +------+------------------+----------+---------------------------------+------------------------+
//
// In version 4 the kind byte also carries kKindClock and kKindClockUnits (see above); a clock delta
// with kKindClockUnits set is in kClockUnit ticks. A clock read then costs about 5 bytes, a mark 4, and
// the first reads after an interrupt usually none.

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
///
/// Compact batch (version 3): bit 31 of the first word marks it (a full-header length is at most 1 MiB,
/// so that bit is 0 there). The same 16 fixed bytes, then varints, then compact records:
///
///   0                 4        8        16
///   +-----------------+--------+--------+------------------------+---------------+-------------+-------------------+---------+
///   | body length     | crc32c | lsn    | varint count << 1      | varint base   | varint base | (full only) varint| records |
///   | | 0x80000000 u32| u32    | u64    |   | full               | instret       | clock       | branches, pc      |         |
///   +-----------------+--------+--------+------------------------+---------------+-------------+-------------------+---------+
///
/// body length counts the bytes after byte 16. The base branches and pc are written only in a batch
/// marked full: the first batch after the encoder's reset (a replay compares them with the machine it
/// starts on). Every batch still decodes on its own: positions and clock values are absolute from its base.
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
  /// Compact batches: the fixed bytes (length word, CRC, lsn) every layout starts with, the flag in the
  /// length word, and the most bytes the varint header fields can take.
  static constexpr size_t kFixed = 16;
  static constexpr uint32_t kCompactFlag = 0x80000000u;
  static constexpr size_t kMaxCompactHeader = kFixed + 5 * 10;
  /// Whole size of a batch from its first word (either layout); a caller still checks the length's limit.
  static constexpr size_t total_size(uint32_t word0) {
    return (word0 & kCompactFlag) ? kFixed + (word0 & ~kCompactFlag) : kHeader + word0;
  }
  /// The length a batch's first word declares (record bytes, or for a compact batch the body after byte 16).
  static constexpr uint32_t declared_length(uint32_t word0) { return word0 & ~kCompactFlag; }
};
static_assert(BatchLayout::kHeader == BatchLayout::kBaseClock + 8, "batch header is 48 bytes");

}  // namespace lockstep
