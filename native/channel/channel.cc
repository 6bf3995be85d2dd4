// The channel thread: one non-blocking socket, one eventfd, poll() when nothing moved. Every check of
// a received frame happens before any of it takes effect; the first failure ends the channel.
#include "channel/channel.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "log/event.h"
#include "machine/thread_name.h"

namespace lockstep {
namespace {

/// Unwritten frame bytes above which no more frames are sealed until the socket takes some.
constexpr size_t kMaxOut = 4u << 20;
/// The receive buffer's size when frames are small; it grows to the largest frame seen.
constexpr size_t kReadBuffer = 4u << 20;
constexpr size_t kMaxIov = 64;
/// Unframed log bytes that leave at once even while a log frame waits for its ACK (see coalescing()).
constexpr size_t kCoalesceBytes = 16u << 10;

uint32_t le32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}
uint64_t le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}
std::string errno_text(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

}  // namespace

LogChannel::LogChannel(Role role, ChannelConfig config, Ring ring, Hooks hooks)
    : role_(role),
      fd_(config.fd),
      max_payload_(config.max_payload),
      max_log_frame_(std::max<uint32_t>(1, config.max_log_frame)),
      ring_(ring),
      hooks_(std::move(hooks)),
      send_seq_(config.send_sequence),
      reader_(&recv_key_, config.recv_sequence, config.max_payload),
      next_lsn_(ring.first_lsn) {
  send_key_.set(config.send_key.data(), config.send_key.size(), config.impl);
  recv_key_.set(config.recv_key.data(), config.recv_key.size(), config.impl);
  rbuf_.resize(std::max(kReadBuffer, config.leftover.size()));
  if (!config.leftover.empty()) std::memcpy(rbuf_.data(), config.leftover.data(), config.leftover.size());
  rend_ = config.leftover.size();
  // Wiped at once: the pads above are all the channel keeps.
  std::fill(config.send_key.begin(), config.send_key.end(), 0);
  std::fill(config.recv_key.begin(), config.recv_key.end(), 0);
}

LogChannel::~LogChannel() {
  stop();
  send_key_.clear();
  recv_key_.clear();
}

bool LogChannel::start() {
  auto refuse = [&](std::string why) {
    end(ChannelError::kLocal, std::move(why));
    if (hooks_.on_end) hooks_.on_end();
    return false;
  };
  if (!ring_.mem || !ByteRingProducer::valid_capacity(ring_.capacity)) return refuse("the ring's memory or capacity is unusable");
  if (role_ == Role::kSender) {
    // A batch must fit the ring whole, or it could never be framed.
    if (ring_.capacity < BatchLayout::kHeader + BatchLayout::kMaxLength) return refuse("the log ring is smaller than the largest batch");
    log_ = std::make_unique<ByteRingConsumer>(ring_.mem, ring_.capacity);
    if (!log_->header_matches()) return refuse("the log ring was not initialised by its producer");
  } else {
    sink_ = std::make_unique<ByteRingProducer>(ring_.mem, ring_.capacity);
    sink_->init();
  }
  if (fd_ < 0) return refuse("no socket");
  const int flags = fcntl(fd_, F_GETFL);
  if (flags < 0 || fcntl(fd_, F_SETFL, flags | O_NONBLOCK) < 0) return refuse(errno_text("fcntl(O_NONBLOCK)"));
  const int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // fails harmlessly on a socketpair
  wake_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_ < 0) return refuse(errno_text("eventfd"));
  thread_ = std::thread([this] {
    name_this_thread(role_ == Role::kSender ? "lockstep-logtx" : "lockstep-logrx");
    run();
  });
  thread_started_.store(true, std::memory_order_release);
  return true;
}

void LogChannel::notify() {
  // seq_cst: orders the caller's ring update before the load of sleeping_; pairs with the fence in
  // sleep() so that either the thread sees the update or we see it asleep.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (sleeping_.load(std::memory_order_relaxed) && wake_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }
}

void LogChannel::notify_space() {
  // seq_cst: the consumer's ring update before the loads below; the thread stores want_space_ and
  // sleeping_ before its fence in sleep() and then checks for space (has_work): one of us sees the other.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (want_space_.load(std::memory_order_relaxed)) notify();
}

void LogChannel::ride(uint8_t type, std::vector<uint8_t> payload) {
  std::lock_guard<std::mutex> lock(mu_);
  if (ended_.load(std::memory_order_relaxed) || stopped_) return;
  rider_ = {type, std::move(payload), 0};
  has_rider_ = true;
}

bool LogChannel::send(uint8_t type, std::vector<uint8_t> payload) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_.load(std::memory_order_relaxed) || stopped_) return false;
    pending_.push_back({type, std::move(payload), role_ == Role::kSender ? ring_head(ring_.mem) : 0});
  }
  notify();
  return true;
}

void LogChannel::finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    finish_fence_ = role_ == Role::kSender && ring_.mem ? ring_head(ring_.mem) : 0;
  }
  // release: finish_fence_ (set above, under mu_ as well) before the flag; pairs with the acquire
  // loads in run() and has_work().
  finishing_.store(true, std::memory_order_release);
  notify();
}

void LogChannel::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return;
    stopped_ = true;
  }
  // release: pairs with the acquire load at the top of run(); the eventfd below wakes it to see it.
  quit_.store(true, std::memory_order_release);
  if (wake_ >= 0) {
    const uint64_t one = 1;
    (void)!write(wake_, &one, sizeof one);
  }
  if (thread_.joinable()) thread_.join();
  end(ChannelError::kNone, "stopped by its owner");
  std::lock_guard<std::mutex> send_lock(send_mu_);  // a send_now() in progress finishes first
  if (fd_ >= 0) close(fd_);
  if (wake_ >= 0) close(wake_);
  fd_ = wake_ = -1;
}

void LogChannel::send_now() {
  // try_lock: the producer never waits for the channel thread; when that thread is busy sending, it
  // will see the new batch anyway (notify() below).
  if (role_ == Role::kSender && send_mu_.try_lock()) {
    bool flushed = false;
    if (!ended() && fd_ >= 0 && thread_started_.load(std::memory_order_acquire) && !finishing_.load(std::memory_order_acquire)) {
      fill_out();
      pump_send();
      flushed = out_.empty();
    }
    send_mu_.unlock();
    if (flushed) return;  // all of it is in the kernel: nothing for the thread to do until an ACK comes
  }
  notify();
}

void LogChannel::report() {
  if (role_ != Role::kReceiver) return;
  report_.store(true, std::memory_order_relaxed);
  notify();
}

bool LogChannel::peer_said_bye() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bye_;
}

std::string LogChannel::bye_reason() const {
  std::lock_guard<std::mutex> lock(mu_);
  return bye_reason_;
}

bool LogChannel::wait_end(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  return end_cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms), [&] { return ended_.load(std::memory_order_acquire); });
}

ChannelError LogChannel::error() const {
  std::lock_guard<std::mutex> lock(mu_);
  return error_;
}

std::string LogChannel::message() const {
  std::lock_guard<std::mutex> lock(mu_);
  return message_;
}

ChannelStats LogChannel::stats() const {
  ChannelStats s;
  s.bytes_sent = c_.bytes_sent.load(std::memory_order_relaxed);
  s.bytes_received = c_.bytes_received.load(std::memory_order_relaxed);
  s.frames_sent = c_.frames_sent.load(std::memory_order_relaxed);
  s.frames_received = c_.frames_received.load(std::memory_order_relaxed);
  s.log_bytes = c_.log_bytes.load(std::memory_order_relaxed);
  s.log_frames = c_.log_frames.load(std::memory_order_relaxed);
  s.log_batches = c_.log_batches.load(std::memory_order_relaxed);
  s.acks = c_.acks.load(std::memory_order_relaxed);
  s.ack_instret = c_.ack_instret.load(std::memory_order_relaxed);
  s.ack_bytes = c_.ack_bytes.load(std::memory_order_relaxed);
  s.wakeups = c_.wakeups.load(std::memory_order_relaxed);
  s.cpu_ns = c_.cpu_ns.load(std::memory_order_relaxed);
  return s;
}

void LogChannel::end(ChannelError code, std::string message) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_.load(std::memory_order_relaxed)) return;
    error_ = code;
    message_ = std::move(message);
    // release: error_ and message_ before the flag; pairs with the acquire in ended() (any thread).
    ended_.store(true, std::memory_order_release);
    quit_.store(true, std::memory_order_release);
  }
  end_cv_.notify_all();
}

void LogChannel::run() {
  while (!quit_.load(std::memory_order_acquire)) {
    bool moved = false;
    if (sink_active_) moved |= push_sink();
    if (!sink_active_) moved |= process_frames();
    if (rx_drained_) {
      rx_drained_ = false;
    } else if (!sink_active_ && ahead_ == ahead_count_ && !eof_ && peer_bye_.empty() && !ended()) {
      moved |= pump_receive();
    }
    bool over = false;
    {
      // The sending side, which send_now() may also run on the producer's thread.
      std::lock_guard<std::mutex> send_lock(send_mu_);
      if (role_ == Role::kReceiver && !ended()) {
        const uint64_t lsn1 = log_lsn1_.load(std::memory_order_relaxed);
        const bool asked = report_.exchange(false, std::memory_order_relaxed);
        if (lsn1 > acked_sent_ || (lsn1 > 0 && asked)) {
          std::vector<uint8_t> ack(msg::kAckBytes);
          store_be64(ack.data(), lsn1 - 1);
          store_be64(ack.data() + 8, hooks_.progress ? hooks_.progress() : 0);
          store_be64(ack.data() + 16, c_.log_bytes.load(std::memory_order_relaxed));
          frame_owned(msg::kAck, std::move(ack));
          acked_sent_ = lsn1;
          c_.acks.fetch_add(1, std::memory_order_relaxed);
        }
      }
      if (!ended()) moved |= fill_out();
      if (!ended()) moved |= pump_send();
      if (ended()) {
        over = true;
      } else if (!peer_bye_.empty() && out_.empty()) {
        end(ChannelError::kNone, peer_bye_);
        over = true;
      } else if (finishing_.load(std::memory_order_acquire) && !shut_wr_ && out_.empty()) {
        bool flushed;
        {
          std::lock_guard<std::mutex> lock(mu_);
          flushed = pending_.empty() && (role_ == Role::kReceiver || static_cast<int32_t>(finish_fence_ - log_->tail_index()) <= 0);
        }
        if (flushed) {
          shutdown(fd_, SHUT_WR);
          shut_wr_ = true;
          moved = true;
        }
      }
    }
    if (ring_moved_) {
      // kReceiver: the replayer is woken after the ACK went out, not before. On a shared core the
      // woken vCPU preempts this thread, and the ACK (which the primary's held outputs wait for) would
      // leave only after the replayer's turn.
      ring_moved_ = false;
      if (hooks_.on_ring) hooks_.on_ring();
    }
    if (over) break;
    if (eof_ && !sink_active_ && !ended()) {
      if (rend_ > rstart_) {
        end(ChannelError::kTruncated, "the stream ended inside frame " + std::to_string(reader_.expected_sequence()) + " (" +
                                          std::to_string(rend_ - rstart_) + " of " + std::to_string(need_) + " bytes)");
      } else if (shut_wr_) {
        end(ChannelError::kNone, "closed after finish()");
      } else if (bye_sent_.load(std::memory_order_relaxed)) {
        // Our BYE went out before finish() was called: the peer closing after it is the orderly end.
        end(ChannelError::kNone, "closed after this side's BYE");
      } else {
        end(ChannelError::kClosed, "the peer closed the connection without BYE");
      }
      break;
    }
    if (!moved) sleep();
  }
  end(ChannelError::kNone, "stopped by its owner");  // no-op unless stop() ended the loop
  timespec cpu{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu);
  c_.cpu_ns.store(static_cast<uint64_t>(cpu.tv_sec) * 1000000000u + static_cast<uint64_t>(cpu.tv_nsec), std::memory_order_relaxed);
  if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);  // the peer sees the end now, not when the owner stops us
  if (hooks_.on_end) hooks_.on_end();
}

bool LogChannel::pump_receive() {
  if (rstart_ == rend_) rstart_ = rend_ = 0;
  const size_t have = rend_ - rstart_;
  const size_t want = std::max<size_t>(need_, have + 64 * 1024);
  if (rbuf_.size() - rstart_ < want) {
    std::memmove(rbuf_.data(), rbuf_.data() + rstart_, have);
    rstart_ = 0;
    rend_ = have;
    if (rbuf_.size() < want) rbuf_.resize(want);
  }
  ssize_t n;
  do {
    n = recv(fd_, rbuf_.data() + rend_, rbuf_.size() - rend_, 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    rx_drained_ = static_cast<size_t>(n) < rbuf_.size() - rend_;
    rend_ += static_cast<size_t>(n);
    c_.bytes_received.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
    process_frames();
    return true;
  }
  if (n == 0) {
    eof_ = true;
    return true;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
  end(ChannelError::kClosed, errno_text("receive"));
  return false;
}

bool LogChannel::process_frames() {
  bool any = false;
  while (!sink_active_ && peer_bye_.empty() && !ended()) {
    if (ahead_ == ahead_count_) {
      ahead_ = ahead_count_ = 0;
      size_t need = 0;
      switch (reader_.next2(rbuf_.data() + rstart_, rend_ - rstart_, verified_, &ahead_count_, &need)) {
        case FrameReader::Status::kNeedMore:
          need_ = need;
          return any;
        case FrameReader::Status::kError:
          end(reader_.error(), reader_.message());
          return any;
        case FrameReader::Status::kFrame:
          break;
      }
    }
    // A second verified frame waits here while the first one's LOG payload fills the ring; rbuf_
    // does not move meanwhile (pump_receive() waits for both).
    const FrameView f = verified_[ahead_++];
    any = true;
    need_ = FrameLayout::kHeader;
    c_.frames_received.fetch_add(1, std::memory_order_relaxed);
    if (!dispatch(f)) return any;
    reader_.accept();
    if (f.type != msg::kLog) rstart_ += f.total;  // push_sink() passes a LOG frame once the ring has it all
  }
  return any;
}

bool LogChannel::dispatch(const FrameView& f) {
  const std::string at = "frame " + std::to_string(f.sequence);
  std::string why;
  if (check_message(f.type, f.payload, f.length, &why) == MessageVerdict::kInvalid) {
    end(ChannelError::kMalformed, at + ": " + why);
    return false;
  }
  switch (f.type) {
    case msg::kLog:
      if (role_ != Role::kReceiver) {
        end(ChannelError::kMalformed, at + ": a LOG frame from the secondary");
        return false;
      }
      return accept_log(f);
    case msg::kAck: {
      if (role_ != Role::kSender) {
        end(ChannelError::kMalformed, at + ": an ACK frame from the primary");
        return false;
      }
      const uint64_t lsn = load_be64(f.payload), instret = load_be64(f.payload + 8);
      const uint64_t sent = log_lsn1_.load(std::memory_order_relaxed);
      if (lsn >= sent) {
        end(ChannelError::kMalformed, at + ": ACK of batch " + std::to_string(lsn) + ", but only batches below " + std::to_string(sent) +
                                          " were sent");
        return false;
      }
      c_.acks.fetch_add(1, std::memory_order_relaxed);
      c_.ack_instret.store(instret, std::memory_order_relaxed);
      c_.ack_bytes.store(load_be64(f.payload + 16), std::memory_order_relaxed);
      if (lsn + 1 > acked_lsn1_.load(std::memory_order_relaxed)) {
        // release: whoever sees the new position (the output gate) sees it after everything before it.
        acked_lsn1_.store(lsn + 1, std::memory_order_release);
        if (hooks_.on_ack) hooks_.on_ack(lsn + 1, instret);
      }
      return true;
    }
    case msg::kBye:
      // Read nothing more; end once what is already sealed (the last ACK) is out.
      peer_bye_ = "the peer said BYE: " + std::string(reinterpret_cast<const char*>(f.payload), f.length);
      {
        std::lock_guard<std::mutex> lock(mu_);
        bye_ = true;
        bye_reason_.assign(reinterpret_cast<const char*>(f.payload), f.length);
      }
      return false;
    default:
      if (!hooks_.on_message) {
        char type[8];
        std::snprintf(type, sizeof type, "0x%02x", f.type);
        end(ChannelError::kMalformed, at + ": a message of type " + type + " on the log data path, which has no handler for it");
        return false;
      }
      hooks_.on_message(f.type, f.payload, f.length);
      return true;
  }
}

bool LogChannel::accept_log(const FrameView& f) {
  const std::string at = "LOG frame " + std::to_string(f.sequence);
  uint64_t lsn = next_lsn_, batches = 0;
  for (size_t off = 0; off < f.length;) {
    if (f.length - off < BatchLayout::kFixed) {
      end(ChannelError::kMalformed, at + " ends inside the header of batch " + std::to_string(lsn));
      return false;
    }
    const uint8_t* b = f.payload + off;
    const uint32_t word0 = le32(b + BatchLayout::kLength);
    const uint32_t len = BatchLayout::declared_length(word0);
    if (len > BatchLayout::kMaxLength + BatchLayout::kMaxCompactHeader) {
      end(ChannelError::kMalformed, at + ": batch " + std::to_string(lsn) + " claims " + std::to_string(len) + " record bytes, over " +
                                        std::to_string(BatchLayout::kMaxLength));
      return false;
    }
    const size_t total = BatchLayout::total_size(word0);
    if (f.length - off < total) {
      end(ChannelError::kMalformed, at + ": batch " + std::to_string(lsn) + " runs past the end of the frame");
      return false;
    }
    const uint64_t got = le64(b + BatchLayout::kLsn);
    if (got != lsn) {
      end(ChannelError::kMalformed, at + " carries batch lsn " + std::to_string(got) + " where " + std::to_string(lsn) + " was expected");
      return false;
    }
    off += total;
    lsn++;
    batches++;
  }
  next_lsn_ = lsn;
  c_.log_frames.fetch_add(1, std::memory_order_relaxed);
  c_.log_batches.fetch_add(batches, std::memory_order_relaxed);
  c_.log_bytes.fetch_add(f.length, std::memory_order_relaxed);
  sink_at_ = static_cast<size_t>(f.payload - rbuf_.data());
  sink_len_ = f.length;
  sink_done_ = 0;
  sink_frame_total_ = f.total;
  sink_lsn1_ = lsn;
  sink_active_ = true;
  push_sink();
  return true;
}

bool LogChannel::push_sink() {
  const size_t pushed = sink_->push(rbuf_.data() + sink_at_ + sink_done_, sink_len_ - sink_done_);
  sink_done_ += pushed;
  if (sink_done_ == sink_len_) {
    sink_active_ = false;
    rstart_ += sink_frame_total_;
    // release: the ring bytes are published (push() above) before the position; pairs with log_lsn1().
    log_lsn1_.store(sink_lsn1_, std::memory_order_release);
  }
  want_space_.store(sink_active_, std::memory_order_relaxed);
  // The replayer is woken once this round's ACK is on its way (see run()).
  if (pushed) ring_moved_ = true;
  return pushed > 0;
}

bool LogChannel::fill_out() {
  bool any = false;
  // Decided once per round: the frames of one round (a pair, sealed together) all go.
  const bool hold = role_ == Role::kSender && coalescing();
  while (out_bytes_ < kMaxOut && !ended()) {
    bool have = false;
    Pending p;
    uint32_t limit = UINT32_MAX;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!pending_.empty()) {
        // A message waits for the log published before it (its fence) to be framed first.
        const int32_t ahead = role_ == Role::kSender ? static_cast<int32_t>(pending_.front().fence - (log_->tail_index() + log_framed_)) : 0;
        if (ahead <= 0) {
          p = std::move(pending_.front());
          pending_.pop_front();
          have = true;
        } else {
          limit = static_cast<uint32_t>(ahead);
        }
      }
    }
    if (have) {
      if (p.payload.size() > max_payload_) {
        end(ChannelError::kOversized, "a " + std::to_string(p.payload.size()) + "-byte message is over the limit of " + std::to_string(max_payload_));
        return any;
      }
      frame_owned(p.type, std::move(p.payload));
      any = true;
      continue;
    }
    // A queued message waits for the log before it: that log is not held back.
    if (role_ == Role::kSender && (!hold || limit != UINT32_MAX) && frame_log(limit)) {
      any = true;
      continue;
    }
    break;
  }
  if (any && !ended()) {
    // A rider leaves with the frames of this round, in the same write: never a write of its own.
    bool have = false;
    Pending r;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (has_rider_) {
        r = std::move(rider_);
        has_rider_ = false;
        have = true;
      }
    }
    if (have && r.payload.size() <= max_payload_) frame_owned(r.type, std::move(r.payload));
  }
  seal_pending();
  return any;
}

bool LogChannel::coalescing() const {
  // Group commit clocked by ACKs, as Nagle's algorithm is: while a log frame is unacknowledged, batches
  // published meanwhile wait for its ACK and then leave together, in one frame and one system call,
  // unless they are already large. An output waits at most one more round trip; the primary pays a
  // write, and the secondary a wake-up and an ACK, per round trip instead of per batch.
  return acked_lsn1_.load(std::memory_order_acquire) < log_lsn1_.load(std::memory_order_relaxed) &&
         !finishing_.load(std::memory_order_acquire) && log_->available() - log_framed_ < kCoalesceBytes;
}

bool LogChannel::frame_log(uint32_t limit) {
  log_head_seen_ = ring_head(ring_.mem);
  // `limit` is where a queued message's fence lies: frame whole batches until it is reached. A fence may
  // fall inside a batch (the producer publishes a batch in pieces when the ring is nearly full): that
  // batch goes whole, before the message. Capping the bytes at the fence would strand both.
  const size_t avail = log_->available() - log_framed_;
  // The first of a pair of frames takes about half of what there is, so that the two MACs can be
  // computed together (seal_pending); the second takes the rest.
  const size_t cap = unsealed_ % 2 == 0 && avail < 2 * size_t{max_log_frame_} ? avail / 2 : max_log_frame_;
  size_t len = 0;
  uint64_t lsn = next_lsn_;
  uint8_t hdr[BatchLayout::kFixed];
  while (avail - len >= BatchLayout::kFixed) {
    log_->copy_at(log_framed_ + len, hdr, sizeof hdr);
    const uint32_t word0 = le32(hdr + BatchLayout::kLength);
    const uint32_t records = BatchLayout::declared_length(word0);
    const uint64_t got = le64(hdr + BatchLayout::kLsn);
    if (records > BatchLayout::kMaxLength + BatchLayout::kMaxCompactHeader || got != lsn) {
      end(ChannelError::kLocal, "the log ring holds a damaged batch (lsn " + std::to_string(got) + " where " + std::to_string(lsn) + " was expected, " +
                                    std::to_string(records) + " record bytes)");
      return false;
    }
    const size_t size = BatchLayout::total_size(word0);
    if (avail - len < size) break;  // published in part so far
    if (len > 0 && len + size > max_log_frame_) break;
    len += size;
    lsn++;
    if (len >= cap || len >= limit) break;
  }
  if (len == 0) return false;
  if (len > max_payload_) {
    end(ChannelError::kOversized, "a " + std::to_string(len) + "-byte batch is over the frame limit of " + std::to_string(max_payload_));
    return false;
  }
  out_.emplace_back();
  OutFrame& f = out_.back();
  log_->pieces(log_framed_, len, &f.piece[0], &f.piece_len[0], &f.piece[1], &f.piece_len[1]);
  f.ring_bytes = static_cast<uint32_t>(len);
  c_.log_batches.fetch_add(lsn - next_lsn_, std::memory_order_relaxed);
  c_.log_frames.fetch_add(1, std::memory_order_relaxed);
  c_.log_bytes.fetch_add(len, std::memory_order_relaxed);
  log_framed_ += static_cast<uint32_t>(len);
  next_lsn_ = lsn;
  seal(f, msg::kLog, static_cast<uint32_t>(len));
  // An ACK may name it from here on (its MAC is computed before anything is written: seal_pending()).
  // release (pairs with log_lsn1()): only a counter for other threads; this thread checks ACKs against it.
  log_lsn1_.store(lsn, std::memory_order_release);
  return !ended();
}

void LogChannel::frame_owned(uint8_t type, std::vector<uint8_t> payload) {
  if (type == msg::kBye) bye_sent_.store(true, std::memory_order_relaxed);
  out_.emplace_back();
  OutFrame& f = out_.back();
  f.owned = std::move(payload);
  f.piece[0] = f.owned.data();
  f.piece_len[0] = f.owned.size();
  seal(f, type, static_cast<uint32_t>(f.owned.size()));
}

void LogChannel::seal(OutFrame& f, uint8_t type, uint32_t length) {
  if (send_seq_ > FrameLayout::kMaxSequence) {
    end(ChannelError::kSequence, "sequence numbers exhausted: open a new channel");
    return;
  }
  encode_frame_header(f.header, type, length, send_seq_++);
  f.total = FrameLayout::kHeader + length + FrameLayout::kTrailer;
  out_bytes_ += f.total;
  unsealed_++;
  c_.frames_sent.fetch_add(1, std::memory_order_relaxed);
}

namespace {

/// The bytes a frame's MAC covers (header, then at most two payload pieces), walked in steps.
struct MacInput {
  template <typename Frame>
  explicit MacInput(const Frame& f)
      : seg{f.header, f.piece[0], f.piece[1]}, len{FrameLayout::kHeader, f.piece_len[0], f.piece_len[1]} {}
  const uint8_t* seg[3];
  size_t len[3];
  int i = 0;
  size_t off = 0;
  bool done() {
    for (; i < 3; i++, off = 0) {
      if (off < len[i]) return false;
    }
    return true;
  }
  size_t run() const { return len[i] - off; }
  const uint8_t* at() const { return seg[i] + off; }
};

}  // namespace

void LogChannel::seal_pending() {
  // The MACs of the frames sealed last, two at a time where there are two (see Sha256::update2).
  for (size_t at = out_.size() - unsealed_; at < out_.size();) {
    OutFrame& a = out_[at];
    MacInput ia(a);
    HmacKey::Mac ma(send_key_);
    if (at + 1 < out_.size()) {
      OutFrame& b = out_[at + 1];
      MacInput ib(b);
      HmacKey::Mac mb(send_key_);
      while (!ia.done() && !ib.done()) {
        const size_t n = std::min(ia.run(), ib.run());
        HmacKey::Mac::update2(ma, ia.at(), mb, ib.at(), n);
        ia.off += n;
        ib.off += n;
      }
      while (!ib.done()) {
        mb.update(ib.at(), ib.run());
        ib.off = ib.len[ib.i];
      }
      mb.finish(b.trailer);
    }
    while (!ia.done()) {
      ma.update(ia.at(), ia.run());
      ia.off = ia.len[ia.i];
    }
    ma.finish(a.trailer);
    at += 2;
  }
  unsealed_ = 0;
}

bool LogChannel::pump_send() {
  if (out_.empty()) return false;
  iovec iov[kMaxIov];
  size_t count = 0;
  for (const OutFrame& f : out_) {
    if (count + 4 > kMaxIov) break;
    const uint8_t* seg[4] = {f.header, f.piece[0], f.piece[1], f.trailer};
    const size_t len[4] = {FrameLayout::kHeader, f.piece_len[0], f.piece_len[1], FrameLayout::kTrailer};
    size_t skip = f.written;
    for (int i = 0; i < 4; i++) {
      if (skip >= len[i]) {
        skip -= len[i];
        continue;
      }
      iov[count++] = {const_cast<uint8_t*>(seg[i]) + skip, len[i] - skip};
      skip = 0;
    }
  }
  msghdr mh{};
  mh.msg_iov = iov;
  mh.msg_iovlen = count;
  ssize_t n;
  do {
    n = sendmsg(fd_, &mh, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
    end(ChannelError::kClosed, errno_text("send"));
    return false;
  }
  c_.bytes_sent.fetch_add(static_cast<uint64_t>(n), std::memory_order_relaxed);
  size_t left = static_cast<size_t>(n);
  uint32_t released = 0;
  while (left > 0) {
    OutFrame& f = out_.front();
    const size_t take = std::min(left, f.total - f.written);
    f.written += take;
    left -= take;
    out_bytes_ -= take;
    if (f.written == f.total) {
      released += f.ring_bytes;
      out_.pop_front();
    }
  }
  if (released) {
    log_framed_ -= released;
    log_->consume(released);
    if (hooks_.on_ring) hooks_.on_ring();
  }
  return true;
}

bool LogChannel::has_work() {
  if (quit_.load(std::memory_order_acquire)) return true;
  if (report_.load(std::memory_order_relaxed)) return true;
  if (finishing_.load(std::memory_order_acquire) && !shut_wr_ && out_.empty()) return true;
  if (out_bytes_ < kMaxOut) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!pending_.empty()) return true;
  }
  if (role_ == Role::kSender) return out_bytes_ < kMaxOut && ring_head(ring_.mem) != log_head_seen_ && !coalescing();
  return sink_active_ && sink_->free_space() > 0;
}

void LogChannel::sleep() {
  sleeping_.store(true, std::memory_order_relaxed);
  // seq_cst: pairs with the fence in notify() (see there).
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool work;
  short events = 0;
  {
    std::lock_guard<std::mutex> send_lock(send_mu_);
    work = has_work();
    if (!out_.empty()) events |= POLLOUT;
  }
  if (!work) {
    pollfd fds[2] = {{fd_, events, 0}, {wake_, POLLIN, 0}};
    if (!sink_active_ && !eof_ && peer_bye_.empty()) fds[0].events |= POLLIN;
    c_.wakeups.fetch_add(1, std::memory_order_relaxed);
    poll(fds, 2, -1);
    if (fds[1].revents & POLLIN) {
      uint64_t v;
      (void)!read(wake_, &v, sizeof v);
    }
  }
  sleeping_.store(false, std::memory_order_relaxed);
}

}  // namespace lockstep
