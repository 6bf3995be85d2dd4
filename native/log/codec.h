// Encoding and decoding of event batches (layout in event.h) and CRC32C. Pure: no threads, no napi;
// the decoder never trusts its input and reports the first problem with its byte offset.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "log/event.h"

namespace lockstep {

/// CRC32C (Castagnoli), as iSCSI: crc32c("123456789") == 0xE3069283.
uint32_t crc32c(const uint8_t* data, size_t n, uint32_t crc = 0);

/// The running position and clock that record deltas are taken from.
struct LogCursor {
  uint64_t instret = 0;
  uint64_t branches = 0;
  uint32_t pc = 0;
  uint64_t clock = 0;
};

/// Builds one batch at a time. Not thread-safe (the vCPU thread owns it).
class BatchEncoder {
 public:
  /// Appends a record; the batch starts at the first add() after finish().
  void add(const Event& e);
  bool empty() const { return count_ == 0; }
  size_t size() const { return buf_.size(); }
  uint64_t next_lsn() const { return lsn_; }
  /// Where the last record was (or the base, if none yet).
  const LogCursor& cursor() const { return cur_; }
  /// Seals the batch (header, CRC) and returns it; the buffer stays valid until the next add().
  const std::vector<uint8_t>& finish();
  /// Starts numbering and deltas from here (a recording that begins mid-run, e.g. after a restore). The
  /// next batch carries the whole base (branch count and pc too), so a replay can check where it starts.
  void reset(uint64_t lsn, const LogCursor& base);

 private:
  void begin();
  std::vector<uint8_t> buf_;
  uint64_t lsn_ = 0;
  uint32_t count_ = 0;
  LogCursor base_{}, cur_{};
  bool open_ = false;
  bool full_next_ = true;
};

/// Parses one batch and iterates over its records.
class BatchDecoder {
 public:
  /// Checks header, length and CRC. On failure returns false and sets error(). `data` must outlive the decoder.
  bool open(const uint8_t* data, size_t n, uint64_t expected_lsn);
  /// Next record: 1 = got one, 0 = end of batch, -1 = malformed (see error()).
  int next(Event* e);
  const std::string& error() const { return error_; }
  uint64_t lsn() const { return lsn_; }
  /// Where the batch's deltas start. For a compact batch not marked full, only instret and clock are known.
  const LogCursor& base() const { return base_; }
  /// The base includes the branch count and pc (a full-header batch, or a compact one marked full).
  bool base_full() const { return base_full_; }
  /// The compact (version 3) layout.
  bool compact() const { return compact_; }
  /// Bytes of the whole batch (header + records) as the header says (needs the first 16 bytes).
  static bool batch_size(const uint8_t* data, size_t n, size_t* size);

 private:
  bool fail(size_t offset, const std::string& what);
  bool varint(uint64_t* out);
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, pos_ = 0;
  uint32_t count_ = 0, seen_ = 0;
  uint64_t lsn_ = 0;
  LogCursor base_{}, cur_{};
  bool compact_ = false, base_full_ = true;
  std::string error_;
};

/// True for kinds the replayer applies at a boundary (as opposed to answering a read).
inline bool is_async(EventKind k) {
  return k != EventKind::kClockRead && k != EventKind::kWallTime && k != EventKind::kEntropy;
}

const char* event_kind_name(EventKind k);

/// "instret N (branches B, pc 0x…)", or for a compact record "instret N (position check 0x…)";
/// `with_check` adds the check to an exact position (to set it beside a compact record's).
std::string describe_position(const Event& e, bool with_check = false);

}  // namespace lockstep
