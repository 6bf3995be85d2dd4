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
#include "machine/net/tap.h"
#include "machine/net/udp.h"
#include "runner/output_gate.h"
#include "runner/precopy.h"
#include "runner/replay_feed.h"

namespace lockstep {

/// What a finished run reports to the host.
struct RunReport {
  enum class Kind : uint8_t { kBudget, kExit, kTrap, kHalted, kStopped, kDivergence, kEndOfLog, kDebug } kind = Kind::kBudget;
  /// kDivergence: what differed. end_reason and end_code: the recorded end reason and code, once the
  /// end record was applied (reason -1: the log stopped without an end record).
  int32_t exit_code = 0;
  ExitVia via = ExitVia::kNone;
  uint32_t cause = 0, trap_pc = 0, tval = 0;
  std::string halt_reason;
  std::string divergence;
  int32_t end_reason = -1;
  int64_t end_code = 0;
  /// Replay runs: the log's end record was reached and applied (so every event of the log was consumed:
  /// a feed refuses records after an end record), and whether a state hash matched right before it, at
  /// the same position (the final state is the recorded one). A report of any kind may carry these.
  bool replayed = false;
  bool log_ended = false;
  bool final_hash = false;
};

/// Another thread that takes the sealed batches out of the log ring (the replication link), instead of
/// the host reading them after a doorbell.
class LogConsumer {
 public:
  virtual ~LogConsumer() = default;
  /// vCPU thread (or the idle host): batch `lsn` is in the ring.
  virtual void published(uint64_t lsn) = 0;
  /// True once the consumer stopped for good: the ring has no reader any more (the log goes nowhere).
  virtual bool gone() const = 0;
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
  bool start_replay(uint64_t resume_at = UINT64_MAX);
  /// Hands a batch to the replayer (any thread, any time; copied).
  void feed(const uint8_t* data, size_t n);
  /// No more batches will come: running past the last one ends the replay.
  void end_of_log();
  /// Recording: batches go to `consumer` (a thread of its own) instead of ringing the doorbell; null
  /// gives them back to the host. Any thread. Once the consumer is gone() the log is discarded.
  void set_log_consumer(std::shared_ptr<LogConsumer> consumer);
  /// The recording's log goes nowhere from now on (discarded as it is made) until the next recording.
  void abandon_log();
  /// Bytes the log ring could take now (0 when not recording).
  size_t log_free();
  /// Replay: batches also arrive through a ring of `capacity` data bytes (2^k) that this returns (zeroed:
  /// an empty ring), its producer on another thread (the replication link) publishing whole batches,
  /// possibly in pieces. Replaying (running or not), else null. The memory stays valid until the next attach or
  /// the end of this object; `consumed` is called (vCPU thread) after bytes were taken out.
  uint8_t* attach_replay_ring(uint32_t capacity, std::function<void()> consumed);
  /// The replay ring's producer published bytes (any thread). Wakes the replayer only when it waits
  /// without a deadline (it had no log for a while) or when `urgent` (the producer waits for space);
  /// otherwise the replayer, running or napping, finds the bytes itself.
  void replay_arrived(bool urgent = false);
  /// The output rule's added latency samples (see OutputGate::take_delays).
  std::vector<uint64_t> take_release_delays() { return gate_.take_delays(); }

  void event(const Event& e) override;  // EventSink, vCPU thread only

  // Network (the `js` back-end): frames the guest sent, and frames for the guest.
  void net_transmit(const uint8_t* frame, size_t n) override;  // HostIo, vCPU thread
  void net_suppressed(const uint8_t* frame, size_t n) override;  // HostIo, vCPU thread
  bool hold_block(BlockFile::Request& r) override;             // HostIo, vCPU thread
  /// Frames sent by the guest since the last call (any thread).
  std::vector<std::vector<uint8_t>> take_frames();
  /// Queues a frame for the guest (any thread). It is delivered at a boundary once the guest has a
  /// receive buffer posted, oldest first; it waits on the host meanwhile, up to kNetQueueFrames frames.
  /// Beyond that, or while the guest's driver is not running, a frame is dropped and counted.
  void net_input(const uint8_t* frame, size_t n);
  /// net_input() for several frames at once, moved in (the udp back-end's receive batches).
  void net_input_batch(std::vector<std::vector<uint8_t>>& frames);
  static constexpr size_t kNetQueueFrames = 1024;
  /// Host-side receive counters (any thread).
  struct NetStats {
    uint64_t queued = 0;     // frames waiting for a guest receive buffer now
    uint64_t delivered = 0;  // frames put into guest receive buffers
    uint64_t delivered_bytes = 0;  // their bytes: the guest's network input, which the log carries
    uint64_t dropped = 0;    // frames dropped: the queue was full, the driver not running, or the frame too large for the buffer
  };
  NetStats net_stats();
  /// The `tap` back-end: creates (or attaches to) Linux TAP device `name`; frames then flow between it
  /// and virtio-net natively, without JavaScript. False with the reason in *error.
  bool attach_tap(const std::string& name, std::string* error);
  /// The `udp` back-end (any time, also while running: a secondary binds at go-live, a busy port is
  /// retried): binds the forwards, then frames flow between the sockets and virtio-net natively. The
  /// guest's MAC until it sends a frame is `guest_mac`. Returns the back-end's id (> 0), or 0: *err is the
  /// errno of the failed bind (EEXIST: a network back-end is attached already) and *failed its forward.
  uint64_t attach_udp(const std::vector<UdpForwardSpec>& forwards, const uint8_t guest_mac[6], std::vector<uint16_t>* ports,
                      int* err, size_t* failed);
  /// Detaches and closes udp back-end `id` (no-op if it is not the one attached). Any thread but the
  /// vCPU thread; joins its reader.
  void detach_udp(uint64_t id);
  /// Counters of udp back-end `id`; false if it is not attached.
  bool udp_stats(uint64_t id, UdpStats* out);

  /// ConsoleSink (vCPU thread only): buffers, so a guest printing byte by byte does not ring the
  /// doorbell per byte; the buffer is flushed at every slice end, before sleeping and at the end of a run.
  void write(const uint8_t* data, size_t n) override;

  // Fault tolerance (DESIGN §3): the output rule and shadow outputs live in gate_ (output_gate.h).
  using Outputs = OutputGate::Outputs;
  /// Closes (true) or opens (false) the gate. Opening releases everything held.
  Outputs set_gate(bool closed);
  /// Releases held outputs whose lsn <= `lsn` (any thread).
  Outputs release(uint64_t lsn);
  /// Secondary: keep suppressed outputs for go-live (true) or drop them (false, the default).
  void set_shadow(bool on);
  /// Secondary: the primary released its outputs through `lsn`; shadow outputs up to it are dropped.
  void shadow_release(uint64_t lsn);
  /// Secondary go-live (idle, replay mode): devices live, in-flight disk requests re-issued, and the
  /// shadow outputs tagged above `released` returned for re-emission. False if not replaying or busy.
  bool go_live(uint64_t released, Outputs* out);
  /// Outputs held (primary) or kept (secondary shadow) right now.
  size_t held();
  /// The console stream's position: bytes the guest has written to its console (UART, semihosting)
  /// since the machine was made, plus where the numbering was set to start (any thread). Gated,
  /// suppressed and emitted bytes all count, so two machines in lockstep agree on it; a go-live's
  /// re-emitted bytes end there, which lets a sink drop what it already has (no gap, no duplicate).
  uint64_t console_position() const { return console_position_.load(std::memory_order_acquire); }
  /// Continues the numbering of another machine (a clone restored from its state); idle only.
  void set_console_position(uint64_t position) { console_position_.store(position, std::memory_order_release); }
  /// instret at the end of the last slice (any thread; for acks and lag).
  uint64_t progress() const { return progress_.load(std::memory_order_relaxed); }
  /// Lag control: the vCPU sleeps `ratio` of each slice's duration (0 = full speed, at most 0.95). Also
  /// applies to a replay (a secondary made slow on purpose, as on a loaded host).
  void set_throttle(double ratio);
  /// Pre-copy (clone of a running machine; the rounds live in precopy_, runner/precopy.h): starts a round
  /// that copies every page written since the last round (the first round: every page ever written). The
  /// vCPU thread copies a bounded chunk at each slice boundary, also while the guest idles in WFI;
  /// take_precopy() collects them. Only one round at a time.
  bool precopy_start(bool first);
  /// Pages copied so far ([u32 index][4096 bytes]…), and whether the round finished.
  std::vector<uint8_t> take_precopy(bool* done) { return precopy_.take(done); }
  /// Idle: copies the pages of a round at once (the final stop-and-copy, or a machine not running).
  std::vector<uint8_t> copy_pages(bool first);
  /// Sends a RARP broadcast from the guest's MAC on the tap device so switches learn its new port.
  void announce();

 private:
  void thread_main();
  RunReport run_to(uint64_t target);
  void raise();  // recompute the attention flag; caller holds mu_
  void flush_console();  // vCPU thread: push buffered output into the ring, waiting for space if needed
  void push_blocking(ByteRingProducer& ring, const uint8_t* data, size_t n);
  /// vCPU thread, out of ring space (caller holds mu_ in `lock`): waits for console_drained() unless
  /// the ring has space by now. True if it waited.
  bool wait_space(std::unique_lock<std::mutex>& lock, const ByteRingProducer& ring);
  void flush_log();      // vCPU thread (or idle host): seal the open batch with a mark and ship it
  RunReport replay_to(uint64_t target);
  RunReport final_report(RunStop stop);
  RunReport debug_report();  // a debugger's breakpoint, watchpoint or step stopped the run  // the report of a run that ended (exit, trap, halt, divergence)
  bool take_fed(std::unique_lock<std::mutex>& lock);  // move fed batches into the feed; caller holds mu_
  bool has_fed() const;  // fed_ or the replay ring has something for the feed; caller holds mu_
  bool ring_has_batch() const;  // the replay ring holds a whole batch (vCPU thread, or caller holds mu_)
  /// Replay, out of log: waits for more (caller holds mu_ in `lock`). A nap when log came recently, else
  /// a wait the ring's producer ends (replay_arrived).
  void replay_wait(std::unique_lock<std::mutex>& lock);
  void push_log(const uint8_t* data, size_t n);  // the log ring, to its consumer (host or LogConsumer)
  void discard_log();  // the consumer is gone: empty the ring (the producer takes the consumer's part)

  uint64_t output_tag();            // vCPU thread: the lsn an output produced now depends on
  /// vCPU thread: holds an output in the gate (bytes, or *block, moved in only when held). False: emit
  /// it now (the gate or shadow is open, or a disk read/flush that no held write must precede).
  bool hold_output(OutputGate::Kind kind, const uint8_t* data, size_t n, BlockFile::Request* block);
  void precopy_chunk();  // vCPU thread, at a slice boundary: the next chunk of the pre-copy round
  void pace(std::chrono::steady_clock::time_point slice_began);  // lag control

  std::unique_ptr<Machine> machine_;
  ByteRingProducer console_;
  std::function<void()> doorbell_;
  std::vector<uint8_t> console_buf_;  // vCPU thread only
  // Written by the vCPU thread only (write()); release/acquire so an idle host reads the final count.
  std::atomic<uint64_t> console_position_{0};

  // Recording (vCPU thread while running, host thread while idle).
  std::unique_ptr<ByteRingProducer> log_;
  uint8_t* log_mem_ = nullptr;
  uint32_t log_capacity_ = 0;
  std::mutex consumer_mu_;
  std::shared_ptr<LogConsumer> consumer_;  // under consumer_mu_
  BatchEncoder encoder_;
  std::chrono::steady_clock::time_point last_flush_{};  // vCPU thread: when a batch was last sealed
  bool log_pending() const;                             // vCPU thread: a flush would seal a batch
  uint64_t hash_interval_ = 0;
  uint64_t last_hash_at_ = UINT64_MAX;
  // Replay.
  ReplayFeed feed_;                        // vCPU thread
  bool replay_began_ = false;              // vCPU thread: the first batch's start was checked
  uint64_t resume_at_ = UINT64_MAX;        // vCPU thread: replay resumes from a snapshot taken here (see start_replay)
  bool hash_here_ = false;                 // vCPU thread: the last event applied was a matching state
                                           // hash, and the machine has not run since (across runs)
  std::deque<std::vector<uint8_t>> fed_;   // under mu_: batches not yet taken by the vCPU thread
  bool log_complete_ = false;              // under mu_
  std::unique_ptr<ByteRingConsumer> replay_ring_;  // vCPU thread (set while idle)
  std::unique_ptr<uint8_t[]> replay_mem_;          // its memory (kept past a reset: a producer may still write)
  bool ring_pending_ = false;              // under mu_: the replay ring may hold a whole batch
  std::atomic<bool> replay_deep_wait_{false};  // the replayer waits without a deadline (replay_wait)
  std::chrono::steady_clock::time_point replay_took_at_{};  // vCPU thread: when it last took batches from the ring
  std::function<void()> replay_consumed_;  // set while idle with replay_ring_

  std::mutex mu_;
  std::condition_variable cv_;       // commands, input, stop: wakes the vCPU thread
  std::condition_variable space_cv_; // console ring space: wakes a producer waiting in write()
  std::atomic<uint32_t> space_waiters_{0};  // producers in wait_space() (console_drained looks first)
  bool run_requested_ = false;
  bool quit_ = false;
  bool stop_requested_ = false;
  uint64_t target_ = 0;
  std::deque<uint8_t> input_;
  std::deque<std::vector<uint8_t>> net_in_;   // under mu_: frames for the guest, oldest first
  size_t net_taken_ = 0;                      // under mu_: frames the vCPU took out of net_in_ to deliver
  std::atomic<uint64_t> net_delivered_{0};
  std::atomic<uint64_t> net_delivered_bytes_{0};
  std::atomic<uint64_t> net_dropped_{0};
  std::vector<std::vector<uint8_t>> net_out_; // under mu_
  bool disk_done_ = false;                    // under mu_: the disk finished something
  std::unique_ptr<TapDevice> tap_;            // the tap back-end (attached while idle, before any run)
  std::shared_ptr<UdpBackend> udp() {          // the udp back-end, or null (any thread)
    std::lock_guard<std::mutex> lock(udp_mu_);
    return udp_;
  }
  std::mutex udp_mu_;                         // guards udp_ and udp_id_ only (never held while sending)
  std::shared_ptr<UdpBackend> udp_;           // the udp back-end: shared, so a sender keeps it alive
  uint64_t udp_id_ = 0;                       // under udp_mu_: ids of attached back-ends (0: none yet)
  bool new_input_ = false;  // input arrived since the vCPU last looked
  bool report_ready_ = false;
  RunReport report_;
  std::atomic<bool> busy_{false};
  // Output rule and shadow outputs (its own lock; released frames go to tap_, disk requests to the disk).
  OutputGate gate_;
  bool tagged_since_flush_ = false;     // vCPU thread: seal a batch even if nothing else was logged
  bool first_batch_due_ = false;        // vCPU thread: the recording's first batch (the base a replay starts from) is not sent yet
  // vCPU thread: a frame or console bytes from outside reached the guest since the last batch; it is
  // sealed at the end of that slice, at the latest when the guest waits (an answer made within the slice
  // shares the batch), not kMarkInterval later. kvd under 4 closed-loop TCP clients: 5 retransmitted
  // segments per SIGKILL of the primary fell to 2, at one batch more per set (0.43 to 0.8 a request).
  bool input_since_flush_ = false;
  std::atomic<uint64_t> progress_{0};
  std::atomic<uint32_t> throttle_ppm_{0};  // sleep per slice, parts per million of the slice's run time
  std::atomic<bool> replaying_{false};  // host input is dropped while replaying (tap reader thread)
  // Pre-copy rounds (their own lock; taken after mu_ where both are held).
  PrecopyEngine precopy_;
  std::atomic<bool> attention_{false};  // the Cpu's host flag: stop requested or input queued
  std::thread thread_;
};

}  // namespace lockstep
