// The log's data path without JavaScript: a LogChannel (native/channel) joined to a VcpuThread. On the
// primary the channel takes sealed batches straight from the log ring and each ACK releases the output
// gate on the channel thread; on the secondary verified batches reach the replayer through an SPSC ring
// and ACKs leave natively. The host sees only messages, released console bytes and host frames, and the
// end, through one queue and the doorbell. No napi.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "channel/channel.h"
#include "runner/vcpu_thread.h"

namespace lockstep {

/*
 *   primary                                                   secondary
 *   vCPU ─flush_log─▶ [log ring] ─▶ LogChannel ═══socket═══▶ LogChannel ─▶ [replay ring] ─▶ vCPU replays
 *     ▲  published()                   │ on_ack                   │ on_message (RELEASE → shadow_release)
 *     └── gate.release(lsn) ◀──────────┘                         └─ progress() ─▶ ACK
 *                      └─▶ console / host frames ─▶ queue ─▶ doorbell ─▶ JS (take())
 */
class ReplicationLink {
 public:
  using Role = LogChannel::Role;

  /// What the host must look at, taken in one go.
  struct HostEvents {
    struct Message {
      uint8_t type;
      std::vector<uint8_t> payload;
    };
    std::vector<Message> messages;  ///< frames the data path leaves to the host (CONTROL, GO_LIVE…), in order
    OutputGate::Outputs released;   ///< primary: console bytes and host frames that ACKs let out
    bool ended = false;             ///< the channel ended (reported once)
    ChannelError error = ChannelError::kNone;
    std::string message;
    bool bye = false;  ///< the peer ended it with a BYE (and bye_reason says why)
    std::string bye_reason;
  };

  struct Figures {
    ChannelStats channel;
    uint64_t acked_lsn1 = 0;     ///< primary: lsn + 1 of the highest acknowledged batch; secondary: of the last published
    uint64_t log_lsn1 = 0;       ///< primary: lsn + 1 of the last batch framed
    uint64_t released_lsn1 = 0;  ///< secondary: lsn + 1 of the highest RELEASE notice (0: none)
    uint64_t emitted_lsn1 = 0;   ///< primary: lsn + 1 up to which every released output has left (see emitted())
    int64_t heard_ns = 0;        ///< steady clock (ns) when the peer was last heard from (0: never)
    uint64_t ack_rtt_ns = 0;     ///< primary: the last ACK's round trip (batch published → ACK), 0 unknown
  };

  /// Starts the data path on `config.fd`. kSender: `vcpu` records (its log ring, `log_mem` with
  /// `log_capacity` data bytes, is the channel's input from lsn 0). kReceiver: `vcpu` replays (idle);
  /// a replay ring of `replay_capacity` bytes is attached to it. `doorbell` is rung (any thread) when
  /// take() has something. Null with *error on failure (config.fd is closed then).
  static std::unique_ptr<ReplicationLink> start(Role role, VcpuThread& vcpu, ChannelConfig config, uint8_t* log_mem, uint32_t log_capacity,
                                                uint32_t replay_capacity, std::function<void()> doorbell, std::string* error);
  ~ReplicationLink();
  ReplicationLink(const ReplicationLink&) = delete;
  ReplicationLink& operator=(const ReplicationLink&) = delete;

  /// Queues a message after the log published so far (any thread). False once the channel ended.
  bool send(uint8_t type, std::vector<uint8_t> payload) { return channel_->send(type, std::move(payload)); }
  /// kReceiver: an ACK with the replay's progress now.
  void report() { channel_->report(); }
  /// Sends what is queued and all log published so far, then ends once the peer closes its side.
  void finish() { channel_->finish(); }
  /// Stops the channel thread and closes the socket; the log ring has no reader any more (kSender: the
  /// vCPU discards what it records from here on). Idempotent.
  void stop();
  bool ended() const { return channel_->ended(); }
  /// Moves everything pending into *out. False when there was nothing.
  bool take(HostEvents* out);
  /// kSender: the host has emitted the outputs of every take() so far. Until it says so, a position
  /// whose outputs went to the host is not announced to the secondary (the RELEASE notice, and the
  /// emitted_lsn1 figure the host's heartbeat announces): a crash in between would lose them, since the
  /// secondary does not re-emit what it was told was released.
  void emitted();
  Figures figures() const;

 private:
  class Consumer;
  ReplicationLink(Role role, VcpuThread& vcpu, std::function<void()> doorbell);
  void on_ack(uint64_t lsn1);
  void on_message(uint8_t type, const uint8_t* payload, size_t n);
  void on_end();
  void heard();
  void ring_host();

  const Role role_;
  VcpuThread& vcpu_;
  const std::function<void()> doorbell_;
  std::shared_ptr<LogChannel> channel_;
  std::shared_ptr<Consumer> consumer_;  // kSender: the vCPU's LogConsumer
  std::atomic<int64_t> heard_ns_{0};
  std::atomic<uint64_t> released_lsn1_{0};
  std::atomic<uint64_t> ack_rtt_ns_{0};
  int64_t last_notice_ns_ = 0;  // channel thread: the last RELEASE notice
  std::mutex mu_;  // host_, end_reported_ and the emitted bookkeeping below
  HostEvents host_;
  bool end_reported_ = false;
  // kSender: outputs handed to the host and not yet confirmed emitted (queued or taken), and the lsn + 1
  // of the last ACK processed meanwhile (pending_upto_) and at the last take (taken_upto_).
  bool pending_ = false;
  uint64_t pending_upto_ = 0, taken_upto_ = 0;
  std::atomic<uint64_t> emitted_lsn1_{0};
  uint64_t noticed_lsn1_ = 0;  // channel thread: the last position a RELEASE notice announced
};

}  // namespace lockstep
