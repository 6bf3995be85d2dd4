// The block compiler (JIT) for x86-64 hosts: straight-line guest code from RAM to host code, for the
// physical (M-mode, untranslated) case only. No napi, no knowledge of Cpu: it is handed RAM, the page
// flags and the register file. Elsewhere (not x86-64 Linux) the class is a stub that never compiles.
//
// Contract with the run loop (Cpu::run_inner's dispatch, see cpu.cc):
// - lookup(off) returns host code for the guest block at RAM offset `off` once that block has been
//   dispatched kHotThreshold times (compiling it then), or null: the interpreter runs it.
// - enter(code) runs compiled blocks, chained, while each next block fits the budget io.rem (every block
//   entry subtracts its whole length first and leaves when that would go negative), and returns with
//   io.pc, io.rem and io.branches exact: kExitDispatch when control reached a pc with no compiled block
//   (or out of RAM), kExitInterp when the instruction at io.pc must be executed by the interpreter
//   (a load or store off the physical fast path, or the budget). It never traps, never calls the host.
// - Stores the compiled code makes go only to pages whose flags byte is 0 (no decoded code, no dirty
//   tracking armed, no platform watch): any other store leaves to the interpreter, whose slow path then
//   calls invalidate()/drop_page() for code it overwrites, so compiled code never changes under itself.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

namespace lockstep {

#if defined(__x86_64__) && defined(__linux__) && !defined(LOCKSTEP_NO_JIT)
#define LOCKSTEP_HAVE_JIT 1
#else
#define LOCKSTEP_HAVE_JIT 0
#endif

/// What compiled code reads and writes besides guest registers and RAM; its offsets are baked into the
/// emitted code (offsetof in jit.cc).
struct JitIo {
  uint32_t* x;           ///< the register file (x[33], x[32] the sink for rd = x0)
  uint8_t* ram;          ///< guest RAM (offset 0 = kRamBase)
  const uint8_t* flags;  ///< per-RAM-page store flags (Cpu::flags_): non-zero sends stores to the interpreter
  uint64_t rem;          ///< in/out: instructions that may still retire before the run's limit
  uint64_t branches;     ///< in/out: branches retired
  uint32_t pc;           ///< out: where execution continues
};

/// Counters for tests and benchmarks.
struct JitStats {
  uint64_t blocks = 0;       ///< blocks compiled
  uint64_t invalidated = 0;  ///< blocks dropped because their code was written (or their page dropped)
  uint64_t flushes = 0;      ///< code buffer full: everything dropped
  uint64_t entries = 0;      ///< enter() calls
};

class Jit {
 public:
  enum Exit : uint32_t { kExitDispatch = 0, kExitInterp = 1 };
  /// Dispatches of one block start before it is compiled.
  static constexpr uint8_t kHotThreshold = 16;

  /// Whether this build has a JIT at all.
  static constexpr bool available() { return LOCKSTEP_HAVE_JIT != 0; }

#if LOCKSTEP_HAVE_JIT
  Jit(uint8_t* ram, uint32_t ram_size, uint32_t* x);
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;
  /// False when the code buffer could not be mapped (the caller then runs without it).
  bool ok() const { return buf_ != nullptr; }
  void* lookup(uint32_t off);
  Exit enter(void* code) {
    stats_.entries++;
    return static_cast<Exit>(enter_(&io, code));
  }
  /// RAM offsets [off, off+len) were written: drop every block whose code overlaps them.
  void invalidate(uint32_t off, uint32_t len);
  /// Drops every block of a RAM page.
  void drop_page(uint32_t pi);
  void drop_all();
  const JitStats& stats() const { return stats_; }
  JitIo io{};

 private:
  struct Block {
    uint16_t start, end;  // byte offsets in the page: [start, end)
  };
  /// Per RAM page: the compiled entry of each halfword slot (read by emitted chains at a fixed address,
  /// so a JitPage, once made, lives as long as the Jit), dispatch counts, and the blocks' extents.
  /// A direct jump (jmp rel32 at `site`) from compiled code to the entry of slot `slot` of a page:
  /// pointed at that entry while it is compiled, else at site + 5, where the same transfer looks the
  /// entry up at run time (so an unlinked site is only slower, never wrong).
  struct Link {
    uint16_t slot;
    uint8_t* site;
  };
  struct JitPage {
    void* entry[2048];  // first: the emitted jalr lookup indexes it from the JitPage's address
    uint8_t hits[2048];
    std::vector<Block> blocks;
    std::vector<Link> links;  // sites jumping to this page's slots (kept until a flush)
  };
  static constexpr uint8_t kNever = 0xff;  // hits[]: the slot's first instruction cannot be compiled
  JitPage* page(uint32_t pi);
  void* compile(uint32_t off);
  void emit_trampoline();
  /// Sets the protection of the pages holding [from, to); false (and failed_) when the kernel refuses.
  bool protect(uint8_t* from, uint8_t* to, int prot);
  /// The code pages a block compiled at `from` may write made RW (false: nothing may be written), then RX.
  bool write_begin(uint8_t* from);
  void write_end(uint8_t* from);
  /// Points the jmp rel32 at `site` to `target` (the code pages around it writable for the moment).
  void patch(uint8_t* site, const void* target);
  /// Points every link to slot `slot` of `p` at `target` (null: back to its own lookup).
  void relink(JitPage* p, uint32_t slot, const void* target);

  uint8_t* ram_;
  uint32_t ram_size_;
  std::vector<std::unique_ptr<JitPage>> pages_;
  // The same pointers, read by emitted code (jalr lookups): mmap'd so that the array ends right at an
  // inaccessible guard page, and an index past the end faults at once instead of reading a neighbour.
  JitPage** page_ptrs_ = nullptr;
  void* page_ptrs_map_ = nullptr;
  size_t page_ptrs_map_size_ = 0;
  uint8_t* buf_ = nullptr;
  bool failed_ = false;  // a protection change was refused: compiled code is never entered again
  size_t buf_size_ = 0;
  size_t used_ = 0;         // bump allocation; past the trampoline
  size_t code_start_ = 0;   // first byte after the trampoline
  uint8_t* epilogue_ = nullptr;
  uint32_t (*enter_)(JitIo*, void*) = nullptr;
  JitStats stats_;
#else
  Jit(uint8_t*, uint32_t, uint32_t*) {}
  bool ok() const { return false; }
  void* lookup(uint32_t) { return nullptr; }
  Exit enter(void*) { return kExitDispatch; }
  void invalidate(uint32_t, uint32_t) {}
  void drop_page(uint32_t) {}
  void drop_all() {}
  const JitStats& stats() const { return stats_; }
  JitIo io{};

 private:
  JitStats stats_;
#endif
};

}  // namespace lockstep
