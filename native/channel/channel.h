// The logging channel's data path on a native thread: after the TypeScript handshake, one thread owns
// the connected socket. The primary's side frames sealed batches out of the log ring and reads ACKs;
// the secondary's side verifies LOG frames into the replay ring and ACKs them. No napi here.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "channel/frame.h"
#include "channel/sha256.h"
#include "log/ring.h"

namespace lockstep {

/*
 *   primary (kSender)                                         secondary (kReceiver)
 *   vCPU ─batches─▶ [log ring] ─▶ LOG frames + HMAC ─socket─▶ verify ─▶ [replay ring] ─▶ replayer
 *   gate ◀─ acked_lsn1() / on_ack ◀── verify ◀─────────socket◀─ ACK (one per read round)
 *
 * A LOG frame carries whole batches (native/log/event.h) with consecutive lsns, straight from the ring
 * memory (writev; no copy); the ring bytes are released once the kernel has them. The receiver checks
 * every frame as src/protocol/frame.ts does (header, sequence, then HMAC), then that the payload is
 * whole batches continuing the lsn sequence, and only then publishes it to the replay ring.
 * Other message types go through send() and on_message, in order with the log.
 * Back-pressure: a full socket stops framing (the log ring fills, its producer waits); a full replay
 * ring stops reading (TCP slows the peer). Nothing is dropped. The first error ends the channel with a
 * ChannelError code and a message; nothing after a bad frame takes effect.
 */

/// The state the TypeScript handshake leaves behind.
struct ChannelConfig {
  /// A connected stream socket (TCP, or a socketpair in tests); owned (and closed) by the channel.
  int fd = -1;
  std::vector<uint8_t> send_key, recv_key;
  /// Sequence number of the next frame each way.
  uint64_t send_sequence = 0, recv_sequence = 0;
  /// Largest payload sent or accepted (maxFrameBytes).
  uint32_t max_payload = 16u << 20;
  /// LOG frames coalesce whole batches up to this many payload bytes (a larger batch goes alone).
  uint32_t max_log_frame = 1u << 20;
  /// Bytes the handshake read past its last frame: the start of the stream.
  std::vector<uint8_t> leftover;
  /// The SHA-256 implementation (tests force the portable one; unavailable falls back to portable).
  Sha256Impl impl = sha256_default();
};

/// Counters; each is exact on its own, together they are not a snapshot.
struct ChannelStats {
  uint64_t bytes_sent = 0, bytes_received = 0, frames_sent = 0, frames_received = 0;
  uint64_t log_bytes = 0, log_frames = 0, log_batches = 0;  ///< batch bytes sent (kSender) or received (kReceiver)
  uint64_t acks = 0;                                         ///< ACKs received (kSender) or sent (kReceiver)
  uint64_t ack_instret = 0;                                  ///< kSender: the replay position the last ACK carried
  uint64_t ack_bytes = 0;                                    ///< kSender: the log bytes the last ACK said were received
  uint64_t wakeups = 0;                                      ///< times the thread slept in poll()
  uint64_t cpu_ns = 0;                                       ///< the channel thread's CPU time, once it ended
};

class LogChannel {
 public:
  enum class Role : uint8_t { kSender, kReceiver };

  /// kSender: the ring the sealed batches arrive in (its producer initialised it; at least 2 MiB, so
  /// that the largest batch fits). kReceiver: the ring verified batches go to (this channel is its
  /// producer and initialises it in start(); a batch may be published in pieces).
  struct Ring {
    uint8_t* mem = nullptr;
    uint32_t capacity = 0;
    /// The lsn of the first batch through it.
    uint64_t first_lsn = 0;
  };

  struct Hooks {
    /// kSender, channel thread: an ACK moved the acknowledged position to `lsn1` (lsn + 1).
    std::function<void(uint64_t lsn1, uint64_t instret)> on_ack;
    /// kSender: ring bytes were released. kReceiver: ring bytes were published. Channel thread.
    std::function<void()> on_ring;
    /// kReceiver: the replay position the ACKs carry (called on the channel thread). Empty: 0.
    std::function<uint64_t()> progress;
    /// A verified frame of a type the data path does not handle (HEARTBEAT, RELEASE, ...); the
    /// payload is valid during the call. Empty: such a frame ends the channel (kMalformed).
    std::function<void(uint8_t type, const uint8_t* payload, size_t n)> on_message;
    /// The channel ended (once, channel thread, last call): error() and message() say why.
    std::function<void()> on_end;
  };

  /// Takes ownership of config.fd (closed even if start() is never called). Checks nothing about the
  /// ring yet: start() does.
  LogChannel(Role role, ChannelConfig config, Ring ring, Hooks hooks);
  ~LogChannel();
  LogChannel(const LogChannel&) = delete;
  LogChannel& operator=(const LogChannel&) = delete;

  /// Starts the thread. False (and ended with kLocal) if the ring or socket cannot be used.
  bool start();
  /// The ring's other end moved (kSender: batches published; kReceiver: bytes consumed). Any thread;
  /// cheap when the channel is busy (a system call only when its thread sleeps).
  void notify();
  /// kReceiver: the replayer took bytes out of the ring. Wakes the thread only when it waits for ring
  /// space: a wake-up per consumed batch would cost the secondary a system call and a context switch
  /// on both threads for nothing. Any thread.
  void notify_space();
  /// kSender: batches were published. When the channel's sending side is free, frames and writes them
  /// on the calling thread (the producer) instead of waking the channel's thread, which then only reads
  /// ACKs; otherwise (or when the socket does not take it all) the same as notify(). Any thread.
  void send_now();
  /// Queues one message (payload already encoded) after the log published so far. Any thread. False
  /// when the channel has ended (the message is dropped).
  bool send(uint8_t type, std::vector<uint8_t> payload);
  /// Sets the rider: a message (payload already encoded) that leaves only together with other frames,
  /// never on a write of its own, and that a later rider replaces (a newer figure supersedes an older
  /// one). For notices whose loss costs nothing but freshness (RELEASE). Any thread.
  void ride(uint8_t type, std::vector<uint8_t> payload);
  /// Sends what is queued and the log published so far, then half-closes the socket and ends
  /// (kNone) once the peer closes its side. Any thread.
  void finish();
  /// Stops the thread and closes the socket now. Idempotent; joins. Any thread but the channel's.
  void stop();
  /// kReceiver: sends an ACK with the current position and progress now, even if no new batch came
  /// (the replay's progress for the sender's lag control). Any thread.
  void report();

  /// kSender: lsn + 1 of the highest acknowledged batch (0: none). acquire: the output gate may release
  /// what this covers.
  uint64_t acked_lsn1() const { return acked_lsn1_.load(std::memory_order_acquire); }
  /// lsn + 1 of the last batch framed (kSender) or published to the ring (kReceiver).
  uint64_t log_lsn1() const { return log_lsn1_.load(std::memory_order_acquire); }
  bool ended() const { return ended_.load(std::memory_order_acquire); }
  /// kReceiver: a verified LOG frame waits for space in the ring (the consumer should take some soon).
  bool waiting_for_space() const { return want_space_.load(std::memory_order_relaxed); }
  /// Waits up to timeout_ms for the end; true if it ended.
  bool wait_end(int timeout_ms);
  /// Valid once ended().
  ChannelError error() const;
  std::string message() const;
  /// Valid once ended(): whether the peer ended the channel with a BYE, and its reason.
  bool peer_said_bye() const;
  std::string bye_reason() const;
  ChannelStats stats() const;

 private:
  struct OutFrame {
    uint8_t header[FrameLayout::kHeader];
    uint8_t trailer[FrameLayout::kTrailer];
    std::vector<uint8_t> owned;  // a message's payload (LOG payloads stay in the ring)
    const uint8_t* piece[2] = {nullptr, nullptr};
    size_t piece_len[2] = {0, 0};
    size_t total = 0, written = 0;
    uint32_t ring_bytes = 0;  // log ring bytes to release once written
  };
  struct Pending {
    uint8_t type;
    std::vector<uint8_t> payload;
    uint32_t fence;  // the log ring's head when queued
  };

  void run();
  bool pump_receive();
  bool process_frames();
  bool dispatch(const FrameView& f);
  bool accept_log(const FrameView& f);
  bool push_sink();
  bool fill_out();
  /// kSender: hold published log back until the frame in flight is acknowledged (group commit).
  bool coalescing() const;
  bool frame_log(uint32_t limit);
  void frame_owned(uint8_t type, std::vector<uint8_t> payload);
  /// Numbers a frame just added to out_; its MAC follows in seal_pending(), before it is written.
  void seal(OutFrame& f, uint8_t type, uint32_t length);
  void seal_pending();
  bool pump_send();
  bool has_work();
  void sleep();
  void end(ChannelError code, std::string message);

  const Role role_;
  int fd_;
  int wake_ = -1;  // eventfd
  HmacKey send_key_, recv_key_;
  const uint32_t max_payload_, max_log_frame_;
  Ring ring_;
  Hooks hooks_;
  std::unique_ptr<ByteRingConsumer> log_;    // kSender
  std::unique_ptr<ByteRingProducer> sink_;   // kReceiver
  std::thread thread_;

  std::atomic<bool> sleeping_{false}, want_space_{false}, quit_{false}, finishing_{false}, ended_{false}, report_{false}, thread_started_{false};
  /// The sending side (out_, framing, sealing, writing, and what has_work() reads of them): the channel
  /// thread, and send_now() on a producer's thread, take turns. Taken before mu_, never after.
  std::mutex send_mu_;
  std::atomic<uint64_t> acked_lsn1_{0}, log_lsn1_{0};
  struct Counters {
    std::atomic<uint64_t> bytes_sent{0}, bytes_received{0}, frames_sent{0}, frames_received{0};
    std::atomic<uint64_t> log_bytes{0}, log_frames{0}, log_batches{0}, acks{0}, ack_instret{0}, ack_bytes{0}, wakeups{0}, cpu_ns{0};
  } c_;
  mutable std::mutex mu_;  // pending_, error_, message_, the end
  std::condition_variable end_cv_;
  std::deque<Pending> pending_;
  Pending rider_{};  // see ride(); under mu_
  bool has_rider_ = false;
  ChannelError error_ = ChannelError::kNone;
  std::string message_;
  bool bye_ = false;
  std::string bye_reason_;
  bool stopped_ = false;
  uint32_t finish_fence_ = 0;  // the log ring's head when finish() was called

  // Channel thread only; the sending side (send_seq_, out_, out_bytes_, unsealed_, log_framed_, next_lsn_,
  // log_head_seen_, shut_wr_) also by send_now(), both under send_mu_.
  uint64_t send_seq_;
  FrameReader reader_;
  std::vector<uint8_t> rbuf_;
  size_t rstart_ = 0, rend_ = 0, need_ = FrameLayout::kHeader;
  FrameView verified_[2];               // frames whose MACs were checked together (FrameReader::next2)
  size_t ahead_ = 0, ahead_count_ = 0;  // verified_[ahead_, ahead_count_) are not dispatched yet
  bool eof_ = false, shut_wr_ = false;
  // A receive came back short of its buffer: the socket was empty then, so the next round does not ask
  // again (a recv that would only say EAGAIN) but goes on to sleep in poll() if nothing else moved.
  bool rx_drained_ = false;
  std::atomic<bool> bye_sent_{false};  // a BYE of ours was framed (under send_mu_; read by the thread)
  std::string peer_bye_;  // the peer's BYE, once it came (nothing after it is read)
  uint32_t log_head_seen_ = 0;  // kSender: the ring head frame_log() looked at last
  std::deque<OutFrame> out_;
  size_t out_bytes_ = 0;        // unwritten bytes in out_
  size_t unsealed_ = 0;         // frames at the back of out_ still without their MAC
  uint32_t log_framed_ = 0;     // log ring bytes past its tail already in frames
  uint64_t next_lsn_;           // the lsn the next batch must carry
  uint64_t acked_sent_ = 0;     // kReceiver: lsn1 of the last ACK sent
  // kReceiver: the verified LOG payload at rbuf_[sink_at_, sink_at_ + sink_len_) being published.
  size_t sink_at_ = 0, sink_len_ = 0, sink_done_ = 0, sink_frame_total_ = 0;
  uint64_t sink_lsn1_ = 0;      // lsn1 once it is all published
  bool sink_active_ = false;
  bool ring_moved_ = false;     // kReceiver: bytes were published to the ring this round (on_ring is due)
};

}  // namespace lockstep
