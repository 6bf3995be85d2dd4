// Memory map dispatch, CLINT, test finisher, HTIF and the WFI policy of the virt board.
#include "machine/machine.h"

#include <cstdlib>
#include <cstring>

namespace lockstep {
namespace {
constexpr uint32_t kMipMSip = 1u << kIrqMSoft, kMipMTip = 1u << kIrqMTimer, kMipMEip = 1u << kIrqMExt;
constexpr uint32_t kFinisherFail = 0x3333, kFinisherPass = 0x5555, kFinisherReset = 0x7777;
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
  if (config_.real_clock) cpu_.slice = 1u << 17;  // the timer is polled: keep its latency ~0.1 ms
}

Machine::~Machine() { std::free(ram_); }

bool Machine::write_ram(uint32_t addr, const uint8_t* data, uint32_t len) {
  const uint64_t off = static_cast<uint64_t>(addr) - kRamBase;
  if (addr < kRamBase || off + len > config_.ram_size) return false;
  if (len == 0) return true;
  std::memcpy(ram_ + off, data, len);
  cpu_.invalidate_range(addr, len);
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
  const size_t took = uart_.receive(data, n);
  update_irqs();
  return took;
}

uint64_t Machine::host_now_ticks() const {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start_).count();
  return static_cast<uint64_t>(ns) / (1'000'000'000 / kTimebaseHz);
}

uint64_t Machine::mtime() {
  const uint64_t base = config_.real_clock ? host_now_ticks() : cpu_.instret / kVirtualInstructionsPerTick + wfi_skipped_;
  return base + static_cast<uint64_t>(mtime_offset_);
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
  const uint64_t now = mtime();
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
  return m;
}

RunStop Machine::run(uint64_t target) {
  for (;;) {
    if (halt_requested_) return RunStop::kHalted;
    update_timer_deadline();
    switch (cpu_.run(target)) {
      case Stop::kLimit: return RunStop::kLimit;
      case Stop::kExit: return halt_requested_ ? RunStop::kHalted : RunStop::kExit;
      case Stop::kFatalTrap: return RunStop::kFatalTrap;
      case Stop::kHost: return RunStop::kHost;
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
    if (!timer_can_wake && !(mie & kMipMEip)) {
      halt_reason_ = (mie & (kMipMTip | kMipMEip)) ? "wfi waiting for a timer interrupt that is never armed"
                                                     : "wfi with no timer or external interrupt enabled";
      return RunStop::kHalted;
    }
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
  if (addr - kFinisherBase < kFinisherSize) {
    *v = 0;
    return Mmio::kOk;
  }
  if (addr - kVirtioBase < kVirtioSlots * kVirtioStride) return size == 4 && !(addr & 3) ? virtio_load((addr - kVirtioBase) % kVirtioStride, v) : Mmio::kFault;
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
  if (addr - kVirtioBase < kVirtioSlots * kVirtioStride) return size == 4 && !(addr & 3) ? Mmio::kOk : Mmio::kFault;
  return Mmio::kFault;
}

Mmio Machine::clint_load(uint32_t off, uint32_t* v) {
  switch (off) {
    case 0x0000: *v = msip_ ? 1 : 0; return Mmio::kOk;
    case 0x4000: *v = static_cast<uint32_t>(mtimecmp_); return Mmio::kOk;
    case 0x4004: *v = static_cast<uint32_t>(mtimecmp_ >> 32); return Mmio::kOk;
    case 0xBFF8: *v = static_cast<uint32_t>(mtime()); return Mmio::kOk;
    case 0xBFFC: *v = static_cast<uint32_t>(mtime() >> 32); return Mmio::kOk;
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

Mmio Machine::virtio_load(uint32_t off, uint32_t* v) {
  // An empty virtio-mmio slot, as QEMU shows one: right magic and version, device id 0.
  switch (off) {
    case 0x000: *v = 0x74726976; break;  // "virt"
    case 0x004: *v = 2; break;
    case 0x00c: *v = 0x554d4551; break;  // "QEMU"
    default: *v = 0; break;
  }
  return Mmio::kOk;
}

}  // namespace lockstep
