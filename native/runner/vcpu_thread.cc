// vCPU thread main loop: run in slices, feed host input between slices, sleep in WFI, report.
#include "runner/vcpu_thread.h"

#include <chrono>

namespace lockstep {
namespace {
// Between slices the thread looks at host input; a slice is ~4 ms at 1000 MIPS.
constexpr uint64_t kSlice = 1u << 22;
constexpr size_t kConsoleFlushBytes = 16 * 1024;
}  // namespace

VcpuThread::VcpuThread(const MachineConfig& config, uint8_t* console_mem, uint32_t console_capacity,
                       std::function<void()> doorbell)
    : machine_(std::make_unique<Machine>(config, this)),
      console_(console_mem, console_capacity),
      doorbell_(std::move(doorbell)) {
  console_.init();
  machine_->cpu().host_flag = &attention_;
  thread_ = std::thread([this] { thread_main(); });
}

VcpuThread::~VcpuThread() { shutdown(); }

void VcpuThread::raise() {
  // release: pairs with the acquire load in Cpu::run(); the queued input/stop flag is visible first.
  attention_.store(stop_requested_ || !input_.empty() || quit_, std::memory_order_release);
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
  raise();
  cv_.notify_all();
}

void VcpuThread::console_drained() {
  std::lock_guard<std::mutex> lock(mu_);
  space_cv_.notify_all();
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
}

void VcpuThread::write(const uint8_t* data, size_t n) {
  console_buf_.insert(console_buf_.end(), data, data + n);
  if (console_buf_.size() >= kConsoleFlushBytes) flush_console();
}

void VcpuThread::flush_console() {
  const uint8_t* data = console_buf_.data();
  size_t n = console_buf_.size();
  if (n == 0) return;
  for (;;) {
    const size_t m = console_.push(data, n);
    data += m;
    n -= m;
    if (m) doorbell_();
    if (n == 0) break;
    // Ring full: wait for the host to drain it. Output is never dropped, except on teardown.
    std::unique_lock<std::mutex> lock(mu_);
    if (quit_) break;
    space_cv_.wait_for(lock, std::chrono::milliseconds(50));
  }
  console_buf_.clear();
}

RunReport VcpuThread::run_to(uint64_t target) {
  Machine& m = *machine_;
  Cpu& cpu = m.cpu();
  RunReport r;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (quit_ || stop_requested_) {
        r.kind = RunReport::Kind::kStopped;
        return r;
      }
      while (!input_.empty()) {
        uint8_t buf[64];
        size_t n = 0;
        while (n < sizeof(buf) && n < input_.size()) buf[n] = input_[n], n++;
        const size_t took = m.uart_input(buf, n);
        input_.erase(input_.begin(), input_.begin() + static_cast<long>(took));
        if (took < n) break;  // FIFO full: the rest waits for the guest to read
      }
      raise();
    }
    const uint64_t slice_end = std::min(target, cpu.instret + kSlice);
    const RunStop stop = m.run(slice_end);
    flush_console();
    switch (stop) {
      case RunStop::kLimit:
        if (cpu.instret >= target) {
          r.kind = RunReport::Kind::kBudget;
          return r;
        }
        break;
      case RunStop::kHost:
        break;  // the top of the loop handles stop and input
      case RunStop::kExit:
        r.kind = RunReport::Kind::kExit;
        r.exit_code = m.exit_code();
        r.via = m.exit_via();
        return r;
      case RunStop::kFatalTrap:
        r.kind = RunReport::Kind::kTrap;
        r.cause = cpu.fatal_cause;
        r.trap_pc = cpu.fatal_pc;
        r.tval = cpu.fatal_tval;
        return r;
      case RunStop::kHalted:
        r.kind = RunReport::Kind::kHalted;
        r.halt_reason = m.halt_reason();
        return r;
      case RunStop::kWaitWfi: {
        // Sleep (never spin) until input, a stop, or (real clock) the timer's deadline.
        std::unique_lock<std::mutex> lock(mu_);
        const int64_t ns = m.config().real_clock ? m.ns_until_timer() : -1;
        auto ready = [&] { return quit_ || stop_requested_ || !input_.empty(); };
        if (ns < 0) cv_.wait(lock, ready);
        else if (ns > 0) cv_.wait_for(lock, std::chrono::nanoseconds(ns), ready);
        break;
      }
    }
  }
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
