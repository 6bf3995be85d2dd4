// The output rule's queue (DESIGN §3), with its own lock: what the guest outputs while the gate is closed
// (primary) or while a replay runs in shadow mode (secondary), until a release lets it out. No napi, no
// machine: released frames and disk requests go to the sinks the owner (the vCPU thread) gives it.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <vector>

#include "machine/block_file.h"

namespace lockstep {

/// On the primary, while the gate is closed, every output the guest produces (console bytes, transmitted
/// frames, disk requests) is held, tagged with the lsn of the log batch that must be acknowledged before
/// it may leave:
///
///   guest ──output──▶ held_ [(lsn 7, frame) (lsn 7, console) (lsn 8, disk write) …] ──release(ack)──▶ world
///                       ▲ tag = the next batch the encoder seals (it holds the log up to the output)
///
/// On the secondary (shadow mode) the same queue keeps the outputs a replay suppressed, tagged with the
/// lsn of the batch it was replaying, so that go-live can re-emit those the primary may not have released.
class OutputGate {
 public:
  enum class Kind : uint8_t { kConsole, kFrame, kBlock };
  /// Outputs let out, for the host to emit.
  struct Outputs {
    std::vector<uint8_t> console;
    std::vector<std::vector<uint8_t>> frames;  // for the host (a machine whose network the host drives)
    uint32_t device_frames = 0;                // frames sent to the network device (tap, udp back-ends) instead
    uint32_t blocks = 0;                       // disk requests handed to the disk
  };
  /// Where released outputs that do not go to the host leave: frames to a network device, in order
  /// (true: sent there; false: there is none, the host takes them), a disk request to the disk.
  struct Sinks {
    std::function<bool(std::vector<std::vector<uint8_t>>&)> frames_to_device;
    std::function<void(BlockFile::Request&&)> block;
  };

  explicit OutputGate(Sinks sinks) : sinks_(std::move(sinks)) {}

  /// Lock-free peek (any thread): is the gate closed or shadow mode on? Only a hint: hold() decides.
  bool engaged() const { return hint_.load(std::memory_order_acquire); }  // pairs with the release stores below
  /// vCPU thread: holds an output tagged `tag` (bytes, or *block, moved in only when held). `replay`: the
  /// machine replays (shadow mode applies), else it records (the gate applies). False: emit it now.
  bool hold(Kind kind, bool replay, uint64_t tag, const uint8_t* data, size_t n, BlockFile::Request* block);
  /// Closes (true) or opens (false) the gate; opening releases everything held. Leaves shadow mode.
  Outputs set_gate(bool closed);
  /// Releases held outputs whose lsn <= `lsn` (any thread), in order. Frames leave after the queue's
  /// lock is dropped (the vCPU holding new outputs never waits for their system calls), yet in order:
  /// releases, and an opening of the gate, emit one at a time.
  Outputs release(uint64_t lsn);
  /// Secondary: keep suppressed outputs for go-live (true) or drop them (false). Empties the queue.
  void set_shadow(bool on);
  /// Secondary: the primary released its outputs through `lsn`; kept outputs up to it are dropped.
  void shadow_release(uint64_t lsn);
  /// Secondary go-live: the kept console bytes and frames tagged above `released` (all of them for
  /// UINT64_MAX) into *out, then the queue empties and the gate opens. Disk requests are not re-emitted
  /// here (the machine re-issues what is in flight).
  void go_live(uint64_t released, Outputs* out);
  /// Outputs held (primary) or kept (secondary) right now.
  size_t held();
  /// The output rule's added latency: for each release that let something out, how long its oldest
  /// output was held (ns), oldest release first; at most kDelaySamples are kept between two takes.
  std::vector<uint64_t> take_delays();
  static constexpr size_t kDelaySamples = 4096;

 private:
  struct Held {
    uint64_t lsn;
    Kind kind;
    std::vector<uint8_t> bytes;
    BlockFile::Request block;
    int64_t at_ns;  // steady clock when held
  };
  // Caller holds mu_: console bytes and disk requests into *out, frames into *frames (for emit()).
  void release_locked(uint64_t lsn, Outputs* out, std::vector<std::vector<uint8_t>>* frames);
  // Frames to the device, or to the host (*out) when there is none.
  void emit(std::vector<std::vector<uint8_t>>& frames, Outputs* out);

  const Sinks sinks_;
  std::mutex emit_mu_;           // taken before mu_ by whoever lets frames out: they leave in order
  std::mutex mu_;                // everything below but hint_
  std::deque<Held> held_;
  bool gate_ = false;
  bool shadow_ = false;
  uint64_t shadow_released_ = 0;  // shadow outputs with lsn < this are dropped (released + 1)
  size_t held_blocks_ = 0;
  std::vector<uint64_t> delays_;  // see take_delays()
  std::atomic<bool> hint_{false};  // gate_ || shadow_, for the per-byte console path
};

}  // namespace lockstep
