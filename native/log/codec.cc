// Batch codec and CRC32C. The decoder is written for hostile input: every length is checked before
// use, varints are bounded, and errors name the byte offset inside the batch.
#include "log/codec.h"

#include <cstdio>
#include <cstring>

namespace lockstep {
namespace {

struct Crc32cTable {
  uint32_t t[8][256];
  Crc32cTable() {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
      t[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
      for (int s = 1; s < 8; s++) t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
    }
  }
};
const Crc32cTable kCrc;

void put_u32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }
void put_u64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint32_t get_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }
uint64_t get_u64(const uint8_t* p) { uint64_t v; std::memcpy(&v, p, 8); return v; }

void put_varint(std::vector<uint8_t>& b, uint64_t v) {
  while (v >= 0x80) {
    b.push_back(static_cast<uint8_t>(v | 0x80));
    v >>= 7;
  }
  b.push_back(static_cast<uint8_t>(v));
}
uint64_t zigzag(int64_t v) { return (static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63); }
int64_t unzigzag(uint64_t v) { return static_cast<int64_t>(v >> 1) ^ -static_cast<int64_t>(v & 1); }

}  // namespace

uint32_t crc32c(const uint8_t* p, size_t n, uint32_t crc) {
  uint32_t c = ~crc;
  while (n >= 8) {
    const uint32_t lo = get_u32(p) ^ c, hi = get_u32(p + 4);
    c = kCrc.t[7][lo & 0xff] ^ kCrc.t[6][(lo >> 8) & 0xff] ^ kCrc.t[5][(lo >> 16) & 0xff] ^ kCrc.t[4][lo >> 24] ^
        kCrc.t[3][hi & 0xff] ^ kCrc.t[2][(hi >> 8) & 0xff] ^ kCrc.t[1][(hi >> 16) & 0xff] ^ kCrc.t[0][hi >> 24];
    p += 8;
    n -= 8;
  }
  while (n--) c = (c >> 8) ^ kCrc.t[0][(c ^ *p++) & 0xff];
  return ~c;
}

const char* event_kind_name(EventKind k) {
  switch (k) {
    case EventKind::kClockRead: return "clock-read";
    case EventKind::kClockSample: return "clock-sample";
    case EventKind::kUartRx: return "uart-rx";
    case EventKind::kWallTime: return "wall-time";
    case EventKind::kStateHash: return "state-hash";
    case EventKind::kEnd: return "end";
    case EventKind::kMark: return "mark";
    case EventKind::kEntropy: return "entropy";
    case EventKind::kBlockDone: return "block-done";
    case EventKind::kNetRx: return "net-rx";
  }
  return "unknown";
}

std::string describe_position(const Event& e, bool with_check) {
  char b[96];
  if (e.check_only) {
    std::snprintf(b, sizeof b, "instret %llu (position check 0x%02x)", static_cast<unsigned long long>(e.instret), e.check);
  } else if (with_check) {
    std::snprintf(b, sizeof b, "instret %llu (branches %llu, pc 0x%08x, position check 0x%02x)", static_cast<unsigned long long>(e.instret),
                  static_cast<unsigned long long>(e.branches), e.pc, position_check(e.pc, e.branches));
  } else {
    std::snprintf(b, sizeof b, "instret %llu (branches %llu, pc 0x%08x)", static_cast<unsigned long long>(e.instret), static_cast<unsigned long long>(e.branches), e.pc);
  }
  return b;
}

void BatchEncoder::reset(uint64_t lsn, const LogCursor& base) {
  lsn_ = lsn;
  cur_ = base;
  open_ = false;
  full_next_ = true;
  count_ = 0;
  buf_.clear();
}

// Records are written after room for the largest compact header; finish() puts the header right before
// them and drops the unused room.
void BatchEncoder::begin() {
  buf_.assign(BatchLayout::kMaxCompactHeader, 0);
  base_ = cur_;
  count_ = 0;
  open_ = true;
}

namespace {
// A clock delta and whether it is in kClockUnit ticks (kKindClockUnits).
struct ClockDelta {
  uint64_t coded;
  bool units;
};
ClockDelta clock_delta(uint64_t value, uint64_t from) {
  const int64_t d = static_cast<int64_t>(value - from);
  if (d % static_cast<int64_t>(kClockUnit) == 0) return {zigzag(d / static_cast<int64_t>(kClockUnit)), true};
  return {zigzag(d), false};
}
}  // namespace

void BatchEncoder::add(const Event& e) {
  if (!open_) begin();
  const bool clocked = e.kind == EventKind::kClockRead || e.kind == EventKind::kClockSample || (e.has_clock && may_carry_clock(e.kind));
  const ClockDelta cd = clocked ? clock_delta(e.kind == EventKind::kClockRead || e.kind == EventKind::kClockSample ? e.value : e.clock, cur_.clock) : ClockDelta{0, false};
  const bool rate = e.has_rate && e.kind == EventKind::kClockRead;
  const bool block_ok = e.kind == EventKind::kBlockDone && (e.value >> 16) == 0 && e.size == 0;
  buf_.push_back(static_cast<uint8_t>(static_cast<uint8_t>(e.kind) | (cd.units ? kKindClockUnits : 0) | (e.has_clock && may_carry_clock(e.kind) ? kKindClock : 0) |
                                      (rate ? kKindClockRate : 0) | (block_ok ? kKindBlockOk : 0)));
  put_varint(buf_, e.instret - cur_.instret);
  buf_.push_back(position_check(e.pc, e.branches));
  if (e.has_clock && may_carry_clock(e.kind)) {
    put_varint(buf_, cd.coded);
    cur_.clock = e.clock;
  }
  switch (e.kind) {
    case EventKind::kClockRead:
    case EventKind::kClockSample:
      put_varint(buf_, cd.coded);
      if (rate) put_varint(buf_, e.rate);
      cur_.clock = e.value;
      break;
    case EventKind::kUartRx:
      put_varint(buf_, e.size);
      buf_.insert(buf_.end(), e.data, e.data + e.size);
      break;
    case EventKind::kWallTime:
      put_varint(buf_, e.value);
      break;
    case EventKind::kStateHash: {
      uint8_t h[8];
      put_u64(h, e.value);
      buf_.insert(buf_.end(), h, h + 8);
      break;
    }
    case EventKind::kEnd:
      put_varint(buf_, e.value);
      put_varint(buf_, zigzag(e.code));
      break;
    case EventKind::kMark:
      break;
    case EventKind::kEntropy:
    case EventKind::kNetRx:
      put_varint(buf_, e.size);
      buf_.insert(buf_.end(), e.data, e.data + e.size);
      break;
    case EventKind::kBlockDone:
      put_varint(buf_, e.value & 0xffff);
      if (block_ok) break;
      buf_.push_back(static_cast<uint8_t>(e.value >> 16));
      put_varint(buf_, e.size);
      buf_.insert(buf_.end(), e.data, e.data + e.size);
      break;
  }
  cur_.instret = e.instret;
  cur_.branches = e.branches;
  cur_.pc = e.pc;
  count_++;
}

const std::vector<uint8_t>& BatchEncoder::finish() {
  if (!open_) begin();
  std::vector<uint8_t> fields;
  fields.reserve(BatchLayout::kMaxCompactHeader - BatchLayout::kFixed);
  put_varint(fields, (static_cast<uint64_t>(count_) << 1) | (full_next_ ? 1u : 0u));
  put_varint(fields, base_.instret);
  put_varint(fields, base_.clock);
  if (full_next_) {
    put_varint(fields, base_.branches);
    put_varint(fields, base_.pc);
  }
  const size_t start = BatchLayout::kMaxCompactHeader - BatchLayout::kFixed - fields.size();
  std::memcpy(buf_.data() + start + BatchLayout::kFixed, fields.data(), fields.size());
  buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(start));
  uint8_t* h = buf_.data();
  put_u32(h + BatchLayout::kLength, static_cast<uint32_t>(buf_.size() - BatchLayout::kFixed) | BatchLayout::kCompactFlag);
  put_u64(h + BatchLayout::kLsn, lsn_);
  put_u32(h + BatchLayout::kCrc, crc32c(h + BatchLayout::kLsn, buf_.size() - BatchLayout::kLsn));
  lsn_++;
  open_ = false;
  full_next_ = false;
  return buf_;
}

bool BatchDecoder::batch_size(const uint8_t* data, size_t n, size_t* size) {
  if (n < BatchLayout::kFixed) return false;
  *size = BatchLayout::total_size(get_u32(data + BatchLayout::kLength));
  return true;
}

bool BatchDecoder::varint(uint64_t* out) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (pos_ >= size_) return fail(pos_, "record runs past the end of the batch");
    const uint8_t b = data_[pos_++];
    if (shift == 63 && (b & 0x7e)) return fail(pos_ - 1, "varint overflows 64 bits");
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return true;
    }
  }
  return fail(pos_, "varint longer than 10 bytes");
}

bool BatchDecoder::fail(size_t offset, const std::string& what) {
  error_ = "batch " + std::to_string(lsn_) + ", byte " + std::to_string(offset) + ": " + what;
  return false;
}

bool BatchDecoder::open(const uint8_t* data, size_t n, uint64_t expected_lsn) {
  data_ = data;
  size_ = n;
  seen_ = 0;
  lsn_ = expected_lsn;
  error_.clear();
  if (n < BatchLayout::kFixed) return fail(0, "truncated header (" + std::to_string(n) + " of at least 16 bytes)");
  const uint32_t word0 = get_u32(data + BatchLayout::kLength);
  compact_ = (word0 & BatchLayout::kCompactFlag) != 0;
  const uint32_t len = BatchLayout::declared_length(word0);
  const size_t header = compact_ ? BatchLayout::kFixed : BatchLayout::kHeader;
  if (!compact_ && n < BatchLayout::kHeader) return fail(0, "truncated header (" + std::to_string(n) + " of 48 bytes)");
  // A compact body also holds the varint header fields.
  const uint32_t limit = compact_ ? BatchLayout::kMaxLength + static_cast<uint32_t>(BatchLayout::kMaxCompactHeader - BatchLayout::kFixed) : BatchLayout::kMaxLength;
  if (len > limit) return fail(0, "record length " + std::to_string(len) + " exceeds the 1 MiB limit");
  if (n != header + len) {
    return fail(0, "size " + std::to_string(n) + " does not match its header (" + std::to_string(header + len) + ")");
  }
  const uint32_t stored = get_u32(data + BatchLayout::kCrc);
  const uint32_t computed = crc32c(data + BatchLayout::kLsn, n - BatchLayout::kLsn);
  if (stored != computed) return fail(BatchLayout::kCrc, "CRC32C mismatch: the batch is damaged");
  const uint64_t lsn = get_u64(data + BatchLayout::kLsn);
  if (lsn != expected_lsn) {
    return fail(BatchLayout::kLsn, "sequence number " + std::to_string(lsn) + ", expected " + std::to_string(expected_lsn));
  }
  base_ = LogCursor{};
  if (!compact_) {
    pos_ = BatchLayout::kHeader;
    base_full_ = true;
    count_ = get_u32(data + BatchLayout::kCount);
    base_.instret = get_u64(data + BatchLayout::kBaseInstret);
    base_.branches = get_u64(data + BatchLayout::kBaseBranches);
    base_.pc = get_u32(data + BatchLayout::kBasePc);
    base_.clock = get_u64(data + BatchLayout::kBaseClock);
    if (base_.pc & 1u) return fail(BatchLayout::kBasePc, "odd base pc");
  } else {
    pos_ = BatchLayout::kFixed;
    uint64_t count, pc = 0;
    if (!varint(&count) || !varint(&base_.instret) || !varint(&base_.clock)) return false;
    if ((count >> 1) > UINT32_MAX) return fail(BatchLayout::kFixed, "record count out of range");
    count_ = static_cast<uint32_t>(count >> 1);
    base_full_ = (count & 1) != 0;
    if (base_full_) {
      const size_t at = pos_;
      if (!varint(&base_.branches) || !varint(&pc)) return false;
      if (pc > UINT32_MAX || (pc & 1u)) return fail(at, "base pc out of range or odd");
      if (base_.branches > base_.instret) return fail(at, "more base branches than instructions");
      base_.pc = static_cast<uint32_t>(pc);
    }
  }
  cur_ = base_;
  return true;
}

int BatchDecoder::next(Event* e) {
  if (pos_ == size_) {
    if (seen_ != count_) {
      fail(pos_, "header says " + std::to_string(count_) + " records, found " + std::to_string(seen_));
      return -1;
    }
    return 0;
  }
  const size_t at = pos_;
  const uint8_t byte = data_[pos_++];
  const uint8_t kind = compact_ ? (byte & kKindMask) : byte;
  const uint8_t flags = compact_ ? (byte & ~kKindMask) : 0;
  if (kind < 1 || kind > 10) {
    fail(at, "unknown event kind " + std::to_string(kind));
    return -1;
  }
  *e = Event{};
  e->kind = static_cast<EventKind>(kind);
  const bool sync_clock = e->kind == EventKind::kClockRead || e->kind == EventKind::kClockSample;
  if ((flags & ~(kKindClock | kKindClockUnits | kKindClockRate | kKindBlockOk)) || ((flags & kKindClock) && !may_carry_clock(e->kind)) ||
      ((flags & kKindClockRate) && e->kind != EventKind::kClockRead) || ((flags & kKindBlockOk) && e->kind != EventKind::kBlockDone) ||
      ((flags & kKindClockUnits) && !sync_clock && !(flags & kKindClock))) {
    fail(at, "kind byte 0x" + [&] { char b[8]; std::snprintf(b, sizeof b, "%02x", byte); return std::string(b); }() + " has flags " + event_kind_name(e->kind) + " cannot have");
    return -1;
  }
  const auto clock_after = [&](uint64_t coded) {
    const int64_t d = unzigzag(coded);
    return cur_.clock + ((flags & kKindClockUnits) ? static_cast<uint64_t>(d) * kClockUnit : static_cast<uint64_t>(d));
  };
  uint64_t di;
  if (!varint(&di)) return -1;
  if (cur_.instret + di < cur_.instret) {
    fail(at, "position overflows 64 bits");
    return -1;
  }
  e->instret = cur_.instret + di;
  if (compact_) {
    if (pos_ >= size_) {
      fail(pos_, "record runs past the end of the batch");
      return -1;
    }
    e->check_only = true;
    e->check = data_[pos_++];
    if (flags & kKindClock) {
      uint64_t c;
      if (!varint(&c)) return -1;
      e->has_clock = true;
      e->clock = clock_after(c);
      cur_.clock = e->clock;
    }
  } else {
    uint64_t db, dpc;
    if (!varint(&db) || !varint(&dpc)) return -1;
    if (cur_.branches + db < cur_.branches) {
      fail(at, "position overflows 64 bits");
      return -1;
    }
    if (dpc >= (1ull << 32)) {  // the encoder writes 32-bit pc deltas only
      fail(at, "pc delta out of range");
      return -1;
    }
    e->branches = cur_.branches + db;
    e->pc = cur_.pc + static_cast<uint32_t>(unzigzag(dpc));
    if (e->pc & 1u) {
      fail(at, "odd pc");
      return -1;
    }
    if (e->branches > e->instret) {
      fail(at, "more branches than instructions");
      return -1;
    }
  }
  uint64_t v;
  switch (e->kind) {
    case EventKind::kClockRead:
    case EventKind::kClockSample:
      if (!varint(&v)) return -1;
      e->value = clock_after(v);
      cur_.clock = e->value;
      if (flags & kKindClockRate) {
        if (!varint(&v)) return -1;
        if (v > UINT32_MAX) {
          fail(at, "clock rate " + std::to_string(v) + " out of range");
          return -1;
        }
        e->has_rate = true;
        e->rate = static_cast<uint32_t>(v);
      }
      break;
    case EventKind::kUartRx:
      if (!varint(&v)) return -1;
      if (v == 0 || v > 4096) {
        fail(at, "uart-rx length " + std::to_string(v) + " outside 1..4096");
        return -1;
      }
      if (size_ - pos_ < v) {
        fail(pos_, "uart-rx data runs past the end of the batch");
        return -1;
      }
      e->data = data_ + pos_;
      e->size = static_cast<uint32_t>(v);
      pos_ += v;
      break;
    case EventKind::kWallTime:
      if (!varint(&e->value)) return -1;
      break;
    case EventKind::kStateHash:
      if (size_ - pos_ < 8) {
        fail(pos_, "state hash runs past the end of the batch");
        return -1;
      }
      e->value = get_u64(data_ + pos_);
      pos_ += 8;
      break;
    case EventKind::kEnd:
      if (!varint(&e->value) || !varint(&v)) return -1;
      if (e->value > static_cast<uint64_t>(EndReason::kStopped)) {
        fail(at, "unknown end reason " + std::to_string(e->value));
        return -1;
      }
      e->code = unzigzag(v);
      break;
    case EventKind::kMark:
      break;
    case EventKind::kEntropy:
    case EventKind::kNetRx:
    case EventKind::kBlockDone: {
      if (e->kind == EventKind::kBlockDone) {
        uint64_t head;
        if (!varint(&head)) return -1;
        if (head > 0xffff) {
          fail(at, "block-done head out of range");
          return -1;
        }
        if (flags & kKindBlockOk) {
          e->value = head;  // status 0, no data
          break;
        }
        if (pos_ >= size_) {
          fail(at, "block-done record truncated");
          return -1;
        }
        e->value = head | (static_cast<uint64_t>(data_[pos_++]) << 16);
      }
      if (!varint(&v)) return -1;
      const uint64_t min = e->kind == EventKind::kBlockDone ? 0 : 1;
      if (v < min || v > kMaxEventData) {
        fail(at, std::string(event_kind_name(e->kind)) + " length " + std::to_string(v) + " out of range");
        return -1;
      }
      if (size_ - pos_ < v) {
        fail(pos_, std::string(event_kind_name(e->kind)) + " data runs past the end of the batch");
        return -1;
      }
      e->data = data_ + pos_;
      e->size = static_cast<uint32_t>(v);
      pos_ += v;
      break;
    }
  }
  cur_.instret = e->instret;
  cur_.branches = e->branches;
  cur_.pc = e->pc;
  if (++seen_ > count_) {
    fail(at, "more records than the header's count " + std::to_string(count_));
    return -1;
  }
  return 1;
}

}  // namespace lockstep
