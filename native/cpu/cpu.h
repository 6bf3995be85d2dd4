// The RV32IMAC hart: architectural state, the pre-decoded instruction cache and the run loop.
// Pure interpreter core: no napi, no locks, no allocation inside run() except first decode of a page.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "cpu/decode.h"

namespace lockstep {

/// Guest RAM starts here on the QEMU virt board.
constexpr uint32_t kRamBase = 0x80000000u;
constexpr uint32_t kPageShift = 12;
constexpr uint32_t kPageSize = 1u << kPageShift;
/// One decoded slot per halfword: with the C extension an instruction may start at any of them.
constexpr uint32_t kSlotsPerPage = kPageSize / 2;

/// Virtual clock: one 10 MHz mtime tick per this many instructions (a nominal 1000 MIPS hart).
constexpr uint64_t kVirtualInstructionsPerTick = 100;

enum class Priv : uint8_t { kUser = 0, kMachine = 3 };

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
  kEcallFromM = 11,
};

/// Interrupt numbers (bit positions in mip/mie).
enum Irq : uint32_t { kIrqMSoft = 3, kIrqMTimer = 7, kIrqMExt = 11 };

/// What ended a call to Cpu::run().
enum class Stop : uint8_t {
  kLimit,      ///< instret reached the requested target exactly
  kFatalTrap,  ///< a trap whose handler address is not executable RAM, or a trap loop; see fatal_*
  kExit,       ///< the platform asked to end the run (finisher, semihosting, HTIF); see exit_code
  kHalted,     ///< WFI with no interrupt enabled that could ever wake the hart, or a halt request
  kWfi,        ///< WFI waiting for the host (real time, or host input); resume with run() again
  kHost,       ///< the host raised the pending-event flag (stop request or new input)
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
  /// mip bits driven by devices: MSIP, MTIP, MEIP.
  virtual uint32_t device_irqs() = 0;
  /// A semihosting call (a0 = operation, a1 = parameter). Returns kExit to end the run.
  virtual Mmio semihost() = 0;
};

/// The decoder cache for one 4 KiB page of RAM.
///
/// Block accounting: entering slot s adds to_end[s] (instructions from s through the end of its
/// block: the next control-flow instruction, or the page end) to instret at once; leaving a block
/// early (trap, device access, self-modifying store) subtracts what did not retire. So the hot
/// loop touches the counter once per block, and instret is still exact at every stop.
struct DecodedPage {
  Decoded e[kSlotsPerPage + 2];          // +2 PAGE_END sentinels reached by straight-line flow off the page
  uint16_t to_end[kSlotsPerPage + 2];    // sentinels: 0 (they are not instructions)
  uint8_t op[kSlotsPerPage + 2];         // the Op of each slot, for re-decoding after a store
};

/// Flags per RAM page that route stores to the slow path.
enum PageFlag : uint8_t {
  kPageDecoded = 1,     ///< the decoder cache holds this page: stores must invalidate it
  kPageStraddled = 2,   ///< the previous page's last slot decoded a 32-bit instruction reaching here
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
  uint32_t mcounteren = 0;
  uint64_t minstret_offset = 0;  ///< guest-visible minstret = instret + offset (guest writes move the offset)
  uint64_t mcycle_offset = 0;
  uint32_t reservation = 0;      ///< LR/SC reservation address; valid when reservation_valid
  bool reservation_valid = false;

  // Fatal trap report (Stop::kFatalTrap).
  uint32_t fatal_cause = 0, fatal_pc = 0, fatal_tval = 0;
  /// The fatal trap is a trap loop: the handler at fatal_pc raises fatal_cause itself, and taking the
  /// trap again would change nothing (same pc, CSRs and counters), so the hart is stuck for good.
  bool fatal_loop = false;

  /// Host: read/write any CSR without privilege checks. Returns false if the CSR does not exist.
  bool host_read_csr(uint32_t csr, uint32_t* value);
  bool host_write_csr(uint32_t csr, uint32_t value);

  /// Host: the platform changed something that may raise an interrupt or end a WFI.
  /// (Only meaningful between runs; inside run() the loop re-checks after every device access.)
  uint32_t mip() { return platform_->device_irqs() & kMipMask; }

  /// Instret at which the virtual-clock timer fires, or UINT64_MAX; set by the platform.
  uint64_t timer_deadline = UINT64_MAX;

  /// Upper bound of instructions per inner-loop slice, so host requests are seen promptly.
  uint64_t slice = 1u << 20;

  /// A second, lowerable run target (vCPU thread only; the platform may set it during a run): run()
  /// returns kLimit on reaching it and resets it. The output rule uses it to seal a batch shortly
  /// after an output, so outputs produced close together share one batch and one acknowledgement.
  uint64_t soft_target = UINT64_MAX;

  /// Set by the host thread to make run() return Stop::kHost at the next slice boundary.
  const std::atomic<bool>* host_flag = nullptr;

  /// The host wrote [addr, addr+len) of RAM: drop decoded pages there and mark them dirty.
  void host_wrote(uint32_t addr, uint32_t len);
  /// Dirty-page bitmap, one byte per page (DirtyConsumer bits). A consumer that has dealt with page p
  /// calls clean(p, its bit), which re-arms the notification for the next store.
  const std::vector<uint8_t>& dirty() const { return dirty_; }
  void clean(uint32_t page, uint8_t consumer) {
    dirty_[page] &= static_cast<uint8_t>(~consumer);
    flags_[page] |= kPageClean;
  }
  /// Set by the platform to end run() at the next instruction boundary (e.g. a replay divergence).
  bool stop_now = false;
  /// Drop all decoded pages (after a restore).
  void invalidate_all();
  /// Mark a RAM page for platform store notification.
  void watch_page(uint32_t addr) { set_flag(addr, kPagePlatform); }

  uint8_t* ram() { return ram_; }
  uint32_t ram_size() const { return ram_size_; }

  static constexpr uint32_t kMipMask = (1u << kIrqMSoft) | (1u << kIrqMTimer) | (1u << kIrqMExt);
  static constexpr uint32_t kMisaValue = (1u << 30) | (1u << ('A' - 'A')) | (1u << ('C' - 'A')) |
                                    (1u << ('I' - 'A')) | (1u << ('M' - 'A')) | (1u << ('U' - 'A'));

  // mstatus fields
  static constexpr uint32_t kMstatusMIE = 1u << 3;
  static constexpr uint32_t kMstatusMPIE = 1u << 7;
  static constexpr uint32_t kMstatusMPP = 3u << 11;
  static constexpr uint32_t kMstatusMPRV = 1u << 17;
  static constexpr uint32_t kMstatusTW = 1u << 21;

 private:
  enum class Inner : uint8_t { kLimit, kExit, kFatal, kWfi, kRecheck };
  Inner run_inner(uint64_t limit);
  DecodedPage* page_for(uint32_t page_index);
  void set_flag(uint32_t addr, uint8_t flag);
  /// Slow store: device, watched page or self-modifying code. Returns how to continue.
  enum class StoreOutcome : uint8_t { kOk, kOkLeaveBlock, kFault, kExit };
  StoreOutcome slow_store(uint32_t addr, unsigned size, uint32_t value, uint32_t cur_pc);
  /// Re-decodes the slots overlapping RAM offsets [off, off+len); true if `cur_page` changed.
  bool redecode(uint32_t off, uint32_t len, uint32_t cur_page);
  void decode_slot(DecodedPage* p, uint32_t page_index, uint32_t slot);
  void fix_to_end(DecodedPage* p, uint32_t from_slot);
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
  bool executable(uint32_t addr) const { return addr - kRamBase < ram_size_; }

  uint8_t* ram_;
  uint32_t ram_size_;
  Platform* platform_;
  std::vector<std::unique_ptr<DecodedPage>> pages_;  // owned storage, reused after invalidation
  std::vector<DecodedPage*> live_;                    // pages_[i].get() when valid, else nullptr
  std::vector<uint8_t> flags_;
  std::vector<uint8_t> dirty_;
  const void* const* labels_ = nullptr;
  // Single-stepping near a stop: slots 0..2 hold the instruction and two PAGE_END sentinels. Its counts
  // are 1, 0, 0, then a value larger than any remaining budget, so a jump can only land on those three.
  std::unique_ptr<DecodedPage> step_;
};

}  // namespace lockstep
