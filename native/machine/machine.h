// The QEMU virt board around one hart: RAM, CLINT, PLIC, UART, test finisher, empty virtio-mmio
// slots, RISC-V semihosting and HTIF. Runs on the vCPU thread only; the host talks to it between runs.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "machine/plic.h"
#include "machine/uart.h"

namespace lockstep {

/// Where the guest's console output goes (UART TX and semihosting writes), in order.
class ConsoleSink {
 public:
  virtual ~ConsoleSink() = default;
  virtual void write(const uint8_t* data, size_t n) = 0;
};

struct MachineConfig {
  uint32_t ram_size = 64u << 20;
  bool real_clock = false;
};

/// Why Machine::run() returned.
enum class RunStop : uint8_t { kLimit, kExit, kFatalTrap, kHalted, kWaitWfi, kHost };

enum class ExitVia : uint8_t { kNone, kFinisher, kSemihosting, kHtif };

class Machine final : public Platform {
 public:
  static constexpr uint32_t kClintBase = 0x02000000, kClintSize = 0x10000;
  static constexpr uint32_t kFinisherBase = 0x00100000, kFinisherSize = 0x1000;
  static constexpr uint32_t kVirtioBase = 0x10001000, kVirtioSlots = 8, kVirtioStride = 0x1000;
  static constexpr uint64_t kTimebaseHz = 10'000'000;

  Machine(const MachineConfig& config, ConsoleSink* console);
  ~Machine() override;
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  /// Runs until instret == target or an earlier stop. A WFI in virtual-clock mode skips time to the
  /// next timer interrupt; in real-clock mode (or waiting for input) it returns kWaitWfi.
  RunStop run(uint64_t target);

  Cpu& cpu() { return cpu_; }
  uint8_t* ram() { return ram_; }
  uint32_t ram_size() const { return config_.ram_size; }
  const MachineConfig& config() const { return config_; }

  /// Host access to RAM (between runs). False when the range is not entirely RAM.
  bool write_ram(uint32_t addr, const uint8_t* data, uint32_t len);
  bool read_ram(uint32_t addr, uint8_t* out, uint32_t len) const;
  /// HTIF: the address of the ELF's `tohost` symbol (0 = none).
  void set_tohost(uint32_t addr);
  /// Host input for the UART; returns how many bytes the receive FIFO accepted.
  size_t uart_input(const uint8_t* data, size_t n);

  /// Real-clock mode: nanoseconds until the armed timer fires (0 if already due, -1 if none).
  int64_t ns_until_timer();

  // Stop details.
  int32_t exit_code() const { return exit_code_; }
  ExitVia exit_via() const { return exit_via_; }
  const std::string& halt_reason() const { return halt_reason_; }

  // Platform
  Mmio load(uint32_t addr, unsigned size, uint32_t* value) override;
  Mmio store(uint32_t addr, unsigned size, uint32_t value) override;
  uint64_t mtime() override;
  uint32_t device_irqs() override;
  Mmio semihost() override;

 private:
  void update_timer_deadline();
  void update_irqs() { plic_.set_level(Uart::kIrq, uart_.irq()); }
  Mmio clint_load(uint32_t off, uint32_t* v);
  Mmio clint_store(uint32_t off, uint32_t v);
  Mmio finisher_store(uint32_t v);
  Mmio virtio_load(uint32_t off, uint32_t* v);
  void console(const uint8_t* data, size_t n) { console_->write(data, n); }
  bool guest_read(uint32_t addr, void* out, uint32_t len) const { return read_ram(addr, static_cast<uint8_t*>(out), len); }
  bool guest_write(uint32_t addr, const void* data, uint32_t len);
  int32_t semihost_open(uint32_t name_addr, uint32_t mode, uint32_t len);
  uint64_t host_now_ticks() const;

  MachineConfig config_;
  ConsoleSink* console_;
  uint8_t* ram_;
  Cpu cpu_;
  Plic plic_;
  Uart uart_;

  // CLINT
  bool msip_ = false;
  bool timecmp_armed_ = false;  // QEMU raises MTIP only once mtimecmp has been written
  uint64_t mtimecmp_ = 0;
  int64_t mtime_offset_ = 0;      // guest writes to mtime
  uint64_t wfi_skipped_ = 0;      // virtual clock: ticks skipped while in WFI
  std::chrono::steady_clock::time_point start_;

  uint32_t tohost_ = 0;
  int32_t exit_code_ = 0;
  ExitVia exit_via_ = ExitVia::kNone;
  std::string halt_reason_;
  int32_t semihost_errno_ = 0;
  uint32_t semihost_feature_pos_ = 0;  // read position in the one feature-file handle
  bool halt_requested_ = false;
};

}  // namespace lockstep
