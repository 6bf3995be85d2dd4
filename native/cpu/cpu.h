// The RV32IMAC hart (M, S and U modes, Sv32, PMP): architectural state, the pre-decoded instruction
// cache, the translation cache and the run loop.
// Pure interpreter core: no napi, no locks, no allocation inside run() except first decode of a page.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/decode.h"
#include "cpu/jit/jit.h"

namespace lockstep {

/// Guest RAM starts here on the QEMU virt board.
constexpr uint32_t kRamBase = 0x80000000u;
constexpr uint32_t kPageShift = 12;
constexpr uint32_t kPageSize = 1u << kPageShift;
/// One decoded slot per halfword: with the C extension an instruction may start at any of them.
constexpr uint32_t kSlotsPerPage = kPageSize / 2;

/// Virtual clock: one 10 MHz mtime tick per this many instructions (a nominal 1000 MIPS hart).
constexpr uint64_t kVirtualInstructionsPerTick = 100;

enum class Priv : uint8_t { kUser = 0, kSupervisor = 1, kMachine = 3 };

/// Exception causes (mcause with the interrupt bit clear), privileged spec table 3.6.
enum Cause : uint32_t {
  kInstrMisaligned = 0,
  kInstrAccessFault = 1,
  kIllegalInstr = 2,
  kBreakpoint = 3,
  kLoadMisaligned = 4,
  kLoadAccessFault = 5,
  kStoreMisaligned = 6,
  kStoreAccessFault = 7,
  kEcallFromU = 8,
  kEcallFromS = 9,
  kEcallFromM = 11,
  kInstrPageFault = 12,
  kLoadPageFault = 13,
  kStorePageFault = 15,
};

/// Interrupt numbers (bit positions in mip/mie).
enum Irq : uint32_t {
  kIrqSSoft = 1, kIrqMSoft = 3, kIrqSTimer = 5, kIrqMTimer = 7, kIrqSExt = 9, kIrqMExt = 11,
};

/// The three kinds of memory access, as translation and PMP tell them apart.
enum class Access : uint8_t { kFetch, kLoad, kStore };

/// One entry of the translation cache: a virtual page and what it may be used for in one context
/// (privilege, SUM, MXR). A tag holds the virtual page base when that access type may use the entry
/// and kTlbInvalid (never page-aligned) otherwise, so the hot loop checks permission and hit in one
/// compare. Host address = addend + virtual address.
struct TlbEntry {
  uint32_t r, w, x;   ///< tags for loads, stores, fetches
  uint32_t page;      ///< RAM page index of the physical page
  uintptr_t addend;
  /// RAM offsets of the page-table entries the walk read (leaf level first; kTlbInvalid: none), so
  /// that a store to one drops just the translations that came through it.
  uint32_t pte[2];
};
static_assert(sizeof(TlbEntry) == 32, "a TLB entry is 32 bytes (index by shift)");
constexpr uint32_t kTlbInvalid = 0xffffffffu;
constexpr uint32_t kTlbSize = 256;  ///< entries per context, direct-mapped by virtual page number

/// What ended a call to Cpu::run().
enum class Stop : uint8_t {
  kLimit,      ///< instret reached the requested target exactly
  kFatalTrap,  ///< a trap whose handler address is not executable RAM, or a trap loop; see fatal_*
  kExit,       ///< the platform asked to end the run (finisher, semihosting, HTIF); see exit_code
  kHalted,     ///< WFI with no interrupt enabled that could ever wake the hart, or a halt request
  kWfi,        ///< WFI waiting for the host (real time, or host input); resume with run() again
  kHost,       ///< the host raised the pending-event flag (stop request or new input)
  kDebug,      ///< a debugger's breakpoint, watchpoint or single step; see DebugState::hit
};

/// What a debugger attached to the hart asks of run() (native/cpu/debug.cc). While Cpu::debug points
/// at one, run() executes one instruction per inner run and checks these around it; with no debugger
/// the pointer is null and the hot loop is exactly the plain one (one test per slice in run()).
struct DebugState {
  enum Hit : uint8_t { kNone = 0, kBreakpoint = 1, kStep = 2, kWatchWrite = 3, kWatchRead = 4, kWatchAccess = 5 };
  /// A watched virtual address range and what triggers it (bit 0: loads, bit 1: stores).
  struct Watch {
    uint32_t addr, len;
    uint8_t on;
  };
  std::vector<uint32_t> breakpoints;  ///< virtual pcs: stop before the instruction there executes
  std::vector<Watch> watches;         ///< stop before an instruction that would load or store in a range
  bool step = false;                  ///< stop after one instruction (or one trap taken)
  /// A resumed run does not stop again at the breakpoint or watchpoint it stopped at: not at this pc at
  /// this instret.
  uint64_t resume_instret = UINT64_MAX;
  uint32_t resume_pc = 0;
  // Why the last run stopped with Stop::kDebug, and where (the pc, or the accessed address).
  Hit hit = kNone;
  uint32_t hit_addr = 0;
};

/// Result of a platform (non-RAM) memory access.
enum class Mmio : uint8_t {
  kOk,         ///< done; nothing the run loop must look at again
  kOkRecheck,  ///< done; interrupt lines or the timer may have changed: re-check before the next instruction
  kFault,      ///< access fault
  kExit,       ///< the platform ends the run after this instruction
};

/// The machine around the hart: devices, clock, semihosting. Called only on slow paths.
class Platform {
 public:
  virtual ~Platform() = default;
  /// Load from a non-RAM address; kFault becomes a load access fault.
  virtual Mmio load(uint32_t addr, unsigned size, uint32_t* value) = 0;
  /// Store to a non-RAM address (or a RAM page flagged for the platform, e.g. HTIF tohost).
  virtual Mmio store(uint32_t addr, unsigned size, uint32_t value) = 0;
  /// Current mtime (10 MHz ticks), for the timer comparison.
  virtual uint64_t mtime() = 0;
  /// mtime as the guest reads it (`time` CSR): a non-deterministic input, logged or replayed.
  virtual uint64_t guest_time() = 0;
  /// An instruction boundary before the interrupt check: a recorder may log a clock sample here.
  virtual void boundary() = 0;
  /// mip bits driven by devices: MSIP, MTIP, MEIP (CLINT, PLIC context 0) and SEIP (PLIC context 1).
  virtual uint32_t device_irqs() = 0;
  /// A semihosting call (a0 = operation, a1 = parameter). Returns kExit to end the run.
  virtual Mmio semihost() = 0;
};

/// The decoder cache for one 4 KiB page of RAM. Decoding is per physical page, whatever virtual
/// addresses the page is executed through, so a store through any alias finds the decoded code.
/// A 32-bit instruction in the last slot continues on another page (which, under paging, need not be
/// the next physical one): it decodes as STRADDLE, which fetches its second half at each execution.
///
/// Block accounting: entering slot s adds e[s].n (instructions from s through the end of its
/// block: the next control-flow instruction, or the page end) to instret at once; leaving a block
/// early (trap, device access, self-modifying store, a taken branch inside it) subtracts what did not
/// retire. So the hot loop touches the counter once per block, and instret is still exact at every
/// stop. A forward conditional branch to a slot of the same page does not end its block when what
/// follows it is short (Cpu::block_count): not taken, it costs no accounting at all.
///
/// Loads and stores have two handlers: one that tries the physical (M-mode) path first and one that
/// tries the translation cache first. Either is right in any mode; a page gets the one that suits the
/// mode it is first decoded in (`translated`), so M-mode code and user code each run their fast one.
struct DecodedPage {
  Decoded e[kSlotsPerPage + 2];          // +2 PAGE_END sentinels reached by straight-line flow off the page
                                         // (their count n is 0: they are not instructions)
  uint8_t op[kSlotsPerPage + 2];         // the Op of each slot, for re-decoding after a store
  uint8_t len[kSlotsPerPage + 2];        // its length in halfwords (1 or 2), for the block counts
  bool translated;                       // memory operations use the translation-first handlers
  bool stale;                            // the counts n must be recounted before it runs (live_ is null)
  uint32_t data_stores;                  // stores while other pages ran, since it was decoded
  uint32_t page_pc;                      // while its code runs: the virtual pc of slot 0 (set on entry)
};

/// A decoded page that takes this many stores while code elsewhere runs is treated as data that once
/// held code (an OS reuses pages): its decode is dropped, so stores to it stop taking the slow path; it
/// is decoded afresh if it runs again. (A page that is both run and written costs at most one decode
/// per this many stores.)
constexpr uint32_t kDataStoresBeforeDrop = 1024;

/// Slots a store's re-decode may recount on a page that is not running before the page is left stale
/// and recounted as a whole on entry (a sixteenth of what that recount walks).
constexpr uint32_t kFixBudget = 128;

/// Flags per RAM page that route stores to the slow path.
enum PageFlag : uint8_t {
  kPageDecoded = 1,     ///< the decoder cache holds this page: stores must invalidate it
  kPagePageTable = 2,   ///< a cached translation was walked through this page: stores flush the TLB
  kPagePlatform = 4,    ///< the platform watches stores here (HTIF tohost)
  kPageClean = 8,       ///< a dirty-page consumer wants to hear of the next store here
};

/// Consumers of the dirty-page bitmap (bits of Cpu::dirty()).
/// kDirtyEver is never cleared: a page without it still holds the zeros it started with.
enum DirtyConsumer : uint8_t { kDirtyHash = 1, kDirtyCopy = 2, kDirtyEver = 4, kDirtyAll = 7 };

class Cpu {
 public:
  Cpu(uint8_t* ram, uint32_t ram_size, Platform* platform);

  /// Runs until instret == target, or an earlier stop. Never throws.
  Stop run(uint64_t target);

  // --- architectural state (read by the host at any stop) ---
  uint32_t x[33] = {};   ///< x[32] is the sink that decoded rd=0 writes go to; x[0] stays 0
 private:
  // The run loop's limits for physical loads and stores, next to the registers: the loop reaches them
  // from the register file's address, which it keeps in a register anyway, and compares with them in
  // memory instead of holding each in a register of its own (or a stack slot it reloads first).
  // load_limit_: a RAM offset below it may be loaded with any size (RAM size - 3; a byte or halfword in
  // the last three bytes takes the slow path). 0 while loads and stores are translated.
  uint32_t load_limit_ = 0;

 public:
  uint32_t pc = kRamBase;
  Priv priv = Priv::kMachine;
  uint64_t instret = 0;   ///< host position counter: never written by the guest
  uint64_t branches = 0;  ///< retired conditional branches, jal and jalr
  bool wfi = false;       ///< stopped in WFI, waiting for an interrupt

  // Machine-mode CSRs.
  uint32_t mstatus = 0;
  uint32_t mtvec = 0;
  uint32_t mepc = 0;
  uint32_t mcause = 0;
  uint32_t mtval = 0;
  uint32_t mscratch = 0;
  uint32_t mie = 0;
  uint32_t mip_sw = 0;     ///< the software-writable mip bits: SSIP, STIP and SEIP (ORed with the PLIC's)
  uint32_t medeleg = 0;
  uint32_t mideleg = 0;
  uint32_t mcounteren = 0;
  uint64_t minstret_offset = 0;  ///< guest-visible minstret = instret + offset (guest writes move the offset)
  uint64_t mcycle_offset = 0;
  uint32_t reservation = 0;      ///< LR/SC reservation address; valid when reservation_valid
  bool reservation_valid = false;

  // Supervisor-mode CSRs (sstatus, sie and sip are views of mstatus, mie and mip).
  uint32_t stvec = 0;
  uint32_t sscratch = 0;
  uint32_t sepc = 0;
  uint32_t scause = 0;
  uint32_t stval = 0;
  uint32_t satp = 0;
  uint32_t scounteren = 0;

  // Physical memory protection: 16 entries.
  static constexpr uint32_t kPmpEntries = 16;
  uint8_t pmpcfg[kPmpEntries] = {};
  uint32_t pmpaddr[kPmpEntries] = {};

  // Fatal trap report (Stop::kFatalTrap).
  uint32_t fatal_cause = 0, fatal_pc = 0, fatal_tval = 0;
  /// The fatal trap is a trap loop: the handler at fatal_pc raises fatal_cause itself, and taking the
  /// trap again would change nothing (same pc, CSRs and counters), so the hart is stuck for good.
  bool fatal_loop = false;

  /// Host: read/write any CSR without privilege checks. Returns false if the CSR does not exist.
  bool host_read_csr(uint32_t csr, uint32_t* value);
  bool host_write_csr(uint32_t csr, uint32_t value);

  /// mip as the guest reads it: the device lines ORed with the software-writable bits.
  uint32_t mip() { return (platform_->device_irqs() | mip_sw) & kMipMask; }

  /// Instret at which the virtual-clock timer fires, or UINT64_MAX; set by the platform.
  uint64_t timer_deadline = UINT64_MAX;

  /// Upper bound of instructions per inner-loop slice, so host requests are seen promptly.
  uint64_t slice = 1u << 20;

  /// A second, lowerable run target (vCPU thread only; the platform may set it during a run): run()
  /// returns kLimit on reaching it and resets it. The output rule uses it to seal a batch shortly
  /// after an output, so outputs produced close together share one batch and one acknowledgement.
  uint64_t soft_target = UINT64_MAX;

  /// A debugger's requests (see DebugState); null when none is attached. Set only between runs.
  DebugState* debug = nullptr;

  /// Set by the host thread to make run() return Stop::kHost at the next slice boundary.
  const std::atomic<bool>* host_flag = nullptr;

  /// The host wrote [addr, addr+len) of RAM: drop decoded pages there and mark them dirty.
  void host_wrote(uint32_t addr, uint32_t len);
  /// Dirty-page bitmap, one byte per page (DirtyConsumer bits). A consumer that has dealt with page p
  /// calls clean(p, its bit), which re-arms the notification for the next store.
  const std::vector<uint8_t>& dirty() const { return dirty_; }
  void clean(uint32_t page, uint8_t consumer) {
    dirty_[page] &= static_cast<uint8_t>(~consumer);
    set_page_flag(page, kPageClean);
  }
  /// Selects the execution engine: the interpreter alone (false), or the block compiler for hot code in
  /// every mode (physical and Sv32-translated) with the interpreter for everything else (true). Drops
  /// all decoded code. Returns whether the compiler is now in use (false on hosts without one). Set
  /// between runs.
  bool set_jit(bool on);
  bool jit_active() const { return jit_ != nullptr; }
  /// The block compiler's counters (null with the interpreter alone).
  const JitStats* jit_stats() const { return jit_ ? &jit_->stats() : nullptr; }
  /// Set by the platform to end run() at the next instruction boundary (e.g. a replay divergence).
  bool stop_now = false;
  /// Set by the platform while a CSR read is performed (a logged clock read that made the timer due):
  /// the run loop re-checks interrupts before the next instruction. Without it the interrupt would be
  /// taken wherever the next check happens to fall, which a recording and its replay place differently.
  bool recheck_after_read = false;
  /// Drop all decoded pages and cached translations, and re-read the PMP entries (after a restore).
  void invalidate_all();
  /// Mark a RAM page for platform store notification.
  void watch_page(uint32_t addr) {
    const uint32_t off = addr - kRamBase;
    if (off < ram_size_) set_page_flag(off >> kPageShift, kPagePlatform);
  }

  uint8_t* ram() { return ram_; }
  uint32_t ram_size() const { return ram_size_; }

  /// Interrupts that exist: all of mip's standard M and S bits.
  static constexpr uint32_t kMipMask = (1u << kIrqSSoft) | (1u << kIrqMSoft) | (1u << kIrqSTimer) |
                                       (1u << kIrqMTimer) | (1u << kIrqSExt) | (1u << kIrqMExt);
  /// The mip bits software writes (M-mode: all three; S-mode through sip: SSIP only).
  static constexpr uint32_t kMipSoftware = (1u << kIrqSSoft) | (1u << kIrqSTimer) | (1u << kIrqSExt);
  /// Interrupts that can be delegated to S-mode.
  static constexpr uint32_t kMidelegMask = kMipSoftware;
  /// Exceptions that can be delegated (ecall from M cannot: medeleg[11] is read-only zero).
  static constexpr uint32_t kMedelegMask = 0xb3ffu;
  static constexpr uint32_t kMisaValue = (1u << 30) | (1u << ('A' - 'A')) | (1u << ('C' - 'A')) |
                                    (1u << ('I' - 'A')) | (1u << ('M' - 'A')) | (1u << ('S' - 'A')) |
                                    (1u << ('U' - 'A'));

  // mstatus fields
  static constexpr uint32_t kMstatusSIE = 1u << 1;
  static constexpr uint32_t kMstatusMIE = 1u << 3;
  static constexpr uint32_t kMstatusSPIE = 1u << 5;
  static constexpr uint32_t kMstatusMPIE = 1u << 7;
  static constexpr uint32_t kMstatusSPP = 1u << 8;
  static constexpr uint32_t kMstatusMPP = 3u << 11;
  static constexpr uint32_t kMstatusMPRV = 1u << 17;
  static constexpr uint32_t kMstatusSUM = 1u << 18;
  static constexpr uint32_t kMstatusMXR = 1u << 19;
  static constexpr uint32_t kMstatusTVM = 1u << 20;
  static constexpr uint32_t kMstatusTW = 1u << 21;
  static constexpr uint32_t kMstatusTSR = 1u << 22;
  /// The mstatus bits sstatus shows (SD, MXR, SUM, XS, FS, VS, SPP, UBE, SPIE, SIE).
  static constexpr uint32_t kSstatusMask = 0x800de762u;

 private:
  enum class Inner : uint8_t { kLimit, kExit, kFatal, kWfi, kRecheck };
  Inner run_inner(uint64_t limit);
  /// Debugger attached: one instruction under its breakpoints and watchpoints (debug.cc). True when
  /// run() must return *out.
  bool debug_step(Stop* out);
  /// The memory access the instruction at pc would make: false when it makes none (or cannot be fetched).
  bool pending_access(uint32_t* addr, uint32_t* size, uint8_t* on);

 public:
  /// A debugger's view of a virtual address: the physical address loads and stores of the current
  /// privilege (MPRV applied) reach through Sv32, walked without side effects (no A/D updates, no
  /// translation cache fill, no permission checks). False when nothing is mapped there.
  bool debug_translate(uint32_t va, uint32_t* pa) const;

 private:
  DecodedPage* page_for(uint32_t page_index);
  void set_page_flag(uint32_t page, uint8_t flag);
  /// Slow store to a physical address: device, watched page or self-modifying code. `cur_page` is the
  /// RAM page the current block was decoded from (UINT32_MAX: none).
  enum class StoreOutcome : uint8_t { kOk, kOkLeaveBlock, kFault, kExit };
  StoreOutcome slow_store(uint32_t addr, unsigned size, uint32_t value, uint32_t cur_page);
  /// Re-decodes the slots overlapping RAM offsets [off, off+len); true if `cur_page` changed.
  bool redecode(uint32_t off, uint32_t len, uint32_t cur_page);
  /// A store (or a page-walk update) to RAM offsets [off, off+len) of decoded pages: counts it against
  /// pages not running (kDataStoresBeforeDrop) and re-decodes what `changed`; true if `cur_page` changed.
  bool code_store(uint32_t off, uint32_t len, uint32_t cur_page, bool changed);
  void decode_slot(DecodedPage* p, uint32_t page_index, uint32_t slot);
  /// A decoded slot for the dispatch loop (handler of the current run_inner), to sit at index `slot`.
  Decoded slot_of(const DecodedOp& d, bool translated, uint32_t slot) const;
  /// Recounts the slots' n from `from_slot` down as far as a change reaches, at most `budget` slots; false
  /// if the budget ran out (the counts below are then partly stale).
  bool fix_to_end(DecodedPage* p, uint32_t from_slot, uint32_t budget);
  /// Counts n for the whole page.
  void count_blocks(DecodedPage* p);
  /// n of slot `s` from the slot after it; a near conditional branch gets its chained handler when its
  /// block goes on past it (what follows counts fewer than kChainMax) and its plain one otherwise.
  uint16_t block_count(DecodedPage* p, uint32_t s);
  uint16_t branch_count(DecodedPage* p, uint32_t s, uint16_t rest);  ///< block_count of a conditional branch
  /// After slots up to `from_slot` of page `pi` were re-decoded: fixes its counts now (the running
  /// page, or a short ripple) or marks it stale for a recount when it is next entered.
  void fix_blocks(DecodedPage* p, uint32_t pi, uint32_t from_slot, uint32_t cur_page);
  void drop_page(uint32_t page_index);
  Mmio slow_load(uint32_t addr, unsigned size, uint32_t* value);
  /// Enter a trap; false if the handler address is not executable or the trap is a loop (fatal).
  bool take_trap(uint32_t cause, uint32_t tval, uint32_t epc);
  /// Interrupt check at an instruction boundary; true if one was taken.
  bool check_interrupts(bool* fatal);
  enum class CsrResult : uint8_t { kOk, kOkRecheck, kIllegal };
  CsrResult csr_op(uint32_t csr, uint32_t op, uint32_t src, bool write, uint32_t* old);
  bool csr_read(uint32_t csr, uint32_t* value);
  bool csr_write(uint32_t csr, uint32_t value);
  void pmp_cfg_write(uint32_t index, uint8_t value);
  bool executable(uint32_t addr) const { return addr - kRamBase < ram_size_; }

  // --- translation and protection (mmu.cc) ---
  /// A translation context: the privilege an access is made with and the mstatus bits that matter.
  struct Context {
    Priv priv;
    bool sum, mxr;
  };
  /// Fetches use the current privilege; SUM and MXR do not matter to them but pick the same bank as
  /// loads and stores below M, so one fill serves both.
  Context fetch_context() const { return Context{priv, (mstatus & kMstatusSUM) != 0, (mstatus & kMstatusMXR) != 0}; }
  /// Loads and stores: MPRV in M-mode makes them MPP's.
  Context data_context() const;
  /// Recomputes the hot loop's view (bare or translated fetch and data, the active TLB banks) after
  /// priv, mstatus, satp or PMP changed; cheap, called before every inner run.
  void update_mode();
  /// Drops every cached translation (satp or PMP written, a page table stored to, a restore).
  void flush_tlb();
  /// Drops the cached translations of the page holding virtual address `va`, in every context.
  void flush_tlb_page(uint32_t va);
  /// RAM bytes [off, off + len) of a page-table page changed: drops the translations whose walk read
  /// an entry there (all of them when the cache lost track of what it holds).
  void tlb_pte_stored(uint32_t off, uint32_t len);
  /// RAM page `page` became a page-table page: no cached translation may store to it directly any more.
  void tlb_drop_writable(uint32_t page);
  /// PMP entries changed: whether M-mode is bound by a locked entry, and a flush.
  void pmp_changed();
  /// Translates `va` for an access in context `c` (page walk with A/D updates, PMP), caching the
  /// page when it can. Returns 0 and the physical address, or the exception cause.
  uint32_t translate(uint32_t va, Access access, Context c, uint64_t* pa);
  uint32_t walk(uint32_t va, Access access, Context c, uint64_t* pa, uint32_t* pte, uint32_t pte_offs[2]);
  /// PMP: whether [pa, pa+len) may be accessed this way at privilege p.
  bool pmp_allows(uint64_t pa, uint32_t len, Priv p, Access access) const;
  /// PMP permissions (bit 0 R, 1 W, 2 X) that hold for the whole 4 KiB page at `base` (a type allowed
  /// only for part of the page is left out: such accesses are never cached and always checked exactly).
  uint32_t pmp_page(uint64_t base, Priv p) const {
    const uint64_t page = base >> kPageShift;
    const PmpMemo& m = pmp_memo_[static_cast<uint8_t>(p) & 3][page & (kPmpMemo - 1)];
    return m.key == page + 1 ? m.perms : pmp_page_slow(base, p);
  }
  uint32_t pmp_page_slow(uint64_t base, Priv p) const;
  /// pmp_allows(), answered from pmp_page() when the access lies in one page allowed as a whole.
  bool pmp_allows_fast(uint64_t pa, uint32_t len, Priv p, Access access) const;
  /// Data access slow paths through translation: the hot loop's misses land here.
  /// Each returns 0 or the exception cause; *tval is then the faulting address when it is not `va`
  /// (the second page of an access that crosses pages).
  uint32_t load_virtual(uint32_t va, unsigned size, uint32_t* value, Mmio* result, uint32_t* tval);
  uint32_t store_virtual(uint32_t va, unsigned size, uint32_t value, StoreOutcome* out, uint32_t* tval);
  /// A store within one page whose translation is cached for loads and allows it (D set, PMP W over the
  /// page): its physical address without a walk. False: translate.
  bool cached_store(uint32_t va, Context c, uint64_t* pa);
  /// LR/SC/AMO: host pointer to the aligned word at `va` (0 and the cause on a fault).
  uint32_t amo_pointer(uint32_t va, Access access, uint8_t** host, uint32_t* page);
  /// Instruction fetch translation: RAM offset of `va`, or the exception cause.
  uint32_t fetch_offset(uint32_t va, uint32_t* ram_offset);
  /// A store the page walker makes (A/D bits): dirty tracking and decoder cache, as for a guest store.
  void walker_store(uint32_t off, uint32_t value);
  /// The TLB bank of a context.
  TlbEntry* bank(Context c);

  uint8_t* ram_;
  uint32_t ram_size_;
  Platform* platform_;
  std::vector<std::unique_ptr<DecodedPage>> pages_;  // owned storage, reused after invalidation
  std::vector<DecodedPage*> live_;                    // pages_[i].get() when valid, else nullptr
  std::vector<uint8_t> flags_;
  /// Physical stores' fast path (STORE_FAST in cpu.cc): one byte per page of the 32-bit RAM-offset
  /// space, and twice and four times that many for the misaligned halfwords and words a rotated offset
  /// lands on, 1 where an aligned store may go straight to RAM (a RAM page whose flags_ are all clear),
  /// else 0. 4 MiB of address space, calloc'd: only the bytes of RAM pages are ever written, so the
  /// rest stays unbacked zero pages. Kept equal to flags_ by flags_changed().
  struct FreeDeleter {
    void operator()(uint8_t* p) const;
  };
  static constexpr uint32_t kStoreTable = 1u << 22;
  std::unique_ptr<uint8_t, FreeDeleter> store_ok_;
  void flags_changed(uint32_t page) { store_ok_.get()[page] = flags_[page] == 0; }
  /// A table like store_ok_ that is all 0 (never written): the run loop's while stores are translated.
  static const uint8_t* no_fast_stores();
  std::vector<uint8_t> dirty_;
  const Handler* labels_ = nullptr;                  // the handler of each op and length (run_inner's table)
  Handler labels_translated_[kOpCount * 2] = {};     // labels_ with the translation-first memory handlers
  Handler labels_far_[kOpCount * 2] = {};            // labels_ with the branches and jal whose target is off the page
  Handler labels_same_[kOpCount * 2] = {};           // labels_ with the in-place ALU handlers (rd = rs1)
  Handler labels_chain_[kOpCount * 2] = {};          // labels_ with the chained conditional branches
  /// The slot of a pc-relative jump copied to the single-step page: its target rebased to slot 0, and
  /// the far handler (every transfer from that page goes through dispatch).
  Decoded step_slot(const DecodedPage* p, uint32_t slot) const;
  // Single-stepping (near a stop, and every STRADDLE): slot 0 holds the instruction and counts 1; every
  // other slot is a PAGE_END sentinel counting 0, so wherever a fall-through or a jump within the
  // "page" lands, it goes back to dispatch with the right target.
  std::unique_ptr<DecodedPage> step_;

  // Translation cache: one direct-mapped bank per context (U, U+MXR, S, S+MXR, S+SUM, S+SUM+MXR, M with
  // locked PMP entries) plus one that always misses. It only ever holds what a fresh page walk would
  // return: stores to the page tables it was filled from flush it (kPagePageTable), so it is not
  // architectural state and is neither hashed nor saved.
  static constexpr uint32_t kBanks = 7;
  std::unique_ptr<TlbEntry[]> tlb_;       // (kBanks + 1) * kTlbSize; the last bank stays empty
  std::vector<TlbEntry*> tlb_filled_;     // entries filled since the last flush (capacity reserved)
  // Filters over the page-table entries the cached translations came through (TlbEntry::pte; [0] the
  // level the walk ended at, [1] the root level above a 4 KiB leaf), hashed by word, emptied by
  // flush_tlb(): a store to a page-table word whose bit is clear drops nothing. A leaf entry's word
  // gives the virtual page number's low bits, hence the one slot per bank it can be cached in; a
  // root entry's covers 1024 pages, and a store there searches tlb_filled_.
  static constexpr uint32_t kPteFilterBits = 16384;
  uint64_t pte_filter_[2][kPteFilterBits / 64] = {};
  static uint32_t pte_filter_bit(uint32_t off) { return ((off >> 2) ^ (off >> 16)) & (kPteFilterBits - 1); }
  bool pte_filtered(int level, uint32_t off) const { return (pte_filter_[level][pte_filter_bit(off) >> 6] >> (pte_filter_bit(off) & 63)) & 1; }
  static constexpr uint32_t kTlbFillsTracked = 256;
  std::vector<uint8_t> tlb_writable_;     // per RAM page: some entry may let stores through to it
  std::vector<uint32_t> tlb_writable_list_;
  std::vector<uint32_t> page_table_list_;  // pages flagged kPagePageTable
  // The hot loop's view, set by update_mode().
  bool fetch_bare_ = true;                // fetches are physical and unchecked
  uint64_t data_limit_ = 0;               // RAM size when loads and stores are physical and unchecked, else 0
  TlbEntry* dtlb_ = nullptr;
  TlbEntry* itlb_ = nullptr;
  bool pmp_locked_ = false;               // some locked entry: M-mode accesses are checked too
  // The PMP entries that match anything (A != OFF), in priority order, as byte ranges [lo, hi): set by
  // pmp_changed() on every pmpcfg/pmpaddr write and restore, read by every PMP check.
  struct PmpRange {
    uint64_t lo, hi;
    uint8_t cfg;
  };
  PmpRange pmp_active_[kPmpEntries] = {};
  uint32_t pmp_active_count_ = 0;
  // pmp_page()'s answers by privilege and page, direct-mapped, emptied by pmp_changed(): the entries
  // change at boot and seldom after, while every fill of the translation cache asks (one walk in a few
  // hundred instructions while an OS boots). `key` is the page number + 1 (0: empty).
  static constexpr uint32_t kPmpMemo = 256;
  struct PmpMemo {
    uint32_t key;
    uint32_t perms;
  };
  mutable PmpMemo pmp_memo_[4][kPmpMemo] = {};
  bool leave_block_ = false;              // a walker store re-decoded the running block
  uint32_t cur_page_ = UINT32_MAX;        // RAM page the running block was decoded from
  // The block compiler, when selected (set_jit). While it is, every block entry of the interpreter goes
  // through dispatch (no direct chaining within a page), where compiled code is looked up and entered.
  std::unique_ptr<Jit> jit_;
  bool jit_skip_ = false;  // the next dispatch leaves its block to the interpreter (see run_inner)
};

}  // namespace lockstep
