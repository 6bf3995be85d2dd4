// The hart's run loop (threaded dispatch over the decoder cache), traps, interrupts and CSRs.
// Never throws and never calls into the host except through Platform on slow paths.
#include "cpu/cpu.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__)
#define LOCKSTEP_LIKELY(x) __builtin_expect(!!(x), 1)
#define LOCKSTEP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define LOCKSTEP_UNREACHABLE() __builtin_unreachable()
#else
#define LOCKSTEP_LIKELY(x) (x)
#define LOCKSTEP_UNLIKELY(x) (x)
#define LOCKSTEP_UNREACHABLE() std::abort()
#endif

// The values every load, store and branch uses are pinned to the six callee-saved registers on x86-64
// (GCC keeps them there across the dispatch's computed gotos instead of spilling them to the stack,
// which costs a taken branch or a store a load); elsewhere, and in the portable switch build, the
// compiler chooses.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(LOCKSTEP_DISPATCH_SWITCH)
#define LOCKSTEP_PINNED(type, name, reg) register type name asm(reg)
#else
#define LOCKSTEP_PINNED(type, name, reg) type name
#endif
// rbp too, unless it is the frame pointer (sanitizer and unoptimized builds keep frame pointers).
#if defined(__SANITIZE_ADDRESS__) || !defined(__OPTIMIZE__)
#define LOCKSTEP_PINNED_BP(type, name) type name
#else
#define LOCKSTEP_PINNED_BP(type, name) LOCKSTEP_PINNED(type, name, "rbp")
#endif

// The memory operations that also have a translation-first handler (see DecodedPage).
#define LOCKSTEP_MEM_OPS(X) X(LB) X(LH) X(LW) X(LBU) X(LHU) X(SB) X(SH) X(SW)
// The ALU operations that also have a handler for rd = rs1, which updates the register in place (see
// Cpu::slot_of; compressed code is full of them: c.add, c.addi, c.slli, c.and …).
#define LOCKSTEP_SAME_OPS(X) \
  X(ADDI) X(XORI) X(ORI) X(ANDI) X(SLLI) X(SRLI) X(SRAI) X(ADD) X(SUB) X(XOR) X(OR) X(AND)
// The pc-relative jumps, which also have a far handler (see Cpu::slot_of).
// JALR and JR have one too, which always goes through dispatch (pages run beside the block compiler).
#define LOCKSTEP_REL_OPS(X) \
  X(JAL) X(J) X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU) X(BEQZ) X(BNEZ) X(BLTZ) X(BGEZ) X(BGTZ) X(BLEZ) \
  X(JALR) X(JR)
// The conditional branches, which also have a chained handler (see Cpu::block_count).
#define LOCKSTEP_COND_OPS(X) \
  X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU) X(BEQZ) X(BNEZ) X(BLTZ) X(BGEZ) X(BGTZ) X(BLEZ)

namespace lockstep {
namespace {

inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}
inline uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// Semihosting is an ebreak between these two no-ops (RISC-V semihosting spec, 'semihosting trap').
constexpr uint32_t kSemihostPre = 0x01f01013;   // slli x0, x0, 0x1f
constexpr uint32_t kSemihostPost = 0x40705013;  // srai x0, x0, 7

// Operations whose slot keeps a jump target (see Cpu::slot_of).
static_assert(kOpBLEZ - kOpBEQ == 11, "the conditional branches are one run of ops, BEQ through BLEZ");
inline bool relative(Op op) { return op == kOpJAL || op == kOpJ || (op >= kOpBEQ && op <= kOpBLEZ); }
inline bool conditional(Op op) { return op >= kOpBEQ && op <= kOpBLEZ; }

// A near conditional branch continues its block when what follows it counts fewer than this many
// instructions (see Cpu::block_count): the longer a block, the more instructions a run that stops
// inside it single-steps to reach its limit.
constexpr uint16_t kChainMax = 32;

// run_inner returns to run() after this many traps that retired nothing in between (see `trap:`).
constexpr uint32_t kTrapBurst = 64;

// Every handler of the dispatch loop: two per operation, for 16-bit (_1) and 32-bit (_2) encodings, so
// that op * 2 + len - 1 names the plain one; then the translation-first memory handlers and the far
// forms of the pc-relative jumps (target off the slot's page: straight to dispatch) and the in-place
// forms of ALU operations (rd = rs1).
enum HandlerId : uint32_t {
#define LOCKSTEP_HANDLER_ID(name) kH_##name##_1, kH_##name##_2,
#define LOCKSTEP_HANDLER_ID_T(name) kH_##name##_T_1, kH_##name##_T_2,
#define LOCKSTEP_HANDLER_ID_F(name) kH_##name##_F_1, kH_##name##_F_2,
#define LOCKSTEP_HANDLER_ID_S(name) kH_##name##_S_1, kH_##name##_S_2,
#define LOCKSTEP_HANDLER_ID_C(name) kH_##name##_C_1, kH_##name##_C_2,
  LOCKSTEP_OPS(LOCKSTEP_HANDLER_ID) LOCKSTEP_MEM_OPS(LOCKSTEP_HANDLER_ID_T) LOCKSTEP_REL_OPS(LOCKSTEP_HANDLER_ID_F)
  LOCKSTEP_SAME_OPS(LOCKSTEP_HANDLER_ID_S) LOCKSTEP_COND_OPS(LOCKSTEP_HANDLER_ID_C)
#undef LOCKSTEP_HANDLER_ID
#undef LOCKSTEP_HANDLER_ID_T
#undef LOCKSTEP_HANDLER_ID_F
#undef LOCKSTEP_HANDLER_ID_S
#undef LOCKSTEP_HANDLER_ID_C
  kHandlerCount
};

// Operations with an in-place handler (LOCKSTEP_SAME_OPS).
inline bool in_place(Op op) {
  switch (op) {
#define LOCKSTEP_IN_PLACE(name) case kOp##name:
    LOCKSTEP_SAME_OPS(LOCKSTEP_IN_PLACE)
#undef LOCKSTEP_IN_PLACE
      return true;
    default:
      return false;
  }
}

// Operations whose slot keeps rs2 in imm (see Decoded).
inline bool rs2_in_imm(Op op) {
  return (op >= kOpADD && op <= kOpAND) || (op >= kOpMUL && op <= kOpREMU) || (op >= kOpLR_W && op <= kOpAMOMAXU);
}
static_assert(kOpAND - kOpADD == 9 && kOpREMU - kOpMUL == 7 && kOpAMOMAXU - kOpLR_W == 10,
              "rs2_in_imm's runs of ops");

}  // namespace

Cpu::Cpu(uint8_t* ram, uint32_t ram_size, Platform* platform)
    : ram_(ram), ram_size_(ram_size), platform_(platform) {
  const uint32_t npages = ram_size / kPageSize;
  pages_.resize(npages);
  live_.assign(npages, nullptr);
  // +1: a store's last byte may index one past the end; that entry stays 0. Every page starts armed
  // for dirty tracking, so the first store to each takes the slow path once.
  flags_.assign(npages + 1, 0);
  for (uint32_t i = 0; i < npages; i++) flags_[i] = kPageClean;
  store_ok_.reset(static_cast<uint8_t*>(std::calloc(kStoreTable, 1)));  // all 0: every page starts clean
  if (!store_ok_) std::abort();
  dirty_.assign(npages, 0);
  tlb_writable_.assign(npages + 1, 0);
  tlb_.reset(new TlbEntry[(kBanks + 1) * kTlbSize]);
  std::memset(static_cast<void*>(tlb_.get()), 0xff, sizeof(TlbEntry) * (kBanks + 1) * kTlbSize);
  tlb_filled_.reserve(kTlbFillsTracked + 1);
  update_mode();
  step_ = std::make_unique<DecodedPage>();  // slots filled in by run_inner
}

void Cpu::FreeDeleter::operator()(uint8_t* p) const { std::free(p); }

const uint8_t* Cpu::no_fast_stores() {
  static const uint8_t* const zeros = [] {
    void* p = std::calloc(kStoreTable, 1);
    if (!p) std::abort();
    return static_cast<const uint8_t*>(p);
  }();
  return zeros;
}

void Cpu::drop_page(uint32_t pi) {
  live_[pi] = nullptr;
  flags_[pi] &= static_cast<uint8_t>(~kPageDecoded);
  flags_changed(pi);
  if (jit_) jit_->drop_page(pi);
}

bool Cpu::set_jit(bool on) {
  jit_.reset();
  if (on && Jit::available()) {
    jit_ = std::make_unique<Jit>(ram_, ram_size_, x);
    if (!jit_->ok()) jit_.reset();
    else jit_->io.flags = flags_.data();
  }
  static_assert(sizeof(reservation_valid) == 1, "compiled SC writes the flag as a byte");
  if (jit_) {
    jit_->io.resv = &reservation;
    jit_->io.resv_valid = reinterpret_cast<uint8_t*>(&reservation_valid);
  }
  update_mode();  // the compiler's view of the mode
  // Pages decode afresh: their jumps take the far handlers (through dispatch) while the compiler is on.
  for (uint32_t pi = 0; pi < live_.size(); pi++) drop_page(pi);
  return jit_ != nullptr;
}

void Cpu::host_wrote(uint32_t addr, uint32_t len) {
  if (len == 0) return;
  const uint64_t off = static_cast<uint64_t>(addr) - kRamBase;
  if (off >= ram_size_) return;
  const uint64_t end = std::min<uint64_t>(off + len, ram_size_);
  bool page_table = false;
  for (uint64_t pi = off >> kPageShift; pi <= (end - 1) >> kPageShift; pi++) {
    dirty_[pi] = kDirtyAll;
    flags_[pi] &= static_cast<uint8_t>(~kPageClean);
    flags_changed(static_cast<uint32_t>(pi));
    page_table |= (flags_[pi] & kPagePageTable) != 0;
  }
  if (page_table) flush_tlb();  // e.g. a device wrote a page table by DMA
  // (A 32-bit instruction reaching into the first page from the one before decodes as STRADDLE, which
  // reads its second half at each execution: the page before needs no re-decoding.)
  for (uint64_t pi = off >> kPageShift; pi <= (end - 1) >> kPageShift; pi++) drop_page(static_cast<uint32_t>(pi));
}

void Cpu::invalidate_all() {
  for (uint32_t pi = 0; pi < live_.size(); pi++) drop_page(pi);
  pmp_changed();  // a restore may have brought other PMP entries; this also drops cached translations
}

Decoded Cpu::slot_of(const DecodedOp& d, bool translated, uint32_t slot) const {
  // pc-relative jumps keep their target as its offset from the page's pc (= 2 * its slot), so a taken
  // branch finds its target slot without computing it from its own: the near ones keep that offset
  // scaled by 8, the target slot's byte offset (16 bytes a slot), which the taken branch adds to slot 0.
  // A target off the page gets the far handler, which keeps the byte offset, so the near one needs no
  // range check.
  static_assert(sizeof(Decoded) == 8 * sizeof(uint16_t), "slot_of scales a byte offset by 8 for the slot");
  const Handler* labels = translated ? labels_translated_ : labels_;
  int32_t imm = d.imm;
  // The physical-first loads and stores add their offset to the register and get the RAM offset of the
  // address (see LOAD), the translation-first ones the virtual address.
  if (!translated && d.op >= kOpLB && d.op <= kOpSW) imm = static_cast<int32_t>(static_cast<uint32_t>(imm) - kRamBase);
  uint8_t rd = d.rd;
  if (relative(d.op)) {
    imm += static_cast<int32_t>(slot * 2);
    // With the block compiler on, every jump goes through dispatch, where compiled blocks are entered.
    if (static_cast<uint32_t>(imm) >= kPageSize || jit_) labels = labels_far_;
    else imm *= 8;  // near: the target slot's byte offset from slot 0 (JUMP_REL adds it as it is)
  } else if (rs2_in_imm(d.op)) {
    imm = d.rs2;
  }
  if ((d.op == kOpJALR || d.op == kOpJR) && jit_) labels = labels_far_;
  if (d.rd == d.rs1 && in_place(d.op)) labels = labels_same_;  // (rd = x0 is the sink, 32: never rs1)
  if (d.op >= kOpCSRRW && d.op <= kOpCSRRCI) {
    imm = d.imm | (static_cast<int32_t>(d.rs2) << 16);
  }
  return Decoded{labels[d.op * 2 + d.len - 1], imm, rd, d.rs1, 0};
}

Decoded Cpu::step_slot(const DecodedPage* p, uint32_t s) const {
  Decoded d = p->e[s];
  d.n = 1;
  const Op op = static_cast<Op>(p->op[s]);
  if (relative(op)) {
    const Handler far = labels_far_[op * 2 + p->len[s] - 1];
    if (d.h != far) d.imm /= 8;  // a near slot keeps its target scaled to a slot offset (see slot_of)
    d.imm -= static_cast<int32_t>(s * 2);
    d.h = far;
  }
  return d;
}

void Cpu::decode_slot(DecodedPage* p, uint32_t pi, uint32_t s) {
  const uint8_t* src = ram_ + (static_cast<size_t>(pi) << kPageShift) + s * 2;
  const bool last = s == kSlotsPerPage - 1;
  const uint16_t lo = rd16(src);
  DecodedOp d = decode(lo, last ? 0 : rd16(src + 2));
  // The second half of a 32-bit instruction in the last slot is on whatever page follows virtually.
  if (last && d.len == 2) d = DecodedOp{kOpSTRADDLE, lo, 32, 0, 0, 2};
  const uint16_t n = p->e[s].n;  // kept until the counts are fixed (see fix_blocks)
  p->e[s] = slot_of(d, p->translated, s);
  p->e[s].n = n;
  p->op[s] = d.op;
  p->len[s] = d.len;
}

// Inline: every page decode counts all its slots (in a Linux boot that is a tenth of the decoding).
#if defined(__GNUC__)
[[gnu::always_inline]]
#endif
inline uint16_t Cpu::block_count(DecodedPage* p, uint32_t s) {
  const Op op = static_cast<Op>(p->op[s]);
  const uint16_t rest = p->e[s + p->len[s]].n;
  if (!ends_block(op)) return static_cast<uint16_t>(1 + rest);
  if (!conditional(op)) return 1;
  return branch_count(p, s, rest);
}

uint16_t Cpu::branch_count(DecodedPage* p, uint32_t s, uint16_t rest) {
  const Op op = static_cast<Op>(p->op[s]);
  const uint32_t i = op * 2u + p->len[s] - 1u;
  Handler& h = p->e[s].h;
  if (h == labels_far_[i]) return 1;  // its successor is entered through dispatch
  // Only forward branches: a backward one usually closes a loop and is taken, which costs a chained
  // branch its give-back.
  const bool chain = rest < kChainMax && static_cast<uint32_t>(p->e[s].imm) > s * sizeof(Decoded);
  h = chain ? labels_chain_[i] : labels_[i];
  return chain ? static_cast<uint16_t>(1 + rest) : 1;
}

bool Cpu::fix_to_end(DecodedPage* p, uint32_t from, uint32_t budget) {
  // Walk down from `from`; below it, stop once two consecutive slots keep their value (a slot's
  // count depends only on the slot one or two halfwords above it).
  int unchanged = 0;
  for (int64_t s = from; s >= 0; s--) {
    if (budget-- == 0) return false;
    const uint16_t v = block_count(p, static_cast<uint32_t>(s));
    if (p->e[s].n == v && s < static_cast<int64_t>(from) - 1) {
      if (++unchanged >= 2) break;
    } else {
      unchanged = 0;
    }
    p->e[s].n = v;
  }
  return true;
}

void Cpu::count_blocks(DecodedPage* p) {
  for (int64_t s = kSlotsPerPage - 1; s >= 0; s--) p->e[s].n = block_count(p, static_cast<uint32_t>(s));
}

DecodedPage* Cpu::page_for(uint32_t pi) {
  if (!pages_[pi]) pages_[pi] = std::make_unique<DecodedPage>();
  DecodedPage* p = pages_[pi].get();
  if ((flags_[pi] & kPageDecoded) && p->stale) {
    // Stores kept its slots exact; only the block counts were left behind (see redecode).
    count_blocks(p);
    p->stale = false;
    live_[pi] = p;
    return p;
  }
  p->translated = data_limit_ == 0;
  p->stale = false;
  p->data_stores = 0;
  for (uint32_t s = 0; s < kSlotsPerPage; s++) decode_slot(p, pi, s);
  for (uint32_t s = kSlotsPerPage; s < kSlotsPerPage + 2; s++) {
    p->e[s] = Decoded{labels_[kOpPAGE_END * 2], 0, 32, 0, 0};
    p->op[s] = kOpPAGE_END;
    p->len[s] = 1;
  }
  count_blocks(p);
  set_page_flag(pi, kPageDecoded);
  live_[pi] = p;
  return p;
}

void Cpu::fix_blocks(DecodedPage* p, uint32_t pi, uint32_t from, uint32_t cur_page) {
  if (p->stale) return;  // counted afresh when it runs again
  if (pi == cur_page) {
    fix_to_end(p, from, UINT32_MAX);  // the running block's page: its counts are in use right now
    return;
  }
  // A page not running is entered only through dispatch, which looks at live_: when a store's change
  // ripples through more slots than a recount of the whole page costs (data written over code: an OS
  // reusing a page, a decompressor), stop here and recount on entry instead.
  if (!fix_to_end(p, from, kFixBudget)) {
    p->stale = true;
    live_[pi] = nullptr;
  }
}

bool Cpu::redecode(uint32_t off, uint32_t len, uint32_t cur_page) {
  bool hit_current = false;
  // Slots whose instruction bytes overlap [off, off+len): a 32-bit one may start 2 bytes earlier.
  const uint32_t first = off >= 2 ? (off - 2) / 2 : 0;
  const uint32_t last = (off + len - 1) / 2;
  uint32_t pi_done = UINT32_MAX, hi_slot = 0;
  DecodedPage* pending = nullptr;
  for (uint32_t g = first; g <= last; g++) {
    const uint32_t pi = g / kSlotsPerPage, s = g % kSlotsPerPage;
    if (pi >= live_.size()) break;
    if (!(flags_[pi] & kPageDecoded)) continue;
    DecodedPage* p = pages_[pi].get();  // live, or stale (its slots still kept exact)
    if (pi != pi_done) {
      if (pending) fix_blocks(pending, pi_done, hi_slot, cur_page);
      pending = p;
      pi_done = pi;
    }
    decode_slot(p, pi, s);
    hi_slot = s;
    if (pi == cur_page) hit_current = true;
  }
  if (pending) fix_blocks(pending, pi_done, hi_slot, cur_page);
  return hit_current;
}

bool Cpu::code_store(uint32_t off, uint32_t len, uint32_t cur_page, bool changed) {
  if (changed && jit_) jit_->invalidate(off, len);  // compiled blocks over the bytes written
  for (uint32_t pi = off >> kPageShift; pi <= (off + len - 1) >> kPageShift; pi++) {
    if (pi == cur_page || !(flags_[pi] & kPageDecoded)) continue;
    if (++pages_[pi]->data_stores >= kDataStoresBeforeDrop) drop_page(pi);
  }
  return changed && redecode(off, len, cur_page);
}

Cpu::StoreOutcome Cpu::slow_store(uint32_t addr, unsigned size, uint32_t value, uint32_t cur_page) {
  const uint32_t off = addr - kRamBase;
  if (off < ram_size_) {
    if (off > ram_size_ - size) return StoreOutcome::kFault;  // straddles the end of RAM
    uint8_t* dst = ram_ + off;
    for (uint32_t pi = off >> kPageShift; pi <= (off + size - 1) >> kPageShift; pi++) {
      if (flags_[pi] & kPageClean) {
        flags_[pi] &= static_cast<uint8_t>(~kPageClean);
        flags_changed(pi);
        dirty_[pi] = kDirtyAll;
      }
    }
    const bool changed = std::memcmp(dst, &value, size) != 0;
    std::memcpy(dst, &value, size);
    StoreOutcome out = StoreOutcome::kOk;
    const uint8_t f = flags_[off >> kPageShift] | flags_[(off + size - 1) >> kPageShift];
    if ((f & kPageDecoded) && code_store(off, size, cur_page, changed)) out = StoreOutcome::kOkLeaveBlock;
    if (changed && (f & kPagePageTable)) {
      // A cached translation may have come through this entry: drop those that did, and leave the
      // block in case the running code's own mapping changed.
      tlb_pte_stored(off, size);
      out = StoreOutcome::kOkLeaveBlock;
    }
    if (flags_[off >> kPageShift] & kPagePlatform) {
      const Mmio r = platform_->store(addr, size, value);
      if (r == Mmio::kExit) return StoreOutcome::kExit;
    }
    return out;
  }
  switch (platform_->store(addr, size, value)) {
    case Mmio::kOk: return StoreOutcome::kOk;
    case Mmio::kOkRecheck: return StoreOutcome::kOkLeaveBlock;
    case Mmio::kExit: return StoreOutcome::kExit;
    case Mmio::kFault: break;
  }
  return StoreOutcome::kFault;
}

Mmio Cpu::slow_load(uint32_t addr, unsigned size, uint32_t* value) {
  const uint32_t off = addr - kRamBase;
  if (off < ram_size_) {
    if (off > ram_size_ - size) return Mmio::kFault;
    uint32_t v = 0;
    std::memcpy(&v, ram_ + off, size);
    *value = v;
    return Mmio::kOk;
  }
  return platform_->load(addr, size, value);
}

bool Cpu::take_trap(uint32_t cause, uint32_t tval, uint32_t epc) {
  const bool interrupt = (cause >> 31) != 0;
  const uint32_t code = cause & 0x7fffffffu;
  // Delegated traps taken below M go to S-mode (privileged spec 3.1.8); M-mode traps never go down.
  const bool to_s = priv != Priv::kMachine && code < 32 && (((interrupt ? mideleg : medeleg) >> code) & 1u);
  const uint32_t tvec = to_s ? stvec : mtvec;
  uint32_t target = tvec & ~3u;
  if ((tvec & 3u) == 1 && interrupt) target += 4 * code;
  // A handler address outside RAM can never run: the trap goes to the host instead. (A virtual stvec
  // under Sv32 cannot be judged here; if it is bad, its fetch faults like any other.)
  if (!(to_s && (satp >> 31)) && !executable(target)) {
    fatal_cause = cause;
    fatal_pc = epc;
    fatal_tval = tval;
    fatal_loop = false;
    return false;
  }
  uint32_t s = mstatus;
  Priv to;
  if (to_s) {
    s = (s & kMstatusSIE) ? (s | kMstatusSPIE) : (s & ~kMstatusSPIE);
    s &= ~kMstatusSIE;
    s = priv == Priv::kSupervisor ? (s | kMstatusSPP) : (s & ~kMstatusSPP);
    to = Priv::kSupervisor;
  } else {
    s = (s & kMstatusMIE) ? (s | kMstatusMPIE) : (s & ~kMstatusMPIE);
    s &= ~kMstatusMIE;
    s = (s & ~kMstatusMPP) | (static_cast<uint32_t>(priv) << 11);
    to = Priv::kMachine;
  }
  // A fault at the handler's first instruction that would leave every register, CSR and counter as it
  // is: the hart would fault there again forever without retiring anything (a deterministic fixed
  // point, e.g. a trap vector pointing at an illegal instruction). Report it instead of spinning.
  const uint32_t old_epc = to_s ? sepc : mepc, old_cause = to_s ? scause : mcause, old_tval = to_s ? stval : mtval;
  if (epc == target && priv == to && old_epc == (epc & ~1u) && old_cause == cause && old_tval == tval && mstatus == s &&
      !wfi && !reservation_valid) {
    fatal_cause = cause;
    fatal_pc = epc;
    fatal_tval = tval;
    fatal_loop = true;
    return false;
  }
  if (to_s) {
    sepc = epc & ~1u;
    scause = cause;
    stval = tval;
  } else {
    mepc = epc & ~1u;
    mcause = cause;
    mtval = tval;
  }
  priv = to;
  mstatus = s;
  pc = target;
  wfi = false;
  reservation_valid = false;
  return true;
}

bool Cpu::check_interrupts(bool* fatal) {
  const uint32_t pending = mip() & mie;
  if (!pending) return false;
  // Interrupts for M (not delegated) are enabled below M, and in M with MIE; delegated ones below S,
  // and in S with SIE, never in M. Those for M come first (privileged spec 3.1.9).
  uint32_t take = 0;
  if (priv != Priv::kMachine || (mstatus & kMstatusMIE)) take = pending & ~mideleg;
  if (!take && (priv == Priv::kUser || (priv == Priv::kSupervisor && (mstatus & kMstatusSIE)))) take = pending & mideleg;
  if (!take) return false;
  static constexpr Irq kPriority[] = {kIrqMExt, kIrqMSoft, kIrqMTimer, kIrqSExt, kIrqSSoft, kIrqSTimer};
  for (Irq i : kPriority) {
    if (!(take & (1u << i))) continue;
    if (!take_trap(0x80000000u | i, 0, pc)) *fatal = true;
    return true;
  }
  return false;
}

Stop Cpu::run(uint64_t target) {
  for (;;) {
    // acquire: pairs with the release store in VcpuThread::raise(); what the host queued is visible.
    if (host_flag && host_flag->load(std::memory_order_acquire)) return Stop::kHost;
    if (stop_now) return Stop::kExit;
    // The target check comes before the boundary's work: a run stopped at X leaves boundary X
    // untouched, so whatever the host delivers at X (or a replayer applies at X) comes first.
    if (instret >= target) return Stop::kLimit;
    if (instret >= soft_target) {
      soft_target = UINT64_MAX;
      return Stop::kLimit;
    }
    platform_->boundary();
    bool fatal = false;
    check_interrupts(&fatal);
    if (fatal) return Stop::kFatalTrap;
    if (wfi) {
      if (mip() & mie) wfi = false;  // wakes even with interrupts globally disabled
      else return Stop::kWfi;
    }
    if (LOCKSTEP_UNLIKELY(debug != nullptr)) {
      Stop stop;
      if (debug_step(&stop)) return stop;
      continue;
    }
    // The inner loop's budget stays below 2^62 (its count of what is left is tested by sign).
    uint64_t limit = std::min({target, instret + std::min<uint64_t>(slice, uint64_t{1} << 62), soft_target});
    if (timer_deadline > instret) limit = std::min(limit, timer_deadline);
    update_mode();
    switch (run_inner(limit)) {
      case Inner::kLimit:
      case Inner::kRecheck:
      case Inner::kWfi:
        break;
      case Inner::kExit:
        return Stop::kExit;
      case Inner::kFatal:
        return Stop::kFatalTrap;
    }
  }
}

Cpu::Inner Cpu::run_inner(uint64_t limit) {
  // The successor of a 16-bit and a 32-bit instruction is a constant offset in its own handler, so the
  // dispatch chain never waits on a load of len. Computed goto: each slot holds its handler's label and
  // every handler ends in its own indirect jump. Switch: each slot holds the handler's number and every
  // handler goes back to one switch over it (`run_slot`), which jumps to the same labels.
#if defined(LOCKSTEP_DISPATCH_SWITCH)
#define LOCKSTEP_HANDLER(name) kH_##name##_1, kH_##name##_2,
#define LOCKSTEP_HANDLER_T(name) kH_##name##_T_1, kH_##name##_T_2,
#define LOCKSTEP_HANDLER_F(name) kH_##name##_F_1, kH_##name##_F_2,
#define LOCKSTEP_HANDLER_S(name) kH_##name##_S_1, kH_##name##_S_2,
#define LOCKSTEP_HANDLER_C(name) kH_##name##_C_1, kH_##name##_C_2,
#define GO() goto run_slot
#else
#define LOCKSTEP_HANDLER(name) &&op_##name##_1, &&op_##name##_2,
#define LOCKSTEP_HANDLER_T(name) &&op_##name##_T_1, &&op_##name##_T_2,
#define LOCKSTEP_HANDLER_F(name) &&op_##name##_F_1, &&op_##name##_F_2,
#define LOCKSTEP_HANDLER_S(name) &&op_##name##_S_1, &&op_##name##_S_2,
#define LOCKSTEP_HANDLER_C(name) &&op_##name##_C_1, &&op_##name##_C_2,
#define GO() goto* e->h
#endif
  static const Handler kLabels[kHandlerCount] = {LOCKSTEP_OPS(LOCKSTEP_HANDLER) LOCKSTEP_MEM_OPS(LOCKSTEP_HANDLER_T)
                                                     LOCKSTEP_REL_OPS(LOCKSTEP_HANDLER_F)
                                                         LOCKSTEP_SAME_OPS(LOCKSTEP_HANDLER_S)
                                                             LOCKSTEP_COND_OPS(LOCKSTEP_HANDLER_C)};
#undef LOCKSTEP_HANDLER
#undef LOCKSTEP_HANDLER_T
#undef LOCKSTEP_HANDLER_F
#undef LOCKSTEP_HANDLER_S
#undef LOCKSTEP_HANDLER_C
  if (labels_ != kLabels) {
    labels_ = kLabels;
    // One table per handler variant: kLabels, with the variant's handlers for the ops of its list.
    for (Handler* t : {labels_translated_, labels_far_, labels_same_, labels_chain_}) std::copy(kLabels, kLabels + kOpCount * 2, t);
#define LOCKSTEP_VARIANT(table, name, v)                               \
  table[kOp##name * 2] = kLabels[kH_##name##_##v##_1];                 \
  table[kOp##name * 2 + 1] = kLabels[kH_##name##_##v##_2];
#define LOCKSTEP_TRANSLATED(name) LOCKSTEP_VARIANT(labels_translated_, name, T)
#define LOCKSTEP_FAR(name) LOCKSTEP_VARIANT(labels_far_, name, F)
#define LOCKSTEP_SAME(name) LOCKSTEP_VARIANT(labels_same_, name, S)
#define LOCKSTEP_CHAIN(name) LOCKSTEP_VARIANT(labels_chain_, name, C)
    LOCKSTEP_MEM_OPS(LOCKSTEP_TRANSLATED) LOCKSTEP_REL_OPS(LOCKSTEP_FAR)
    LOCKSTEP_SAME_OPS(LOCKSTEP_SAME) LOCKSTEP_COND_OPS(LOCKSTEP_CHAIN)
#undef LOCKSTEP_TRANSLATED
#undef LOCKSTEP_FAR
#undef LOCKSTEP_SAME
#undef LOCKSTEP_CHAIN
#undef LOCKSTEP_VARIANT
    // The single-step page (see dispatch and STRADDLE) runs one instruction in slot 0; every other slot
    // is a PAGE_END sentinel counting 0, so falling through or jumping anywhere else on that page leads
    // back to dispatch at the right pc, whatever the budget left.
    for (uint32_t i = 1; i < kSlotsPerPage + 2; i++) {
      step_->e[i] = Decoded{kLabels[kOpPAGE_END * 2], 0, 32, 0, 0};
      step_->op[i] = kOpPAGE_END;
      step_->len[i] = 1;
    }
  }

  uint32_t* const x = this->x;
  // RS1 reads rd in the in-place ALU handlers (DEFINE_SAME), which shadow this.
  [[maybe_unused]] constexpr bool SAME = false;
  // A conditional branch's chained form (DEFINE_COND), which shadows this, continues the block when not taken.
  [[maybe_unused]] constexpr bool CHAIN = false;
  // RAM's host address, in a register of its own: every physical load and store adds it (the running
  // page's pc, which only jumps and auipc read, lives in the DecodedPage to leave it a register).
  LOCKSTEP_PINNED(uint8_t* const, ram, "r13") = ram_;
  const uint8_t* const flags = flags_.data();
  const uint32_t ram_size = ram_size_;
  // Loads and stores: physical when the RAM offset is within the limits set from dlim (see LOAD and
  // STORE_FAST; dlim is 0 while translating, so that test costs M-mode nothing and fails at once
  // otherwise), else the translation cache's bank, kept in a register of its own (as br) because every
  // translated load and store reads it.
  LOCKSTEP_PINNED(const TlbEntry*, dtlb, "r14") = dtlb_;
  uint64_t dlim = data_limit_;
  LOCKSTEP_PINNED_BP(const uint8_t*, stores) = nullptr;  // store_ok_, or all 0 while translating
#define SET_LIMITS()                                                        \
  do {                                                                      \
    load_limit_ = dlim >= 4 ? static_cast<uint32_t>(dlim - 3) : 0;          \
    stores = dlim != 0 ? store_ok_.get() : no_fast_stores();                \
  } while (0)
  SET_LIMITS();
  // Instructions that may still retire before `limit`, less the not-yet-retired rest of the current
  // block (counted in advance). One register instead of a counter and a bound.
  LOCKSTEP_PINNED(uint64_t, rem, "r12") = limit - instret;
#define IC() (limit - rem)
  LOCKSTEP_PINNED(uint64_t, br, "r15") = branches;  // a register: every branch increments it
  const Decoded* e = nullptr;
  LOCKSTEP_PINNED(const Decoded*, base, "rbx") = nullptr;
  uint32_t target = pc;
  uint32_t maddr = 0;     // slow-path memory operand
  uint32_t mval = 0;
  uint8_t msize = 0;
  uint8_t mkind = 0;      // slow loads: 0 signed byte, 1 signed half, 2 word, 3 byte, 4 half
  uint8_t mlen = 0;       // the shared slow paths: length of the instruction, in halfwords
  // Traps taken in a row without an instruction retiring between them (see `trap:`).
  uint64_t trap_at = UINT64_MAX;
  uint32_t traps_here = 0;
  Inner result;
  // The block compiler (see jit.h): on for this run, and whether the next dispatch must leave the block
  // to the interpreter (compiled code handed it an instruction, or a block that did not fit the budget).
  jit_skip_ = false;

#define SLOT(p) static_cast<uint32_t>((p) - base)
// The virtual pc of the running page's first slot sits at a fixed offset from the slots (DecodedPage
// layout): memory, not a register (see `ram`).
#define PAGE_PC (reinterpret_cast<DecodedPage*>(const_cast<Decoded*>(base))->page_pc)
#define PC_OF(p) (PAGE_PC + (SLOT(p) << 1))
#define NEXT_PC(p, len) (PC_OF(p) + (static_cast<uint32_t>(len) << 1))
// rem -= n, true when that left rem >= 0 (the block fits the budget; rem is below 2^63, see run()).
// Where it did not, the caller adds n back. One subtraction and a jump on its sign.
#define TAKE(n) (rem -= (n), LOCKSTEP_LIKELY(static_cast<int64_t>(rem) >= 0))
// Undoes a TAKE that failed. The empty asm hides that rem + n is the old rem, which the compiler would
// otherwise keep in a register of its own across every TAKE.
#if defined(__GNUC__)
#define UNTAKE(n)                     \
  do {                                \
    __asm__("" : "+r"(rem));          \
    rem += (n);                       \
  } while (0)
#else
#define UNTAKE(n) (rem += (n))
#endif
// Straight-line successor inside the current block: already counted.
#define NEXT()     \
  do {             \
    e += L;        \
    GO();          \
  } while (0)
// The shared slow paths serve both lengths: the handler that jumped there left its own in mlen.
#define NEXT_DYN()   \
  do {               \
    e += mlen;       \
    GO();            \
  } while (0)
// Every handler exists twice (see kLabels): `label`_1 and `label`_2, L the instruction length in
// halfwords; `decl` declares what else is constant in that variant (SAME, FAR), or nothing.
#define DEFINE_VARIANT(label, decl, ...)         \
  label##_1 : {                                  \
    [[maybe_unused]] constexpr uint32_t L = 1;   \
    decl;                                        \
    __VA_ARGS__                                  \
  }                                              \
  label##_2 : {                                  \
    [[maybe_unused]] constexpr uint32_t L = 2;   \
    decl;                                        \
    __VA_ARGS__                                  \
  }
#define DEFINE(name, ...) DEFINE_VARIANT(op_##name, , __VA_ARGS__)
// An ALU operation with its in-place form (LOCKSTEP_SAME_OPS): there SAME is true and RS1 reads rd.
#define DEFINE_SAME(name, ...) \
  DEFINE(name, __VA_ARGS__)    \
  DEFINE_VARIANT(op_##name##_S, [[maybe_unused]] constexpr bool SAME = true, __VA_ARGS__)
// Control transfer: a new block starts, so count it (fast when it stays on the current page).
#define JUMP(t)                                  \
  do {                                           \
    target = (t);                                \
    const uint32_t d_ = target - PAGE_PC;        \
    if (!FAR && d_ < kPageSize) {                \
      e = base + (d_ >> 1);                      \
      const uint64_t n_ = e->n;                  \
      if (TAKE(n_)) GO();                        \
      UNTAKE(n_);                                \
    }                                            \
    goto dispatch;                               \
  } while (0)
// pc-relative control transfer (branches, jal) to a slot on this page (the far handlers take the
// others): the slot holds the target's offset from the page's pc, an even number of bytes below
// kPageSize; times 8, the target slot's (16 bytes).
#define JUMP_REL()                                                                              \
  do {                                                                                          \
    e = reinterpret_cast<const Decoded*>(reinterpret_cast<const char*>(base) +                  \
                                         static_cast<uintptr_t>(static_cast<uint32_t>(e->imm))); \
    const uint64_t n_ = e->n;                                                                   \
    if (TAKE(n_)) GO();                                                                         \
    UNTAKE(n_);                                                                                 \
    target = PC_OF(e);                                                                          \
    goto dispatch;                                                                              \
  } while (0)
#define JUMP_FAR()                                                                              \
  do {                                                                                          \
    target = PAGE_PC + static_cast<uint32_t>(e->imm);                                           \
    goto dispatch;                                                                              \
  } while (0)
// A block-ending instruction that did not transfer control: the successor starts a new block.
#define FALLTHROUGH()                            \
  do {                                           \
    e += L;                                      \
    const uint64_t n_ = e->n;                    \
    if (TAKE(n_)) GO();                          \
    UNTAKE(n_);                                   \
    target = PC_OF(e);                           \
    goto dispatch;                               \
  } while (0)
// Leave before `e` retires / after `e` (of length len) retired; instret and pc become exact.
#define SYNC_BEFORE()               \
  do {                              \
    rem += e->n;                    \
    pc = PC_OF(e);                  \
  } while (0)
#define SYNC_AFTER(len)             \
  do {                              \
    rem += e->n - 1u;               \
    pc = NEXT_PC(e, len);           \
  } while (0)
#define TRAP(cause, tval)                                  \
  do {                                                     \
    const uint32_t trap_cause_ = (cause), trap_tval_ = (tval); \
    SYNC_BEFORE();                                         \
    mval = trap_cause_;                                    \
    maddr = trap_tval_;                                    \
    goto trap;                                             \
  } while (0)
// The translation cache is indexed by the page of the first byte and tagged with the page of the last:
// an access that crosses a page boundary never hits, so a hit covers every byte.
#define TLB_AT(a_)                                                      \
  reinterpret_cast<const TlbEntry*>(reinterpret_cast<const char*>(dtlb) + \
                                    (((a_) >> (kPageShift - 5)) & ((kTlbSize - 1) << 5)))
#define TLB_TAG(a_, sz) (((a_) + (sz)-1) & ~(kPageSize - 1))
// A physical-first load's slot keeps imm - kRamBase (see slot_of): register + imm is the RAM offset, which
// one compare with load_limit_ (in memory beside x[]) clears for every size; the address comes back only
// on the slow path.
#define LOAD(type, kind, sz)                                             \
  do {                                                                   \
    const uint32_t o_ = x[e->rs1] + static_cast<uint32_t>(e->imm);       \
    type v_;                                                             \
    if (LOCKSTEP_LIKELY(o_ < load_limit_)) {                             \
      std::memcpy(&v_, ram + o_, sz);                                    \
    } else {                                                             \
      const uint32_t a_ = o_ + kRamBase;                                 \
      const TlbEntry* t_ = TLB_AT(a_);                                   \
      if (LOCKSTEP_UNLIKELY(t_->r != TLB_TAG(a_, sz))) {                 \
        maddr = a_;                                                      \
        msize = sz;                                                      \
        mkind = kind;                                                    \
        mlen = L;                                                        \
        goto load_slow;                                                  \
      }                                                                  \
      std::memcpy(&v_, reinterpret_cast<const uint8_t*>(t_->addend + a_), sz); \
    }                                                                    \
    x[e->rd] = static_cast<uint32_t>(static_cast<int32_t>(v_));          \
    NEXT();                                                              \
  } while (0)
// A physical store is fast when it is aligned, in RAM and on a page without flags: one table look-up.
// The offset rotated right by log2(size) keeps an aligned offset's value / size and puts a misaligned
// one's low bits on top; shifted right by the rest of kPageShift it is the page of an aligned store
// (which stays on one page), and an index past the 2^20 pages of the offset space for a misaligned one.
// `stores` (store_ok_, or a table of zeros while translating) holds 1 only for RAM pages without flags.
// Anything else takes the translation cache or store_slow, which does everything.
// (An expression, not a lambda: `stores` is pinned to a register, which a lambda cannot capture.)
#define STORE_LOG2(sz) ((sz) == 1 ? 0u : (sz) == 2 ? 1u : 2u)
#define STORE_ROT(o_, sz) (STORE_LOG2(sz) == 0 ? (o_) : ((o_) >> STORE_LOG2(sz) | (o_) << ((32 - STORE_LOG2(sz)) & 31)))
#define STORE_FAST(o_, sz) LOCKSTEP_LIKELY(stores[STORE_ROT(o_, sz) >> (kPageShift - STORE_LOG2(sz))] != 0)
#define STORE(type, sz)                                                              \
  do {                                                                               \
    const uint32_t o_ = x[e->rs1] + static_cast<uint32_t>(e->imm);                   \
    const type v_ = static_cast<type>(x[e->rd]);                                     \
    if (STORE_FAST(o_, sz)) {                                                        \
      std::memcpy(ram + o_, &v_, sz);                                                \
      NEXT();                                                                        \
    }                                                                                \
    const uint32_t a_ = o_ + kRamBase;                                               \
    {                                                                                \
      const TlbEntry* t_ = TLB_AT(a_);                                               \
      if (LOCKSTEP_LIKELY(t_->w == TLB_TAG(a_, sz))) {                               \
        std::memcpy(reinterpret_cast<uint8_t*>(t_->addend + a_), &v_, sz);           \
        NEXT();                                                                      \
      }                                                                              \
    }                                                                                \
    maddr = a_;                                                                      \
    msize = sz;                                                                      \
    mval = v_;                                                                       \
    mlen = L;                                                                        \
    goto store_slow;                                                                 \
  } while (0)
// The translation-first forms, for pages decoded while translating (see DecodedPage).
#define LOAD_T(type, kind, sz)                                           \
  do {                                                                   \
    const uint32_t a_ = x[e->rs1] + static_cast<uint32_t>(e->imm);       \
    const TlbEntry* t_ = TLB_AT(a_);                                     \
    type v_;                                                             \
    if (LOCKSTEP_LIKELY(t_->r == TLB_TAG(a_, sz))) {                     \
      std::memcpy(&v_, reinterpret_cast<const uint8_t*>(t_->addend + a_), sz); \
    } else {                                                             \
      const uint32_t o_ = a_ - kRamBase;                                 \
      if (LOCKSTEP_UNLIKELY(static_cast<uint64_t>(o_) + (sz) > dlim)) {  \
        maddr = a_;                                                      \
        msize = sz;                                                      \
        mkind = kind;                                                    \
        mlen = L;                                                        \
        goto load_slow;                                                  \
      }                                                                  \
      std::memcpy(&v_, ram + o_, sz);                                    \
    }                                                                    \
    x[e->rd] = static_cast<uint32_t>(static_cast<int32_t>(v_));          \
    NEXT();                                                              \
  } while (0)
#define STORE_T(type, sz)                                                            \
  do {                                                                               \
    const uint32_t a_ = x[e->rs1] + static_cast<uint32_t>(e->imm);                   \
    const type v_ = static_cast<type>(x[e->rd]);                                     \
    const TlbEntry* t_ = TLB_AT(a_);                                                 \
    if (LOCKSTEP_LIKELY(t_->w == TLB_TAG(a_, sz))) {                                 \
      std::memcpy(reinterpret_cast<uint8_t*>(t_->addend + a_), &v_, sz);             \
      NEXT();                                                                        \
    }                                                                                \
    const uint32_t o_ = a_ - kRamBase;                                               \
    if (STORE_FAST(o_, sz)) {                                                        \
      std::memcpy(ram + o_, &v_, sz);                                                \
      NEXT();                                                                        \
    }                                                                                \
    maddr = a_;                                                                      \
    msize = sz;                                                                      \
    mval = v_;                                                                       \
    mlen = L;                                                                        \
    goto store_slow;                                                                 \
  } while (0)
#define DEFINE_T(name, ...) DEFINE_VARIANT(op_##name##_T, , __VA_ARGS__)
// pc-relative jumps exist in a near and a far form (DEFINE_REL; FAR is constexpr in each).
#define JUMP_REL_OR_FAR() \
  do {                    \
    if (FAR) JUMP_FAR();  \
    JUMP_REL();           \
  } while (0)
// A far branch falls through by dispatch too: with the block compiler on, every branch of a physical
// page is far, so that each block entry is looked up there (without it, far branches are rare).
// A chained branch's block goes on past it, counted in advance: not taken, it is straight-line code;
// taken, it gives back what the rest of its block did not retire (the count of its successor's slot)
// before it takes the target's.
#define BRANCH(cond)                         \
  do {                                       \
    br++;                                    \
    if (cond) {                              \
      if (CHAIN) rem += e[L].n;              \
      JUMP_REL_OR_FAR();                     \
    }                                        \
    if (CHAIN) NEXT();                       \
    if (FAR) {                               \
      target = NEXT_PC(e, L);                \
      goto dispatch;                         \
    }                                        \
    FALLTHROUGH();                           \
  } while (0)
#define DEFINE_REL(name, ...)                                                                   \
  DEFINE_VARIANT(op_##name, [[maybe_unused]] constexpr bool FAR = false, __VA_ARGS__) \
  DEFINE_VARIANT(op_##name##_F, [[maybe_unused]] constexpr bool FAR = true, __VA_ARGS__)
// A conditional branch: near, far and chained (near, its block going on past it; see BRANCH).
#define DEFINE_COND(name, ...)  \
  DEFINE_REL(name, __VA_ARGS__) \
  DEFINE_VARIANT(op_##name##_C, [[maybe_unused]] constexpr bool FAR = false; [[maybe_unused]] constexpr bool CHAIN = true, \
                 __VA_ARGS__)
#define ALU(expr)          \
  do {                     \
    x[e->rd] = (expr);     \
    NEXT();                \
  } while (0)
#define RS1 x[SAME ? e->rd : e->rs1]  // the in-place forms (DEFINE_SAME) read rd, which is rs1
#define RS2 x[e->imm]  // rs2 of a register-register operation (see Decoded)
#define IMM static_cast<uint32_t>(e->imm)

dispatch: {
  uint32_t off = target - kRamBase;
  if (LOCKSTEP_LIKELY(fetch_bare_)) {
    if (LOCKSTEP_UNLIKELY(off >= ram_size)) {
      mval = kInstrAccessFault;
      maddr = target;
      pc = target;
      goto trap;
    }
  } else {
    const TlbEntry* t = itlb_ + ((target >> kPageShift) & (kTlbSize - 1));
    if (LOCKSTEP_LIKELY(t->x == (target & ~(kPageSize - 1)))) {
      off = (t->page << kPageShift) | (target & (kPageSize - 1));
    } else {
      const uint32_t cause = fetch_offset(target, &off);
      leave_block_ = false;  // the walk may have re-decoded a page, but no block is running
      if (cause) {
        mval = cause;
        maddr = target;
        pc = target;
        goto trap;
      }
    }
  }
  const uint32_t pi = off >> kPageShift;
  cur_page_ = pi;
  DecodedPage* p = live_[pi];
  if (LOCKSTEP_UNLIKELY(!p)) p = page_for(pi);
  const uint32_t s = (off & (kPageSize - 1)) >> 1;
  const uint64_t n = p->e[s].n;
  if (LOCKSTEP_UNLIKELY(n > rem)) {
    if (rem == 0) {
      pc = target;
      result = Inner::kLimit;
      goto out;
    }
    // Near the limit: run the one instruction from a private copy followed by sentinels, so the
    // same handlers execute it and control comes straight back here.
    step_->e[0] = step_slot(p, s);
    base = step_->e;
    PAGE_PC = target;
    rem -= 1;
    e = base;
    GO();
  }
  // Compiled code runs in every mode (the block at the physical page the pc translated to; its mode view
  // is set by update_mode()), never under a debugger. (Only dispatch reads these members: nothing of
  // the JIT is live in the handlers.)
  if (LOCKSTEP_UNLIKELY(jit_ != nullptr) && debug == nullptr) {
    if (jit_skip_) {
      jit_skip_ = false;
    } else {
      Jit* const jit = jit_.get();
      if (void* code = jit->lookup(off, dlim == 0)) {
        JitIo& io = jit->io;
        io.vbase = target & ~(kPageSize - 1);
        io.rem = rem;
        io.branches = br;
        const Jit::Exit why = jit->enter(code);
        rem = io.rem;
        br = io.branches;
        target = io.pc;
        jit_skip_ = why == Jit::kExitInterp;
        goto dispatch;
      }
    }
  }
  base = p->e;
  PAGE_PC = target & ~(kPageSize - 1);
  rem -= n;
  e = base + s;
  GO();
}

#if defined(LOCKSTEP_DISPATCH_SWITCH)
run_slot:
  switch (e->h) {
#define LOCKSTEP_CASE(name)         \
  case kH_##name##_1:               \
    goto op_##name##_1;             \
  case kH_##name##_2:               \
    goto op_##name##_2;
// The variants' handlers are named as an op of their own (name_T, name_F, name_S).
#define LOCKSTEP_CASE_T(name) LOCKSTEP_CASE(name##_T)
#define LOCKSTEP_CASE_F(name) LOCKSTEP_CASE(name##_F)
#define LOCKSTEP_CASE_S(name) LOCKSTEP_CASE(name##_S)
#define LOCKSTEP_CASE_C(name) LOCKSTEP_CASE(name##_C)
    LOCKSTEP_OPS(LOCKSTEP_CASE) LOCKSTEP_MEM_OPS(LOCKSTEP_CASE_T) LOCKSTEP_REL_OPS(LOCKSTEP_CASE_F)
    LOCKSTEP_SAME_OPS(LOCKSTEP_CASE_S) LOCKSTEP_COND_OPS(LOCKSTEP_CASE_C)
#undef LOCKSTEP_CASE
#undef LOCKSTEP_CASE_T
#undef LOCKSTEP_CASE_F
#undef LOCKSTEP_CASE_S
#undef LOCKSTEP_CASE_C
    default:
      LOCKSTEP_UNREACHABLE();  // every slot is filled from kLabels
  }
#endif

DEFINE(PAGE_END,
  target = PC_OF(e);
  goto dispatch;
)
DEFINE(STRADDLE,
{
  // The second half is fetched through the translation of the next page at every execution; the whole
  // instruction then runs from the single-step page (its count, 1, is already in rem).
  const uint32_t here = PC_OF(e);
  uint32_t hi_off = 0;
  const uint32_t cause = fetch_offset(here + 2, &hi_off);
  leave_block_ = false;
  if (cause) TRAP(cause, here + 2);
  {
    const DecodedOp d = decode(static_cast<uint16_t>(e->imm), rd16(ram + hi_off));
    step_->e[0] = slot_of(d, dlim == 0, 0);
    step_->op[0] = d.op;
    step_->len[0] = d.len;
    step_->e[0] = step_slot(step_.get(), 0);
  }
  base = step_->e;
  PAGE_PC = here;
  e = base;
  GO();
}
)
DEFINE(ILLEGAL,
  TRAP(kIllegalInstr, static_cast<uint32_t>(e->imm));
)
DEFINE(NOP,
  NEXT();
)
DEFINE(FENCE,
  NEXT();
)
DEFINE(FENCE_I,
  // Stores keep the decoder cache exact, so there is nothing to flush.
  FALLTHROUGH();
)
DEFINE(LI,
ALU(IMM);
)
DEFINE(MV,
ALU(RS1);
)
DEFINE(LUI,
ALU(IMM);
)
DEFINE(AUIPC,
ALU(PC_OF(e) + IMM);
)
DEFINE_REL(JAL,
{
  const uint32_t here = PC_OF(e);
  x[e->rd] = here + (L << 1);
  br++;
  JUMP_REL_OR_FAR();
}
)
DEFINE_REL(J,
  br++;
  JUMP_REL_OR_FAR();
)
DEFINE_REL(JALR,
{
  const uint32_t t = (RS1 + IMM) & ~1u;
  x[e->rd] = (PC_OF(e) + (L << 1));
  br++;
  JUMP(t);
}
)
DEFINE_REL(JR,
  br++;
  JUMP((RS1 + IMM) & ~1u);
)
DEFINE_COND(BEQ,
BRANCH(RS1 == x[e->rd]);
)
DEFINE_COND(BNE,
BRANCH(RS1 != x[e->rd]);
)
DEFINE_COND(BLT,
BRANCH(static_cast<int32_t>(RS1) < static_cast<int32_t>(x[e->rd]));
)
DEFINE_COND(BGE,
BRANCH(static_cast<int32_t>(RS1) >= static_cast<int32_t>(x[e->rd]));
)
DEFINE_COND(BLTU,
BRANCH(RS1 < x[e->rd]);
)
DEFINE_COND(BGEU,
BRANCH(RS1 >= x[e->rd]);
)
DEFINE_COND(BEQZ,
BRANCH(RS1 == 0);
)
DEFINE_COND(BNEZ,
BRANCH(RS1 != 0);
)
DEFINE_COND(BLTZ,
BRANCH(static_cast<int32_t>(RS1) < 0);
)
DEFINE_COND(BGEZ,
BRANCH(static_cast<int32_t>(RS1) >= 0);
)
DEFINE_COND(BGTZ,
BRANCH(static_cast<int32_t>(RS1) > 0);
)
DEFINE_COND(BLEZ,
BRANCH(static_cast<int32_t>(RS1) <= 0);
)
DEFINE(LB,
LOAD(int8_t, 0, 1);
)
DEFINE(LH,
LOAD(int16_t, 1, 2);
)
DEFINE(LW,
LOAD(int32_t, 2, 4);
)
DEFINE(LBU,
LOAD(uint8_t, 3, 1);
)
DEFINE(LHU,
LOAD(uint16_t, 4, 2);
)
DEFINE(SB,
STORE(uint8_t, 1);
)
DEFINE(SH,
STORE(uint16_t, 2);
)
DEFINE(SW,
STORE(uint32_t, 4);
)
DEFINE_T(LB, LOAD_T(int8_t, 0, 1);)
DEFINE_T(LH, LOAD_T(int16_t, 1, 2);)
DEFINE_T(LW, LOAD_T(int32_t, 2, 4);)
DEFINE_T(LBU, LOAD_T(uint8_t, 3, 1);)
DEFINE_T(LHU, LOAD_T(uint16_t, 4, 2);)
DEFINE_T(SB, STORE_T(uint8_t, 1);)
DEFINE_T(SH, STORE_T(uint16_t, 2);)
DEFINE_T(SW, STORE_T(uint32_t, 4);)
DEFINE_SAME(ADDI,
ALU(RS1 + IMM);
)
DEFINE(SLTI,
ALU(static_cast<int32_t>(RS1) < e->imm ? 1u : 0u);
)
DEFINE(SLTIU,
ALU(RS1 < IMM ? 1u : 0u);
)
DEFINE_SAME(XORI,
ALU(RS1 ^ IMM);
)
DEFINE_SAME(ORI,
ALU(RS1 | IMM);
)
DEFINE_SAME(ANDI,
ALU(RS1 & IMM);
)
DEFINE_SAME(SLLI,
ALU(RS1 << e->imm);
)
DEFINE_SAME(SRLI,
ALU(RS1 >> e->imm);
)
DEFINE_SAME(SRAI,
ALU(static_cast<uint32_t>(static_cast<int32_t>(RS1) >> e->imm));
)
DEFINE_SAME(ADD,
ALU(RS1 + RS2);
)
DEFINE_SAME(SUB,
ALU(RS1 - RS2);
)
DEFINE(SLL,
ALU(RS1 << (RS2 & 31));
)
DEFINE(SLT,
ALU(static_cast<int32_t>(RS1) < static_cast<int32_t>(RS2) ? 1u : 0u);
)
DEFINE(SLTU,
ALU(RS1 < RS2 ? 1u : 0u);
)
DEFINE_SAME(XOR,
ALU(RS1 ^ RS2);
)
DEFINE(SRL,
ALU(RS1 >> (RS2 & 31));
)
DEFINE(SRA,
ALU(static_cast<uint32_t>(static_cast<int32_t>(RS1) >> (RS2 & 31)));
)
DEFINE_SAME(OR,
ALU(RS1 | RS2);
)
DEFINE_SAME(AND,
ALU(RS1 & RS2);
)
DEFINE(MUL,
ALU(RS1 * RS2);
)
DEFINE(MULH,
  ALU(static_cast<uint32_t>((static_cast<int64_t>(static_cast<int32_t>(RS1)) * static_cast<int32_t>(RS2)) >> 32));
)
DEFINE(MULHSU,
  ALU(static_cast<uint32_t>((static_cast<int64_t>(static_cast<int32_t>(RS1)) * static_cast<int64_t>(RS2)) >> 32));
)
DEFINE(MULHU,
ALU(static_cast<uint32_t>((static_cast<uint64_t>(RS1) * RS2) >> 32));
)
DEFINE(DIV,
{
  const int32_t a = static_cast<int32_t>(RS1), b = static_cast<int32_t>(RS2);
  ALU(b == 0 ? 0xffffffffu : (a == INT32_MIN && b == -1) ? static_cast<uint32_t>(a) : static_cast<uint32_t>(a / b));
}
)
DEFINE(DIVU,
ALU(RS2 == 0 ? 0xffffffffu : RS1 / RS2);
)
DEFINE(REM,
{
  const int32_t a = static_cast<int32_t>(RS1), b = static_cast<int32_t>(RS2);
  ALU(b == 0 ? static_cast<uint32_t>(a) : (a == INT32_MIN && b == -1) ? 0u : static_cast<uint32_t>(a % b));
}
)
DEFINE(REMU,
ALU(RS2 == 0 ? RS1 : RS1 % RS2);
)
// LR/SC/AMO operands (aligned words in RAM only): a host pointer and the RAM page, or a trap.
#define ATOMIC_AT(a, access, h, pg)                                                  \
  do {                                                                               \
    const uint32_t o_ = (a) - kRamBase;                                              \
    if (LOCKSTEP_LIKELY(static_cast<uint64_t>(o_) + 4 <= dlim)) {                    \
      h = ram + o_;                                                                  \
      pg = o_ >> kPageShift;                                                         \
    } else {                                                                         \
      const uint32_t cause_ = amo_pointer((a), (access), &h, &pg);                   \
      if (cause_) TRAP(cause_, (a));                                                 \
    }                                                                                \
  } while (0)
DEFINE(LR_W,
{
  const uint32_t a = RS1;
  if (a & 3u) TRAP(kLoadMisaligned, a);
  uint8_t* h;
  uint32_t pg;
  ATOMIC_AT(a, Access::kLoad, h, pg);
  x[e->rd] = rd32(h);
  reservation = a;
  reservation_valid = true;
  NEXT();
}
)
DEFINE(SC_W,
{
  const uint32_t a = RS1;
  if (a & 3u) TRAP(kStoreMisaligned, a);
  uint8_t* h;
  uint32_t pg;
  ATOMIC_AT(a, Access::kStore, h, pg);
  const bool ok = reservation_valid && reservation == a;
  reservation_valid = false;
  if (!ok) {
    x[e->rd] = 1;
    NEXT();
  }
  mval = RS2;
  x[e->rd] = 0;
  maddr = a;
  msize = 4;
  if (flags[pg] == 0) {
    std::memcpy(h, &mval, 4);
    NEXT();
  }
  mlen = L;
  goto store_slow;
}
)
#define AMO(expr)                                                  \
  do {                                                             \
    const uint32_t a = RS1;                                        \
    if (a & 3u) TRAP(kStoreMisaligned, a);                         \
    uint8_t* h;                                                    \
    uint32_t pg;                                                   \
    ATOMIC_AT(a, Access::kStore, h, pg);                           \
    const uint32_t old = rd32(h), src = RS2;                       \
    (void)src;                                                     \
    const uint32_t val = (expr);                                   \
    x[e->rd] = old;                                                \
    if (flags[pg] == 0) {                                          \
      std::memcpy(h, &val, 4);                                     \
      NEXT();                                                      \
    }                                                              \
    maddr = a;                                                     \
    msize = 4;                                                     \
    mval = val;                                                    \
    mlen = L;                                                      \
    goto store_slow;                                               \
  } while (0)
DEFINE(AMOSWAP,
AMO(src);
)
DEFINE(AMOADD,
AMO(old + src);
)
DEFINE(AMOXOR,
AMO(old ^ src);
)
DEFINE(AMOAND,
AMO(old & src);
)
DEFINE(AMOOR,
AMO(old | src);
)
DEFINE(AMOMIN,
AMO(static_cast<int32_t>(old) < static_cast<int32_t>(src) ? old : src);
)
DEFINE(AMOMAX,
AMO(static_cast<int32_t>(old) > static_cast<int32_t>(src) ? old : src);
)
DEFINE(AMOMINU,
AMO(old < src ? old : src);
)
DEFINE(AMOMAXU,
AMO(old > src ? old : src);
)
// funct3 of each CSR instruction, carried to the shared body in mval.
DEFINE(CSRRW, mval = 1; mlen = L; goto csr;)
DEFINE(CSRRS, mval = 2; mlen = L; goto csr;)
DEFINE(CSRRC, mval = 3; mlen = L; goto csr;)
DEFINE(CSRRWI, mval = 5; mlen = L; goto csr;)
DEFINE(CSRRSI, mval = 6; mlen = L; goto csr;)
DEFINE(CSRRCI, mval = 7; mlen = L; goto csr;)
DEFINE(ECALL,
  TRAP(kEcallFromU + static_cast<uint32_t>(priv), 0);  // 8, 9 or 11 for U, S or M
)
DEFINE(EBREAK,
{
  // Semihosting is an M-mode service (M-mode fetches are physical, so the neighbours are in RAM there).
  const uint32_t here = PC_OF(e), o = here - kRamBase;
  if (L == 2 && priv == Priv::kMachine && o >= 4 && o <= ram_size - 8 && rd32(ram + o - 4) == kSemihostPre &&
      rd32(ram + o + 4) == kSemihostPost) {
    SYNC_AFTER(L);
    instret = IC();
    branches = br;
    if (platform_->semihost() == Mmio::kExit) {
      result = Inner::kExit;
      goto out;
    }
    result = Inner::kRecheck;
    goto out;
  }
  TRAP(kBreakpoint, here);
}
)
DEFINE(MRET,
{
  if (priv != Priv::kMachine) TRAP(kIllegalInstr, 0x30200073u);
  SYNC_AFTER(L);
  uint32_t s = mstatus;
  const Priv to = static_cast<Priv>((s & kMstatusMPP) >> 11);  // 0, 1 or 3: MPP never holds 2
  s = (s & kMstatusMPIE) ? (s | kMstatusMIE) : (s & ~kMstatusMIE);
  s |= kMstatusMPIE;
  s &= ~kMstatusMPP;  // MPP becomes the least-privileged mode: U
  if (to != Priv::kMachine) s &= ~kMstatusMPRV;
  mstatus = s;
  priv = to;
  pc = mepc;
  result = Inner::kRecheck;
  goto out;
}
)
DEFINE(SRET,
{
  if (priv == Priv::kUser || (priv == Priv::kSupervisor && (mstatus & kMstatusTSR))) TRAP(kIllegalInstr, 0x10200073u);
  SYNC_AFTER(L);
  uint32_t s = mstatus;
  const Priv to = (s & kMstatusSPP) ? Priv::kSupervisor : Priv::kUser;
  s = (s & kMstatusSPIE) ? (s | kMstatusSIE) : (s & ~kMstatusSIE);
  s |= kMstatusSPIE;
  s &= ~(kMstatusSPP | kMstatusMPRV);  // SPP becomes U; leaving for a mode below M clears MPRV
  mstatus = s;
  priv = to;
  pc = sepc;
  result = Inner::kRecheck;
  goto out;
}
)
DEFINE(SFENCE_VMA,
  if (priv == Priv::kUser || (priv == Priv::kSupervisor && (mstatus & kMstatusTVM))) {
    TRAP(kIllegalInstr, static_cast<uint32_t>(e->imm));
  }
  // The translation cache already follows every page-table store (it never holds a stale entry, so
  // what it holds is invisible to the guest); dropping the named page's entries, or all of them for
  // rs1 = x0, only makes sure of that. An OS fences after each PTE it changes: a whole flush there
  // would refill the cache hundreds of thousands of times in a Linux boot. The ASID operand is
  // ignored (the cache is not tagged by ASID). The block ends here: the next instruction is fetched
  // through the translation as it now is (a PTE rewritten without a store the cache saw, e.g. after a
  // flush cleared the page-table flags, takes effect here in every engine, whatever the block layout).
  if (e->rs1 == 0) flush_tlb();
  else flush_tlb_page(RS1);
  SYNC_AFTER(L);
  target = pc;
  goto dispatch;
)
DEFINE(WFI,
  // With S-mode present, U-mode may never wait (as QEMU does); S-mode may not when mstatus.TW is set.
  if (priv == Priv::kUser || (priv == Priv::kSupervisor && (mstatus & kMstatusTW))) TRAP(kIllegalInstr, 0x10500073u);
  SYNC_AFTER(L);
  wfi = true;
  result = Inner::kWfi;
  goto out;
)

// The six CSR instructions share one body: it is not hot, and funct3 tells them apart.
csr:
{
  // Which of the six: funct3 in mval. The raw instruction (mtval of an illegal access) is rebuilt from
  // the slot: imm keeps the CSR number and the instruction's rd field (see Decoded).
  const uint32_t here = PC_OF(e);
  const uint32_t f3 = mval;
  const uint32_t csr = static_cast<uint32_t>(e->imm) & 0xfffu, rd_field = static_cast<uint32_t>(e->imm) >> 16;
  const uint32_t raw = (csr << 20) | (static_cast<uint32_t>(e->rs1) << 15) | (f3 << 12) | (rd_field << 7) | 0x73u;
  const uint32_t src = (f3 & 4) ? e->rs1 : x[e->rs1];
  const bool write = (f3 & 3) == 1 || e->rs1 != 0;
  instret = IC() - e->n;
  branches = br;  // a time read is logged with its position
  pc = here;
  uint32_t old = 0;
  const CsrResult r = csr_op(csr, f3 & 3, src, write, &old);
  if (r == CsrResult::kIllegal) TRAP(kIllegalInstr, raw);
  x[e->rd] = old;
  if (r == CsrResult::kOkRecheck) {
    SYNC_AFTER(mlen);
    result = Inner::kRecheck;
    goto out;
  }
  NEXT_DYN();
}

// The slow paths take their counts before the access: a page walk may set an A or D bit inside the
// running block's own page, and a self-modifying store may rewrite it; either re-decodes the block.
#define SLOW_TRAP(cause, tval)   \
  do {                           \
    const uint32_t slow_cause_ = (cause); \
    rem = limit - (retired - 1); \
    pc = here;                   \
    mval = slow_cause_;          \
    maddr = (tval);              \
    goto trap;                   \
  } while (0)
load_slow: {
  const uint64_t retired = IC() - e->n + 1u;
  const uint32_t here = PC_OF(e), next = NEXT_PC(e, mlen);
  const uint8_t rd = e->rd;
  instret = retired - 1;
  branches = br;  // a device read may be logged with its position
  pc = here;
  uint32_t v = 0, tval = maddr;
  Mmio r = Mmio::kOk;
  if (const uint32_t cause = load_virtual(maddr, msize, &v, &r, &tval)) SLOW_TRAP(cause, tval);
  switch (mkind) {
    case 0: v = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int8_t>(v))); break;
    case 1: v = static_cast<uint32_t>(static_cast<int32_t>(static_cast<int16_t>(v))); break;
    default: break;
  }
  x[rd] = v;
  if (LOCKSTEP_LIKELY(r == Mmio::kOk && !leave_block_)) NEXT_DYN();
  leave_block_ = false;
  // The read ended the run, changed interrupt state (a PLIC claim, a UART RX pop) or re-decoded this
  // block: re-check outside.
  rem = limit - retired;
  pc = next;
  result = r == Mmio::kExit ? Inner::kExit : Inner::kRecheck;
  goto out;
}
store_slow: {
  const uint64_t retired = IC() - e->n + 1u;
  const uint32_t here = PC_OF(e), next = NEXT_PC(e, mlen);
  instret = retired - 1;
  pc = here;
  StoreOutcome so = StoreOutcome::kOk;
  uint32_t tval = maddr;
  const uint32_t cause = store_virtual(maddr, msize, mval, &so, &tval);
  leave_block_ = false;  // store_virtual folded it into the outcome
  if (cause) SLOW_TRAP(cause, tval);
  if (LOCKSTEP_LIKELY(so == StoreOutcome::kOk)) NEXT_DYN();
  rem = limit - retired;
  pc = next;
  result = so == StoreOutcome::kExit ? Inner::kExit : Inner::kRecheck;
  goto out;
}
#undef SLOW_TRAP

trap:
  // mval = cause, maddr = tval, pc = the trapping instruction; rem excludes it.
  instret = IC();
  if (!take_trap(mval, maddr, pc)) goto fatal;
  // A debugger sees the trap's handler before any of it runs (a step ends here).
  if (LOCKSTEP_UNLIKELY(debug != nullptr)) {
    result = Inner::kRecheck;
    goto out;
  }
  update_mode();  // the privilege changed: other banks of the translation cache, or none
  dtlb = dtlb_;
  dlim = data_limit_;
  SET_LIMITS();
  target = pc;
  // A guest must not keep the loop from returning to run(), where the host's stop flag is looked at,
  // however its handlers misbehave: after a burst of traps that retired nothing, go back out.
  if (instret != trap_at) {
    trap_at = instret;
    traps_here = 0;
  } else if (++traps_here >= kTrapBurst) {
    result = Inner::kRecheck;
    goto out;
  }
  goto dispatch;

fatal:
  result = Inner::kFatal;
  goto out_synced;
out:
  instret = IC();
out_synced:
  branches = br;
  return result;

#undef SLOT
#undef PAGE_PC
#undef PC_OF
#undef NEXT_PC
#undef IC
#undef NEXT
#undef NEXT_DYN
#undef GO
#undef DEFINE
#undef DEFINE_SAME
#undef JUMP
#undef JUMP_REL
#undef JUMP_FAR
#undef JUMP_REL_OR_FAR
#undef DEFINE_REL
#undef DEFINE_COND
#undef TAKE
#undef UNTAKE
#undef FALLTHROUGH
#undef SYNC_BEFORE
#undef SYNC_AFTER
#undef TRAP
#undef LOAD
#undef STORE
#undef LOAD_T
#undef STORE_T
#undef STORE_FAST
#undef STORE_LOG2
#undef STORE_ROT
#undef SET_LIMITS
#undef DEFINE_T
#undef TLB_AT
#undef TLB_TAG
#undef ATOMIC_AT
#undef BRANCH
#undef ALU
#undef AMO
#undef RS1
#undef RS2
#undef IMM
}

}  // namespace lockstep
