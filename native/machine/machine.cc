// Memory map dispatch, CLINT, test finisher, HTIF and the WFI policy of the virt board.
#include "machine/machine.h"

#include <cstdlib>
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>

#include "log/codec.h"

namespace lockstep {
namespace {
constexpr uint32_t kMipMSip = 1u << kIrqMSoft, kMipMTip = 1u << kIrqMTimer, kMipMEip = 1u << kIrqMExt;
constexpr uint32_t kMipSEip = 1u << kIrqSExt;
constexpr uint32_t kFinisherFail = 0x3333, kFinisherPass = 0x5555, kFinisherReset = 0x7777;

const char* cause_name(uint32_t cause) {
  switch (cause) {
    case kInstrMisaligned: return "instruction address misaligned";
    case kInstrAccessFault: return "instruction access fault";
    case kIllegalInstr: return "illegal instruction";
    case kBreakpoint: return "breakpoint";
    case kLoadMisaligned: return "load address misaligned";
    case kLoadAccessFault: return "load access fault";
    case kStoreMisaligned: return "store/AMO address misaligned";
    case kStoreAccessFault: return "store/AMO access fault";
    case kEcallFromU: return "environment call from U-mode";
    case kEcallFromM: return "environment call from M-mode";
    default: return "exception";
  }
}

std::string trap_loop_reason(uint32_t handler, uint32_t cause) {
  char b[200];
  std::snprintf(b, sizeof b, "trap loop: the handler at 0x%08x raises cause %u (%s) itself; the hart can never retire another instruction",
                handler, cause, cause_name(cause));
  return b;
}

}  // namespace

Machine::Machine(const MachineConfig& config, ConsoleSink* console)
    : config_(config),
      console_(console),
      // calloc: the OS hands out zero pages lazily, so untouched RAM costs nothing and is never
      // uninitialised (a source of non-determinism).
      ram_(static_cast<uint8_t*>(std::calloc(config.ram_size, 1))),
      cpu_(ram_, config.ram_size, this),
      uart_([this](uint8_t b) { this->console(&b, 1); }),
      start_(std::chrono::steady_clock::now()) {
  prng_ = config.entropy_seed | 1;  // xorshift must not start at 0
  if (config_.real_clock) cpu_.slice = 1u << 17;
  if (config_.jit) cpu_.set_jit(true);  // the timer is polled: keep its latency ~0.1 ms
  virtio_.reserve(kVirtioSlots);
  for (uint32_t i = 0; i < kVirtioSlots; i++) virtio_.emplace_back(this, 1 + i);
  if (config_.net) {
    net_ = std::make_unique<VirtioNet>(this, &virtio_[0], config_.mac);
    virtio_[0].attach(net_.get());
  }
  if (!config_.disk.empty()) {
    block_ = BlockFile::open(config_.disk, config_.disk_lock, &error_);
    if (block_) {
      blk_ = std::make_unique<VirtioBlk>(this, &virtio_[1], block_->size_bytes());
      virtio_[1].attach(blk_.get());
    }
  }
  if (config_.rng) {
    rng_ = std::make_unique<VirtioRng>(this, &virtio_[2]);
    virtio_[2].attach(rng_.get());
  }
}

Machine::~Machine() { std::free(ram_); }

bool Machine::write_ram(uint32_t addr, const uint8_t* data, uint32_t len) {
  const uint64_t off = static_cast<uint64_t>(addr) - kRamBase;
  if (addr < kRamBase || off + len > config_.ram_size) return false;
  if (len == 0) return true;
  std::memcpy(ram_ + off, data, len);
  cpu_.host_wrote(addr, len);
  return true;
}

bool Machine::guest_write(uint32_t addr, const void* data, uint32_t len) {
  return write_ram(addr, static_cast<const uint8_t*>(data), len);
}

bool Machine::read_ram(uint32_t addr, uint8_t* out, uint32_t len) const {
  const uint64_t off = static_cast<uint64_t>(addr) - kRamBase;
  if (addr < kRamBase || off + len > config_.ram_size) return false;
  if (len == 0) return true;
  std::memcpy(out, ram_ + off, len);
  return true;
}

void Machine::set_tohost(uint32_t addr) {
  tohost_ = addr;
  if (addr) {
    cpu_.watch_page(addr);
    cpu_.watch_page(addr + 7);
  }
}

size_t Machine::uart_input(const uint8_t* data, size_t n) {
  if (log_mode_ == LogMode::kReplay) return 0;  // a replaying machine takes input only from its log
  const size_t took = uart_.receive(data, n);
  if (took && log_mode_ == LogMode::kRecord) {
    Event e = position(EventKind::kUartRx);
    e.data = data;
    e.size = static_cast<uint32_t>(took);
    carry_clock(&e);
    sink_->event(e);
  }
  update_irqs();
  return took;
}

uint64_t Machine::host_now_ticks() const {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  return static_cast<uint64_t>(ns) / (1'000'000'000 / kTimebaseHz);
}

uint64_t Machine::mtime() {
  uint64_t base;
  if (!config_.real_clock) base = cpu_.instret / kVirtualInstructionsPerTick + wfi_skipped_;
  else if (log_mode_ == LogMode::kOff) base = host_now_ticks();
  else base = clock_raw_;  // record/replay: the clock moves only through logged values
  return base + static_cast<uint64_t>(mtime_offset_);
}

Event Machine::position(EventKind kind) const {
  Event e{};
  e.kind = kind;
  e.instret = cpu_.instret;
  e.branches = cpu_.branches;
  e.pc = cpu_.pc;
  return e;
}

void Machine::set_log_mode(LogMode mode, EventSink* sink, ReplaySource* source) {
  log_mode_ = mode;
  sink_ = sink;
  source_ = source;
  divergence_.clear();
  cpu_.stop_now = false;
  if (mode == LogMode::kRecord && config_.real_clock) {
    clock_raw_ = std::max(clock_raw_, host_now_ticks());
    clock_rate_ = 0;  // a replay starts with none either (set_clock_raw)
    set_clock_base(clock_raw_);
    rate_from_valid_ = false;
  }
}

void Machine::diverge(const std::string& what) {
  if (divergence_.empty()) divergence_ = what;
  cpu_.stop_now = true;
}

bool Machine::consume_sync(EventKind kind, uint64_t* value) {
  const Event* e = source_ ? source_->peek() : nullptr;
  const Event here = position(kind);
  auto where = [&](const Event& x) { return std::string(event_kind_name(x.kind)) + " at " + describe_position(x, e && e->check_only); };
  if (!e) {
    diverge("the guest made a " + where(here) + " but the log has no more events");
    return false;
  }
  if (e->kind != kind || !same_position(*e, here)) {
    diverge("the log has " + where(*e) + " but the guest made a " + where(here));
    return false;
  }
  *value = e->value;
  source_->pop();
  return true;
}

bool Machine::take_sync_here(EventKind kind, uint64_t* value) {
  // Sync events are logged at the instruction that made them, so one at this exact position is this
  // read's; anything else (another kind, a later position, the end) means the recorder logged none here.
  const Event* e = source_ ? source_->peek() : nullptr;
  const Event here = position(kind);
  if (!e || e->kind != kind || !same_position(*e, here)) return false;
  *value = e->value;
  source_->pop();
  return true;
}

uint64_t Machine::guest_time() {
  if (!config_.real_clock || log_mode_ == LogMode::kOff) return mtime();
  const uint64_t off = static_cast<uint64_t>(mtime_offset_);
  const bool was_due = timecmp_armed_ && clock_raw_ + off >= mtimecmp_;
  if (log_mode_ == LogMode::kRecord) {
    // The value instret predicts, unless it is a step or more from the host's clock: then the host's
    // (never backwards), logged, with a new rate when the guest's pace has changed.
    const uint64_t p = std::max(predicted_clock(), clock_raw_);
    const uint64_t now = host_now_ticks();
    const uint64_t step = config_.clock_step_ticks;
    if (step > 0 && now < p + step && p < now + step) {
      clock_raw_ = p;
    } else {
      Event e = position(EventKind::kClockRead);
      // Behind the host: the host's value on the step grid (a one-byte delta). Ahead of it: the clock
      // stays where the guest last saw it (never backwards) and takes a lower rate, or none.
      const bool ahead = p >= now + step;
      e.value = ahead ? clock_raw_ : on_step_grid(now);
      const uint32_t r = measured_rate(now, ahead);
      if (r != clock_rate_) {
        clock_rate_ = r;
        e.has_rate = true;
        e.rate = r;
      }
      rate_from_clock_ = now;
      rate_from_instret_ = cpu_.instret;
      rate_from_valid_ = true;
      set_clock_base(e.value);
      sink_->event(e);
    }
  } else {
    const Event* e = source_ ? source_->peek() : nullptr;
    if (e && e->kind == EventKind::kClockRead && same_position(*e, position(EventKind::kClockRead))) {
      if (e->has_rate) clock_rate_ = e->rate;
      const uint64_t v = e->value;
      source_->pop();
      set_clock_base(v);
    } else {
      clock_raw_ = std::max(predicted_clock(), clock_raw_);
    }
  }
  // This read moved the clock past mtimecmp: the timer interrupt must be taken right after it, at the
  // same instruction in the recording and the replay (else it waits for the next slice boundary, which
  // they place differently: a replay stops after every synchronous event, a recording does not).
  if (!was_due && timecmp_armed_ && clock_raw_ + off >= mtimecmp_) {
    cpu_.recheck_after_read = true;
  }
  return clock_raw_ + off;
}

uint64_t Machine::wall_time() {
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  if (!config_.real_clock) return mtime() / kTimebaseHz;  // the virtual clock starts at the epoch
  if (log_mode_ == LogMode::kOff) return now;
  if (log_mode_ == LogMode::kRecord) {
    Event e = position(EventKind::kWallTime);
    e.value = now;
    sink_->event(e);
    return now;
  }
  uint64_t v = 0;
  consume_sync(EventKind::kWallTime, &v);
  return v;
}

void Machine::settle_clock() {
  if (config_.real_clock && log_mode_ == LogMode::kOff) set_clock_base(std::max(clock_raw_, host_now_ticks()));
}

void Machine::set_clock_base(uint64_t value) {
  clock_raw_ = value;
  clock_base_ = value;
  clock_base_instret_ = cpu_.instret;
}

uint64_t Machine::predicted_clock() const {
  // At most 2^48 ticks (nine months) past the base: the same bound on both sides, and no overflow.
  const unsigned __int128 d = (static_cast<unsigned __int128>(cpu_.instret - clock_base_instret_) * clock_rate_) >> 16;
  return clock_base_ + (d > (1ull << 48) ? (1ull << 48) : static_cast<uint64_t>(d));
}

uint32_t Machine::measured_rate(uint64_t now, bool ahead) const {
  // Host ticks per 2^16 instructions since the last logged read. A clock that ran ahead takes the lower
  // rate at once. One that fell behind takes the higher rate only when it is at most twice the last:
  // more is the host having stopped this thread, not the guest's pace (a rate chasing those stops went
  // up and down and was logged with half the reads). Changes under an eighth are not worth a record.
  // Unchanged over a span too short to measure or one in which the hart slept.
  constexpr uint64_t kMinSpan = 1024;
  if (!rate_from_valid_ || cpu_.instret < rate_from_instret_ + kMinSpan || now < rate_from_clock_) return ahead ? 0 : clock_rate_;
  const unsigned __int128 obs128 = (static_cast<unsigned __int128>(now - rate_from_clock_) << 16) / (cpu_.instret - rate_from_instret_);
  const uint64_t obs = obs128 > UINT32_MAX ? UINT32_MAX : static_cast<uint64_t>(obs128);
  if (clock_rate_ == 0) return static_cast<uint32_t>(obs);
  if (ahead) return static_cast<uint32_t>(std::min<uint64_t>(obs, clock_rate_));
  const uint64_t r = clock_rate_;
  if (obs > 2 * r || (obs > r ? obs - r : r - obs) <= r / 8) return clock_rate_;
  return static_cast<uint32_t>(obs);
}

uint64_t Machine::on_step_grid(uint64_t now) const {
  // Values a whole number of steps apart encode in one byte (kKindClockUnits). Rounding down keeps the
  // clock behind the host's by less than a step, as before, and still moving: now >= clock_raw_ + step.
  const uint64_t step = config_.clock_step_ticks;
  return step ? now - now % step : now;
}

void Machine::carry_clock(Event* e) {
  // An interrupting event brings the clock along when it has moved a step: the guest's first reads in
  // its interrupt handler (entropy, timekeeping, the scheduler) then find it current, with no records
  // of their own. The replayer sets the same value as it applies the event.
  if (log_mode_ != LogMode::kRecord || !config_.real_clock) return;
  const uint64_t now = host_now_ticks();
  if (now <= clock_raw_ || now < clock_raw_ + config_.clock_step_ticks) return;
  set_clock_base(on_step_grid(now));
  e->has_clock = true;
  e->clock = clock_raw_;
  rate_from_clock_ = now;  // the guest is awake from here: a rate may be measured again
  rate_from_instret_ = cpu_.instret;
  rate_from_valid_ = true;
}

void Machine::boundary() {
  // Recording with the real clock: if the host clock has reached mtimecmp, log the sample here, at a
  // boundary before the interrupt check, so the replayer makes the timer due at the same instruction.
  if (log_mode_ != LogMode::kRecord || !config_.real_clock || !timecmp_armed_) return;
  const uint64_t off = static_cast<uint64_t>(mtime_offset_);
  if (clock_raw_ + off >= mtimecmp_) return;
  const uint64_t raw = host_now_ticks();
  if (raw + off < mtimecmp_ || raw <= clock_raw_) return;
  set_clock_base(raw);
  rate_from_clock_ = raw;
  rate_from_instret_ = cpu_.instret;
  rate_from_valid_ = true;
  Event e = position(EventKind::kClockSample);
  e.value = raw;
  sink_->event(e);
}

bool Machine::apply(const Event& e) {
  const Event here = position(e.kind);
  if (!same_position(e, here)) {
    diverge(std::string("the log has ") + event_kind_name(e.kind) + " at " + describe_position(e) + " but the machine is at " + describe_position(here, e.check_only));
    return false;
  }
  if (e.has_clock) {
    if (!config_.real_clock || e.clock < clock_raw_) {
      diverge(std::string(event_kind_name(e.kind)) + " at instret " + std::to_string(e.instret) + (config_.real_clock ? " moves the clock backwards" : " carries a clock value, but this machine has the virtual clock"));
      return false;
    }
    set_clock_base(e.clock);
  }
  switch (e.kind) {
    case EventKind::kClockSample:
      set_clock_base(e.value);
      return true;
    case EventKind::kUartRx:
      if (uart_.receive(e.data, e.size) != e.size) {
        diverge("uart-rx at instret " + std::to_string(e.instret) + ": the receive FIFO had no room for " + std::to_string(e.size) + " bytes");
        return false;
      }
      update_irqs();
      return true;
    case EventKind::kStateHash: {
      const uint64_t h = state_hash();
      if (h != e.value) {
        char b[160];
        std::snprintf(b, sizeof b, "state hash at instret %llu: the log has 0x%016llx, the machine has 0x%016llx",
                      static_cast<unsigned long long>(e.instret), static_cast<unsigned long long>(e.value), static_cast<unsigned long long>(h));
        diverge(b);
        return false;
      }
      return true;
    }
    case EventKind::kMark:
    case EventKind::kEnd:
      return true;
    case EventKind::kNetRx:
      if (!net_ || !net_->deliver(e.data, e.size)) {
        diverge("net-rx at instret " + std::to_string(e.instret) + ": the guest had no receive buffer ready");
        return false;
      }
      update_irqs();
      return true;
    case EventKind::kBlockDone:
      if (config_.disk_separate && blk_ && block_) {
        // This side's own disk: do what the primary's did, here and now (completions arrive in the
        // order the primary's disk performed them, so a read sees every earlier write).
        const uint16_t head = static_cast<uint16_t>(e.value & 0xffff);
        const uint8_t status = static_cast<uint8_t>(e.value >> 16);
        if (e.size != 0) {
          diverge("block-done at instret " + std::to_string(e.instret) + " carries read data: the primary's disk is shared, this machine's separate");
          return false;
        }
        BlockFile::Request r;
        if (!blk_->request_for(head, &r)) {
          diverge("block-done at instret " + std::to_string(e.instret) + ": no such request is in flight");
          return false;
        }
        if (status == 0 && r.op == BlockFile::Op::kFlush) {
          block_->defer_flush();  // one sync at go-live stands for it (BlockFile::defer_flush)
        } else if (status == 0) {
          block_->perform(r);
          if (r.status != 0) {
            diverge("block-done at instret " + std::to_string(e.instret) + ": the primary's disk succeeded, this machine's own disk failed");
            return false;
          }
        }
        const bool read = r.op == BlockFile::Op::kRead && status == 0;
        blk_->complete(head, status, read ? r.data.data() : nullptr, read ? static_cast<uint32_t>(r.data.size()) : 0);
        update_irqs();
        return true;
      }
      if (!blk_ || !blk_->complete(static_cast<uint16_t>(e.value & 0xffff), static_cast<uint8_t>(e.value >> 16), e.data, e.size)) {
        diverge("block-done at instret " + std::to_string(e.instret) + ": no such request is in flight");
        return false;
      }
      update_irqs();
      return true;
    case EventKind::kClockRead:
    case EventKind::kWallTime:
    case EventKind::kEntropy:
      break;
  }
  diverge(std::string("a ") + event_kind_name(e.kind) + " event at instret " + std::to_string(e.instret) + " is not an asynchronous event");
  return false;
}

void Machine::update_timer_deadline() {
  if (config_.real_clock || !timecmp_armed_) {
    cpu_.timer_deadline = UINT64_MAX;
    return;
  }
  const uint64_t now = mtime();
  if (mtimecmp_ <= now) {
    cpu_.timer_deadline = 0;  // due now (taken as soon as it is enabled)
    return;
  }
  const uint64_t delta = mtimecmp_ - now;
  const uint64_t tick_start = cpu_.instret / kVirtualInstructionsPerTick * kVirtualInstructionsPerTick;
  cpu_.timer_deadline = delta > (UINT64_MAX - tick_start) / kVirtualInstructionsPerTick
                            ? UINT64_MAX
                            : tick_start + delta * kVirtualInstructionsPerTick;
}

int64_t Machine::ns_until_timer() {
  if (!timecmp_armed_) return -1;
  const uint64_t now = host_now_ticks() + static_cast<uint64_t>(mtime_offset_);
  if (mtimecmp_ <= now) return 0;
  const uint64_t d = mtimecmp_ - now;
  return d > static_cast<uint64_t>(INT64_MAX / 100) ? INT64_MAX : static_cast<int64_t>(d * 100);
}

uint32_t Machine::device_irqs() {
  update_irqs();
  uint32_t m = 0;
  if (msip_) m |= kMipMSip;
  if (timecmp_armed_ && mtime() >= mtimecmp_) m |= kMipMTip;
  if (plic_.meip()) m |= kMipMEip;
  if (plic_.seip()) m |= kMipSEip;
  return m;
}

RunStop Machine::run(uint64_t target) {
  for (;;) {
    if (halt_requested_) return RunStop::kHalted;
    update_timer_deadline();
    switch (cpu_.run(target)) {
      case Stop::kLimit: return RunStop::kLimit;
      case Stop::kExit:
        if (!divergence_.empty()) return RunStop::kDivergence;
        return halt_requested_ ? RunStop::kHalted : RunStop::kExit;
      case Stop::kFatalTrap:
        if (!cpu_.fatal_loop) return RunStop::kFatalTrap;
        halt_reason_ = trap_loop_reason(cpu_.fatal_pc, cpu_.fatal_cause);
        return RunStop::kHalted;
      case Stop::kHost: return RunStop::kHost;
      case Stop::kDebug: return RunStop::kDebug;
      case Stop::kHalted: return RunStop::kHalted;
      case Stop::kWfi: break;
    }
    const uint32_t mie = cpu_.mie;
    const bool timer_can_wake = (mie & kMipMTip) && timecmp_armed_ && mtimecmp_ != UINT64_MAX;
    if (!config_.real_clock && timer_can_wake) {
      // Virtual time: nothing happens while the hart sleeps, so jump straight to the deadline.
      const uint64_t now = mtime();
      if (mtimecmp_ > now) wfi_skipped_ += mtimecmp_ - now;
      continue;
    }
    // Only the timer and the PLIC's two contexts can wake a sleeping hart: the other mip bits change
    // by software alone, and software does not run during WFI.
    if (!timer_can_wake && !(mie & (kMipMEip | kMipSEip))) {
      halt_reason_ = (mie & kMipMTip) ? "wfi waiting for a timer interrupt that is never armed"
                                      : "wfi with no timer or external interrupt enabled";
      return RunStop::kHalted;
    }
    rate_from_valid_ = false;  // the host's time passes while the hart sleeps: not the guest's pace
    return RunStop::kWaitWfi;
  }
}

Mmio Machine::load(uint32_t addr, unsigned size, uint32_t* v) {
  if (addr - kClintBase < kClintSize) return size == 4 && !(addr & 3) ? clint_load(addr - kClintBase, v) : Mmio::kFault;
  if (addr - Plic::kBase < Plic::kSize) return size == 4 && !(addr & 3) ? plic_.load(addr - Plic::kBase, v) : Mmio::kFault;
  if (addr - Uart::kBase < Uart::kSize) {
    if (size != 1) {
      // Wider accesses read the byte register zero-extended, as QEMU's serial-mm does.
      if ((addr & (size - 1)) != 0) return Mmio::kFault;
    }
    const bool irq = uart_.irq();
    const Mmio r = uart_.load(addr - Uart::kBase, v);
    return r == Mmio::kOk && uart_.irq() != irq ? (update_irqs(), Mmio::kOkRecheck) : r;
  }
  if (addr - kFinisherBase < kFinisherSize || addr - kWatchdogBase < kWatchdogSize) {
    *v = 0;
    return Mmio::kOk;
  }
  if (addr - kVirtioBase < kVirtioSlots * kVirtioStride) {
    const uint32_t off = addr - kVirtioBase;
    return virtio_[off / kVirtioStride].load(off % kVirtioStride, size, v);
  }
  return Mmio::kFault;
}

Mmio Machine::store(uint32_t addr, unsigned size, uint32_t v) {
  if (tohost_ && addr - tohost_ < 8) {
    // HTIF (RAM): the host sees the value already in RAM; (code << 1) | 1 in the low word ends the run.
    if (addr == tohost_ && (v & 1u)) {
      exit_code_ = static_cast<int32_t>(v >> 1);
      exit_via_ = ExitVia::kHtif;
      return Mmio::kExit;
    }
    return Mmio::kOk;
  }
  if (addr - kRamBase < config_.ram_size) return Mmio::kOk;  // another watched RAM word
  if (addr - kClintBase < kClintSize) return size == 4 && !(addr & 3) ? clint_store(addr - kClintBase, v) : Mmio::kFault;
  if (addr - Plic::kBase < Plic::kSize) return size == 4 && !(addr & 3) ? plic_.store(addr - Plic::kBase, v) : Mmio::kFault;
  if (addr - Uart::kBase < Uart::kSize) {
    if (size != 1 && (addr & (size - 1)) != 0) return Mmio::kFault;
    const bool irq = uart_.irq();
    const Mmio r = uart_.store(addr - Uart::kBase, v);
    return r == Mmio::kOk && uart_.irq() != irq ? (update_irqs(), Mmio::kOkRecheck) : r;
  }
  if (addr - kFinisherBase < kFinisherSize) return addr == kFinisherBase && size == 4 ? finisher_store(v) : Mmio::kOk;
  if (addr - kWatchdogBase < kWatchdogSize) {
    if (addr == kWatchdogBase && size == 4) watchdog_pets_.fetch_add(1, std::memory_order_relaxed);
    return Mmio::kOk;
  }
  if (addr - kVirtioBase < kVirtioSlots * kVirtioStride) {
    const uint32_t off = addr - kVirtioBase;
    const Mmio r = virtio_[off / kVirtioStride].store(off % kVirtioStride, size, v);
    update_irqs();
    return cpu_.stop_now ? Mmio::kExit : r;
  }
  return Mmio::kFault;
}

bool Machine::entropy(uint8_t* out, uint32_t n) {
  if (!config_.real_clock) {
    // Virtual clock: reproducible runs, so entropy is a seeded xorshift stream and nothing is logged.
    for (uint32_t i = 0; i < n; i++) {
      prng_ ^= prng_ << 13;
      prng_ ^= prng_ >> 7;
      prng_ ^= prng_ << 17;
      out[i] = static_cast<uint8_t>(prng_ >> 24);
    }
    return true;
  }
  if (log_mode_ == LogMode::kReplay) {
    const Event* e = source_ ? source_->peek() : nullptr;
    const Event here = position(EventKind::kEntropy);
    if (!e || e->kind != EventKind::kEntropy || !same_position(*e, here) || e->size != n) {
      diverge("the guest asked virtio-rng for " + std::to_string(n) + " bytes at instret " + std::to_string(here.instret) +
              (e ? std::string(" but the log has ") + event_kind_name(e->kind) + " at instret " + std::to_string(e->instret)
                 : std::string(" but the log has no more events")));
      return false;
    }
    std::memcpy(out, e->data, n);
    source_->pop();
    return true;
  }
  std::random_device rd;  // the host's entropy source (getrandom on Linux)
  for (uint32_t i = 0; i < n; i += 4) {
    const uint32_t w = rd();
    std::memcpy(out + i, &w, std::min<uint32_t>(4, n - i));
  }
  if (log_mode_ == LogMode::kRecord) {
    Event e = position(EventKind::kEntropy);
    e.data = out;
    e.size = n;
    sink_->event(e);
  }
  return true;
}

void Machine::block_submit(uint16_t head, BlockFile::Op op, uint64_t offset, std::vector<uint8_t>&& data, uint32_t length) {
  if (log_mode_ == LogMode::kReplay) {
    if (op == BlockFile::Op::kWrite) suppressed_++;  // shared disk: only the primary writes
    return;
  }
  if (!block_) return;
  BlockFile::Request r;
  r.head = head;
  r.generation = blk_ ? blk_->generation() : 0;
  r.op = op;
  r.offset = offset;
  r.data = std::move(data);
  r.length = length;
  if (host_io_ && host_io_->hold_block(r)) return;
  block_->submit(std::move(r));
}

void Machine::go_live() {
  if (log_mode_ != LogMode::kReplay) return;
  set_log_mode(LogMode::kOff, nullptr, nullptr);
  // The real clock goes on from the last value the log gave the guest, not from this host's uptime.
  if (config_.real_clock) start_ = std::chrono::steady_clock::now() - std::chrono::nanoseconds(clock_raw_ * (1'000'000'000 / kTimebaseHz));
  if (blk_ && block_) {
    // The flushes the replay owed its own image, before the guest goes on (a failure is reported to the
    // guest by its next flush).
    if (config_.disk_separate) block_->settle_deferred_sync();
    blk_->reissue();
  }
}

void Machine::block_poll() {
  if (!block_ || !blk_ || log_mode_ == LogMode::kReplay) return;
  BlockFile::Request r;
  while (block_->take(&r)) {
    const uint32_t n = r.op == BlockFile::Op::kRead && r.status == 0 ? static_cast<uint32_t>(r.data.size()) : 0;
    // A request from before a device reset completes nothing (its head may name a newer request).
    if (r.generation != blk_->generation() || !blk_->complete(r.head, r.status, r.data.data(), n)) continue;
    if (log_mode_ == LogMode::kRecord) {
      Event e = position(EventKind::kBlockDone);
      e.value = r.head | (static_cast<uint64_t>(r.status) << 16);
      e.data = r.data.data();
      e.size = config_.disk_separate ? 0 : n;  // separate disks: the secondary reads its own
      carry_clock(&e);
      sink_->event(e);
    }
  }
  update_irqs();
}

void Machine::net_transmit(const uint8_t* frame, uint32_t n) {
  if (log_mode_ == LogMode::kReplay || !host_io_) {
    suppressed_++;
    if (host_io_) host_io_->net_suppressed(frame, n);
    return;
  }
  host_io_->net_transmit(frame, n);
}

VirtioNet::Rx Machine::net_rx_state() const {
  if (!net_ || log_mode_ == LogMode::kReplay) return VirtioNet::Rx::kClosed;
  return net_->rx_state();
}

bool Machine::net_receive(const uint8_t* frame, uint32_t n) {
  if (!net_ || log_mode_ == LogMode::kReplay || n == 0 || n > VirtioNet::kMaxFrame) return false;
  if (!net_->deliver(frame, n)) return false;
  if (log_mode_ == LogMode::kRecord) {
    Event e = position(EventKind::kNetRx);
    e.data = frame;
    e.size = n;
    carry_clock(&e);
    sink_->event(e);
  }
  update_irqs();
  return true;
}

Mmio Machine::clint_load(uint32_t off, uint32_t* v) {
  switch (off) {
    case 0x0000: *v = msip_ ? 1 : 0; return Mmio::kOk;
    case 0x4000: *v = static_cast<uint32_t>(mtimecmp_); return Mmio::kOk;
    case 0x4004: *v = static_cast<uint32_t>(mtimecmp_ >> 32); return Mmio::kOk;
    case 0xBFF8:
    case 0xBFFC: {
      const uint64_t t = guest_time();
      *v = static_cast<uint32_t>(off == 0xBFF8 ? t : t >> 32);
      if (cpu_.stop_now) return Mmio::kExit;
      // A load re-checks through its result, not through the CSR path's flag.
      const bool due = cpu_.recheck_after_read;
      cpu_.recheck_after_read = false;
      return due ? Mmio::kOkRecheck : Mmio::kOk;
    }
  }
  *v = 0;  // other harts' registers: no such hart
  return Mmio::kOk;
}

Mmio Machine::clint_store(uint32_t off, uint32_t v) {
  switch (off) {
    case 0x0000: msip_ = v & 1u; break;
    case 0x4000: mtimecmp_ = (mtimecmp_ & 0xffffffff00000000ull) | v; timecmp_armed_ = true; break;
    case 0x4004: mtimecmp_ = (mtimecmp_ & 0xffffffffull) | (static_cast<uint64_t>(v) << 32); timecmp_armed_ = true; break;
    case 0xBFF8: {
      const uint64_t now = mtime();
      const uint64_t want = (now & 0xffffffff00000000ull) | v;
      mtime_offset_ += static_cast<int64_t>(want - now);
      break;
    }
    case 0xBFFC: {
      const uint64_t now = mtime();
      const uint64_t want = (now & 0xffffffffull) | (static_cast<uint64_t>(v) << 32);
      mtime_offset_ += static_cast<int64_t>(want - now);
      break;
    }
    default: break;
  }
  update_timer_deadline();
  return Mmio::kOkRecheck;  // the timer deadline or MSIP moved
}

Mmio Machine::finisher_store(uint32_t v) {
  const uint32_t status = v & 0xffff, code = v >> 16;
  if (status == kFinisherPass || status == kFinisherFail) {
    exit_code_ = status == kFinisherPass ? 0 : static_cast<int32_t>(code);
    exit_via_ = ExitVia::kFinisher;
    return Mmio::kExit;
  }
  if (status == kFinisherReset) {
    halt_reason_ = "reset requested through the test finisher";
    halt_requested_ = true;
    return Mmio::kExit;
  }
  return Mmio::kOk;
}


}  // namespace lockstep

namespace lockstep {
namespace {

// A fast 64-bit hash with four independent lanes (so the multiplies overlap). Not cryptographic: it
// detects divergence, it does not defend against an adversary who controls both sides.
constexpr uint64_t kMul = 0x9E3779B97F4A7C15ull;
inline uint64_t mix(uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}
uint64_t hash_page(const uint8_t* p) {
  uint64_t a = 1, b = 2, c = 3, d = 4;
  for (uint32_t i = 0; i < kPageSize; i += 32) {
    uint64_t w[4];
    std::memcpy(w, p + i, 32);
    a = (a ^ w[0]) * kMul;
    b = (b ^ w[1]) * kMul;
    c = (c ^ w[2]) * kMul;
    d = (d ^ w[3]) * kMul;
  }
  return mix(a ^ mix(b ^ mix(c ^ mix(d))));
}
struct Folder {
  uint64_t h = 0x6c6f636b73746570ull;  // "lockstep"
  void add(uint64_t v) { h = mix(h ^ v) + kMul; }
};

}  // namespace

uint64_t Machine::state_hash() {
  const uint32_t npages = config_.ram_size / kPageSize;
  if (page_hash_.size() != npages) {
    // First call: pages never written are still zero (RAM starts zeroed), so they need no reading.
    static const uint64_t zero_hash = [] {
      static const uint8_t zero[kPageSize] = {};
      return hash_page(zero);
    }();
    page_hash_.assign(npages, zero_hash);
    const std::vector<uint8_t>& dirty = cpu_.dirty();
    for (uint32_t p = 0; p < npages; p++) {
      if (dirty[p] & kDirtyEver) page_hash_[p] = hash_page(ram_ + static_cast<size_t>(p) * kPageSize);
      cpu_.clean(p, kDirtyHash);
    }
  } else {
    const std::vector<uint8_t>& dirty = cpu_.dirty();
    for (uint32_t p = 0; p < npages; p++) {
      if (dirty[p] & kDirtyHash) {
        page_hash_[p] = hash_page(ram_ + static_cast<size_t>(p) * kPageSize);
        cpu_.clean(p, kDirtyHash);
      }
    }
  }
  Folder f;
  const Cpu& c = cpu_;
  for (int i = 1; i < 32; i++) f.add(c.x[i]);
  f.add(c.pc);
  f.add(static_cast<uint64_t>(c.priv) | (static_cast<uint64_t>(c.wfi) << 8) | (static_cast<uint64_t>(c.reservation_valid) << 9));
  f.add(c.instret);
  f.add(c.branches);
  for (uint32_t v : {c.mstatus, c.mtvec, c.mepc, c.mcause, c.mtval, c.mscratch, c.mie, c.mcounteren, c.reservation}) f.add(v);
  f.add(c.minstret_offset);
  f.add(c.mcycle_offset);
  // S-mode, delegation and PMP state.
  for (uint32_t v : {c.mip_sw, c.medeleg, c.mideleg, c.stvec, c.sscratch, c.sepc, c.scause, c.stval, c.satp, c.scounteren}) f.add(v);
  for (uint32_t i = 0; i < Cpu::kPmpEntries; i++) f.add(c.pmpcfg[i] | (static_cast<uint64_t>(c.pmpaddr[i]) << 8));
  // Devices and clock.
  f.add(static_cast<uint64_t>(msip_) | (static_cast<uint64_t>(timecmp_armed_) << 1));
  f.add(mtimecmp_);
  f.add(static_cast<uint64_t>(mtime_offset_));
  f.add(wfi_skipped_);
  f.add(clock_raw_);
  f.add(prng_);
  const Uart::State& u = uart_.s;
  f.add(u.ier | (u.lcr << 8) | (u.mcr << 16) | (static_cast<uint64_t>(u.scr) << 24) | (static_cast<uint64_t>(u.fcr) << 32) |
        (static_cast<uint64_t>(u.dll) << 40) | (static_cast<uint64_t>(u.dlm) << 48) | (static_cast<uint64_t>(u.thre_ip) << 56));
  f.add(uart_.rx_.size());
  for (uint8_t b : uart_.rx_) f.add(b);
  const uint32_t* plic = reinterpret_cast<const uint32_t*>(&plic_.s);
  for (size_t i = 0; i < sizeof(plic_.s) / 4; i++) f.add(plic[i]);
  for (const VirtioMmio& t : virtio_) f.add(t.digest());
  if (blk_) {
    std::vector<uint8_t> b;
    blk_->save(&b);
    for (uint8_t x : b) f.add(x);
  }
  for (uint32_t p = 0; p < npages; p++) f.add(page_hash_[p] + p);
  return f.h;
}

}  // namespace lockstep
