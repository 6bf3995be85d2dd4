// The x86-64 block compiler: decodes guest blocks from RAM (decode.h, not the interpreter's slots) and
// emits host code for them into an mmap'd buffer that is never writable and executable at once.
// No napi; no allocation while compiled code runs; compiled code never calls out.
#include "cpu/jit/jit.h"

#if LOCKSTEP_HAVE_JIT

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstring>

#include "cpu/cpu.h"
#include "cpu/decode.h"
#include "cpu/jit/x86_64_emitter.h"

namespace lockstep {
namespace {

using namespace x64;

// Host registers of compiled code (all callee-saved, so the trampoline saves them once):
//   rbx  &x[0]: guest registers' home between blocks, [rbx + 4 * r] (within a block, values it writes
//        are cached in rsi, rdi, r8-r11: see `Cache` in compile())
//   r12  guest RAM base (RAM offset 0)
//   rbp  the page flags (Cpu::flags_)
//   r13  rem: instructions that may still retire (JitIo::rem)
//   r14  branches retired (JitIo::branches)
//   r15  &JitIo
// rax, rcx and rdx are scratch within one guest instruction.
constexpr Reg kX = RBX, kRam = R12, kFlags = RBP, kRem = R13, kBr = R14, kIo = R15;

constexpr size_t kBufferSize = 16u << 20;
/// Room a block may take at most (it is discarded and the buffer flushed if it would not fit).
constexpr size_t kMaxBlockBytes = 64u << 10;
/// Guest instructions per block at most (a longer straight line becomes chained blocks).
constexpr int kMaxInsns = 128;

// Compiled loads and stores read the interpreter's translation cache entries (cpu.h) directly.
static_assert(offsetof(TlbEntry, r) == 0 && offsetof(TlbEntry, w) == 4 && offsetof(TlbEntry, x) == 8 &&
                  offsetof(TlbEntry, page) == 12 && offsetof(TlbEntry, addend) == 16 && sizeof(TlbEntry) == 32,
              "the emitted translation cache probe's offsets");
static_assert(kTlbSize == 256, "the emitted probe indexes 256 entries");
constexpr int32_t kPageMaskImm = -static_cast<int32_t>(kPageSize);  // ~0xfff as a sign-extended immediate

inline Mem xreg(uint32_t r) { return Mem{kX, static_cast<int32_t>(4 * r)}; }
inline Mem io_field(size_t off) { return Mem{kIo, static_cast<int32_t>(off)}; }

inline uint16_t rd16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

bool compilable(Op op) {
  switch (op) {
    case kOpILLEGAL: case kOpFENCE_I: case kOpECALL: case kOpEBREAK: case kOpMRET: case kOpSRET: case kOpWFI:
    case kOpSFENCE_VMA: case kOpCSRRW: case kOpCSRRS: case kOpCSRRC: case kOpCSRRWI: case kOpCSRRSI:
    case kOpCSRRCI: case kOpSTRADDLE: case kOpPAGE_END:
      return false;
    default:
      return true;
  }
}

bool atomic(Op op) {
  switch (op) {
    case kOpLR_W: case kOpSC_W: case kOpAMOSWAP: case kOpAMOADD: case kOpAMOXOR: case kOpAMOAND: case kOpAMOOR:
    case kOpAMOMIN: case kOpAMOMAX: case kOpAMOMINU: case kOpAMOMAXU:
      return true;
    default:
      return false;
  }
}

bool control(Op op) {
  switch (op) {
    case kOpJAL: case kOpJ: case kOpJALR: case kOpJR: case kOpBEQ: case kOpBNE: case kOpBLT: case kOpBGE:
    case kOpBLTU: case kOpBGEU: case kOpBEQZ: case kOpBNEZ: case kOpBLTZ: case kOpBGEZ: case kOpBGTZ: case kOpBLEZ:
      return true;
    default:
      return false;
  }
}

}  // namespace

Jit::Jit(uint8_t* ram, uint32_t ram_size, uint32_t* x) : ram_(ram), ram_size_(ram_size) {
  pages_.resize(ram_size / kPageSize);
  io.x = x;
  io.ram = ram;
  const size_t table = (ram_size / kPageSize) * sizeof(JitPage*);
  const size_t table_pages = (table + 4095) & ~size_t{4095};
  page_ptrs_map_size_ = table_pages + 4096;
  void* t = mmap(nullptr, page_ptrs_map_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (t == MAP_FAILED) return;
  page_ptrs_map_ = t;
  // Without its guard page a jalr lookup past RAM would read a neighbour: no JIT then.
  if (mprotect(static_cast<uint8_t*>(t) + table_pages, 4096, PROT_NONE) != 0) return;
  page_ptrs_ = reinterpret_cast<JitPage**>(static_cast<uint8_t*>(t) + table_pages - table);  // zeroed by mmap
  buf_size_ = kBufferSize;
  // Two views of one memfd: executable (buf_) and writable (buf_ + wdelta_).
  const int fd = memfd_create("lockstep-jit", MFD_CLOEXEC);
  if (fd >= 0) {
    void* w = MAP_FAILED;
    void* x = MAP_FAILED;
    if (ftruncate(fd, static_cast<off_t>(kBufferSize)) == 0) {
      w = mmap(nullptr, kBufferSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      x = mmap(nullptr, kBufferSize, PROT_READ | PROT_EXEC, MAP_SHARED, fd, 0);
    }
    close(fd);  // the mappings keep the memory
    if (w != MAP_FAILED && x != MAP_FAILED) {
      buf_ = static_cast<uint8_t*>(x);
      wdelta_ = static_cast<uint8_t*>(w) - buf_;
      dual_ = true;
      emit_trampoline();
      return;
    }
    if (w != MAP_FAILED) munmap(w, kBufferSize);
    if (x != MAP_FAILED) munmap(x, kBufferSize);
  }
  void* p = mmap(nullptr, kBufferSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return;
  buf_ = static_cast<uint8_t*>(p);
  emit_trampoline();
  if (mprotect(buf_, buf_size_, PROT_READ | PROT_EXEC) != 0) {
    munmap(buf_, buf_size_);
    buf_ = nullptr;
  }
}

Jit::~Jit() {
  if (buf_) munmap(buf_, buf_size_);
  if (dual_) munmap(buf_ + wdelta_, buf_size_);
  if (page_ptrs_map_) munmap(page_ptrs_map_, page_ptrs_map_size_);
}

void Jit::emit_trampoline() {
  // uint32_t enter(JitIo* io /* rdi */, void* code /* rsi */): saves the callee-saved registers, loads
  // the fixed ones from io and jumps to the code; every exit jumps to the epilogue with the exit kind in
  // eax (and io->pc already stored), which writes rem and branches back.
  Emitter em(buf_, 512, wdelta_);
  em.push(RBX);
  em.push(RBP);
  em.push(R12);
  em.push(R13);
  em.push(R14);
  em.push(R15);
  em.alu_ri(Emitter::kSub, RSP, 8, true);  // 16-byte alignment (nothing is called; kept for unwinders)
  em.mov_rr64(kIo, RDI);
  em.mov_load64(kX, io_field(offsetof(JitIo, x)));
  em.mov_load64(kRam, io_field(offsetof(JitIo, ram)));
  em.mov_load64(kFlags, io_field(offsetof(JitIo, flags)));
  em.mov_load64(kRem, io_field(offsetof(JitIo, rem)));
  em.mov_load64(kBr, io_field(offsetof(JitIo, branches)));
  em.jmp_reg(RSI);
  epilogue_ = em.here();
  em.mov_store64(io_field(offsetof(JitIo, rem)), kRem);
  em.mov_store64(io_field(offsetof(JitIo, branches)), kBr);
  em.alu_ri(Emitter::kAdd, RSP, 8, true);
  em.pop(R15);
  em.pop(R14);
  em.pop(R13);
  em.pop(R12);
  em.pop(RBP);
  em.pop(RBX);
  em.ret();
  // The lookup stub (see lookup_stub_ in jit.h): target pc in esi.
  lookup_stub_ = em.here();
  em.cmp_mem8_imm(io_field(offsetof(JitIo, paged)), 0);
  uint8_t* paged = em.jcc_fwd(kNE);
  em.lea32(RAX, Mem{RSI, static_cast<int32_t>(0u - kRamBase)});  // physical: the RAM offset
  em.alu_ri(Emitter::kCmp, RAX, static_cast<int32_t>(ram_size_));
  uint8_t* miss1 = em.jcc_fwd(kAE);
  uint8_t* have = em.jmp_fwd();
  em.bind(paged);
  // Translated: the fetch bank's entry for the page; its x tag is the virtual page when this privilege
  // may execute it (PTE X/U and PMP over the whole page), so a hit needs no other check.
  em.mov_rr32(RCX, RSI);
  em.shift_ri(Emitter::kShr, RCX, kPageShift - 5);
  em.alu_ri(Emitter::kAnd, RCX, static_cast<int32_t>((kTlbSize - 1) << 5));
  em.alu_rm(Emitter::kAdd, RCX, io_field(offsetof(JitIo, itlb)), true);
  em.mov_rr32(RDX, RSI);
  em.alu_ri(Emitter::kAnd, RDX, kPageMaskImm);
  em.alu_rm(Emitter::kCmp, RDX, Mem{RCX, static_cast<int32_t>(offsetof(TlbEntry, x))});
  uint8_t* miss2 = em.jcc_fwd(kNE);
  em.mov_load32(RAX, Mem{RCX, static_cast<int32_t>(offsetof(TlbEntry, page))});
  em.shift_ri(Emitter::kShl, RAX, kPageShift);
  em.mov_rr32(RDX, RSI);
  em.alu_ri(Emitter::kAnd, RDX, static_cast<int32_t>(kPageSize - 1));
  em.alu_rr(Emitter::kOr, RAX, RDX);
  em.bind(have);
  // RAM offset in eax: its JitPage, the slot's entry.
  em.mov_rr32(RCX, RAX);
  em.shift_ri(Emitter::kShr, RCX, kPageShift);
  em.mov_imm64(RDX, reinterpret_cast<uintptr_t>(page_ptrs_));
  em.mov_load64(RDX, Mem{RDX, 0, RCX, 8});
  em.test_rr64(RDX, RDX);
  uint8_t* miss3 = em.jcc_fwd(kE);
  em.alu_ri(Emitter::kAnd, RAX, static_cast<int32_t>(kPageSize - 2));
  em.mov_load64(RAX, Mem{RDX, 0, RAX, 4});  // entry[(off & 0xfff) / 2]: entry is JitPage's first member
  em.test_rr64(RAX, RAX);
  uint8_t* miss4 = em.jcc_fwd(kE);
  em.mov_rr32(RDX, RSI);
  em.alu_ri(Emitter::kAnd, RDX, kPageMaskImm);
  em.mov_store32(io_field(offsetof(JitIo, vbase)), RDX);
  em.jmp_reg(RAX);
  em.bind(miss1);
  em.bind(miss2);
  em.bind(miss3);
  em.bind(miss4);
  em.mov_store32(io_field(offsetof(JitIo, pc)), RSI);
  em.mov_imm32(RAX, kExitDispatch);
  em.jmp(epilogue_);
  enter_ = reinterpret_cast<uint32_t (*)(JitIo*, void*)>(buf_);
  code_start_ = (em.size() + 63) & ~size_t{63};
  used_ = code_start_;
}

Jit::JitPage* Jit::page(uint32_t pi) {
  if (!pages_[pi]) {
    pages_[pi] = std::make_unique<JitPage>();
    std::memset(pages_[pi]->entry, 0, sizeof(pages_[pi]->entry));
    std::memset(pages_[pi]->hits, 0, sizeof(pages_[pi]->hits));
    page_ptrs_[pi] = pages_[pi].get();
  }
  return pages_[pi].get();
}

void* Jit::lookup(uint32_t off, bool tlb_first) {
  if (failed_) return nullptr;
  JitPage* p = page(off >> kPageShift);
  const uint32_t s = (off & (kPageSize - 1)) >> 1;
  if (void* code = p->entry[s]) return code;
  uint8_t& h = p->hits[s];
  if (h == kNever || ++h < threshold_) return nullptr;
  void* code = compile(off, tlb_first);
  if (!code) h = kNever;
  else stats_.translated_blocks += io.paged;
  return code;
}

void Jit::drop_page(uint32_t pi) {
  JitPage* p = pages_[pi].get();
  if (!p) return;
  stats_.invalidated += p->blocks.size();
  for (const Block& b : p->blocks) relink(p, b.start >> 1, nullptr);
  p->blocks.clear();
  std::memset(p->entry, 0, sizeof(p->entry));
  std::memset(p->hits, 0, sizeof(p->hits));
}

void Jit::drop_all() {
  // Everything goes, the code with it: no link is patched back, they are forgotten.
  for (uint32_t pi = 0; pi < pages_.size(); pi++) {
    JitPage* p = pages_[pi].get();
    if (!p) continue;
    stats_.invalidated += p->blocks.size();
    p->blocks.clear();
    p->links.clear();
    std::memset(p->entry, 0, sizeof(p->entry));
    std::memset(p->hits, 0, sizeof(p->hits));
  }
  used_ = code_start_;
}

void Jit::patch(uint8_t* site, const void* target) {
  if (!protect(site + 1, site + 5, PROT_READ | PROT_WRITE)) return;
  const int32_t d = static_cast<int32_t>(static_cast<const uint8_t*>(target) - (site + 5));
  std::memcpy(site + 1 + wdelta_, &d, 4);
  protect(site + 1, site + 5, PROT_READ | PROT_EXEC);
}

void Jit::relink(JitPage* p, uint32_t slot, const void* target) {
  for (const Link& l : p->links) {
    if (l.slot == slot) patch(l.site, target ? target : l.site + 5);
  }
}

void Jit::invalidate(uint32_t off, uint32_t len) {
  if (len == 0) return;
  const uint32_t end = off + len;
  for (uint32_t pi = off >> kPageShift; pi <= (end - 1) >> kPageShift && pi < pages_.size(); pi++) {
    JitPage* p = pages_[pi].get();
    if (!p) continue;
    const uint32_t base = pi << kPageShift;
    const uint32_t lo = off > base ? off - base : 0, hi = end - base < kPageSize ? end - base : kPageSize;
    // Blocks overlapping [lo, hi): their entries go, so nothing (dispatch or a chain) reaches them.
    auto& b = p->blocks;
    for (size_t i = 0; i < b.size();) {
      if (b[i].start < hi && b[i].end > lo) {
        relink(p, b[i].start >> 1, nullptr);
        p->entry[b[i].start >> 1] = nullptr;
        p->hits[b[i].start >> 1] = 0;
        stats_.invalidated++;
        b[i] = b.back();
        b.pop_back();
      } else {
        i++;
      }
    }
    // Slots whose first instruction overlaps the range may have become compilable.
    for (uint32_t s = (lo >= 2 ? lo - 2 : 0) >> 1; s < (hi + 1) >> 1 && s < 2048; s++) {
      if (p->hits[s] == kNever) p->hits[s] = 0;
    }
  }
}

bool Jit::protect(uint8_t* from, uint8_t* to, int prot) {
  if (dual_) return true;  // written through the other view: nothing to change
  uint8_t* lo = reinterpret_cast<uint8_t*>(reinterpret_cast<uintptr_t>(from) & ~uintptr_t{4095});
  uint8_t* hi = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(to) + 4095) & ~uintptr_t{4095});
  if (mprotect(lo, static_cast<size_t>(hi - lo), prot) == 0) return true;
  // The buffer may now hold pages that are not executable, or not writable where a write is due (the
  // kernel refused, e.g. at vm.max_map_count): no compiled code runs again, the interpreter runs all.
  failed_ = true;
  return false;
}

bool Jit::write_begin(uint8_t* from) { return protect(from, std::min(from + kMaxBlockBytes, buf_ + buf_size_), PROT_READ | PROT_WRITE); }

void Jit::write_end(uint8_t* from) { protect(from, std::min(from + kMaxBlockBytes, buf_ + buf_size_), PROT_READ | PROT_EXEC); }

void* Jit::compile(uint32_t off, bool tlb_first) {
  // 1. Decode the block: straight-line code from `off`, through the first control transfer, stopping
  //    before anything compiled code does not do and at the page end (a block lies on one page).
  struct Insn {
    DecodedOp d;
    uint32_t off;
  };
  Insn insns[kMaxInsns];
  int n = 0;
  const uint32_t page_end = (off & ~(kPageSize - 1)) + kPageSize;
  uint32_t o = off;
  bool ended = false;
  while (n < kMaxInsns && o + 2 <= page_end) {
    const uint16_t lo = rd16(ram_ + o);
    const bool wide = (lo & 3) == 3;
    if (wide && o + 4 > page_end) break;  // straddles the page end: the interpreter's
    const DecodedOp d = decode(lo, wide ? rd16(ram_ + o + 2) : 0);
    if (!compilable(d.op)) break;
    insns[n++] = Insn{d, o};
    o += d.len * 2u;
    if (control(d.op)) {
      ended = true;
      break;
    }
  }
  if (n == 0) return nullptr;
  const uint32_t end_off = o;
  // pc-relative values are computed from io.vbase, the virtual address of this page in the mode that
  // entered it: `po` is an offset from the page's start (kRamBase + page_off while fetches are physical).
  const uint32_t page_off = off & ~(kPageSize - 1);
  auto po = [&](uint32_t ram_off) { return static_cast<int32_t>(ram_off - page_off); };

  if (used_ + kMaxBlockBytes > buf_size_) {
    // Full: everything goes (no compiled code is running: compile is called from dispatch only), and
    // from now on a start must be twice as hot to be compiled (see threshold_).
    drop_all();
    stats_.flushes++;
    threshold_ = static_cast<uint8_t>(std::min<unsigned>(threshold_ * 2u, kMaxHotThreshold));
  }
  uint8_t* const start = buf_ + used_;
  if (!write_begin(start)) return nullptr;
  Emitter em(start, kMaxBlockBytes, wdelta_);
  const uint32_t N = static_cast<uint32_t>(n);

  // Guest registers live in memory (x[]) between blocks; within a block the ones it uses are cached in
  // host registers (kPool), loaded at first use and written back when evicted, before every exit to the
  // interpreter (each exit stub writes back what was dirty at that point) and before the block's end.
  static constexpr Reg kPool[] = {RSI, RDI, R8, R9, R10, R11};
  constexpr int kPoolSize = sizeof(kPool) / sizeof(kPool[0]);
  struct Cache {
    int8_t guest[kPoolSize];  // guest register held by each pool register, or -1
    bool dirty[kPoolSize];
    uint32_t used[kPoolSize];  // last use, for eviction
    bool pinned[kPoolSize];    // operands of the instruction being emitted: not evicted
  };
  Cache cache;
  for (int k = 0; k < kPoolSize; k++) {
    cache.guest[k] = -1;
    cache.dirty[k] = false;
    cache.used[k] = 0;
    cache.pinned[k] = false;
  }
  uint32_t clock = 0;
  auto slot_of = [&](uint32_t g) {
    for (int k = 0; k < kPoolSize; k++) {
      if (cache.guest[k] == static_cast<int8_t>(g)) return k;
    }
    return -1;
  };
  auto writeback = [&](int k) {
    if (cache.guest[k] >= 0 && cache.dirty[k]) em.mov_store32(xreg(static_cast<uint32_t>(cache.guest[k])), kPool[k]);
    cache.dirty[k] = false;
  };
  auto take = [&]() {  // a free pool register, evicting the least recently used unpinned one
    int best = -1;
    for (int k = 0; k < kPoolSize; k++) {
      if (cache.pinned[k]) continue;
      if (cache.guest[k] < 0) return k;
      if (best < 0 || cache.used[k] < cache.used[best]) best = k;
    }
    writeback(best);
    cache.guest[best] = -1;
    return best;
  };
  // Host register that will hold guest register g's new value (marked dirty).
  auto def = [&](uint32_t g) {
    int k = slot_of(g);
    if (k < 0) {
      k = take();
      cache.guest[k] = static_cast<int8_t>(g);
    }
    cache.dirty[k] = true;
    cache.used[k] = ++clock;
    cache.pinned[k] = true;
    return kPool[k];
  };
  auto writeback_all = [&]() {
    for (int k = 0; k < kPoolSize; k++) writeback(k);
  };
  auto forget_all = [&]() {
    for (int k = 0; k < kPoolSize; k++) cache.guest[k] = -1, cache.dirty[k] = false;
  };
  // A source operand: the host register caching guest register g (pinned), or else its memory slot
  // (not loaded into the cache: a value only read costs no more than it did in memory).
  struct Opnd {
    bool reg;
    Reg r;
    Mem m;
  };
  auto src = [&](uint32_t g) {
    const int k = slot_of(g);
    if (k < 0) return Opnd{false, RAX, xreg(g)};
    cache.used[k] = ++clock;
    cache.pinned[k] = true;
    return Opnd{true, kPool[k], xreg(g)};
  };
  auto cached = [&](uint32_t g) { return slot_of(g) >= 0; };
  // g's value in a register: its cache register, or loaded into `scratch`.
  auto in_reg = [&](uint32_t g, Reg scratch) {
    const Opnd o = src(g);
    if (o.reg) return o.r;
    em.mov_load32(scratch, o.m);
    return scratch;
  };
  auto mov_to = [&](Reg dst, const Opnd& o) {
    if (!o.reg) em.mov_load32(dst, o.m);
    else if (o.r != dst) em.mov_rr32(dst, o.r);
  };
  auto alu_to = [&](Emitter::AluExt ext, Reg dst, const Opnd& o) {
    if (o.reg) em.alu_rr(ext, dst, o.r);
    else em.alu_rm(ext, dst, o.m);
  };
  auto imul_to = [&](Reg dst, const Opnd& o) {
    if (o.reg) em.imul_rr32(dst, o.r);
    else em.imul_rm32(dst, o.m);
  };
  // The interpreter's translation cache probe (cpu.cc, TLB_AT and TLB_TAG) for the virtual address in
  // eax: the entry indexed by its page, whose tag at `tag` must be the page of the access's last byte
  // (so an access crossing a page never hits). Returns the jump taken on a miss (to bind or to exit at);
  // past it, on a hit, rax = the entry's addend + va, the host address.
  auto tlb_access = [&](size_t tag, uint32_t size) {
    em.mov_rr32(RCX, RAX);
    em.shift_ri(Emitter::kShr, RCX, kPageShift - 5);
    em.alu_ri(Emitter::kAnd, RCX, static_cast<int32_t>((kTlbSize - 1) << 5));
    em.alu_rm(Emitter::kAdd, RCX, io_field(offsetof(JitIo, dtlb)), true);
    em.lea32(RDX, Mem{RAX, static_cast<int32_t>(size - 1)});
    em.alu_ri(Emitter::kAnd, RDX, kPageMaskImm);
    em.alu_rm(Emitter::kCmp, RDX, Mem{RCX, static_cast<int32_t>(tag)});
    uint8_t* const miss = em.jcc_fwd(kNE);
    em.alu_rm(Emitter::kAdd, RAX, Mem{RCX, static_cast<int32_t>(offsetof(TlbEntry, addend))}, true);
    return miss;
  };
  // x[rd] = io.vbase + t (a jump's link register; the cache is empty).
  auto link_reg = [&](uint32_t g, int32_t t) {
    em.mov_load32(RAX, io_field(offsetof(JitIo, vbase)));
    em.alu_ri(Emitter::kAdd, RAX, t);
    em.mov_store32(xreg(g), RAX);
  };

  // Exits to the interpreter before instruction i: the jumps to patch and what was dirty there.
  struct Pending {
    uint8_t* at[3];
    uint8_t nat;
    int i;
    uint8_t n;
    uint8_t guest[kPoolSize];
    uint8_t host[kPoolSize];
  };
  Pending pend[kMaxInsns * 4];
  int npend = 0;
  bool overflow = false;
  // What is dirty now: an exit taken later in this instruction, before it wrote anything, writes that back.
  auto snapshot = [&](int i) {
    if (npend >= kMaxInsns * 4) {
      overflow = true;
      return -1;
    }
    Pending& q = pend[npend];
    q.nat = 0;
    q.i = i;
    q.n = 0;
    for (int k = 0; k < kPoolSize; k++) {
      if (cache.guest[k] >= 0 && cache.dirty[k]) {
        q.guest[q.n] = static_cast<uint8_t>(cache.guest[k]);
        q.host[q.n] = static_cast<uint8_t>(kPool[k]);
        q.n++;
      }
    }
    return npend++;
  };
  auto exit_at = [&](int q, uint8_t* at) {
    if (q >= 0 && pend[q].nat < 3) pend[q].at[pend[q].nat++] = at;
    else overflow = true;
  };
  auto exit_before = [&](int i, uint8_t* at) { exit_at(snapshot(i), at); };
  // A load or store's other fast path, emitted after the block's code (off the straight line): entered
  // from `from` (or the `fail` sites) with the RAM offset (physical first) or the virtual address
  // (translation first) in eax, back to `back` when it did the access, else to the exit snapshot `q`.
  struct ColdMem {
    Op op;
    Reg r;       // a load's destination
    Opnd v;      // a store's value
    int q;
    uint8_t* from;
    uint8_t* fail[3];
    uint8_t* back;
  };
  ColdMem cold[kMaxInsns];
  int ncold = 0;
  auto cold_add = [&](const ColdMem& c) {
    if (ncold < kMaxInsns) cold[ncold++] = c;
    else overflow = true;
  };
  auto mem_size = [](Op op) -> uint32_t {
    switch (op) {
      case kOpLB: case kOpLBU: case kOpSB: return 1;
      case kOpLH: case kOpLHU: case kOpSH: return 2;
      default: return 4;
    }
  };
  // The access itself at `m`: a load into c.r, or a store of c.v.
  auto mem_op = [&](const ColdMem& c, const Mem& m) {
    switch (c.op) {
      case kOpLB: em.movsx8(c.r, m); break;
      case kOpLBU: em.movzx8(c.r, m); break;
      case kOpLH: em.movsx16(c.r, m); break;
      case kOpLHU: em.movzx16(c.r, m); break;
      case kOpLW: em.mov_load32(c.r, m); break;
      default: {
        const uint32_t size = mem_size(c.op);
        if (size == 4 && c.v.reg) {
          em.mov_store32(m, c.v.r);
        } else {
          mov_to(RDX, c.v);  // a byte or halfword of dl: no REX-dependent byte registers
          if (size == 1) em.mov_store8(m, RDX);
          else if (size == 2) em.mov_store16(m, RDX);
          else em.mov_store32(m, RDX);
        }
      }
    }
  };
  // A physical store of the RAM offset in eax, its checks' failures jumping to the sites left in `fail`.
  auto store_physical = [&](const ColdMem& c, uint8_t** fail) {
    int f = 0;
    const uint32_t size = mem_size(c.op);
    if (size > 1) {
      em.test_ri32(RAX, size - 1);
      fail[f++] = em.jcc_fwd(kNE);
    }
    em.alu_rm(Emitter::kCmp, RAX, io_field(offsetof(JitIo, store_limit)));
    fail[f++] = em.jcc_fwd(kAE);
    em.mov_rr32(RCX, RAX);
    em.shift_ri(Emitter::kShr, RCX, kPageShift);
    em.cmp_mem8_imm(Mem{kFlags, 0, RCX, 1}, 0);
    fail[f++] = em.jcc_fwd(kNE);
    mem_op(c, Mem{kRam, 0, RAX, 1});
  };
  // An atomic's physical path for the aligned RAM offset in eax: rax = its host address, or an exit
  // (beyond RAM; a page with flags for SC and AMOs, whose store the interpreter's slow path makes).
  auto atomic_physical = [&](const ColdMem& c) {
    em.alu_rm(Emitter::kCmp, RAX, io_field(offsetof(JitIo, load_limit)));  // aligned: offset + 4 <= RAM
    exit_at(c.q, em.jcc_fwd(kAE));
    if (c.op != kOpLR_W) {
      em.mov_rr32(RCX, RAX);
      em.shift_ri(Emitter::kShr, RCX, kPageShift);
      em.cmp_mem8_imm(Mem{kFlags, 0, RCX, 1}, 0);
      exit_at(c.q, em.jcc_fwd(kNE));
    }
    em.alu_rr(Emitter::kAdd, RAX, kRam, true);
  };

  // Block entry: take the whole block from the budget, or leave for the interpreter.
  uint8_t* const entry = em.here();
  em.alu_ri(Emitter::kSub, kRem, static_cast<int32_t>(N), true);
  exit_before(0, em.jcc_fwd(kS));

  // Links this block makes, registered with their target pages once the block is committed.
  struct NewLink {
    JitPage* page;
    uint32_t slot;
    uint8_t* site;
  };
  constexpr int kMaxLinks = 4;
  NewLink links[kMaxLinks];
  int nlinks = 0;

  // Leaves to dispatch at the virtual pc io.vbase + t.
  auto exit_dispatch = [&](int32_t t) {
    em.mov_load32(RAX, io_field(offsetof(JitIo, vbase)));
    em.alu_ri(Emitter::kAdd, RAX, t);
    em.mov_store32(io_field(offsetof(JitIo, pc)), RAX);
    em.mov_imm32(RAX, kExitDispatch);
    em.jmp(epilogue_);
  };
  // A direct jump to the entry of slot `ts` of RAM page `tpi` if it is compiled (patched as the target
  // is compiled or dropped), behind it the entry read at run time from its JitPage; falls through when
  // there is none. (A site that cannot be registered is never pointed at an entry: nothing could unlink it.)
  auto link_to = [&](uint32_t tpi, uint32_t ts) {
    JitPage* tp = page(tpi);
    uint8_t* site = em.here();
    const bool linkable = nlinks < kMaxLinks;
    em.jmp(linkable && tp->entry[ts] ? static_cast<const uint8_t*>(tp->entry[ts]) : site + 5);
    if (linkable) links[nlinks++] = NewLink{tp, ts, site};
    em.mov_rax_abs(&tp->entry[ts]);
    em.test_rr64(RAX, RAX);
    uint8_t* miss = em.jcc_fwd(kE);
    em.jmp_reg(RAX);
    em.bind(miss);
  };
  // A transfer to a static target, `t` bytes from this page's start; the cache is written back before it.
  // On this page: the same virtual page, hence the same physical page and permissions in any mode, so
  // straight to the target's compiled entry (or dispatch). On another page: the same while fetches are
  // physical (io.vbase is then the page's physical address); while they are translated, through the
  // lookup stub, which translates the target with the interpreter's itlb.
  auto chain = [&](int32_t t) {
    const uint32_t toff = page_off + static_cast<uint32_t>(t);
    if (toff == off) {
      em.jmp(entry);  // a loop onto this block: straight to its own budget check
      return;
    }
    if (t >= 0 && t < static_cast<int32_t>(kPageSize)) {
      link_to(page_off >> kPageShift, static_cast<uint32_t>(t) >> 1);
      exit_dispatch(t);
      return;
    }
    em.cmp_mem8_imm(io_field(offsetof(JitIo, paged)), 0);
    uint8_t* translated = em.jcc_fwd(kNE);
    if (toff < ram_size_) {
      em.mov_store_imm32(io_field(offsetof(JitIo, vbase)), kRamBase + (toff & ~(kPageSize - 1)));
      link_to(toff >> kPageShift, (toff & (kPageSize - 1)) >> 1);
    }
    em.mov_store_imm32(io_field(offsetof(JitIo, pc)), kRamBase + toff);
    em.mov_imm32(RAX, kExitDispatch);
    em.jmp(epilogue_);
    em.bind(translated);
    em.mov_load32(RSI, io_field(offsetof(JitIo, vbase)));
    em.alu_ri(Emitter::kAdd, RSI, t);
    em.jmp(lookup_stub_);
  };

  for (int i = 0; i < n; i++) {
    const DecodedOp& d = insns[i].d;
    const int32_t here = po(insns[i].off);  // this instruction, from the page's start
    const int32_t next = here + static_cast<int32_t>(d.len * 2u);
    const uint32_t imm = static_cast<uint32_t>(d.imm);
    const uint32_t rd = d.rd, rs1 = d.rs1, rs2 = d.rs2;
    for (int k = 0; k < kPoolSize; k++) cache.pinned[k] = false;
    switch (d.op) {
      case kOpNOP:
      case kOpFENCE:
        break;
      case kOpLUI:
      case kOpLI:
        if (cached(rd)) em.mov_imm32(def(rd), imm);
        else em.mov_store_imm32(xreg(rd), imm);
        break;
      case kOpAUIPC: {
        const Reg r = def(rd);
        em.mov_load32(r, io_field(offsetof(JitIo, vbase)));
        em.alu_ri(Emitter::kAdd, r, static_cast<int32_t>(static_cast<uint32_t>(here) + imm));
        break;
      }
      case kOpMV: {
        const Opnd a = src(rs1);
        mov_to(def(rd), a);
        break;
      }
      case kOpADDI: case kOpXORI: case kOpORI: case kOpANDI: {
        const Emitter::AluExt ext = d.op == kOpADDI ? Emitter::kAdd : d.op == kOpXORI ? Emitter::kXor
                                    : d.op == kOpORI ? Emitter::kOr : Emitter::kAnd;
        if (rd == rs1 && !cached(rd)) {
          em.alu_mi(ext, xreg(rd), d.imm);  // in place, in memory
          break;
        }
        const Opnd a = src(rs1);
        const Reg r = def(rd);
        mov_to(r, a);
        em.alu_ri(ext, r, d.imm);
        break;
      }
      case kOpSLTI: case kOpSLTIU: {
        const Reg a = in_reg(rs1, RAX);
        const Reg r = def(rd);
        em.alu_rr(Emitter::kXor, RCX, RCX);
        em.alu_ri(Emitter::kCmp, a, d.imm);
        em.setcc(d.op == kOpSLTI ? kL : kB, RCX);
        em.mov_rr32(r, RCX);
        break;
      }
      case kOpSLLI: case kOpSRLI: case kOpSRAI: {
        const Emitter::ShiftExt ext = d.op == kOpSLLI ? Emitter::kShl : d.op == kOpSRLI ? Emitter::kShr : Emitter::kSar;
        if (rd == rs1 && !cached(rd)) {
          em.shift_mi(ext, xreg(rd), static_cast<uint8_t>(imm & 31));
          break;
        }
        const Opnd a = src(rs1);
        const Reg r = def(rd);
        mov_to(r, a);
        em.shift_ri(ext, r, static_cast<uint8_t>(imm & 31));
        break;
      }
      case kOpADD: case kOpSUB: case kOpXOR: case kOpOR: case kOpAND: case kOpMUL: {
        const Emitter::AluExt ext = d.op == kOpADD ? Emitter::kAdd : d.op == kOpSUB ? Emitter::kSub
                                    : d.op == kOpXOR ? Emitter::kXor : d.op == kOpOR ? Emitter::kOr : Emitter::kAnd;
        const bool mul = d.op == kOpMUL;
        auto op = [&](Reg dst, const Opnd& o) {
          if (mul) imul_to(dst, o);
          else alu_to(ext, dst, o);
        };
        const Opnd a = src(rs1);
        const Opnd b = src(rs2);
        const Reg r = def(rd);
        if (a.reg && a.r == r) {
          op(r, b);
        } else if (b.reg && b.r == r) {
          if (d.op != kOpSUB) {
            op(r, a);  // commutative
          } else {
            mov_to(RAX, a);
            em.alu_rr(Emitter::kSub, RAX, r);
            em.mov_rr32(r, RAX);
          }
        } else {
          mov_to(r, a);
          op(r, b);
        }
        break;
      }
      case kOpSLL: case kOpSRL: case kOpSRA: {
        const Emitter::ShiftExt ext = d.op == kOpSLL ? Emitter::kShl : d.op == kOpSRL ? Emitter::kShr : Emitter::kSar;
        const Opnd a = src(rs1);
        const Opnd b = src(rs2);
        mov_to(RCX, b);  // x86 masks the count to 5 bits, as RISC-V does
        const Reg r = def(rd);
        mov_to(r, a);
        em.shift_rcl(ext, r);
        break;
      }
      case kOpSLT: case kOpSLTU: {
        const Reg a = in_reg(rs1, RAX);
        const Opnd b = src(rs2);
        const Reg r = def(rd);
        em.alu_rr(Emitter::kXor, RCX, RCX);
        alu_to(Emitter::kCmp, a, b);
        em.setcc(d.op == kOpSLT ? kL : kB, RCX);
        em.mov_rr32(r, RCX);
        break;
      }
      case kOpMULH: case kOpMULHSU: case kOpMULHU: {
        // The 64-bit product of the (sign- or zero-) extended operands; its high half.
        const Opnd a = src(rs1);
        const Opnd b = src(rs2);
        if (d.op == kOpMULHU) mov_to(RAX, a);
        else if (a.reg) em.movsxd_rr(RAX, a.r);
        else em.movsxd(RAX, a.m);
        if (d.op != kOpMULH) mov_to(RCX, b);
        else if (b.reg) em.movsxd_rr(RCX, b.r);
        else em.movsxd(RCX, b.m);
        em.imul_rr64(RAX, RCX);
        em.shift_ri(Emitter::kShr, RAX, 32, true);
        em.mov_rr32(def(rd), RAX);
        break;
      }
      case kOpDIV: case kOpREM: case kOpDIVU: case kOpREMU: {
        // RISC-V defines x/0 and INT_MIN/-1; x86 faults on both, so they never reach (i)div.
        const bool rem = d.op == kOpREM || d.op == kOpREMU, sign = d.op == kOpDIV || d.op == kOpREM;
        mov_to(RAX, src(rs1));
        mov_to(RCX, src(rs2));
        em.test_rr32(RCX, RCX);
        uint8_t* zero = em.jcc_fwd(kE);
        uint8_t* ovf = nullptr;
        if (sign) {
          em.alu_ri(Emitter::kCmp, RCX, -1);
          uint8_t* go = em.jcc_fwd(kNE);
          em.alu_ri(Emitter::kCmp, RAX, static_cast<int32_t>(0x80000000u));
          ovf = em.jcc_fwd(kE);
          em.bind(go);
          em.cdq();
          em.idiv_r32(RCX);
        } else {
          em.alu_rr(Emitter::kXor, RDX, RDX);
          em.div_r32(RCX);
        }
        if (rem) em.mov_rr32(RAX, RDX);
        uint8_t* done = em.jmp_fwd();
        em.bind(zero);  // divide by zero: quotient all ones, remainder the dividend (already in eax)
        if (!rem) em.mov_imm32(RAX, 0xffffffffu);
        uint8_t* done2 = nullptr;
        if (sign) {
          done2 = em.jmp_fwd();
          em.bind(ovf);  // INT_MIN / -1: quotient INT_MIN (in eax), remainder 0
          if (rem) em.alu_rr(Emitter::kXor, RAX, RAX);
        }
        em.bind(done);
        if (done2) em.bind(done2);
        em.mov_rr32(def(rd), RAX);
        break;
      }
      case kOpLB: case kOpLH: case kOpLW: case kOpLBU: case kOpLHU: {
        // The interpreter's fast paths: physical (RAM offset below io.load_limit, any size) and a
        // translation cache hit (io.dtlb's entry for the first byte's page, tagged with the last byte's:
        // r tag == page). The one that suits the mode the block was compiled in is inline, the other out
        // of line (ColdMem); anything else is the interpreter's (device, end of RAM, miss, fault,
        // crossing a page). The exit's state is taken before the destination is, so it writes back the
        // state before this instruction.
        const Reg a = in_reg(rs1, RAX);
        ColdMem c{};
        c.op = d.op;
        c.q = snapshot(i);
        c.r = def(rd);  // (an eviction's write-back happens here, before the paths part)
        em.lea32(RAX, Mem{a, static_cast<int32_t>(tlb_first ? imm : imm - kRamBase)});
        if (!tlb_first) {
          em.alu_rm(Emitter::kCmp, RAX, io_field(offsetof(JitIo, load_limit)));
          c.from = em.jcc_fwd(kAE);
          mem_op(c, Mem{kRam, 0, RAX, 1});
        } else {
          c.from = tlb_access(offsetof(TlbEntry, r), mem_size(d.op));
          mem_op(c, Mem{RAX, 0});
        }
        c.back = em.here();
        cold_add(c);
        break;
      }
      case kOpSB: case kOpSH: case kOpSW: {
        // Physical: aligned, below io.store_limit, on a page whose flags are clear (no decoded code, no
        // page table, no dirty tracking armed, not watched). Translated: a store tag hit, which exists
        // only for pages whose flags are clear. Inline and out of line as for loads.
        const Reg a = in_reg(rs1, RAX);
        ColdMem c{};
        c.op = d.op;
        c.v = src(rs2);
        c.q = snapshot(i);
        em.lea32(RAX, Mem{a, static_cast<int32_t>(tlb_first ? imm : imm - kRamBase)});
        if (!tlb_first) {
          store_physical(c, c.fail);
        } else {
          c.from = tlb_access(offsetof(TlbEntry, w), mem_size(d.op));
          mem_op(c, Mem{RAX, 0});
        }
        c.back = em.here();
        cold_add(c);
        break;
      }
      case kOpLR_W: case kOpSC_W: case kOpAMOSWAP: case kOpAMOADD: case kOpAMOXOR: case kOpAMOAND:
      case kOpAMOOR: case kOpAMOMIN: case kOpAMOMAX: case kOpAMOMINU: case kOpAMOMAXU: {
        // The interpreter's LR_W/SC_W/AMO: a misaligned address traps (the interpreter's), then the
        // word's host address by the fast paths (inline the mode's, out of line the other: ColdMem),
        // then the operation. Nothing is written before both checks passed.
        const Reg a = in_reg(rs1, RAX);
        ColdMem c{};
        c.op = d.op;
        if (d.op != kOpLR_W) c.v = src(rs2);
        c.q = snapshot(i);
        c.r = def(rd);
        em.lea32(RAX, Mem{a, 0});
        em.mov_store32(io_field(offsetof(JitIo, scratch)), RAX);  // the virtual address
        em.test_ri32(RAX, 3);
        exit_at(c.q, em.jcc_fwd(kNE));
        if (!tlb_first) {
          em.alu_ri(Emitter::kAdd, RAX, static_cast<int32_t>(kRamBase));  // the RAM offset
          em.alu_rm(Emitter::kCmp, RAX, io_field(offsetof(JitIo, load_limit)));
          c.from = em.jcc_fwd(kAE);
          if (d.op != kOpLR_W) {
            em.mov_rr32(RCX, RAX);
            em.shift_ri(Emitter::kShr, RCX, kPageShift);
            em.cmp_mem8_imm(Mem{kFlags, 0, RCX, 1}, 0);
            c.fail[0] = em.jcc_fwd(kNE);
          }
          em.alu_rr(Emitter::kAdd, RAX, kRam, true);
        } else {
          c.from = tlb_access(d.op == kOpLR_W ? offsetof(TlbEntry, r) : offsetof(TlbEntry, w), 4);
        }
        c.back = em.here();
        cold_add(c);
        const Mem word{RAX, 0};
        if (d.op == kOpLR_W) {
          em.mov_load32(c.r, word);
          em.mov_load32(RDX, io_field(offsetof(JitIo, scratch)));
          em.mov_load64(RCX, io_field(offsetof(JitIo, resv)));
          em.mov_store32(Mem{RCX, 0}, RDX);
          em.mov_load64(RCX, io_field(offsetof(JitIo, resv_valid)));
          em.mov_imm32(RDX, 1);
          em.mov_store8(Mem{RCX, 0}, RDX);
        } else if (d.op == kOpSC_W) {
          // Succeeds when the reservation is valid and for this address; either way it is gone after.
          em.mov_load32(RDX, io_field(offsetof(JitIo, scratch)));
          em.mov_load64(RCX, io_field(offsetof(JitIo, resv)));
          em.alu_rm(Emitter::kCmp, RDX, Mem{RCX, 0});
          uint8_t* fail1 = em.jcc_fwd(kNE);
          em.mov_load64(RCX, io_field(offsetof(JitIo, resv_valid)));
          em.cmp_mem8_imm(Mem{RCX, 0}, 0);
          uint8_t* fail2 = em.jcc_fwd(kE);
          mov_to(RDX, c.v);
          em.mov_store32(word, RDX);
          em.mov_imm32(c.r, 0);
          uint8_t* done = em.jmp_fwd();
          em.bind(fail1);
          em.bind(fail2);
          em.mov_imm32(c.r, 1);
          em.bind(done);
          em.mov_load64(RCX, io_field(offsetof(JitIo, resv_valid)));
          em.alu_rr(Emitter::kXor, RDX, RDX);
          em.mov_store8(Mem{RCX, 0}, RDX);
        } else {
          em.mov_load32(RDX, word);  // old
          switch (d.op) {
            case kOpAMOSWAP: mov_to(RCX, c.v); break;
            case kOpAMOADD: em.mov_rr32(RCX, RDX); alu_to(Emitter::kAdd, RCX, c.v); break;
            case kOpAMOXOR: em.mov_rr32(RCX, RDX); alu_to(Emitter::kXor, RCX, c.v); break;
            case kOpAMOAND: em.mov_rr32(RCX, RDX); alu_to(Emitter::kAnd, RCX, c.v); break;
            case kOpAMOOR: em.mov_rr32(RCX, RDX); alu_to(Emitter::kOr, RCX, c.v); break;
            default: {
              // min/max: the source unless the old value is the one kept.
              mov_to(RCX, c.v);
              em.alu_rr(Emitter::kCmp, RDX, RCX);  // old - src
              const Cond keep_src = d.op == kOpAMOMIN ? kGE : d.op == kOpAMOMAX ? kLE : d.op == kOpAMOMINU ? kAE : kBE;
              uint8_t* skip = em.jcc_fwd(keep_src);
              em.mov_rr32(RCX, RDX);
              em.bind(skip);
            }
          }
          em.mov_store32(word, RCX);
          em.mov_rr32(c.r, RDX);
        }
        break;
      }
      case kOpJAL: case kOpJ:
        writeback_all();
        forget_all();
        if (d.op == kOpJAL) link_reg(rd, next);
        em.inc64(kBr);
        chain(here + d.imm);
        break;
      case kOpJALR: case kOpJR: {
        const Reg a = in_reg(rs1, RDX);
        em.lea32(RDX, Mem{a, d.imm});
        em.alu_ri(Emitter::kAnd, RDX, -2);
        writeback_all();
        forget_all();
        if (d.op == kOpJALR) link_reg(rd, next);
        em.inc64(kBr);
        em.mov_rr32(RSI, RDX);  // the pool is free from here
        em.jmp(lookup_stub_);
        break;
      }
      case kOpBEQ: case kOpBNE: case kOpBLT: case kOpBGE: case kOpBLTU: case kOpBGEU:
      case kOpBEQZ: case kOpBNEZ: case kOpBLTZ: case kOpBGEZ: case kOpBGTZ: case kOpBLEZ: {
        Cond c;
        const Reg a = in_reg(rs1, RAX);
        if (d.op <= kOpBGEU) {
          const Opnd b = src(rs2);
          writeback_all();  // stores only: the flags below are the compare's
          em.inc64(kBr);
          alu_to(Emitter::kCmp, a, b);
          static constexpr Cond kC[6] = {kE, kNE, kL, kGE, kB, kAE};
          c = kC[d.op - kOpBEQ];
        } else {
          writeback_all();
          em.inc64(kBr);
          em.test_rr32(a, a);
          static constexpr Cond kC[6] = {kE, kNE, kS, kNS, kG, kLE};
          c = kC[d.op - kOpBEQZ];
        }
        forget_all();
        uint8_t* taken = em.jcc_fwd(c);
        chain(next);
        em.bind(taken);
        chain(here + d.imm);
        break;
      }
      default:
        // compilable() let through something the switch does not know: give up on the block.
        write_end(start);
        return nullptr;
    }
  }
  if (!ended) {
    writeback_all();
    chain(po(end_off));  // straight-line code continues in another block
  }

  // The other fast path of each load and store (see ColdMem).
  for (int k = 0; k < ncold; k++) {
    ColdMem& c = cold[k];
    const bool store = c.op == kOpSB || c.op == kOpSH || c.op == kOpSW;
    if (c.from) em.bind(c.from);
    for (uint8_t* f : c.fail) if (f) em.bind(f);
    if (atomic(c.op)) {
      // The host address of the aligned word into rax, or the interpreter's.
      em.alu_ri(Emitter::kAdd, RAX, static_cast<int32_t>(kRamBase));  // va <-> RAM offset, either way
      if (!tlb_first) {
        exit_at(c.q, tlb_access(c.op == kOpLR_W ? offsetof(TlbEntry, r) : offsetof(TlbEntry, w), 4));
      } else {
        atomic_physical(c);
      }
      em.jmp(c.back);
      continue;
    }
    if (!tlb_first) {
      em.alu_ri(Emitter::kAdd, RAX, static_cast<int32_t>(kRamBase));  // back to the virtual address
      exit_at(c.q, tlb_access(store ? offsetof(TlbEntry, w) : offsetof(TlbEntry, r), mem_size(c.op)));
      mem_op(c, Mem{RAX, 0});
    } else {
      em.alu_ri(Emitter::kAdd, RAX, static_cast<int32_t>(kRamBase));  // va - kRamBase: the RAM offset
      if (store) {
        uint8_t* fail[3] = {};
        store_physical(c, fail);
        for (uint8_t* f : fail) if (f) exit_at(c.q, f);
      } else {
        em.alu_rm(Emitter::kCmp, RAX, io_field(offsetof(JitIo, load_limit)));
        exit_at(c.q, em.jcc_fwd(kAE));
        mem_op(c, Mem{kRam, 0, RAX, 1});
      }
    }
    em.jmp(c.back);
  }

  // Cold exits: write back what was dirty there, give back what did not retire (instructions i..N-1),
  // name the pc, leave.
  for (int k = 0; k < npend; k++) {
    const Pending& q = pend[k];
    if (q.nat == 0) continue;
    for (int j = 0; j < q.nat; j++) em.bind(q.at[j]);
    for (int j = 0; j < q.n; j++) em.mov_store32(xreg(q.guest[j]), static_cast<Reg>(q.host[j]));
    em.alu_ri(Emitter::kAdd, kRem, static_cast<int32_t>(N - q.i), true);
    em.mov_load32(RAX, io_field(offsetof(JitIo, vbase)));
    em.alu_ri(Emitter::kAdd, RAX, po(insns[q.i].off));
    em.mov_store32(io_field(offsetof(JitIo, pc)), RAX);
    em.mov_imm32(RAX, kExitInterp);
    em.jmp(epilogue_);
  }
  if (overflow) {
    write_end(start);
    return nullptr;
  }
  if (!em.ok()) {
    write_end(start);
    return nullptr;
  }
  write_end(start);
  used_ += (em.size() + 15) & ~size_t{15};
  for (int k = 0; k < nlinks; k++) links[k].page->links.push_back(Link{static_cast<uint16_t>(links[k].slot), links[k].site});
  JitPage* p = page(off >> kPageShift);
  p->entry[(off & (kPageSize - 1)) >> 1] = entry;
  relink(p, (off & (kPageSize - 1)) >> 1, entry);  // sites already waiting for this block jump straight in
  p->blocks.push_back(Block{static_cast<uint16_t>(off & (kPageSize - 1)),
                            static_cast<uint16_t>(end_off - (off & ~(kPageSize - 1)))});
  stats_.blocks++;
  return entry;
}

}  // namespace lockstep

#endif  // LOCKSTEP_HAVE_JIT
