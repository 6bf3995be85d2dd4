// The logging channel's authenticated frames in C++: the same layout, checks, order of checks and
// verdicts as src/protocol/frame.ts and the binary decoders of src/protocol/messages.ts (tests hold the
// two side by side). Pure: no sockets, no threads, no napi.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "channel/sha256.h"

namespace lockstep {

/// One frame on the wire (all integers big-endian); docs/protocol.md has the full picture.
///
///   byte 0         4      5       6         8                12                               20
///        +---------+------+-------+---------+----------------+--------------------------------+
///        |  magic  | type | flags | reserved| payload length |     sequence number (u64)      |
///        | "LKSP"  |  u8  |  u8=0 |  u16=0  |      u32       | per direction, +1 every frame  |
///        +---------+------+-------+---------+----------------+--------------------------------+
///        |                        payload (payload length bytes)                              |
///        +------------------------------------------------------------------------------------+
///        |   HMAC-SHA-256 (32 bytes) over header + payload, keyed with the direction key      |
///        +------------------------------------------------------------------------------------+
///
/// Only authenticated frames exist here: the handshake (HELLO, AUTH, CRC32C trailers) stays in
/// TypeScript, which hands over the keys and both sequence numbers once it is done.
struct FrameLayout {
  static constexpr uint32_t kMagic = 0x4c4b5350;  // "LKSP"
  static constexpr size_t kOffMagic = 0;
  static constexpr size_t kOffType = 4;
  static constexpr size_t kOffFlags = 5;
  static constexpr size_t kOffReserved = 6;
  static constexpr size_t kOffLength = 8;
  static constexpr size_t kOffSequence = 12;
  static constexpr size_t kHeader = 20;
  static constexpr size_t kTrailer = Sha256::kDigest;
  /// A direction stops at 2^53 frames, as the TypeScript encoder does (its numbers are doubles).
  static constexpr uint64_t kMaxSequence = (uint64_t{1} << 53) - 1;
};
static_assert(FrameLayout::kOffType == FrameLayout::kOffMagic + 4 && FrameLayout::kOffFlags == FrameLayout::kOffType + 1 &&
                  FrameLayout::kOffReserved == FrameLayout::kOffFlags + 1 && FrameLayout::kOffLength == FrameLayout::kOffReserved + 2 &&
                  FrameLayout::kOffSequence == FrameLayout::kOffLength + 4 && FrameLayout::kHeader == FrameLayout::kOffSequence + 8,
              "the header fields tile the 20-byte header");

/// Message type codes (src/protocol/messages.ts, MessageType).
namespace msg {
constexpr uint8_t kHello = 0x01, kAuth = 0x02, kLog = 0x10, kAck = 0x11, kHeartbeat = 0x12, kRelease = 0x13, kCloneBegin = 0x20,
                  kClonePages = 0x21, kCloneFinal = 0x22, kCloneDone = 0x23, kCloneDisk = 0x24, kControl = 0x30, kGoLive = 0x31,
                  kBye = 0x3f;
constexpr size_t kAckBytes = 24;
constexpr size_t kMaxReasonBytes = 1024;
constexpr size_t kMaxJsonBytes = 64 << 10;
constexpr uint32_t kMaxPageSize = 64 << 10;
constexpr size_t kMaxDiskChunk = 1 << 20;
}  // namespace msg

/// How a channel ended. The numbers are the binding's; src/native/channel.ts maps each to a
/// ProtocolError code (ERR_LOCKSTEP_PROTOCOL_<NAME>).
enum class ChannelError : uint8_t {
  kNone = 0,       ///< orderly: a local close, or the peer's BYE
  kMalformed = 1,  ///< bad magic, flags, type, or a payload its decoder refuses
  kAuth = 2,       ///< a frame whose HMAC does not verify
  kOversized = 3,  ///< a header announcing more than the maximum payload (or a log batch too large to send)
  kSequence = 4,   ///< a sequence number other than previous + 1
  kClosed = 5,     ///< reset, or closed by the peer without BYE (between frames)
  kTruncated = 6,  ///< the stream ended inside a frame (a short frame)
  kLocal = 7,      ///< this side's own fault: a damaged batch in the log ring, a socket error, no memory
};

const char* channel_error_name(ChannelError e);

/// True for an application message type (everything but HELLO and AUTH).
bool is_application_type(uint8_t type);

/// Writes a header. `sequence` must be at most FrameLayout::kMaxSequence.
void encode_frame_header(uint8_t out[FrameLayout::kHeader], uint8_t type, uint32_t length, uint64_t sequence);

/// A verified frame inside the caller's buffer.
struct FrameView {
  uint8_t type = 0;
  uint32_t length = 0;
  uint64_t sequence = 0;
  const uint8_t* payload = nullptr;
  /// Header + payload + trailer.
  size_t total = 0;
};

/// Decodes one direction of authenticated frames from a byte stream kept contiguous by the caller.
/// Judges each header (magic, flags and reserved, type, length against the maximum, sequence, in that
/// order) as soon as its 20 bytes are in, before any of the payload is needed, then verifies the HMAC
/// once the whole frame is there. After the first failure it is dead and keeps reporting it.
class FrameReader {
 public:
  enum class Status : uint8_t { kNeedMore, kFrame, kError };

  FrameReader(const HmacKey* key, uint64_t expected_sequence, uint32_t max_payload)
      : key_(key), expected_(expected_sequence), max_payload_(max_payload) {}

  /// Looks at the unconsumed bytes `data[0, n)`. kNeedMore: `*need` is how many bytes the frame at
  /// the front needs in all (header only, until the header is in). kFrame: `*frame` points into
  /// `data`; call accept() before asking for the next one. kError: see error() and message().
  Status next(const uint8_t* data, size_t n, FrameView* frame, size_t* need);
  /// next(), and when a second whole frame follows the first, that one too with both MACs computed
  /// together (Sha256::update2): kFrame returns `*count` (1 or 2) frames; accept() each in turn.
  Status next2(const uint8_t* data, size_t n, FrameView frames[2], size_t* count, size_t* need);
  /// The frame returned last is consumed: the next one must carry the following sequence number.
  void accept() { expected_++; }
  uint64_t expected_sequence() const { return expected_; }
  ChannelError error() const { return error_; }
  const std::string& message() const { return message_; }

 private:
  Status fail(ChannelError code, std::string message);
  Status fail_mac(const FrameView& f);
  /// The header checks of next() for the frame numbered `expected`, and whether it is all there; the
  /// MAC is not looked at and nothing is recorded (a fault comes back in *code and *why).
  Status judge(const uint8_t* data, size_t n, uint64_t expected, FrameView* frame, size_t* need, ChannelError* code, std::string* why) const;
  const HmacKey* key_;
  uint64_t expected_;
  uint32_t max_payload_;
  ChannelError error_ = ChannelError::kNone;
  std::string message_;
};

/// The strict decoders of messages.ts for what native code can judge. kValid: the payload is a
/// well-formed message of its type. kNeedsJs: its JSON part is for the JavaScript decoder to judge
/// (CLONE_BEGIN, CLONE_FINAL's meta, CONTROL); the checks that need no JSON passed. kInvalid: `*why`
/// says what is wrong (ERR_LOCKSTEP_PROTOCOL_MALFORMED).
enum class MessageVerdict : uint8_t { kValid, kNeedsJs, kInvalid };
MessageVerdict check_message(uint8_t type, const uint8_t* payload, size_t n, std::string* why);

/// Well-formed UTF-8 (Unicode 15, table 3-7): what TextDecoder('utf-8', { fatal: true }) accepts.
bool valid_utf8(const uint8_t* p, size_t n);

inline uint64_t load_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}
inline uint32_t load_be32u(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}
inline void store_be64(uint8_t* p, uint64_t v) {
  for (int i = 7; i >= 0; i--, v >>= 8) p[i] = static_cast<uint8_t>(v);
}

}  // namespace lockstep
