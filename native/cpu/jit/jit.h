// The block compiler (JIT) for x86-64 hosts: straight-line guest code from RAM to host code, in every
// mode (M-mode physical code, and S/U code under Sv32 translation). No napi, no knowledge of Cpu: it is
// handed RAM, the page flags, the register file and the interpreter's translation cache banks.
// Elsewhere (not x86-64 Linux) the class is a stub that never compiles.
//
// Contract with the run loop (Cpu::run_inner's dispatch, see cpu.cc):
// - Blocks are keyed by physical address (RAM offset) and lie on one page. What they compute does not
//   depend on the mode they were compiled in: pc-relative values are io.vbase (the virtual address of
//   the page, set at entry) plus an offset; loads and stores read the current banks (io.dtlb) and
//   limits, which update_mode() sets, so one block serves every virtual address and privilege its
//   physical page is executed at.
// - lookup(off) returns host code for the guest block at RAM offset `off` once that block has been
//   dispatched threshold_ times (kHotThreshold at first, compiling it then), or null: the interpreter
//   runs it. Dispatch has translated the pc (and checked execute permission) before. Every time the code
//   buffer fills (everything dropped) the threshold doubles, up to kMaxHotThreshold: a guest whose hot
//   code does not fit the buffer would otherwise be compiled again and again, each block for a few
//   runs, and go slower than interpreted; so only what stays hot longer gets compiled again.
// - enter(code) runs compiled blocks, chained, while each next block fits the budget io.rem (every block
//   entry subtracts its whole length first and leaves when that would go negative), and returns with
//   io.pc, io.rem and io.branches exact: kExitDispatch when control reached a pc with no compiled block
//   (or one it may not enter without dispatch's checks), kExitInterp when the instruction at io.pc must
//   be executed by the interpreter (a load or store off the fast paths, or the budget). It never traps
//   (the interpreter re-executes the instruction and raises any fault), never calls the host.
// - Transfers: within a page, chained directly (same virtual page, same physical page and permission).
//   To another page: directly only while fetches are physical; while they are translated, through the
//   interpreter's itlb bank (a hit names the physical page and implies execute permission for this
//   privilege; a miss goes back to dispatch, which walks and raises page faults).
// - Loads and stores: the physical path (RAM offset under io.load_limit / store_limit, stores to pages
//   whose flags byte is 0) or a translation cache hit (tag compare, host address = addend + va), exactly
//   the interpreter's fast paths; anything else leaves to the interpreter. A store tag exists only for
//   pages whose flags are 0 (Cpu::translate, set_page_flag), so compiled stores never reach decoded
//   code, page tables, watched or dirty-tracked pages: the interpreter's slow path does, and calls
//   invalidate()/drop_page() for code it overwrites, so compiled code never changes under itself.
// - LR/SC and AMOs: aligned, through the same fast paths (AMOs and SC need a store tag, or a physical
//   page whose flags are 0); the reservation is the interpreter's own (io.resv). Anything else, a
//   misaligned address included, leaves to the interpreter before the instruction.
// - Not compiled (the interpreter's): CSR instructions (counters must be exact), fences other than
//   FENCE, ecall/ebreak/xRET/WFI/SFENCE.VMA, and 32-bit instructions straddling a page end.
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
/// emitted code (offsetof in jit_x86_64.cc). The mode fields are set by Cpu::update_mode() (so they
/// are current whenever a block is entered: the mode never changes inside compiled code).
struct JitIo {
  uint32_t* x;           ///< the register file (x[33], x[32] the sink for rd = x0)
  uint8_t* ram;          ///< guest RAM (offset 0 = kRamBase)
  const uint8_t* flags;  ///< per-RAM-page store flags (Cpu::flags_): non-zero sends stores to the interpreter
  /// The interpreter's translation cache banks (TlbEntry[kTlbSize]) of the current context: loads and
  /// stores (MPRV applied), and fetches. An always-missing bank where that access is physical.
  const void* dtlb;
  const void* itlb;
  uint64_t rem;          ///< in/out: instructions that may still retire before the run's limit
  uint64_t branches;     ///< in/out: branches retired
  uint32_t pc;           ///< out: where execution continues (a virtual address)
  uint32_t vbase;        ///< in/out: the virtual address of the running block's page (set on entry)
  uint32_t load_limit;   ///< RAM offsets below it are loaded physically (RAM size - 3; 0 while translated)
  uint32_t store_limit;  ///< RAM offsets below it are stored physically (RAM size; 0 while translated)
  uint8_t paged;         ///< fetches are translated: transfers to another page go through the itlb
  uint32_t* resv;        ///< the LR/SC reservation (Cpu::reservation) and whether it is valid
  uint8_t* resv_valid;
  uint32_t scratch;      ///< an LR/SC's address while its access is checked
};

/// Counters for tests and benchmarks.
struct JitStats {
  uint64_t blocks = 0;       ///< blocks compiled
  uint64_t invalidated = 0;  ///< blocks dropped because their code was written (or their page dropped)
  uint64_t flushes = 0;      ///< code buffer full: everything dropped
  uint64_t entries = 0;      ///< enter() calls
  uint64_t instructions = 0;  ///< instructions retired by compiled code
  uint64_t translated_blocks = 0;        ///< of `blocks`: compiled while fetches were translated (S/U code)
  uint64_t translated_entries = 0;       ///< of `entries`: while fetches were translated
  uint64_t translated_instructions = 0;  ///< of `instructions`: while fetches were translated
};

class Jit {
 public:
  enum Exit : uint32_t { kExitDispatch = 0, kExitInterp = 1 };
  /// Dispatches of one block start before it is compiled.
  static constexpr uint8_t kHotThreshold = 16;
  /// The most the threshold grows to after flushes (below kNever, which hits[] never counts up to).
  static constexpr uint8_t kMaxHotThreshold = 254;

  /// Whether this build has a JIT at all.
  static constexpr bool available() { return LOCKSTEP_HAVE_JIT != 0; }

#if LOCKSTEP_HAVE_JIT
  Jit(uint8_t* ram, uint32_t ram_size, uint32_t* x);
  ~Jit();
  Jit(const Jit&) = delete;
  Jit& operator=(const Jit&) = delete;
  /// False when the code buffer could not be mapped (the caller then runs without it).
  bool ok() const { return buf_ != nullptr; }
  /// `tlb_first`: the mode's loads and stores are translated, so compiled ones probe the translation
  /// cache before the physical path (both are always there: a block runs in any mode).
  void* lookup(uint32_t off, bool tlb_first);
  Exit enter(void* code) {
    const uint64_t rem = io.rem;
    const Exit why = static_cast<Exit>(enter_(&io, code));
    stats_.entries++;
    stats_.instructions += rem - io.rem;
    if (io.paged) {
      stats_.translated_entries++;
      stats_.translated_instructions += rem - io.rem;
    }
    return why;
  }
  /// The current mode (Cpu::update_mode): translation cache banks, whether fetches are translated, and
  /// the physical data limit (RAM size, or 0 while loads and stores are translated).
  void set_mode(const void* dtlb, const void* itlb, bool paged, uint64_t data_limit) {
    io.dtlb = dtlb;
    io.itlb = itlb;
    io.paged = paged ? 1 : 0;
    io.load_limit = data_limit >= 4 ? static_cast<uint32_t>(data_limit - 3) : 0;
    io.store_limit = static_cast<uint32_t>(data_limit);
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
  void* compile(uint32_t off, bool tlb_first);
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
  uint8_t* buf_ = nullptr;   // the code as it runs (never writable while it is executable)
  // Where the code is written: a second, writable mapping of the same memory (memfd), so that compiling
  // and linking need no protection changes (each one a system call, and on a virtualised host a costly
  // one: a Linux boot compiles thousands of blocks). Without memfd: buf_ itself, made writable around
  // each write by protect().
  ptrdiff_t wdelta_ = 0;
  bool dual_ = false;
  bool failed_ = false;  // a protection change was refused: compiled code is never entered again
  uint8_t threshold_ = kHotThreshold;  // dispatches before a start is compiled (doubles at each flush)
  size_t buf_size_ = 0;
  size_t used_ = 0;         // bump allocation; past the trampoline
  size_t code_start_ = 0;   // first byte after the trampoline
  uint8_t* epilogue_ = nullptr;
  // Shared tail of every transfer whose target is dynamic (jalr) or on another page while fetches are
  // translated: target pc in esi; translates it through io.itlb (bare: physical), finds its compiled
  // entry, sets io.vbase and jumps there, or leaves to dispatch.
  uint8_t* lookup_stub_ = nullptr;
  uint32_t (*enter_)(JitIo*, void*) = nullptr;
  JitStats stats_;
#else
  Jit(uint8_t*, uint32_t, uint32_t*) {}
  bool ok() const { return false; }
  void* lookup(uint32_t, bool) { return nullptr; }
  void set_mode(const void*, const void*, bool, uint64_t) {}
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
