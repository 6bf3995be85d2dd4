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

#include "log/codec.h"
#include "log/ring.h"
#include "machine/machine.h"
#include "runner/replay_feed.h"

namespace lockstep {

/// What a finished run reports to the host.
struct RunReport {
  enum class Kind : uint8_t { kBudget, kExit, kTrap, kHalted, kStopped, kDivergence, kEndOfLog } kind = Kind::kBudget;
  /// kDivergence: what differed; kEndOfLog: the recorded end reason and code (reason -1: the log
  /// stopped without an end record).
  int32_t exit_code = 0;
  ExitVia via = ExitVia::kNone;
  uint32_t cause = 0, trap_pc = 0, tval = 0;
  std::string halt_reason;
  std::string divergence;
  int32_t end_reason = -1;
  int64_t end_code = 0;
};

class VcpuThread final : public ConsoleSink, public EventSink, public HostIo {
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

  // Record and replay (see DESIGN §2). All three switch modes only while idle.
  /// Records from here on: events go to the log ring as batches; a state hash every `hash_interval`
  /// instructions (0 = none).
  bool start_recording(uint8_t* log_mem, uint32_t log_capacity, uint64_t hash_interval);
  /// Ends a recording: a final state hash and an end record at the current position, then a flush.
  bool finish_recording(EndReason reason, int64_t code);
  /// Replays from here on: inputs come only from batches given to feed().
  bool start_replay();
  /// Hands a batch to the replayer (any thread, any time; copied).
  void feed(const uint8_t* data, size_t n);
  /// No more batches will come: running past the last one ends the replay.
  void end_of_log();

  void event(const Event& e) override;  // EventSink, vCPU thread only

  // Network (the `js` back-end): frames the guest sent, and frames for the guest.
  void net_transmit(const uint8_t* frame, size_t n) override;  // HostIo, vCPU thread
  /// Frames sent by the guest since the last call (any thread).
  std::vector<std::vector<uint8_t>> take_frames();
  /// Queues a frame for the guest; delivered at a boundary (dropped if the guest has no buffer).
  void net_input(const uint8_t* frame, size_t n);
  /// The `tap` back-end: creates (or attaches to) Linux TAP device `name`; frames then flow between it
  /// and virtio-net natively, without JavaScript. False with the reason in *error.
  bool attach_tap(const std::string& name, std::string* error);

  /// ConsoleSink (vCPU thread only): buffers, so a guest printing byte by byte does not ring the
  /// doorbell per byte; the buffer is flushed at every slice end, before sleeping and at the end of a run.
  void write(const uint8_t* data, size_t n) override;

 private:
  void thread_main();
  RunReport run_to(uint64_t target);
  void raise();  // recompute the attention flag; caller holds mu_
  void flush_console();  // vCPU thread: push buffered output into the ring, waiting for space if needed
  void push_blocking(ByteRingProducer& ring, const uint8_t* data, size_t n);
  void flush_log();      // vCPU thread (or idle host): seal the open batch with a mark and ship it
  RunReport replay_to(uint64_t target);
  RunReport final_report(RunStop stop);  // the report of a run that ended (exit, trap, halt, divergence)
  bool take_fed(std::unique_lock<std::mutex>& lock);  // move fed batches into the feed; caller holds mu_

  std::unique_ptr<Machine> machine_;
  ByteRingProducer console_;
  std::function<void()> doorbell_;
  std::vector<uint8_t> console_buf_;  // vCPU thread only

  // Recording (vCPU thread while running, host thread while idle).
  std::unique_ptr<ByteRingProducer> log_;
  BatchEncoder encoder_;
  uint64_t hash_interval_ = 0;
  uint64_t last_hash_at_ = UINT64_MAX;
  // Replay.
  ReplayFeed feed_;                        // vCPU thread
  bool replay_began_ = false;              // vCPU thread: the first batch's start was checked
  std::deque<std::vector<uint8_t>> fed_;   // under mu_: batches not yet taken by the vCPU thread
  bool log_complete_ = false;              // under mu_

  std::mutex mu_;
  std::condition_variable cv_;       // commands, input, stop: wakes the vCPU thread
  std::condition_variable space_cv_; // console ring space: wakes a producer waiting in write()
  bool run_requested_ = false;
  bool quit_ = false;
  bool stop_requested_ = false;
  uint64_t target_ = 0;
  std::deque<uint8_t> input_;
  std::deque<std::vector<uint8_t>> net_in_;   // under mu_
  std::vector<std::vector<uint8_t>> net_out_; // under mu_
  bool disk_done_ = false;                    // under mu_: the disk finished something
  int tap_fd_ = -1;
  std::atomic<bool> tap_quit_{false};
  std::thread tap_reader_;
  bool new_input_ = false;  // input arrived since the vCPU last looked
  bool report_ready_ = false;
  RunReport report_;
  std::atomic<bool> busy_{false};
  std::atomic<bool> attention_{false};  // the Cpu's host flag: stop requested or input queued
  std::thread thread_;
};

}  // namespace lockstep
