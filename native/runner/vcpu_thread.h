// The vCPU thread: runs a Machine on its own native thread so JavaScript is never blocked by a guest.
// Talks to JS only through the console ring and the doorbell; takes commands under a mutex.
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

#include "log/ring.h"
#include "machine/machine.h"

namespace lockstep {

/// What a finished run reports to the host.
struct RunReport {
  enum class Kind : uint8_t { kBudget, kExit, kTrap, kHalted, kStopped } kind = Kind::kBudget;
  int32_t exit_code = 0;
  ExitVia via = ExitVia::kNone;
  uint32_t cause = 0, trap_pc = 0, tval = 0;
  std::string halt_reason;
};

class VcpuThread final : public ConsoleSink {
 public:
  /// `doorbell` is called on the vCPU thread whenever the host has something to look at (console
  /// bytes, a finished run). It must not block; the binding coalesces it into one pending JS call.
  VcpuThread(const MachineConfig& config, uint8_t* console_mem, uint32_t console_capacity,
             std::function<void()> doorbell);
  ~VcpuThread() override;

  /// The machine; touch it only while !busy().
  Machine& machine() { return *machine_; }
  bool busy() const { return busy_.load(std::memory_order_acquire); }

  /// Starts a run to instret == target on the vCPU thread. False if a run is in progress.
  bool start(uint64_t target);
  /// Asks a run in progress to stop at the next instruction boundary it checks (within ~1 ms).
  void request_stop();
  /// Queues host input for the UART; delivered at an instruction boundary of the vCPU's choosing.
  void input(const uint8_t* data, size_t n);
  /// The host consumed console bytes: wake the vCPU if it waits for ring space.
  void console_drained();
  /// The report of the last finished run, once (false if none is ready).
  bool take_report(RunReport* out);
  /// Stops any run and joins the thread. Idempotent.
  void shutdown();

  /// ConsoleSink (vCPU thread only): buffers, so a guest printing byte by byte does not ring the
  /// doorbell per byte; the buffer is flushed at every slice end, before sleeping and at the end of a run.
  void write(const uint8_t* data, size_t n) override;

 private:
  void thread_main();
  RunReport run_to(uint64_t target);
  void raise();  // recompute the attention flag; caller holds mu_
  void flush_console();  // vCPU thread: push buffered output into the ring, waiting for space if needed

  std::unique_ptr<Machine> machine_;
  ByteRingProducer console_;
  std::function<void()> doorbell_;
  std::vector<uint8_t> console_buf_;  // vCPU thread only

  std::mutex mu_;
  std::condition_variable cv_;       // commands, input, stop: wakes the vCPU thread
  std::condition_variable space_cv_; // console ring space: wakes a producer waiting in write()
  bool run_requested_ = false;
  bool quit_ = false;
  bool stop_requested_ = false;
  uint64_t target_ = 0;
  std::deque<uint8_t> input_;
  bool report_ready_ = false;
  RunReport report_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> attention_{false};  // the Cpu's host flag: stop requested or input queued
  std::thread thread_;
};

}  // namespace lockstep
