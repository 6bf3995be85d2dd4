// The QEMU virt board around one hart: RAM, CLINT, PLIC, UART, test finisher, empty virtio-mmio
// slots, RISC-V semihosting and HTIF. Runs on the vCPU thread only; the host talks to it between runs.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "cpu/cpu.h"
#include "log/event.h"
#include "machine/block_file.h"
#include "machine/plic.h"
#include "machine/uart.h"
#include "machine/virtio.h"
#include "machine/virtio_devices.h"

namespace lockstep {

/// Where the guest's console output goes (UART TX and semihosting writes), in order.
class ConsoleSink {
 public:
  virtual ~ConsoleSink() = default;
  virtual void write(const uint8_t* data, size_t n) = 0;
};

/// Where a recording machine sends its events (the vCPU thread's batch encoder).
class EventSink {
 public:
  virtual ~EventSink() = default;
  virtual void event(const Event& e) = 0;
};

/// Where a replaying machine takes its events from.
class ReplaySource {
 public:
  virtual ~ReplaySource() = default;
  /// The next event, or nullptr when none is available (yet). Valid until pop().
  virtual const Event* peek() = 0;
  virtual void pop() = 0;
};

/// Plain (inputs from the host, nothing logged), record (inputs from the host, logged) or replay
/// (inputs from the log, host input refused).
enum class LogMode : uint8_t { kOff, kRecord, kReplay };

/// Where device outputs leave the machine (the vCPU thread's host side).
class HostIo {
 public:
  virtual ~HostIo() = default;
  virtual void net_transmit(const uint8_t* frame, size_t n) = 0;
  /// A replaying machine's transmit, suppressed: the host may keep it for a go-live re-emission.
  virtual void net_suppressed(const uint8_t* frame, size_t n) = 0;
  /// The output rule: true if the host took the request to hand to the disk later (once the log
  /// behind it is acknowledged); false to submit it now.
  virtual bool hold_block(BlockFile::Request& r) = 0;
};

struct MachineConfig {
  uint32_t ram_size = 64u << 20;
  bool real_clock = false;
  /// Recording with the real clock: a guest clock read is logged (with the host's time) only when the
  /// host clock has moved this many 10 MHz ticks past the last logged value; a read before that returns
  /// the last value again, unlogged. The guest's clock then advances in steps of at least this much
  /// while it runs (timer interrupts still come on time), and the log carries a record per step, not per
  /// read. 0: every read is logged (log format 1). A replay needs no setting: it takes a logged value
  /// wherever the log has one.
  uint64_t clock_step_ticks = 1000;
  bool rng = false;              ///< virtio-rng in slot 2 (IRQ 3)
  bool net = false;              ///< virtio-net in slot 0 (IRQ 1)
  uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::string disk;              ///< raw image for virtio-blk in slot 1 (IRQ 2); empty: none
  /// `separate` disk mode: each half of a pair has its own identical image. The log then carries no read
  /// data, and a replaying machine performs reads and writes on its own image at the logged completions.
  bool disk_separate = false;
  /// Lock the image exclusively while the machine is open (see BlockFile::open).
  bool disk_lock = false;
  uint64_t entropy_seed = 0x6c6f636b;  ///< virtual clock: entropy is this seeded PRNG's, so runs repeat
  /// The guest's command line (semihosting SYS_GET_CMDLINE): configuration, the same on both halves of
  /// a pair, so nothing is logged.
  std::string cmdline;
  /// Execution engine: the block compiler for hot M-mode code beside the interpreter (x86-64 Linux
  /// hosts; elsewhere the interpreter alone), or the interpreter alone. Not guest-visible, not logged.
  bool jit = false;
};

/// Why Machine::restore() refused a snapshot.
enum class SnapshotProblem : uint8_t {
  kCorrupt,   ///< not a snapshot, a checksum mismatch, or a field no machine could be in
  kVersion,   ///< written in a format version this build does not read
  kMismatch,  ///< a valid snapshot of a differently configured machine (RAM size, clock, devices)
};

/// Why Machine::run() returned.
enum class RunStop : uint8_t { kLimit, kExit, kFatalTrap, kHalted, kWaitWfi, kHost, kDivergence, kDebug };

enum class ExitVia : uint8_t { kNone, kFinisher, kSemihosting, kHtif };

class Machine final : public Platform {
 public:
  static constexpr uint32_t kClintBase = 0x02000000, kClintSize = 0x10000;
  static constexpr uint32_t kFinisherBase = 0x00100000, kFinisherSize = 0x1000;
  /// The guest watchdog (lockstep's own; free in QEMU's virt map): a 32-bit store at its base is a pet,
  /// every other access reads 0 and is ignored. It keeps no guest-visible state, so nothing of it is in
  /// a snapshot, the state hash or the log; the host only counts pets (HA VM monitoring's guest heartbeat).
  static constexpr uint32_t kWatchdogBase = 0x00102000, kWatchdogSize = 0x1000;
  static constexpr uint32_t kVirtioBase = 0x10001000, kVirtioSlots = 8, kVirtioStride = 0x1000;
  static constexpr uint64_t kTimebaseHz = 10'000'000;

  /// Throws nothing: a disk image that cannot be opened leaves error() set and no disk attached.
  Machine(const MachineConfig& config, ConsoleSink* console);
  const std::string& error() const { return error_; }
  ~Machine() override;
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  /// Runs until instret == target or an earlier stop. A WFI in virtual-clock mode skips time to the
  /// next timer interrupt; in real-clock mode (or waiting for input) it returns kWaitWfi.
  RunStop run(uint64_t target);

  Cpu& cpu() { return cpu_; }
  /// A debugger's breakpoints and watchpoints (between runs); debugging(true) makes the hart obey them.
  DebugState& debug_state() { return debug_; }
  void set_debugging(bool on) { cpu_.debug = on ? &debug_ : nullptr; }
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

  /// Switches logging; only between runs. In record and replay mode with the real clock, the clock
  /// the guest sees only moves through logged values.
  void set_log_mode(LogMode mode, EventSink* sink, ReplaySource* source);
  LogMode log_mode() const { return log_mode_; }
  /// Replay: applies an asynchronous event at the current position; false on divergence.
  bool apply(const Event& e);
  /// Replay: the machine stopped where the log says something else happens; the report text.
  void diverge(const std::string& what);
  const std::string& divergence() const { return divergence_; }
  /// Sets the raw clock (a replay's starting value from its first batch).
  void set_clock_raw(uint64_t raw) {  // a replay's start: the recorder's clock when it began
    clock_rate_ = 0;
    set_clock_base(raw);
  }
  uint64_t clock_raw() const { return clock_raw_; }
  /// Hash of the whole machine state: registers, CSRs, counters, devices and RAM. Pages unchanged
  /// since the last call are not read again (dirty-page tracking).
  uint64_t state_hash();
  // Devices (vCPU thread).
  void set_host_io(HostIo* io) { host_io_ = io; }
  BlockFile* block_file() { return block_.get(); }
  /// virtio-rng: fills `out`; false on a replay divergence.
  bool entropy(uint8_t* out, uint32_t n);
  /// virtio-blk: hands a request to the disk (not when replaying: the log brings completions).
  void block_submit(uint16_t head, BlockFile::Op op, uint64_t offset, std::vector<uint8_t>&& data, uint32_t length);
  /// Recording or plain: completes the requests the disk has finished, at this boundary.
  void block_poll();
  /// virtio-net: a frame the guest sent (suppressed and counted when replaying).
  void net_transmit(const uint8_t* frame, uint32_t n);
  /// A frame from the host for the guest (plain/record); false when dropped for lack of buffers.
  bool net_receive(const uint8_t* frame, uint32_t n);
  /// Whether net_receive() could deliver a frame now (kClosed also without virtio-net or when replaying).
  VirtioNet::Rx net_rx_state() const;
  uint64_t suppressed_outputs() const { return suppressed_; }
  /// virtio-blk requests submitted and not yet completed (the guest's view).
  size_t disk_in_flight() const { return blk_ ? blk_->pending().size() : 0; }
  /// Syncs the disk image has had (BlockFile::syncs); 0 without a disk. Any thread.
  uint64_t disk_syncs() const { return block_ ? block_->syncs() : 0; }
  /// Go-live of a secondary (only between runs, in replay mode): inputs come from the host from here
  /// on, the real clock continues from the last logged value, and every disk request still in flight
  /// is handed to the disk again.
  void go_live();

  /// The current position as an event would carry it.
  Event position(EventKind kind) const;

  /// Snapshot of the whole machine (versioned binary; zero pages omitted). Only between runs.
  std::vector<uint8_t> save(bool include_ram = true) const;
  /// Restores a snapshot taken of a machine with the same RAM size, clock mode and devices. The whole
  /// snapshot is checksummed and every field validated before anything changes. On failure returns
  /// false with the reason in *error (and its kind in *problem) and leaves the machine unchanged.
  bool restore(const uint8_t* data, size_t n, std::string* error, SnapshotProblem* problem = nullptr);

  // Stop details.
  int32_t exit_code() const { return exit_code_; }
  ExitVia exit_via() const { return exit_via_; }
  const std::string& halt_reason() const { return halt_reason_; }
  /// Pets of the guest watchdog since this machine was made (any thread).
  uint64_t watchdog_pets() const { return watchdog_pets_.load(std::memory_order_relaxed); }

  // Platform
  Mmio load(uint32_t addr, unsigned size, uint32_t* value) override;
  Mmio store(uint32_t addr, unsigned size, uint32_t value) override;
  uint64_t mtime() override;
  uint64_t guest_time() override;
  void boundary() override;
  uint32_t device_irqs() override;
  Mmio semihost() override;

 private:
  void update_timer_deadline();
  void update_irqs() {
    plic_.set_level(Uart::kIrq, uart_.irq());
    for (const VirtioMmio& t : virtio_) plic_.set_level(t.irq(), t.irq_line());
  }
  Mmio clint_load(uint32_t off, uint32_t* v);
  Mmio clint_store(uint32_t off, uint32_t v);
  Mmio finisher_store(uint32_t v);
  void console(const uint8_t* data, size_t n) { console_->write(data, n); }
  bool guest_read(uint32_t addr, void* out, uint32_t len) const { return read_ram(addr, static_cast<uint8_t*>(out), len); }
  bool guest_write(uint32_t addr, const void* data, uint32_t len);
  int32_t semihost_open(uint32_t name_addr, uint32_t mode, uint32_t len);
  uint64_t host_now_ticks() const;

 public:
  /// With the real clock and no log, brings the logged clock up to the host's, so that the hart-and-device
  /// state a clone or a migration's target goes on from carries the guest's clock now (it otherwise holds
  /// what a past recording left, often 0, and the target's clock went back there).
  void settle_clock();

 private:
  uint64_t on_step_grid(uint64_t now) const;  // record: a host clock reading rounded down to the clock step
  void carry_clock(Event* e);                 // record: an asynchronous event moves the clock if a step passed

  MachineConfig config_;
  ConsoleSink* console_;
  uint8_t* ram_;
  Cpu cpu_;
  Plic plic_;
  Uart uart_;
  std::vector<VirtioMmio> virtio_;  // the 8 slots; empty ones answer as QEMU's do
  std::unique_ptr<VirtioRng> rng_;
  std::unique_ptr<VirtioBlk> blk_;
  std::unique_ptr<VirtioNet> net_;
  std::unique_ptr<BlockFile> block_;
  HostIo* host_io_ = nullptr;
  uint64_t prng_;                   // virtual-clock entropy
  uint64_t suppressed_ = 0;         // outputs a replaying machine did not emit
  std::string error_;

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
  std::atomic<uint64_t> watchdog_pets_{0};
  std::string halt_reason_;
  uint64_t wall_time();  // semihosting SYS_TIME, logged or replayed
  bool consume_sync(EventKind kind, uint64_t* value);
  // Replay: the value of a `kind` event logged at exactly this position, if the log has one next.
  bool take_sync_here(EventKind kind, uint64_t* value);

  LogMode log_mode_ = LogMode::kOff;
  EventSink* sink_ = nullptr;
  ReplaySource* source_ = nullptr;
  DebugState debug_;              // consulted by the hart only while set_debugging(true)
  uint64_t clock_raw_ = 0;        // record/replay with the real clock: the last value the guest read
  // Record/replay with the real clock: between logged values the clock moves with instret, from its base
  // (the last logged, carried or sampled value, and the instret there) at clock_rate_ ticks per 2^16
  // instructions (0: it holds). The recorder logs a read only when that drifts a step from the host's.
  uint64_t clock_base_ = 0;
  uint64_t clock_base_instret_ = 0;
  uint32_t clock_rate_ = 0;
  // Recorder only (not state): the host clock and instret the next rate is measured from, and whether the
  // hart has not slept since (a sleep's time has no instructions: no rate from it).
  uint64_t rate_from_clock_ = 0;
  uint64_t rate_from_instret_ = 0;
  bool rate_from_valid_ = false;
  void set_clock_base(uint64_t value);
  uint64_t predicted_clock() const;
  uint32_t measured_rate(uint64_t now, bool ahead) const;
  std::string divergence_;
  std::vector<uint64_t> page_hash_;
  int32_t semihost_errno_ = 0;
  uint32_t semihost_feature_pos_ = 0;  // read position in the one feature-file handle
  bool halt_requested_ = false;
};

}  // namespace lockstep
