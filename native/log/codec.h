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
  /// Starts numbering and deltas from here (a recording that begins mid-run, e.g. after a restore).
  void reset(uint64_t lsn, const LogCursor& base);

 private:
  void begin();
  std::vector<uint8_t> buf_;
  uint64_t lsn_ = 0;
  uint32_t count_ = 0;
  LogCursor base_{}, cur_{};
  bool open_ = false;
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
  const LogCursor& base() const { return base_; }
  /// Bytes of the whole batch (header + records) as the header says.
  static bool batch_size(const uint8_t* data, size_t n, size_t* size);

 private:
  bool fail(size_t offset, const std::string& what);
  const uint8_t* data_ = nullptr;
  size_t size_ = 0, pos_ = 0;
  uint32_t count_ = 0, seen_ = 0;
  uint64_t lsn_ = 0;
  LogCursor base_{}, cur_{};
  std::string error_;
};

/// True for kinds the replayer applies at a boundary (as opposed to answering a read).
inline bool is_async(EventKind k) {
  return k != EventKind::kClockRead && k != EventKind::kWallTime && k != EventKind::kEntropy;
}

const char* event_kind_name(EventKind k);

}  // namespace lockstep
