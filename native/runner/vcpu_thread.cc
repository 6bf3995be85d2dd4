// vCPU thread main loop: run in slices, feed host input between slices, sleep in WFI, report.
#include "runner/vcpu_thread.h"

#include <cerrno>
#include <chrono>
#include <cstring>
#include <iterator>

#include "machine/thread_name.h"

namespace lockstep {
namespace {
// Between slices the thread looks at host input; a slice is ~4 ms at 1000 MIPS.
constexpr uint64_t kSlice = 1u << 22;
constexpr size_t kConsoleFlushBytes = 16 * 1024;
// The output rule's coalescing window: a held output's batch is sealed at most this many instructions
// later (about 30 µs at 1000 MIPS), or when the guest waits.
constexpr uint64_t kOutputWindow = 1u << 15;
// With no output and no input from outside waiting for it, a logged position is sent at most this long
// after the last batch (or when the slice's log is large): a batch header and an acknowledgement per
// slice or per WFI were most of the log of an I/O-bound guest (a Linux service waits for its disk and
// network several times a request), and the secondary stays this close behind an idle guest. At 2 ms,
// half the batches of kvd under 1 400-byte TCP sets were these idle ones (the guest waiting between
// requests). A frame or console bytes that reached the guest are not left waiting for it (see
// input_since_flush_).
constexpr auto kMarkInterval = std::chrono::milliseconds(10);
// A replayer that ran out of log less than kReplayBusy after it last took some naps for kReplayNap and
// then looks at the replay ring itself, instead of having the ring's producer wake it per batch (a
// futex wake on the link thread and a context switch for a few microseconds of replay each time). The
// ACK does not wait for the replay, so this costs no output latency; the replay trails by at most a nap,
// which lag control (its target is 100 ms by default) and a go-live (it replays what is left) absorb.
constexpr auto kReplayNap = std::chrono::milliseconds(2);
constexpr auto kReplayBusy = std::chrono::milliseconds(20);

// The pre-copy engine's view of the machine: RAM, and the copy consumer's bit of the dirty-page bitmap.
class MachinePages final : public PrecopyMemory {
 public:
  explicit MachinePages(Machine& m) : m_(m) {}
  uint32_t pages() const override { return static_cast<uint32_t>(m_.cpu().dirty().size()); }
  const uint8_t* dirty() const override { return m_.cpu().dirty().data(); }
  const uint8_t* page(uint32_t p) const override { return m_.ram() + static_cast<size_t>(p) * PrecopyEngine::kPageBytes; }
  void clean(uint32_t p) override { m_.cpu().clean(p, kDirtyCopy); }

 private:
  Machine& m_;
};
}  // namespace

VcpuThread::VcpuThread(const MachineConfig& config, uint8_t* console_mem, uint32_t console_capacity,
                       std::function<void()> doorbell)
    : machine_(std::make_unique<Machine>(config, this)),
      console_(console_mem, console_capacity),
      doorbell_(std::move(doorbell)),
      gate_(OutputGate::Sinks{
          [this](std::vector<std::vector<uint8_t>>& frames) {
            if (tap_) {
              for (const auto& f : frames) tap_->send(f.data(), f.size());
              return true;
            }
            if (std::shared_ptr<UdpBackend> u = udp()) {
              u->send_many(frames);  // never calls back into this object: safe under the gate's lock
              return true;
            }
            return false;
          },
          [this](BlockFile::Request&& r) {
            if (BlockFile* b = machine_->block_file()) b->submit(std::move(r));
          }}) {
  console_.init();
  machine_->cpu().host_flag = &attention_;
  machine_->set_host_io(this);
  if (BlockFile* b = machine_->block_file()) {
    b->set_wake([this] {
      std::lock_guard<std::mutex> lock(mu_);
      disk_done_ = true;
      raise();
      cv_.notify_all();
    });
  }
  thread_ = std::thread([this] {
    name_this_thread("lockstep-vcpu");
    thread_main();
  });
}

VcpuThread::~VcpuThread() { shutdown(); }

void VcpuThread::raise() {
  // release: pairs with the acquire load in Cpu::run(); the queued input/stop flag is visible first.
  // Only new input interrupts a run: input the UART FIFO cannot take yet waits for the next slice
  // boundary (else a guest that is slow to read would be interrupted forever). A replaying machine
  // ignores host input altogether.
  const bool input = (new_input_ || disk_done_) && machine_->log_mode() != LogMode::kReplay;
  attention_.store(stop_requested_ || input || quit_, std::memory_order_release);
}

bool VcpuThread::start(uint64_t target) {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_.load(std::memory_order_relaxed) || quit_) return false;
  target_ = target;
  stop_requested_ = false;
  report_ready_ = false;
  run_requested_ = true;
  busy_.store(true, std::memory_order_release);
  raise();
  cv_.notify_all();
  return true;
}

void VcpuThread::request_stop() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!busy_.load(std::memory_order_relaxed)) return;
  stop_requested_ = true;
  raise();
  cv_.notify_all();
  space_cv_.notify_all();
}

void VcpuThread::input(const uint8_t* data, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  input_.insert(input_.end(), data, data + n);
  new_input_ = true;
  raise();
  cv_.notify_all();
}

bool VcpuThread::attach_tap(const std::string& name, std::string* error) {
  tap_ = TapDevice::open(name, [this](const uint8_t* frame, size_t n) { net_input(frame, n); }, error);
  return tap_ != nullptr;
}

uint64_t VcpuThread::attach_udp(const std::vector<UdpForwardSpec>& forwards, const uint8_t guest_mac[6], std::vector<uint16_t>* ports,
                                int* err, size_t* failed) {
  if (tap_ || udp()) {
    *err = EEXIST;
    *failed = 0;
    return 0;
  }
  // Datagrams enter the guest only through net_input_batch(), which the recorder logs and a replaying
  // machine refuses, so the back-end never changes guest-visible state by itself.
  std::shared_ptr<UdpBackend> b = UdpBackend::open(forwards, guest_mac, [this](std::vector<std::vector<uint8_t>>& frames) { net_input_batch(frames); }, err, failed);
  if (!b) return 0;
  *ports = b->ports();
  std::lock_guard<std::mutex> lock(udp_mu_);
  if (udp_) {  // another attach won the race
    *err = EEXIST;
    *failed = 0;
    return 0;
  }
  udp_ = std::move(b);
  return ++udp_id_;
}

void VcpuThread::detach_udp(uint64_t id) {
  std::shared_ptr<UdpBackend> gone;
  {
    std::lock_guard<std::mutex> lock(udp_mu_);
    if (!udp_ || id != udp_id_) return;
    gone.swap(udp_);
  }
  // A sender that copied the pointer keeps the back-end until its send() returns; the last owner joins
  // the reader (never the reader itself: it holds no reference).
}

bool VcpuThread::udp_stats(uint64_t id, UdpStats* out) {
  std::lock_guard<std::mutex> lock(udp_mu_);
  if (!udp_ || id != udp_id_) return false;
  *out = udp_->stats();
  return true;
}

void VcpuThread::net_transmit(const uint8_t* frame, size_t n) {
  if (gate_.engaged() && hold_output(OutputGate::Kind::kFrame, frame, n, nullptr)) return;
  if (tap_) {
    tap_->send(frame, n);  // a full or down link drops the frame, as a wire would
    return;
  }
  if (std::shared_ptr<UdpBackend> u = udp()) {
    u->send(frame, n);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    net_out_.emplace_back(frame, frame + n);
  }
  doorbell_();
}

std::vector<std::vector<uint8_t>> VcpuThread::take_frames() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<std::vector<uint8_t>> out;
  out.swap(net_out_);
  return out;
}

void VcpuThread::net_input(const uint8_t* frame, size_t n) {
  if (replaying_.load(std::memory_order_acquire)) return;  // a secondary's link is not live yet
  std::lock_guard<std::mutex> lock(mu_);
  if (net_in_.size() + net_taken_ >= kNetQueueFrames) {
    // relaxed: a statistic; readers need no ordering with the queue.
    net_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  net_in_.emplace_back(frame, frame + n);
  new_input_ = true;
  raise();
  cv_.notify_all();
}

void VcpuThread::net_input_batch(std::vector<std::vector<uint8_t>>& frames) {
  if (replaying_.load(std::memory_order_acquire)) return;  // a secondary's link is not live yet
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (std::vector<uint8_t>& f : frames) {
      if (net_in_.size() + net_taken_ >= kNetQueueFrames) {
        net_dropped_.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic (as in net_input)
        continue;
      }
      net_in_.push_back(std::move(f));
    }
    new_input_ = true;
    raise();
  }
  // After the unlock: a vCPU woken while this thread still held mu_ would only block on it again.
  cv_.notify_all();
}

VcpuThread::NetStats VcpuThread::net_stats() {
  NetStats s;
  {
    std::lock_guard<std::mutex> lock(mu_);
    s.queued = net_in_.size() + net_taken_;
  }
  s.delivered = net_delivered_.load(std::memory_order_relaxed);
  s.delivered_bytes = net_delivered_bytes_.load(std::memory_order_relaxed);
  s.dropped = net_dropped_.load(std::memory_order_relaxed);
  return s;
}

void VcpuThread::console_drained() {
  // The link's thread calls this after every LOG frame it wrote: it takes mu_ only when a producer
  // waits for space. Taking it each time made the link thread, woken on the vCPU's core while the vCPU
  // held mu_, block on it and cost both a futex round.
  // seq_cst: the consumer's ring update (before this call) before the load of space_waiters_; pairs
  // with the fence in wait_space(), so either the producer sees the space or we see it waiting.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (space_waiters_.load(std::memory_order_relaxed) == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  space_cv_.notify_all();
}

bool VcpuThread::wait_space(std::unique_lock<std::mutex>& lock, const ByteRingProducer& ring) {
  space_waiters_.fetch_add(1, std::memory_order_relaxed);
  // seq_cst: the count before the look at the ring below; pairs with the fence in console_drained().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const bool full = ring.free_space() == 0;
  // The timeout only bounds a wake-up missed for another reason (teardown wakes it too).
  if (full) space_cv_.wait_for(lock, std::chrono::milliseconds(50));
  space_waiters_.fetch_sub(1, std::memory_order_relaxed);
  return full;
}

bool VcpuThread::take_report(RunReport* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!report_ready_) return false;
  *out = report_;
  report_ready_ = false;
  return true;
}

void VcpuThread::shutdown() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (quit_ && !thread_.joinable()) return;
    quit_ = true;
    raise();
    cv_.notify_all();
    space_cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
  tap_.reset();  // joins the tap reader, which may still hand frames to net_input()
  {
    std::lock_guard<std::mutex> lock(udp_mu_);
    udp_.reset();  // joins the udp reader (unless a sender still holds it: it lets go within its send())
  }
}

void VcpuThread::write(const uint8_t* data, size_t n) {
  // release: the count is complete before anything that reports the stop; pairs with console_position().
  console_position_.store(console_position_.load(std::memory_order_relaxed) + n, std::memory_order_release);
  if (gate_.engaged() && hold_output(OutputGate::Kind::kConsole, data, n, nullptr)) return;
  console_buf_.insert(console_buf_.end(), data, data + n);
  if (console_buf_.size() >= kConsoleFlushBytes) flush_console();
}

void VcpuThread::push_blocking(ByteRingProducer& ring, const uint8_t* data, size_t n) {
  for (;;) {
    const size_t m = ring.push(data, n);
    data += m;
    n -= m;
    if (m) doorbell_();
    if (n == 0) return;
    // Ring full: wait for the host to drain it (it calls console_drained()). Nothing is ever dropped,
    // except on teardown.
    std::unique_lock<std::mutex> lock(mu_);
    if (quit_) return;
    wait_space(lock, ring);
  }
}

void VcpuThread::flush_console() {
  if (console_buf_.empty()) return;
  push_blocking(console_, console_buf_.data(), console_buf_.size());
  console_buf_.clear();
}

void VcpuThread::event(const Event& e) {
  encoder_.add(e);
  if (encoder_.size() >= 64 * 1024) flush_log();
}

void VcpuThread::flush_log() {
  if (!log_) return;
  Machine& m = *machine_;
  const LogCursor& cur = encoder_.cursor();
  // The mark tells a live replayer it may run up to here: nothing else was logged before this point.
  // A held output names the batch being built: seal it even if nothing else was logged since the last.
  if (encoder_.empty() && cur.instret == m.cpu().instret && !tagged_since_flush_ && !first_batch_due_) return;
  if (cur.instret != m.cpu().instret || encoder_.empty()) encoder_.add(m.position(EventKind::kMark));
  tagged_since_flush_ = false;
  first_batch_due_ = false;
  input_since_flush_ = false;
  m.cpu().soft_target = UINT64_MAX;
  const std::vector<uint8_t>& batch = encoder_.finish();
  last_flush_ = std::chrono::steady_clock::now();
  push_log(batch.data(), batch.size());
}

bool VcpuThread::log_pending() const {
  return log_ && (!encoder_.empty() || encoder_.cursor().instret != machine_->cpu().instret || tagged_since_flush_ || first_batch_due_);
}

void VcpuThread::push_log(const uint8_t* data, size_t n) {
  uint64_t lsn;
  std::memcpy(&lsn, data + BatchLayout::kLsn, 8);
  for (;;) {
    // Looked up on every round: a consumer may arrive, or go, while this waits for space.
    std::shared_ptr<LogConsumer> c;
    {
      std::lock_guard<std::mutex> lock(consumer_mu_);
      c = consumer_;
    }
    if (c && c->gone()) discard_log();
    const size_t m = log_->push(data, n);
    data += m;
    n -= m;
    if (m) {
      if (c) c->published(lsn);
      else doorbell_();
    }
    if (n == 0) return;
    // Ring full: the consumer frees space and then calls console_drained(); wait_space() counts itself
    // as a waiter before it looks at the space, so that call cannot slip between the look and the wait.
    std::unique_lock<std::mutex> lock(mu_);
    if (quit_) return;
    wait_space(lock, *log_);
  }
}

namespace {
/// Nobody reads the log any more (the link never started, or stopped): the recording goes nowhere.
class NoConsumer final : public LogConsumer {
 public:
  void published(uint64_t) override {}
  bool gone() const override { return true; }
};
}  // namespace

void VcpuThread::abandon_log() {
  set_log_consumer(std::make_shared<NoConsumer>());
  console_drained();  // a vCPU waiting for ring space discards instead
}

void VcpuThread::discard_log() {
  if (!log_mem_) return;
  ByteRingConsumer ring(log_mem_, log_capacity_);
  ring.consume(ring.available());
}

void VcpuThread::set_log_consumer(std::shared_ptr<LogConsumer> consumer) {
  std::lock_guard<std::mutex> lock(consumer_mu_);
  consumer_ = std::move(consumer);
}

size_t VcpuThread::log_free() {
  std::lock_guard<std::mutex> lock(mu_);
  return log_ ? log_->free_space() : 0;
}

bool VcpuThread::start_recording(uint8_t* log_mem, uint32_t log_capacity, uint64_t hash_interval) {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_.load(std::memory_order_relaxed) || quit_) return false;
  Machine& m = *machine_;
  log_ = std::make_unique<ByteRingProducer>(log_mem, log_capacity);
  log_->init();
  log_mem_ = log_mem;
  log_capacity_ = log_capacity;
  {
    std::lock_guard<std::mutex> consumer_lock(consumer_mu_);
    consumer_.reset();
  }
  m.set_log_mode(LogMode::kRecord, this, nullptr);
  const Cpu& c = m.cpu();
  encoder_.reset(0, LogCursor{c.instret, c.branches, c.pc, m.clock_raw()});
  // The first batch carries where the recording starts (and the clock there): a replay needs it even if
  // the guest never moves again. An idle guest's first batch was never sealed, so a secondary cloned
  // from it kept the clone's clock, and a live migration found its state hash different at the same instret.
  first_batch_due_ = true;
  last_flush_ = std::chrono::steady_clock::now();
  hash_interval_ = hash_interval;
  last_hash_at_ = UINT64_MAX;
  return true;
}

bool VcpuThread::finish_recording(EndReason reason, int64_t code) {
  std::unique_lock<std::mutex> lock(mu_);
  if (busy_.load(std::memory_order_relaxed) || !log_) return false;
  lock.unlock();  // flushing may wait for ring space, which the host thread frees... not this one
  Machine& m = *machine_;
  Event h = m.position(EventKind::kStateHash);
  h.value = m.state_hash();
  encoder_.add(h);
  Event end = m.position(EventKind::kEnd);
  end.value = static_cast<uint64_t>(reason);
  end.code = code;
  encoder_.add(end);
  const std::vector<uint8_t>& batch = encoder_.finish();
  // The host thread is the caller and also the ring's consumer: it cannot wait for itself, so the
  // binding gives the ring room for a final batch (see JsFinishRecording) and we push what fits. With
  // a LogConsumer the caller waited for room (log_free()); a consumer that is gone reads nothing.
  std::shared_ptr<LogConsumer> c;
  {
    std::lock_guard<std::mutex> consumer_lock(consumer_mu_);
    c = consumer_;
  }
  if (c && c->gone()) discard_log();
  const size_t pushed = batch.size() <= log_->free_space() ? log_->push(batch.data(), batch.size()) : 0;
  if (pushed && c) {
    uint64_t lsn;
    std::memcpy(&lsn, batch.data() + BatchLayout::kLsn, 8);
    c->published(lsn);
  }
  m.set_log_mode(LogMode::kOff, nullptr, nullptr);
  log_.reset();
  return pushed == batch.size();
}

bool VcpuThread::start_replay(uint64_t resume_at) {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_.load(std::memory_order_relaxed) || quit_) return false;
  // A machine restored from a clone is at its instret before its first slice: an ACK sent before that
  // slice ends must not report 0 (the primary would take the whole run for lag and brake).
  progress_.store(machine_->cpu().instret, std::memory_order_relaxed);
  feed_.reset();
  fed_.clear();
  replay_ring_.reset();
  ring_pending_ = false;
  log_complete_ = false;
  // Resuming from a snapshot taken during a replay at instret R: the run that stopped there had applied
  // every asynchronous event at R (they come before a stop's target check), so those and everything
  // before R are skipped; the snapshot holds the clock the first batch would have set.
  resume_at_ = resume_at;
  replay_began_ = resume_at != UINT64_MAX;
  hash_here_ = false;
  machine_->set_log_mode(LogMode::kReplay, nullptr, &feed_);
  replaying_.store(true, std::memory_order_release);
  return true;
}

void VcpuThread::feed(const uint8_t* data, size_t n) {
  std::lock_guard<std::mutex> lock(mu_);
  fed_.emplace_back(data, data + n);
  cv_.notify_all();
}

uint8_t* VcpuThread::attach_replay_ring(uint32_t capacity, std::function<void()> consumed) {
  std::lock_guard<std::mutex> lock(mu_);
  // Also while running: the vCPU thread looks at replay_ring_ only under mu_ (take_fed()).
  if (quit_ || machine_->log_mode() != LogMode::kReplay) return nullptr;
  if (!ByteRingProducer::valid_capacity(capacity)) return nullptr;
  replay_mem_ = std::make_unique<uint8_t[]>(RingLayout::kData + capacity);  // zeroed: head == tail == 0
  replay_ring_ = std::make_unique<ByteRingConsumer>(replay_mem_.get(), capacity);
  replay_consumed_ = std::move(consumed);
  ring_pending_ = true;
  return replay_mem_.get();
}

void VcpuThread::replay_arrived(bool urgent) {
  // seq_cst: the producer's publish (before this call) is ordered before the load of replay_deep_wait_;
  // pairs with the fence in replay_wait(), so either the replayer sees the batch or we see it asleep.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!urgent && !replay_deep_wait_.load(std::memory_order_relaxed)) return;  // running or napping: it looks itself
  std::lock_guard<std::mutex> lock(mu_);
  ring_pending_ = true;
  cv_.notify_all();
}

bool VcpuThread::ring_has_batch() const {
  if (!replay_ring_) return false;
  const size_t avail = replay_ring_->available();
  if (avail < BatchLayout::kFixed) return false;
  uint8_t len_bytes[4];
  replay_ring_->copy_at(BatchLayout::kLength, len_bytes, 4);
  uint32_t word0;
  std::memcpy(&word0, len_bytes, 4);
  return avail >= BatchLayout::total_size(word0);
}

bool VcpuThread::has_fed() const { return !fed_.empty() || ring_pending_ || ring_has_batch(); }

void VcpuThread::replay_wait(std::unique_lock<std::mutex>& lock) {
  auto ready = [&] { return quit_ || stop_requested_ || has_fed() || log_complete_; };
  if (replay_ring_ && std::chrono::steady_clock::now() - replay_took_at_ < kReplayBusy) {
    cv_.wait_for(lock, kReplayNap, ready);
    return;
  }
  replay_deep_wait_.store(true, std::memory_order_relaxed);
  // seq_cst: the store above before ready()'s look at the ring; pairs with the fence in replay_arrived().
  std::atomic_thread_fence(std::memory_order_seq_cst);
  cv_.wait(lock, ready);
  replay_deep_wait_.store(false, std::memory_order_relaxed);
}

void VcpuThread::end_of_log() {
  std::lock_guard<std::mutex> lock(mu_);
  log_complete_ = true;
  cv_.notify_all();
}

bool VcpuThread::take_fed(std::unique_lock<std::mutex>&) {
  bool any = false;
  while (!fed_.empty()) {
    std::vector<uint8_t> b = std::move(fed_.front());
    fed_.pop_front();
    if (!feed_.add(std::move(b))) return false;
    any = true;
  }
  // The ring is looked at every time, not only after a wake-up from its producer: a napping replayer
  // (replay_wait) is not woken per batch.
  if (replay_ring_) {
    // Whole batches only; the producer checked each batch's length against BatchLayout::kMaxLength.
    for (;;) {
      const size_t avail = replay_ring_->available();
      if (avail < BatchLayout::kFixed) break;
      uint8_t len_bytes[4];
      replay_ring_->copy_at(BatchLayout::kLength, len_bytes, 4);
      uint32_t word0;
      std::memcpy(&word0, len_bytes, 4);
      const size_t total = BatchLayout::total_size(word0);
      if (avail < total) break;
      std::vector<uint8_t> b(total);
      replay_ring_->copy_at(0, b.data(), total);
      replay_ring_->consume(total);
      any = true;
      if (!feed_.add(std::move(b))) return false;
    }
    // Cleared under mu_: a publish after the reads above is seen by has_fed() (ring_has_batch) anyway.
    ring_pending_ = false;
    if (any) replay_took_at_ = std::chrono::steady_clock::now();
    if (any && replay_consumed_) replay_consumed_();
  }
  return true;
}

RunReport VcpuThread::final_report(RunStop stop) {
  const Machine& m = *machine_;
  RunReport r;
  switch (stop) {
    case RunStop::kExit:
      r.kind = RunReport::Kind::kExit;
      r.exit_code = m.exit_code();
      r.via = m.exit_via();
      break;
    case RunStop::kFatalTrap: {
      const Cpu& cpu = machine_->cpu();
      r.kind = RunReport::Kind::kTrap;
      r.cause = cpu.fatal_cause;
      r.trap_pc = cpu.fatal_pc;
      r.tval = cpu.fatal_tval;
      break;
    }
    case RunStop::kHalted:
      r.kind = RunReport::Kind::kHalted;
      r.halt_reason = m.halt_reason();
      break;
    default:
      r.kind = RunReport::Kind::kDivergence;
      r.divergence = m.divergence();
      break;
  }
  return r;
}

RunReport VcpuThread::debug_report() {
  const DebugState& d = machine_->debug_state();
  RunReport r;
  r.kind = RunReport::Kind::kDebug;
  r.cause = d.hit;
  r.tval = d.hit_addr;
  return r;
}

RunReport VcpuThread::run_to(uint64_t target) {
  if (machine_->log_mode() == LogMode::kReplay) return replay_to(target);
  Machine& m = *machine_;
  Cpu& cpu = m.cpu();
  const bool recording = machine_->log_mode() == LogMode::kRecord;
  RunReport r;
  struct Flush {
    VcpuThread* t;
    ~Flush() { t->flush_log(); }
  } flush_at_end{this};
  for (;;) {
    if (recording && hash_interval_ && cpu.instret % hash_interval_ == 0 && last_hash_at_ != cpu.instret) {
      Event h = m.position(EventKind::kStateHash);
      h.value = m.state_hash();
      event(h);
      last_hash_at_ = cpu.instret;
    }
    // Host input, taken under the lock and delivered outside it (delivering logs events, and a log
    // flush may wait for ring space, which must not happen while holding mu_).
    std::vector<uint8_t> uart;
    std::deque<std::vector<uint8_t>> frames;
    bool do_copy;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (quit_ || stop_requested_) {
        r.kind = RunReport::Kind::kStopped;
        return r;
      }
      uart.assign(input_.begin(), input_.begin() + static_cast<long>(std::min<size_t>(input_.size(), Uart::kRxFifo)));
      frames.swap(net_in_);
      net_taken_ = frames.size();
      disk_done_ = false;
      new_input_ = false;
      do_copy = precopy_.active();  // lock order: mu_, then the engine's
      raise();
    }
    if (do_copy) precopy_chunk();
    if (!uart.empty()) {
      const size_t took = m.uart_input(uart.data(), uart.size());  // the FIFO takes what fits; the rest waits
      if (took > 0 && recording) input_since_flush_ = true;
      std::lock_guard<std::mutex> lock(mu_);
      input_.erase(input_.begin(), input_.begin() + static_cast<long>(took));
    }
    // Frames for the guest, oldest first, each into a receive buffer the guest posted (its delivery is
    // logged there). Without a free buffer the rest wait, in order, on the host; a NIC would drop them,
    // but a burst from many clients would then be lost while the guest waits for its disk. A driver
    // that is not running (or a buffer too small) drops a frame (not logged: it never reached the guest).
    size_t taken = 0;
    for (; taken < frames.size(); taken++) {
      const VirtioNet::Rx rx = m.net_rx_state();
      if (rx == VirtioNet::Rx::kFull) break;
      const std::vector<uint8_t>& f = frames[taken];
      // relaxed: statistics; readers need no ordering with the frames.
      if (rx == VirtioNet::Rx::kReady && m.net_receive(f.data(), static_cast<uint32_t>(f.size()))) {
        net_delivered_.fetch_add(1, std::memory_order_relaxed);
        if (recording) input_since_flush_ = true;
        net_delivered_bytes_.fetch_add(f.size(), std::memory_order_relaxed);
      } else {
        net_dropped_.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (!frames.empty()) {
      std::lock_guard<std::mutex> lock(mu_);
      net_in_.insert(net_in_.begin(), std::make_move_iterator(frames.begin() + static_cast<long>(taken)), std::make_move_iterator(frames.end()));
      net_taken_ = 0;
    }
    m.block_poll();  // completions the disk finished, delivered (and logged) at this boundary
    uint64_t slice_end = std::min(target, cpu.instret + kSlice);
    if (recording && hash_interval_) slice_end = std::min(slice_end, (cpu.instret / hash_interval_ + 1) * hash_interval_);
    // A pre-copy round copies a chunk per slice boundary: shorter slices while it lasts, so a round over
    // a large memory takes milliseconds of guest time, not seconds.
    if (do_copy) slice_end = std::min(slice_end, cpu.instret + PrecopyEngine::kSlice);
    const auto slice_began = std::chrono::steady_clock::now();
    const RunStop stop = m.run(slice_end);
    progress_.store(cpu.instret, std::memory_order_relaxed);
    flush_console();
    if (recording) {
      // An output waits for its batch, and so does input from outside (a client's request: lost with the
      // primary before the secondary has it, it costs the client a retransmission, at least 200 ms over
      // TCP, where the survivor would have answered it after go-live). Anything else may wait for the
      // next batch (kMarkInterval).
      if (tagged_since_flush_ || first_batch_due_ || input_since_flush_ || std::chrono::steady_clock::now() - last_flush_ >= kMarkInterval) flush_log();
      pace(slice_began);
    }
    switch (stop) {
      case RunStop::kLimit:
        if (cpu.instret >= target) {
          r.kind = RunReport::Kind::kBudget;
          return r;
        }
        break;
      case RunStop::kHost:
        break;  // the top of the loop handles stop and input
      case RunStop::kDebug:
        return debug_report();
      case RunStop::kExit:
      case RunStop::kFatalTrap:
      case RunStop::kHalted:
      case RunStop::kDivergence:  // only a replaying machine diverges
        return final_report(stop);
      case RunStop::kWaitWfi: {
        // Sleep (never spin) until input, a stop, or (real clock) the timer's deadline.
        std::unique_lock<std::mutex> lock(mu_);
        const int64_t ns = m.config().real_clock ? m.ns_until_timer() : -1;
        // Frames waiting on the host and a receive buffer posted since: deliver them instead of sleeping.
        auto ready = [&] {
          return quit_ || stop_requested_ || new_input_ || disk_done_ || precopy_.active() ||
                 (!net_in_.empty() && m.net_rx_state() == VirtioNet::Rx::kReady);
        };
        if (ns == 0) break;
        const auto now = std::chrono::steady_clock::now();
        if (recording && log_pending() && (ns < 0 || last_flush_ + kMarkInterval < now + std::chrono::nanoseconds(ns))) {
          // A guest that stays idle until the log is due sends it (unlocked: a flush may wait for ring
          // space); a short wait (a disk completion, the next frame) leaves the batch open.
          if (cv_.wait_until(lock, std::max(now, last_flush_ + kMarkInterval), ready)) break;
          lock.unlock();
          flush_log();
          lock.lock();
        }
        if (ns < 0) cv_.wait(lock, ready);
        else cv_.wait_until(lock, now + std::chrono::nanoseconds(ns), ready);
        break;
      }
    }
  }
}

RunReport VcpuThread::replay_to(uint64_t target) {
  Machine& m = *machine_;
  Cpu& cpu = m.cpu();
  RunReport r;
  r.replayed = true;
  auto diverged = [&](const std::string& what) {
    r.kind = RunReport::Kind::kDivergence;
    r.divergence = what;
    return r;
  };
  // The guest ended itself (exit, fatal trap, halt): what the log still holds must be at this position
  // (a final state hash and the end record), and the report is the guest's own.
  bool ended = false;
  RunReport end_report;
  // A trap chain (traps that retire nothing) was already run at this instret; see below.
  uint64_t chain_at = UINT64_MAX;
  for (;;) {
    bool complete;
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (quit_ || stop_requested_) {
        r.kind = RunReport::Kind::kStopped;
        return r;
      }
      if (!take_fed(lock)) return diverged("the log is damaged: " + feed_.error());
      complete = log_complete_;
    }
    if (!replay_began_ && feed_.started()) {
      const LogCursor& s = feed_.start();
      if (s.instret != cpu.instret || s.branches != cpu.branches || s.pc != cpu.pc) {
        return diverged("the log starts at instret " + std::to_string(s.instret) + " (branches " + std::to_string(s.branches) +
                        ") but the machine is at instret " + std::to_string(cpu.instret) + " (branches " +
                        std::to_string(cpu.branches) + "): replay needs the state the recording started from");
      }
      m.set_clock_raw(s.clock);  // the recorder's clock when it began
      replay_began_ = true;
    }
    const Event* e;
    while (resume_at_ != UINT64_MAX && (e = feed_.peek()) != nullptr) {
      if (e->instret < resume_at_ || (e->instret == resume_at_ && is_async(e->kind) && e->kind != EventKind::kEnd)) feed_.pop();
      else resume_at_ = UINT64_MAX;
    }
    // Apply every asynchronous event due at this boundary, before the interrupt check.
    bool chain = false;
    while ((e = feed_.peek()) != nullptr && e->instret == cpu.instret && is_async(e->kind)) {
      const bool other_pc = e->check_only ? e->check != position_check(cpu.pc, cpu.branches) : e->pc != cpu.pc && e->branches == cpu.branches;
      if (other_pc && !ended && chain_at != cpu.instret) {
        // Same position but another pc: the recording stopped after traps that retired nothing (a trap
        // loop is detected in the middle of an instruction). Take those traps here too, then compare.
        chain = true;
        break;
      }
      if (e->kind == EventKind::kEnd) {
        if (!same_position(*e, m.position(EventKind::kEnd))) {
          m.apply(*e);  // reports the position mismatch
          return diverged(m.divergence());
        }
        RunReport done = ended ? end_report : r;
        if (!ended) done.kind = RunReport::Kind::kEndOfLog;
        done.replayed = true;
        done.end_reason = static_cast<int32_t>(e->value);
        done.end_code = e->code;
        done.log_ended = true;
        done.final_hash = hash_here_;
        feed_.pop();
        return done;
      }
      if (!m.apply(*e)) return diverged(m.divergence());
      hash_here_ = e->kind == EventKind::kStateHash;
      feed_.pop();
    }
    if (e && e->instret < cpu.instret) {
      return diverged(std::string("the log has ") + event_kind_name(e->kind) + " at " + describe_position(*e) + " but the machine already passed it (instret " +
                      std::to_string(cpu.instret) + ")");
    }
    if (ended) {
      if (e) return diverged("the guest ended at instret " + std::to_string(cpu.instret) + " but the log goes on to instret " + std::to_string(e->instret));
      return end_report;  // a log that ends without an end record (e.g. copied mid-run): not verified
    }
    uint64_t stop_at = target;
    if (chain) {
      // One more instruction at most: a trap loop ends the run at this same instret; anything else
      // retires and then diverges from the log, which stays at this position.
      chain_at = cpu.instret;
      stop_at = std::min(stop_at, cpu.instret + 1);
    } else if (e) {
      // Saturating: a damaged log may put a synchronous event at the very last instret.
      const uint64_t after = e->instret == UINT64_MAX ? UINT64_MAX : e->instret + 1;
      stop_at = std::min(stop_at, is_async(e->kind) ? e->instret : after);
    } else if (!complete) {
      if (cpu.instret >= feed_.covered() || !feed_.started()) {
        std::unique_lock<std::mutex> lock(mu_);
        replay_wait(lock);
        continue;
      }
      stop_at = std::min(stop_at, feed_.covered());
    } else {
      r.kind = RunReport::Kind::kEndOfLog;  // the log ended without an end record: not verified
      return r;
    }
    if (cpu.instret >= target) {
      r.kind = RunReport::Kind::kBudget;
      return r;
    }
    const auto slice_began = std::chrono::steady_clock::now();
    const RunStop stop = m.run(std::min(stop_at, cpu.instret + kSlice));
    hash_here_ = false;
    progress_.store(cpu.instret, std::memory_order_relaxed);
    flush_console();
    pace(slice_began);  // a throttled replay (tests of lag control: a secondary on a slow host)
    switch (stop) {
      case RunStop::kLimit:
      case RunStop::kHost:
        break;
      case RunStop::kDivergence:
        return diverged(m.divergence());
      case RunStop::kDebug:
        if (!ended) {
          RunReport d = debug_report();
          d.replayed = true;
          return d;
        }
        break;
      case RunStop::kExit:
      case RunStop::kFatalTrap:
      case RunStop::kHalted:
        // The guest ended itself; the log should say so here (a final hash and the end record).
        ended = true;
        end_report = final_report(stop);
        end_report.replayed = true;
        break;
      case RunStop::kWaitWfi: {
        const Event* next = feed_.peek();
        if (next && next->instret == cpu.instret) {
          // The event that woke the recorder; a synchronous one cannot be due while the hart sleeps.
          if (is_async(next->kind)) break;
          return diverged(std::string("the guest waits for an interrupt at instret ") + std::to_string(cpu.instret) + " but the log has " +
                          event_kind_name(next->kind) + " there, which only an executing instruction can consume");
        }
        if (!next) {
          std::unique_lock<std::mutex> lock(mu_);
          if (log_complete_ && !has_fed()) {
            r.kind = RunReport::Kind::kEndOfLog;
            return r;
          }
          replay_wait(lock);
          break;
        }
        return diverged("the guest waits for an interrupt at instret " + std::to_string(cpu.instret) + " but the log's next event (" +
                        event_kind_name(next->kind) + ") is at instret " + std::to_string(next->instret));
      }
    }
  }
}

// ---- fault tolerance: output rule, shadow outputs, go-live, lag control, pre-copy --------------------

uint64_t VcpuThread::output_tag() {
  if (machine_->log_mode() == LogMode::kReplay) return feed_.next_event_lsn();
  if (!tagged_since_flush_) {
    tagged_since_flush_ = true;
    // Seal the batch this output waits for soon: after a short window of guest execution (outputs in it
    // share the batch and its acknowledgement) or as soon as the guest waits, whichever comes first.
    Cpu& c = machine_->cpu();
    c.soft_target = std::min(c.soft_target, c.instret + kOutputWindow);
  }
  return encoder_.next_lsn();
}

bool VcpuThread::hold_output(OutputGate::Kind kind, const uint8_t* data, size_t n, BlockFile::Request* block) {
  const LogMode mode = machine_->log_mode();
  const bool replay = mode == LogMode::kReplay;
  const uint64_t tag = (replay || mode == LogMode::kRecord) ? output_tag() : 0;
  return gate_.hold(kind, replay, tag, data, n, block);
}

void VcpuThread::net_suppressed(const uint8_t* frame, size_t n) {
  if (gate_.engaged()) hold_output(OutputGate::Kind::kFrame, frame, n, nullptr);
}

bool VcpuThread::hold_block(BlockFile::Request& r) {
  // A separate disk is part of this half's own state, as its RAM is (VMware FT's non-shared disks): the
  // other half performs the same writes on its own image at the logged completions, so a write here
  // need not wait for the log. A shared image is the outside world: its writes are outputs.
  if (machine_->config().disk_separate) return false;
  return gate_.engaged() && hold_output(OutputGate::Kind::kBlock, nullptr, 0, &r);
}

VcpuThread::Outputs VcpuThread::set_gate(bool closed) { return gate_.set_gate(closed); }

VcpuThread::Outputs VcpuThread::release(uint64_t lsn) { return gate_.release(lsn); }

void VcpuThread::set_shadow(bool on) { gate_.set_shadow(on); }

void VcpuThread::shadow_release(uint64_t lsn) { gate_.shadow_release(lsn); }

size_t VcpuThread::held() { return gate_.held(); }

bool VcpuThread::go_live(uint64_t released, Outputs* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (busy_.load(std::memory_order_relaxed) || quit_ || machine_->log_mode() != LogMode::kReplay) return false;
  // The log has not been replayed to its end.
  if (feed_.peek() != nullptr || !fed_.empty() || (replay_ring_ && replay_ring_->available() > 0)) return false;
  // Host input is taken from here on: a re-emitted ARP request's answer (queued by the udp back-end,
  // delivered by its reader through net_input_batch(), which waits for mu_) reaches the live guest.
  replaying_.store(false, std::memory_order_release);
  gate_.go_live(released, out);
  feed_.reset();
  replay_ring_.reset();
  machine_->go_live();  // re-issues in-flight disk requests through block_submit (gate open: at once)
  announce();
  return true;
}

void VcpuThread::announce() {
  if (tap_) tap_->announce(machine_->config().mac);
}

void VcpuThread::set_throttle(double ratio) {
  if (!(ratio > 0)) ratio = 0;
  if (ratio > 0.95) ratio = 0.95;
  throttle_ppm_.store(static_cast<uint32_t>(ratio * 1e6), std::memory_order_relaxed);
}

void VcpuThread::pace(std::chrono::steady_clock::time_point slice_began) {
  const uint32_t ppm = throttle_ppm_.load(std::memory_order_relaxed);
  if (ppm == 0) return;
  const auto ran = std::chrono::steady_clock::now() - slice_began;
  // Sleep so that running is (1 - ratio) of the time: sleep = ran * ratio / (1 - ratio), at most 50 ms.
  auto sleep = std::chrono::duration_cast<std::chrono::nanoseconds>(ran) * ppm / (1'000'000 - ppm);
  if (sleep > std::chrono::milliseconds(50)) sleep = std::chrono::milliseconds(50);
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, sleep, [&] { return quit_ || stop_requested_; });
}

bool VcpuThread::precopy_start(bool first) {
  // Under mu_: a vCPU asleep in WFI checks precopy_.active() under it, so the round cannot start between
  // its check and its wait.
  std::lock_guard<std::mutex> lock(mu_);
  if (quit_ || !precopy_.start(first)) return false;
  cv_.notify_all();
  return true;
}

void VcpuThread::precopy_chunk() {
  MachinePages pages(*machine_);
  if (precopy_.copy(pages, PrecopyEngine::kChunkPages)) doorbell_();
}

std::vector<uint8_t> VcpuThread::copy_pages(bool first) {
  MachinePages pages(*machine_);
  std::vector<uint8_t> out = precopy_.copy_all(pages, first);
  doorbell_();  // the round ended, as a running round's end is announced
  return out;
}

void VcpuThread::thread_main() {
  for (;;) {
    uint64_t target;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return run_requested_ || quit_; });
      if (quit_) return;
      run_requested_ = false;
      target = target_;
    }
    RunReport r = run_to(target);
    {
      std::lock_guard<std::mutex> lock(mu_);
      report_ = std::move(r);
      report_ready_ = true;
      stop_requested_ = false;
      busy_.store(false, std::memory_order_release);
      raise();
    }
    doorbell_();
  }
}

}  // namespace lockstep
