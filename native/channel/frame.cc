// Frame judging and verification, and the binary message checks, mirroring src/protocol/frame.ts and
// src/protocol/messages.ts: same order of checks, same codes, the same words in the reasons.
#include "channel/frame.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <algorithm>
#include <cstring>

namespace lockstep {
namespace {

std::string hex(uint32_t v, int width = 0) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%0*x", width, v);
  return buf;
}

/// A double as JavaScript's String(x) would mostly print it (shortest round trip; -0 prints as 0).
std::string js_number(double x) {
  if (std::isnan(x)) return "NaN";
  if (std::isinf(x)) return x > 0 ? "Infinity" : "-Infinity";
  if (x == 0) return "0";
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, r.ptr);
}

std::string exact_length(const char* name, size_t n, size_t want) {
  return std::string(name) + " payload is " + std::to_string(n) + " bytes; it must be exactly " + std::to_string(want);
}

bool reason_ok(const char* name, const uint8_t* p, size_t n, std::string* why) {
  if (n > msg::kMaxReasonBytes) {
    *why = std::string(name) + " reason is " + std::to_string(n) + " bytes, over " + std::to_string(msg::kMaxReasonBytes);
    return false;
  }
  if (!valid_utf8(p, n)) {
    *why = std::string(name) + " reason is not valid UTF-8";
    return false;
  }
  return true;
}

}  // namespace

const char* channel_error_name(ChannelError e) {
  switch (e) {
    case ChannelError::kNone: return "NONE";
    case ChannelError::kMalformed: return "MALFORMED";
    case ChannelError::kAuth: return "AUTH";
    case ChannelError::kOversized: return "OVERSIZED";
    case ChannelError::kSequence: return "SEQUENCE";
    case ChannelError::kClosed: return "CLOSED";
    case ChannelError::kTruncated: return "TRUNCATED";
    case ChannelError::kLocal: return "LOCAL";
  }
  return "UNKNOWN";
}

bool is_application_type(uint8_t type) {
  switch (type) {
    case msg::kLog:
    case msg::kAck:
    case msg::kHeartbeat:
    case msg::kRelease:
    case msg::kCloneBegin:
    case msg::kClonePages:
    case msg::kCloneFinal:
    case msg::kCloneDone:
    case msg::kCloneDisk:
    case msg::kControl:
    case msg::kGoLive:
    case msg::kBye:
      return true;
    default:
      return false;
  }
}

void encode_frame_header(uint8_t out[FrameLayout::kHeader], uint8_t type, uint32_t length, uint64_t sequence) {
  out[0] = 'L';
  out[1] = 'K';
  out[2] = 'S';
  out[3] = 'P';
  out[FrameLayout::kOffType] = type;
  out[FrameLayout::kOffFlags] = 0;
  out[FrameLayout::kOffReserved] = 0;
  out[FrameLayout::kOffReserved + 1] = 0;
  for (int i = 0; i < 4; i++) out[FrameLayout::kOffLength + i] = static_cast<uint8_t>(length >> (24 - 8 * i));
  store_be64(out + FrameLayout::kOffSequence, sequence);
}

FrameReader::Status FrameReader::fail(ChannelError code, std::string message) {
  error_ = code;
  message_ = std::move(message);
  return Status::kError;
}

FrameReader::Status FrameReader::judge(const uint8_t* data, size_t n, uint64_t expected, FrameView* frame, size_t* need, ChannelError* code,
                                       std::string* why) const {
  auto bad = [&](ChannelError c, std::string w) {
    *code = c;
    *why = std::move(w);
    return Status::kError;
  };
  if (n < FrameLayout::kHeader) {
    *need = FrameLayout::kHeader;
    return Status::kNeedMore;
  }
  const uint32_t magic = load_be32u(data + FrameLayout::kOffMagic);
  if (magic != FrameLayout::kMagic) {
    return bad(ChannelError::kMalformed, "bad frame magic 0x" + hex(magic, 8) + " (expected 0x" + hex(FrameLayout::kMagic) + ", \"LKSP\") in frame " +
                                             std::to_string(expected) + ": not a lockstep peer, or the stream is out of step");
  }
  const uint8_t type = data[FrameLayout::kOffType];
  const uint8_t flags = data[FrameLayout::kOffFlags];
  const uint32_t reserved = uint32_t{data[FrameLayout::kOffReserved]} << 8 | data[FrameLayout::kOffReserved + 1];
  const uint32_t length = load_be32u(data + FrameLayout::kOffLength);
  const uint64_t sequence = load_be64(data + FrameLayout::kOffSequence);
  if (flags != 0 || reserved != 0) {
    return bad(ChannelError::kMalformed, "frame " + std::to_string(expected) + " (type 0x" + hex(type) + ") has flags 0x" + hex(flags) +
                                             " and reserved 0x" + hex(reserved) + "; version 1 defines neither");
  }
  if (!is_application_type(type)) {
    if (type == msg::kHello || type == msg::kAuth) {
      return bad(ChannelError::kMalformed, std::string(type == msg::kHello ? "HELLO" : "AUTH") + " frame after the handshake completed");
    }
    return bad(ChannelError::kMalformed, "unknown message type 0x" + hex(type));
  }
  if (length > max_payload_) {
    return bad(ChannelError::kOversized, "frame " + std::to_string(expected) + " (type 0x" + hex(type) + ") announces a " + std::to_string(length) +
                                             "-byte payload, over the limit of " + std::to_string(max_payload_) + " bytes; closed before reading it");
  }
  if (sequence != expected) {
    return bad(ChannelError::kSequence, "frame sequence " + std::to_string(sequence) + " where " + std::to_string(expected) +
                                            " was expected: a replayed, dropped or reordered frame");
  }
  const size_t total = FrameLayout::kHeader + size_t{length} + FrameLayout::kTrailer;
  if (n < total) {
    *need = total;
    return Status::kNeedMore;
  }
  frame->type = type;
  frame->length = length;
  frame->sequence = sequence;
  frame->payload = data + FrameLayout::kHeader;
  frame->total = total;
  return Status::kFrame;
}

FrameReader::Status FrameReader::fail_mac(const FrameView& f) {
  return fail(ChannelError::kAuth, "frame " + std::to_string(f.sequence) + " (type 0x" + hex(f.type) + ", " + std::to_string(f.length) +
                                       " bytes) fails its HMAC: forged, corrupted, or sealed with another session's key");
}

namespace {
bool mac_matches(HmacKey::Mac& mac, const FrameView& f) {
  uint8_t digest[Sha256::kDigest];
  mac.finish(digest);
  return digest_equal(digest, f.payload + f.length);
}
}  // namespace

FrameReader::Status FrameReader::next(const uint8_t* data, size_t n, FrameView* frame, size_t* need) {
  if (error_ != ChannelError::kNone) return Status::kError;
  ChannelError code;
  std::string why;
  const Status s = judge(data, n, expected_, frame, need, &code, &why);
  if (s == Status::kError) return fail(code, std::move(why));
  if (s == Status::kNeedMore) return s;
  HmacKey::Mac mac(*key_);
  mac.update(data, FrameLayout::kHeader + frame->length);
  return mac_matches(mac, *frame) ? Status::kFrame : fail_mac(*frame);
}

FrameReader::Status FrameReader::next2(const uint8_t* data, size_t n, FrameView frames[2], size_t* count, size_t* need) {
  if (error_ != ChannelError::kNone) return Status::kError;
  ChannelError code;
  std::string why;
  FrameView& a = frames[0];
  const Status s = judge(data, n, expected_, &a, need, &code, &why);
  if (s == Status::kError) return fail(code, std::move(why));
  if (s == Status::kNeedMore) return s;
  *count = 1;
  FrameView& b = frames[1];
  size_t need_b;
  // The second frame's header is judged only to see whether it is complete; a fault in it is
  // reported by the call that reaches it, after the first frame has been taken.
  if (judge(data + a.total, n - a.total, expected_ + 1, &b, &need_b, &code, &why) != Status::kFrame) {
    HmacKey::Mac mac(*key_);
    mac.update(data, FrameLayout::kHeader + a.length);
    return mac_matches(mac, a) ? Status::kFrame : fail_mac(a);
  }
  const uint8_t* pb = data + a.total;
  const size_t la = FrameLayout::kHeader + a.length, lb = FrameLayout::kHeader + b.length, both = std::min(la, lb);
  HmacKey::Mac ma(*key_), mb(*key_);
  HmacKey::Mac::update2(ma, data, mb, pb, both);
  ma.update(data + both, la - both);
  mb.update(pb + both, lb - both);
  if (!mac_matches(ma, a)) return fail_mac(a);
  // A bad second frame is left to the next call, which checks it again alone and fails on it.
  if (mac_matches(mb, b)) *count = 2;
  return Status::kFrame;
}

MessageVerdict check_message(uint8_t type, const uint8_t* p, size_t n, std::string* why) {
  auto invalid = [&](std::string w) {
    *why = std::move(w);
    return MessageVerdict::kInvalid;
  };
  switch (type) {
    case msg::kLog:
      if (n == 0) return invalid("LOG payload is empty; a LOG frame carries at least one batch");
      return MessageVerdict::kValid;
    case msg::kAck:
      if (n != msg::kAckBytes) return invalid(exact_length("ACK", n, msg::kAckBytes));
      return MessageVerdict::kValid;
    case msg::kHeartbeat: {
      if (n != 24) return invalid(exact_length("HEARTBEAT", n, 24));
      const uint64_t bits = load_be64(p);
      double sent;
      std::memcpy(&sent, &bits, 8);
      // -0 is refused too: it would be a second encoding of 0.
      if (!std::isfinite(sent) || sent < 0 || bits == (uint64_t{1} << 63)) {
        return invalid("HEARTBEAT sentAtMs " + js_number(sent) + " is not a finite number ≥ 0");
      }
      return MessageVerdict::kValid;
    }
    case msg::kRelease:
      if (n != 8) return invalid(exact_length("RELEASE", n, 8));
      return MessageVerdict::kValid;
    case msg::kCloneBegin:
    case msg::kControl:
      return MessageVerdict::kNeedsJs;
    case msg::kClonePages: {
      if (n < 8) return invalid("CLONE_PAGES payload is " + std::to_string(n) + " bytes, shorter than its 8-byte header");
      const uint32_t page = load_be32u(p);
      const uint32_t count = load_be32u(p + 4);
      if (page < 1 || page > msg::kMaxPageSize || (page & (page - 1)) != 0) {
        return invalid("CLONE_PAGES pageSize " + std::to_string(page) + " is not a power of two ≤ " + std::to_string(msg::kMaxPageSize));
      }
      const uint64_t want = 8 + uint64_t{count} * (4 + uint64_t{page});
      if (n != want) return invalid(exact_length("CLONE_PAGES", n, want));
      int64_t last = -1;
      for (uint32_t i = 0; i < count; i++) {
        const uint32_t index = load_be32u(p + 8 + uint64_t{i} * (4 + page));
        if (static_cast<int64_t>(index) <= last) {
          return invalid("CLONE_PAGES page " + std::to_string(i) + " index " + std::to_string(index) + " does not increase on " + std::to_string(last));
        }
        last = index;
      }
      return MessageVerdict::kValid;
    }
    case msg::kCloneFinal: {
      if (n < 4) return invalid("CLONE_FINAL payload is " + std::to_string(n) + " bytes, shorter than its 4-byte header");
      const uint32_t meta = load_be32u(p);
      if (meta > msg::kMaxJsonBytes || 4 + uint64_t{meta} > n) {
        return invalid("CLONE_FINAL meta length " + std::to_string(meta) + " does not fit the " + std::to_string(n) + "-byte payload (or is over " +
                       std::to_string(msg::kMaxJsonBytes) + ")");
      }
      return MessageVerdict::kNeedsJs;
    }
    case msg::kCloneDone:
      if (n != 0) return invalid(exact_length("CLONE_DONE", n, 0));
      return MessageVerdict::kValid;
    case msg::kCloneDisk: {
      const int64_t data = static_cast<int64_t>(n) - 8;
      if (data < 512 || data % 512 != 0 || data > static_cast<int64_t>(msg::kMaxDiskChunk)) {
        return invalid("CLONE_DISK carries " + std::to_string(data) + " bytes of data, not a multiple of 512 from 512 to " + std::to_string(msg::kMaxDiskChunk));
      }
      const uint64_t offset = load_be64(p);
      if (offset % 512 != 0) return invalid("CLONE_DISK offset " + std::to_string(offset) + " is not a multiple of 512");
      return MessageVerdict::kValid;
    }
    case msg::kGoLive:
      if (n < 8) return invalid("GO_LIVE payload is " + std::to_string(n) + " bytes, shorter than 8");
      return reason_ok("GO_LIVE", p + 8, n - 8, why) ? MessageVerdict::kValid : MessageVerdict::kInvalid;
    case msg::kBye:
      return reason_ok("BYE", p, n, why) ? MessageVerdict::kValid : MessageVerdict::kInvalid;
    default:
      return invalid("unknown message type 0x" + hex(type));
  }
}

bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xbf;  // bounds of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;       // no overlong forms
      else if (c == 0xed) hi = 0x9f;  // no surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;       // no overlong forms
      else if (c == 0xf4) hi = 0x8f;  // nothing above U+10FFFF
    } else {
      return false;
    }
    if (n - i < len) return false;
    if (p[i + 1] < lo || p[i + 1] > hi) return false;
    for (size_t k = 2; k < len; k++) {
      if (p[i + k] < 0x80 || p[i + k] > 0xbf) return false;
    }
    i += len;
  }
  return true;
}

}  // namespace lockstep
