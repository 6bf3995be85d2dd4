// The pre-copy engine (DESIGN §3, the clone of a running machine), with its own lock: rounds that copy the
// guest pages written since the previous round into page records, a bounded chunk at a time. No napi, no
// machine: it sees RAM and the dirty-page bitmap only through PrecopyMemory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace lockstep {

/// What the engine needs of a machine: its RAM page by page and the dirty-page bitmap (Cpu::dirty()).
/// Whoever copies implements it over the machine (the runner) or over plain memory (the tests); it is
/// only used by a thread that may touch the machine (the vCPU thread between slices, or the host while
/// the machine is idle), so it needs no lock of its own.
class PrecopyMemory {
 public:
  virtual ~PrecopyMemory() = default;
  /// Pages of RAM (PrecopyEngine::kPageBytes each).
  virtual uint32_t pages() const = 0;
  /// One byte per page, DirtyConsumer bits (cpu/cpu.h): the engine reads kDirtyCopy (written since the
  /// engine last cleaned the page) and kDirtyEver (ever written; a page without it is still all zeros).
  virtual const uint8_t* dirty() const = 0;
  /// The bytes of page `p`.
  virtual const uint8_t* page(uint32_t p) const = 0;
  /// Page `p` was copied: clear its kDirtyCopy bit and re-arm tracking, so the next store sets it again.
  virtual void clean(uint32_t p) = 0;
};

/// One pre-copy round walks the pages once, from page 0 up, with a cursor, copying each page it wants
/// (first round: every page ever written; later rounds: every page written since it was last copied) and
/// cleaning it, so a store behind the cursor makes the page wanted by the next round:
///
///   pages   [0 ......... cursor ......... pages())
///            copied, cleaned │ still to look at: a store here is copied in this round
///            a store here ──▶ next round
///   out_    [u32 index][4096 bytes] [u32 index][4096 bytes] … ──take()──▶ host (the clone's sender)
///
/// The cursor only moves forward, so a round ends after at most pages() / chunk steps however fast the
/// guest dirties memory; how many rounds to run before the stop-and-copy is the caller's policy.
///
/// Threads and locks: start() and take() on the host thread; copy() on the vCPU thread between slices
/// (running) or on the host (idle, copy_all()); active() on any. Everything is under mu_, which is held
/// for a whole copy() (a chunk: 2 MiB, well under a millisecond; copy_all(): the stop-and-copy, with the
/// vCPU idle). Lock order: VcpuThread::mu_ before mu_ (the runner checks active() and starts rounds
/// under its own lock so a vCPU asleep in WFI wakes for a round); the engine takes no other lock and
/// calls nothing outside itself, so it can never be the middle of a cycle.
class PrecopyEngine {
 public:
  static constexpr size_t kPageBytes = 4096;
  /// One page record: [u32 page index, host byte order (little-endian)][kPageBytes bytes].
  static constexpr size_t kRecordBytes = 4 + kPageBytes;
  /// A running round copies at most this many pages between two slices (2 MiB: well under a millisecond).
  static constexpr uint32_t kChunkPages = 512;
  /// While a round is going the runner's slices are at most this many instructions, so a round over a
  /// large memory takes milliseconds of guest time, not seconds.
  static constexpr uint64_t kSlice = 1u << 18;

  /// Starts a round (`first`: every page ever written; else those written since their last copy) from
  /// page 0. False if a round is going.
  bool start(bool first);
  /// A round is going (started and not yet at its last page).
  bool active();
  /// Copies the round's next pages, at most `max_pages`, into the output, and moves the cursor past the
  /// clean pages after them (so a round whose last wanted page was copied ends here). True when the host
  /// has something to look at: pages were copied or the round ended. False without a round.
  bool copy(PrecopyMemory& memory, uint32_t max_pages);
  /// The page records copied since the last take, and whether the round ended since (reported once).
  std::vector<uint8_t> take(bool* done);
  /// Idle machine: a whole round at once (the final stop-and-copy, or a machine not running), replacing
  /// any round going; returns everything not yet taken, this round's records last.
  std::vector<uint8_t> copy_all(PrecopyMemory& memory, bool first);

 private:
  bool copy_locked(PrecopyMemory& memory, uint32_t max_pages);  // caller holds mu_

  std::mutex mu_;  // everything below
  bool active_ = false;
  bool first_ = false;
  uint32_t cursor_ = 0;      // the next page the round looks at
  std::vector<uint8_t> out_;  // page records not yet taken
  bool done_ = false;         // a round ended since the last take()
};

}  // namespace lockstep
