// The replication link (see replication_link.h): the channel's hooks wired to the vCPU thread and the
// output gate, and the host queue.
#include "runner/replication_link.h"

#include <chrono>
#include <algorithm>
#include <cstring>
#include <unistd.h>

namespace lockstep {
namespace {
constexpr int64_t kReleaseNoticeNs = 5'000'000;
int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

/// The vCPU's side of a sending link: wakes the channel per published batch, notes when each batch was
/// published (for the ACK round trip), and says when nobody reads the ring any more.
class ReplicationLink::Consumer final : public LogConsumer {
 public:
  explicit Consumer(std::weak_ptr<LogChannel> channel) : channel_(std::move(channel)) {}
  void published(uint64_t lsn) override {
    Slot& s = slots_[lsn % kSlots];
    s.at.store(now_ns(), std::memory_order_relaxed);
    s.lsn.store(lsn, std::memory_order_release);  // pairs with the acquire in published_at()
    if (auto c = channel_.lock()) c->send_now();  // written from this thread when the channel is idle
  }
  bool gone() const override { return gone_.load(std::memory_order_acquire); }
  /// release: the channel thread's last reads of the ring happen before the vCPU takes them over.
  void set_gone() { gone_.store(true, std::memory_order_release); }
  /// When batch `lsn` was published (0: not remembered any more).
  int64_t published_at(uint64_t lsn) const {
    const Slot& s = slots_[lsn % kSlots];
    if (s.lsn.load(std::memory_order_acquire) != lsn) return 0;
    return s.at.load(std::memory_order_relaxed);  // a figure: a torn pair costs one wrong sample at most
  }

 private:
  static constexpr size_t kSlots = 1024;
  struct Slot {
    std::atomic<uint64_t> lsn{UINT64_MAX};
    std::atomic<int64_t> at{0};
  };
  std::weak_ptr<LogChannel> channel_;
  std::atomic<bool> gone_{false};
  std::array<Slot, kSlots> slots_;
};

ReplicationLink::ReplicationLink(Role role, VcpuThread& vcpu, std::function<void()> doorbell)
    : role_(role), vcpu_(vcpu), doorbell_(std::move(doorbell)) {}

std::unique_ptr<ReplicationLink> ReplicationLink::start(Role role, VcpuThread& vcpu, ChannelConfig config, uint8_t* log_mem, uint32_t log_capacity,
                                                        uint32_t replay_capacity, std::function<void()> doorbell, std::string* error) {
  std::unique_ptr<ReplicationLink> link(new ReplicationLink(role, vcpu, std::move(doorbell)));
  ReplicationLink* self = link.get();
  LogChannel::Ring ring;
  if (role == Role::kSender) {
    ring = {log_mem, log_capacity, 0};
  } else {
    // The vCPU calls back after it took bytes out: the channel may publish more (its wait for ring
    // space). A weak reference: the callback may outlive the link.
    auto weak = std::make_shared<std::weak_ptr<LogChannel>>();
    uint8_t* mem = vcpu.attach_replay_ring(replay_capacity, [weak] {
      if (auto c = weak->lock()) c->notify_space();
    });
    if (!mem) {
      if (config.fd >= 0) close(config.fd);
      *error = "the machine is not replaying, or is running: the replay ring cannot be attached";
      return nullptr;
    }
    ring = {mem, replay_capacity, 0};
    LogChannel::Hooks hooks;
    hooks.on_ring = [&vcpu, self] {
      self->heard();
      // A channel waiting for ring space wakes the replayer now rather than at the end of its nap.
      vcpu.replay_arrived(self->channel_->waiting_for_space());
    };
    hooks.progress = [&vcpu] { return vcpu.progress(); };
    hooks.on_message = [self](uint8_t type, const uint8_t* p, size_t n) { self->on_message(type, p, n); };
    hooks.on_end = [self] { self->on_end(); };
    link->channel_ = std::make_shared<LogChannel>(role, std::move(config), ring, std::move(hooks));
    *weak = link->channel_;
    if (!link->channel_->start()) {
      *error = link->channel_->message();
      return nullptr;
    }
    return link;
  }
  LogChannel::Hooks hooks;
  hooks.on_ack = [self](uint64_t lsn1, uint64_t) { self->on_ack(lsn1); };
  hooks.on_ring = [&vcpu] { vcpu.console_drained(); };  // wakes a vCPU waiting for log ring space
  hooks.on_message = [self](uint8_t type, const uint8_t* p, size_t n) { self->on_message(type, p, n); };
  hooks.on_end = [self] { self->on_end(); };
  link->channel_ = std::make_shared<LogChannel>(role, std::move(config), ring, std::move(hooks));
  link->consumer_ = std::make_shared<Consumer>(link->channel_);
  if (!link->channel_->start()) {
    *error = link->channel_->message();
    return nullptr;
  }
  vcpu.set_log_consumer(link->consumer_);
  link->channel_->notify();  // batches recorded before the link started
  return link;
}

ReplicationLink::~ReplicationLink() { stop(); }

void ReplicationLink::stop() {
  if (!channel_) return;
  channel_->stop();
  if (consumer_) {
    consumer_->set_gone();
    vcpu_.console_drained();  // a vCPU waiting for ring space discards instead
  }
}

void ReplicationLink::heard() { heard_ns_.store(now_ns(), std::memory_order_relaxed); }

void ReplicationLink::on_ack(uint64_t lsn1) {
  heard();
  const int64_t at = consumer_ ? consumer_->published_at(lsn1 - 1) : 0;
  if (at > 0) ack_rtt_ns_.store(static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - at)), std::memory_order_relaxed);
  OutputGate::Outputs out = vcpu_.release(lsn1 - 1);
  const bool to_host = !out.console.empty() || !out.frames.empty();  // frames to a device and disk requests already left
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (to_host) {
      OutputGate::Outputs& r = host_.released;
      r.console.insert(r.console.end(), out.console.begin(), out.console.end());
      for (auto& f : out.frames) r.frames.push_back(std::move(f));
      r.blocks += out.blocks;
      pending_ = true;
    }
    if (pending_) pending_upto_ = lsn1;
    else emitted_lsn1_.store(lsn1, std::memory_order_relaxed);
  }
  // Tell the secondary what left, at most every kReleaseNoticeNs: what it knows was released it need
  // not re-emit at a go-live. Less often costs duplicates after a failover, never losses (the host's
  // heartbeat tick announces the last position too). Only what has left: outputs handed to the host
  // count once it said it emitted them (emitted()). The notice rides with the next log frame: a frame,
  // a write and a wake-up of the secondary of its own each time cost more than its freshness.
  const int64_t now = now_ns();
  const uint64_t left = emitted_lsn1_.load(std::memory_order_relaxed);
  if (left > noticed_lsn1_ && now - last_notice_ns_ >= kReleaseNoticeNs) {
    last_notice_ns_ = now;
    noticed_lsn1_ = left;
    std::vector<uint8_t> notice(8);
    store_be64(notice.data(), left - 1);
    channel_->ride(msg::kRelease, std::move(notice));
  }
  if (to_host) ring_host();
}

void ReplicationLink::on_message(uint8_t type, const uint8_t* payload, size_t n) {
  heard();
  if (type == msg::kHeartbeat) return;  // being heard from is all it says here
  if (type == msg::kRelease && role_ == Role::kReceiver && n == 8) {
    // The primary let out everything up to lsn: nothing of it needs re-emitting at a go-live.
    const uint64_t lsn = load_be64(payload);
    vcpu_.shadow_release(lsn);
    uint64_t cur = released_lsn1_.load(std::memory_order_relaxed);
    while (lsn + 1 > cur && !released_lsn1_.compare_exchange_weak(cur, lsn + 1, std::memory_order_relaxed)) {
    }
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    host_.messages.push_back({type, std::vector<uint8_t>(payload, payload + n)});
  }
  ring_host();
}

void ReplicationLink::on_end() {
  if (consumer_) consumer_->set_gone();
  if (role_ == Role::kSender) vcpu_.console_drained();
  {
    std::lock_guard<std::mutex> lock(mu_);
    host_.ended = true;
  }
  ring_host();
}

void ReplicationLink::ring_host() {
  if (doorbell_) doorbell_();
}

bool ReplicationLink::take(HostEvents* out) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool end = host_.ended && !end_reported_;
  if (host_.messages.empty() && host_.released.console.empty() && host_.released.frames.empty() && !end) return false;
  out->messages = std::move(host_.messages);
  host_.messages.clear();
  out->released = std::move(host_.released);
  host_.released = {};
  taken_upto_ = pending_upto_;
  out->ended = end;
  if (end) {
    end_reported_ = true;
    out->error = channel_->error();
    out->message = channel_->message();
    out->bye = channel_->peer_said_bye();
    out->bye_reason = channel_->bye_reason();
  }
  return true;
}

void ReplicationLink::emitted() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!pending_) return;
  const bool more = !host_.released.console.empty() || !host_.released.frames.empty();
  // Everything taken has left; what came since waits for the next take.
  emitted_lsn1_.store(more ? taken_upto_ : pending_upto_, std::memory_order_relaxed);
  pending_ = more;
}

ReplicationLink::Figures ReplicationLink::figures() const {
  Figures f;
  f.channel = channel_->stats();
  f.acked_lsn1 = role_ == Role::kSender ? channel_->acked_lsn1() : channel_->log_lsn1();
  f.log_lsn1 = channel_->log_lsn1();
  f.released_lsn1 = released_lsn1_.load(std::memory_order_relaxed);
  f.emitted_lsn1 = emitted_lsn1_.load(std::memory_order_relaxed);
  f.heard_ns = heard_ns_.load(std::memory_order_relaxed);
  f.ack_rtt_ns = ack_rtt_ns_.load(std::memory_order_relaxed);
  return f;
}

}  // namespace lockstep
