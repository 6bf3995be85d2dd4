// Sv32 address translation, physical memory protection and the translation cache the hot loop reads.
// The cache never answers differently from a fresh page walk: every store to a page table it was filled
// from flushes it, so it holds no architectural state (it is neither hashed nor saved, and sfence.vma
// only has to drop it for good measure).
#include <bit>
#include <cstring>

#include "cpu/cpu.h"

namespace lockstep {
namespace {

constexpr uint32_t kPteV = 1, kPteR = 2, kPteW = 4, kPteX = 8, kPteU = 16, kPteA = 64, kPteD = 128;
constexpr uint8_t kPmpR = 1, kPmpW = 2, kPmpX = 4, kPmpL = 0x80;
constexpr uint32_t kPmpTor = 1, kPmpNa4 = 2, kPmpNapot = 3;
constexpr uint32_t kPageMask = ~(kPageSize - 1);

uint32_t fault(Access a, bool page) {
  switch (a) {
    case Access::kFetch: return page ? kInstrPageFault : kInstrAccessFault;
    case Access::kLoad: return page ? kLoadPageFault : kLoadAccessFault;
    case Access::kStore: break;
  }
  return page ? kStorePageFault : kStoreAccessFault;
}

uint8_t pmp_bit(Access a) { return a == Access::kFetch ? kPmpX : a == Access::kLoad ? kPmpR : kPmpW; }

// What a leaf PTE allows in context c (privileged spec 4.3.1 steps 6-7: U bit, SUM, MXR).
bool leaf_allows(uint32_t pte, Access a, Priv priv, bool sum, bool mxr) {
  if (priv == Priv::kUser) {
    if (!(pte & kPteU)) return false;
  } else if (pte & kPteU) {
    if (a == Access::kFetch || !sum) return false;  // S-mode never executes user pages
  }
  switch (a) {
    case Access::kFetch: return (pte & kPteX) != 0;
    case Access::kLoad: return (pte & kPteR) || (mxr && (pte & kPteX));
    case Access::kStore: break;
  }
  return (pte & kPteW) != 0;
}

uint32_t rd32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

}  // namespace

Cpu::Context Cpu::data_context() const {
  Priv p = priv;
  if (p == Priv::kMachine && (mstatus & kMstatusMPRV)) p = static_cast<Priv>((mstatus & kMstatusMPP) >> 11);
  return Context{p, (mstatus & kMstatusSUM) != 0, (mstatus & kMstatusMXR) != 0};
}

TlbEntry* Cpu::bank(Context c) {
  uint32_t b = 6;  // M-mode with locked PMP entries: identity translation, checked
  if (c.priv == Priv::kUser) b = c.mxr ? 1 : 0;
  else if (c.priv == Priv::kSupervisor) b = 2 + (c.mxr ? 1 : 0) + (c.sum ? 2 : 0);
  return tlb_.get() + b * kTlbSize;
}

void Cpu::update_mode() {
  TlbEntry* const empty = tlb_.get() + kBanks * kTlbSize;
  // M-mode fetches and loads/stores go straight to RAM unless a locked PMP entry constrains M-mode;
  // everything else goes through a bank of the translation cache (identity-mapped when satp is bare).
  fetch_bare_ = priv == Priv::kMachine && !pmp_locked_;
  itlb_ = fetch_bare_ ? empty : bank(fetch_context());
  const Context d = data_context();
  const bool data_bare = d.priv == Priv::kMachine && !pmp_locked_;
  data_limit_ = data_bare ? ram_size_ : 0;
  dtlb_ = data_bare ? empty : bank(d);
  if (jit_) jit_->set_mode(dtlb_, itlb_, !fetch_bare_, data_limit_);
}

void Cpu::pmp_changed() {
  std::memset(static_cast<void*>(pmp_memo_), 0, sizeof(pmp_memo_));
  pmp_locked_ = false;
  pmp_active_count_ = 0;
  for (uint32_t i = 0; i < kPmpEntries; i++) {
    const uint8_t cfg = pmpcfg[i];
    if ((cfg & kPmpL) && (cfg & 0x18)) pmp_locked_ = true;
    const uint32_t a = (cfg >> 3) & 3;
    if (a == 0) continue;
    PmpRange& r = pmp_active_[pmp_active_count_++];
    if (a == kPmpTor) {
      r.lo = i == 0 ? 0 : static_cast<uint64_t>(pmpaddr[i - 1]) << 2;
      r.hi = static_cast<uint64_t>(pmpaddr[i]) << 2;
    } else if (a == kPmpNa4) {
      r.lo = static_cast<uint64_t>(pmpaddr[i]) << 2;
      r.hi = r.lo + 4;
    } else {
      const uint64_t size = 1ull << (std::countr_one(pmpaddr[i]) + 3);
      r.lo = (static_cast<uint64_t>(pmpaddr[i]) << 2) & ~(size - 1);
      r.hi = r.lo + size;
    }
    r.cfg = cfg;
  }
  flush_tlb();
}

void Cpu::flush_tlb() {
  for (uint32_t p : tlb_writable_list_) tlb_writable_[p] = 0;
  tlb_writable_list_.clear();
  for (uint32_t p : page_table_list_) {
    flags_[p] &= static_cast<uint8_t>(~kPagePageTable);
    flags_changed(p);
  }
  page_table_list_.clear();
  // Only the entries filled since the last flush hold anything: an OS flushes far more often (every
  // satp write, a whole-cache sfence.vma) than it fills the whole cache, so clear just those.
  if (tlb_filled_.size() <= kTlbFillsTracked) {
    for (TlbEntry* t : tlb_filled_) t->r = t->w = t->x = kTlbInvalid;
  } else {
    std::memset(static_cast<void*>(tlb_.get()), 0xff, sizeof(TlbEntry) * kBanks * kTlbSize);
  }
  tlb_filled_.clear();
  std::memset(pte_filter_, 0, sizeof(pte_filter_));
}

void Cpu::flush_tlb_page(uint32_t va) {
  const uint32_t vpage = va & kPageMask;
  for (uint32_t b = 0; b < kBanks; b++) {
    TlbEntry& t = tlb_[b * kTlbSize + ((va >> kPageShift) & (kTlbSize - 1))];
    if (t.r == vpage || t.w == vpage || t.x == vpage) t.r = t.w = t.x = kTlbInvalid;
  }
}

void Cpu::tlb_pte_stored(uint32_t off, uint32_t len) {
  for (uint32_t w = off & ~3u; w <= ((off + len - 1) & ~3u); w += 4) {
    if (pte_filtered(0, w)) {
      // A 4 KiB leaf's entry is at the index of the virtual page number's low 10 bits in its table:
      // the translation can only be in that slot of each bank.
      const uint32_t slot = ((w & (kPageSize - 1)) >> 2) & (kTlbSize - 1);
      for (uint32_t b = 0; b < kBanks; b++) {
        TlbEntry& t = tlb_[b * kTlbSize + slot];
        if (t.pte[0] == w) t.r = t.w = t.x = kTlbInvalid;
      }
    }
    if (pte_filtered(1, w)) {
      // A root entry covers 1024 pages, cached in any slot: search what was filled.
      if (tlb_filled_.size() > kTlbFillsTracked) return flush_tlb();  // lost track: drop everything
      for (TlbEntry* t : tlb_filled_) {
        if (t->pte[1] == w) t->r = t->w = t->x = kTlbInvalid;
      }
    }
  }
}

void Cpu::tlb_drop_writable(uint32_t page) {
  if (tlb_filled_.size() > kTlbFillsTracked) return flush_tlb();
  for (TlbEntry* t : tlb_filled_) {
    if (t->page == page) t->w = kTlbInvalid;
  }
  tlb_writable_[page] = 0;
}

void Cpu::set_page_flag(uint32_t page, uint8_t flag) {
  // Cached translations may let stores reach this page without a look at its flags: drop them first.
  if (tlb_writable_[page]) tlb_drop_writable(page);
  flags_[page] |= flag;
  flags_changed(page);
}

bool Cpu::pmp_allows(uint64_t pa, uint32_t len, Priv p, Access access) const {
  // The entries with A != OFF, in priority order, bounds worked out when they were written.
  for (uint32_t i = 0; i < pmp_active_count_; i++) {
    const PmpRange& r = pmp_active_[i];
    if (pa + len <= r.lo || pa >= r.hi) continue;  // no byte of the access matches
    // The lowest-numbered entry matching any byte decides, and it must match all of them (3.7.1).
    if (pa < r.lo || pa + len > r.hi) return false;
    if (p == Priv::kMachine && !(r.cfg & kPmpL)) return true;
    return (r.cfg & pmp_bit(access)) != 0;
  }
  // No match: M-mode may, S and U may not (16 entries are implemented).
  return p == Priv::kMachine;
}

uint32_t Cpu::pmp_page_slow(uint64_t base, Priv p) const {
  // An access type allowed for the page as a whole is allowed for every access inside it: the first
  // entry that matches the page contains all of it, and no lower entry touches any part of it.
  uint32_t perms = 0;
  for (Access a : {Access::kLoad, Access::kStore, Access::kFetch}) {
    if (pmp_allows(base, kPageSize, p, a)) perms |= pmp_bit(a);
  }
  const uint64_t page = base >> kPageShift;  // Sv32 physical addresses have 34 bits: 22 of page number
  PmpMemo& m = pmp_memo_[static_cast<uint8_t>(p) & 3][page & (kPmpMemo - 1)];
  m.key = static_cast<uint32_t>(page + 1);
  m.perms = perms;
  return perms;
}

bool Cpu::pmp_allows_fast(uint64_t pa, uint32_t len, Priv p, Access access) const {
  // Allowed for the whole page: allowed here. Otherwise an entry may still allow these bytes (a range
  // smaller than the page), or the access may cross into another page: the exact check decides.
  const uint64_t last = pa + len - 1;
  if ((pa >> kPageShift) == (last >> kPageShift) && (pmp_page(pa & ~static_cast<uint64_t>(kPageSize - 1), p) & pmp_bit(access)) != 0) return true;
  return pmp_allows(pa, len, p, access);
}

void Cpu::walker_store(uint32_t off, uint32_t value) {
  const uint32_t page = off >> kPageShift;
  if (flags_[page] & kPageClean) {
    flags_[page] &= static_cast<uint8_t>(~kPageClean);
    flags_changed(page);
    dirty_[page] = kDirtyAll;
  }
  std::memcpy(ram_ + off, &value, 4);
  if ((flags_[page] & kPageDecoded) && code_store(off, 4, cur_page_, true)) leave_block_ = true;
}

uint32_t Cpu::walk(uint32_t va, Access access, Context c, uint64_t* pa, uint32_t* pte_out, uint32_t pte_offs[2]) {
  uint64_t table = static_cast<uint64_t>(satp & 0x3fffffu) << kPageShift;
  for (int level = 1; level >= 0; level--) {
    const uint64_t pte_pa = table + (((va >> (kPageShift + 10 * level)) & 0x3ffu) << 2);
    const uint64_t off = pte_pa - kRamBase;  // wraps to a huge value below RAM
    // The walk's own reads are S-mode accesses for PMP; a PTE outside RAM is an access fault.
    if (off >= ram_size_ || !pmp_allows_fast(pte_pa, 4, Priv::kSupervisor, Access::kLoad)) return fault(access, false);
    pte_offs[level] = static_cast<uint32_t>(off);
    uint32_t pte = rd32(ram_ + off);
    if (!(pte & kPteV) || (!(pte & kPteR) && (pte & kPteW))) return fault(access, true);
    if (!(pte & (kPteR | kPteX))) {  // a pointer to the next level
      if (level == 0) return fault(access, true);
      table = static_cast<uint64_t>(pte >> 10) << kPageShift;
      continue;
    }
    if (!leaf_allows(pte, access, c.priv, c.sum, c.mxr)) return fault(access, true);
    if (level == 1 && ((pte >> 10) & 0x3ffu) != 0) return fault(access, true);  // misaligned superpage
    // Svadu: the walker sets A (and D for a store) in the PTE itself; one hart, so the update is atomic.
    const uint32_t need = kPteA | (access == Access::kStore ? kPteD : 0);
    if ((pte & need) != need) {
      if (!pmp_allows_fast(pte_pa, 4, Priv::kSupervisor, Access::kStore)) return fault(access, false);
      pte |= need;
      walker_store(static_cast<uint32_t>(off), pte);
    }
    *pte_out = pte;
    *pa = level == 1 ? (static_cast<uint64_t>(pte >> 20) << 22) | (va & 0x3fffffu)
                     : (static_cast<uint64_t>(pte >> 10) << kPageShift) | (va & (kPageSize - 1));
    return 0;
  }
  return fault(access, true);  // not reached: level 0 returns above
}

uint32_t Cpu::translate(uint32_t va, Access access, Context c, uint64_t* pa) {
  uint32_t pte = kPteR | kPteW | kPteX | kPteA | kPteD;  // what a bare (untranslated) access may do
  uint32_t pte_offs[2] = {kTlbInvalid, kTlbInvalid};
  const bool paged = c.priv != Priv::kMachine && (satp >> 31) != 0;
  if (paged) {
    if (const uint32_t cause = walk(va, access, c, pa, &pte, pte_offs)) return cause;
  } else {
    *pa = va;
  }
  const uint64_t off = *pa - kRamBase;
  if (off >= ram_size_) return 0;  // devices are never cached: every access is checked exactly
  // Cache the page for every access type it allows as a whole (PMP uniform over the page, A set by
  // this walk; stores only once D is set and the page has no flags that route stores elsewhere).
  const uint32_t page = static_cast<uint32_t>(off >> kPageShift);
  const uint32_t perms = pmp_page(*pa & kPageMask, c.priv);
  for (uint32_t o : pte_offs) {
    if (o == kTlbInvalid) continue;
    const uint32_t p = o >> kPageShift;
    if (tlb_writable_[p]) tlb_drop_writable(p);
    if (flags_[p] & kPagePageTable) continue;
    flags_[p] |= kPagePageTable;
    flags_changed(p);
    page_table_list_.push_back(p);
  }
  TlbEntry& t = bank(c)[(va >> kPageShift) & (kTlbSize - 1)];
  // Past kTlbFillsTracked the list stops growing and the next flush clears every bank.
  if (t.r == kTlbInvalid && t.w == kTlbInvalid && t.x == kTlbInvalid && tlb_filled_.size() <= kTlbFillsTracked) tlb_filled_.push_back(&t);
  const uint32_t vpage = va & kPageMask;
  t.r = (perms & kPmpR) && leaf_allows(pte, Access::kLoad, c.priv, c.sum, c.mxr) ? vpage : kTlbInvalid;
  t.x = (perms & kPmpX) && leaf_allows(pte, Access::kFetch, c.priv, c.sum, c.mxr) ? vpage : kTlbInvalid;
  t.w = (perms & kPmpW) && (pte & kPteD) && flags_[page] == 0 && leaf_allows(pte, Access::kStore, c.priv, c.sum, c.mxr)
            ? vpage : kTlbInvalid;
  t.page = page;
  t.addend = reinterpret_cast<uintptr_t>(ram_ + (static_cast<size_t>(page) << kPageShift)) - vpage;
  t.pte[0] = pte_offs[0];  // the 4 KiB leaf's entry (none for a superpage)
  t.pte[1] = pte_offs[1];  // the root table's entry: a pointer, or a superpage's leaf
  for (int level = 0; level < 2; level++) {
    const uint32_t o = pte_offs[level];
    if (o != kTlbInvalid) pte_filter_[level][pte_filter_bit(o) >> 6] |= 1ull << (pte_filter_bit(o) & 63);
  }
  if (t.w != kTlbInvalid && !tlb_writable_[page]) {
    tlb_writable_[page] = 1;
    tlb_writable_list_.push_back(page);
  }
  return 0;
}

uint32_t Cpu::fetch_offset(uint32_t va, uint32_t* ram_offset) {
  if (fetch_bare_) {
    const uint32_t off = va - kRamBase;
    if (off >= ram_size_) return kInstrAccessFault;
    *ram_offset = off;
    return 0;
  }
  const TlbEntry& t = itlb_[(va >> kPageShift) & (kTlbSize - 1)];
  if (t.x == (va & kPageMask)) {
    *ram_offset = (t.page << kPageShift) | (va & (kPageSize - 1));
    return 0;
  }
  uint64_t pa;
  if (const uint32_t cause = translate(va, Access::kFetch, fetch_context(), &pa)) return cause;
  const uint64_t off = pa - kRamBase;
  if (off >= ram_size_ || !pmp_allows_fast(pa, 2, priv, Access::kFetch)) return kInstrAccessFault;
  *ram_offset = static_cast<uint32_t>(off);
  return 0;
}

uint32_t Cpu::load_virtual(uint32_t va, unsigned size, uint32_t* value, Mmio* result, uint32_t* tval) {
  *result = Mmio::kOk;
  if (data_limit_ != 0) {  // physical and unchecked (M-mode)
    const Mmio r = slow_load(va, size, value);
    if (r == Mmio::kFault) return kLoadAccessFault;
    *result = r;
    return 0;
  }
  const Context c = data_context();
  if ((va & (kPageSize - 1)) + size > kPageSize) {
    // Crosses a page: each byte is translated on its own (the pages need not be adjacent in RAM).
    uint32_t v = 0;
    for (unsigned i = 0; i < size; i++) {
      uint64_t pa;
      if (const uint32_t cause = translate(va + i, Access::kLoad, c, &pa)) {
        *tval = va + i;
        return cause;
      }
      const uint64_t off = pa - kRamBase;
      if (off >= ram_size_ || !pmp_allows_fast(pa, 1, c.priv, Access::kLoad)) {
        *tval = va + i;
        return kLoadAccessFault;
      }
      v |= static_cast<uint32_t>(ram_[off]) << (8 * i);
    }
    *value = v;
    return 0;
  }
  uint64_t pa;
  if (const uint32_t cause = translate(va, Access::kLoad, c, &pa)) return cause;
  if (pa >> 32 || !pmp_allows_fast(pa, size, c.priv, Access::kLoad)) return kLoadAccessFault;
  const Mmio r = slow_load(static_cast<uint32_t>(pa), size, value);
  if (r == Mmio::kFault) return kLoadAccessFault;
  *result = r;
  return 0;
}

bool Cpu::cached_store(uint32_t va, Context c, uint64_t* pa) {
  // A page that takes its stores through this slow path (it holds code, page tables, or is watched)
  // has no store tag, but its load tag names the same translation. The cache never holds a stale one,
  // so the leaf entry in RAM is the one it was filled from: if that lets this store through with D
  // already set, and PMP allows stores to the whole page, no walk is needed.
  // (A page whose flags have been cleared since, as a dirty-page consumer's is by its first store, is
  // left to translate(), which gives the entry its store tag.)
  const TlbEntry& t = dtlb_[(va >> kPageShift) & (kTlbSize - 1)];
  if (t.r != (va & kPageMask) || flags_[t.page] == 0) return false;
  const uint32_t leaf = t.pte[0] != kTlbInvalid ? t.pte[0] : t.pte[1];
  if (leaf != kTlbInvalid) {
    const uint32_t pte = rd32(ram_ + leaf);
    if (!(pte & kPteD) || !leaf_allows(pte, Access::kStore, c.priv, c.sum, c.mxr)) return false;
  }
  *pa = kRamBase + (static_cast<uint64_t>(t.page) << kPageShift) + (va & (kPageSize - 1));
  return (pmp_page(*pa & kPageMask, c.priv) & kPmpW) != 0;
}

uint32_t Cpu::store_virtual(uint32_t va, unsigned size, uint32_t value, StoreOutcome* out, uint32_t* tval) {
  if (data_limit_ != 0) {
    *out = slow_store(va, size, value, cur_page_);
    return *out == StoreOutcome::kFault ? static_cast<uint32_t>(kStoreAccessFault) : 0u;
  }
  const Context c = data_context();
  if ((va & (kPageSize - 1)) + size > kPageSize) {
    // Translate every byte first, so a fault on the second page leaves memory untouched.
    uint64_t pas[4];
    for (unsigned i = 0; i < size; i++) {
      if (const uint32_t cause = translate(va + i, Access::kStore, c, &pas[i])) {
        *tval = va + i;
        return cause;
      }
      if (pas[i] - kRamBase >= ram_size_ || !pmp_allows_fast(pas[i], 1, c.priv, Access::kStore)) {
        *tval = va + i;
        return kStoreAccessFault;
      }
    }
    *out = StoreOutcome::kOk;
    for (unsigned i = 0; i < size; i++) {
      const StoreOutcome o = slow_store(static_cast<uint32_t>(pas[i]), 1, (value >> (8 * i)) & 0xff, cur_page_);
      if (o == StoreOutcome::kExit || (o == StoreOutcome::kOkLeaveBlock && *out == StoreOutcome::kOk)) *out = o;
    }
  } else {
    uint64_t pa;
    if (!cached_store(va, c, &pa)) {
      if (const uint32_t cause = translate(va, Access::kStore, c, &pa)) return cause;
      if (pa >> 32 || !pmp_allows_fast(pa, size, c.priv, Access::kStore)) return kStoreAccessFault;
    }
    *out = slow_store(static_cast<uint32_t>(pa), size, value, cur_page_);
    if (*out == StoreOutcome::kFault) return kStoreAccessFault;
  }
  if (leave_block_ && *out == StoreOutcome::kOk) *out = StoreOutcome::kOkLeaveBlock;
  return 0;
}

uint32_t Cpu::amo_pointer(uint32_t va, Access access, uint8_t** host, uint32_t* page) {
  uint64_t pa = va;
  if (data_limit_ == 0) {
    // An aligned word never crosses a page. A store tag implies the page is readable too (W without R
    // is reserved in PTEs and ignored in PMP), so it serves read-modify-writes.
    const TlbEntry& t = dtlb_[(va >> kPageShift) & (kTlbSize - 1)];
    if ((access == Access::kLoad ? t.r : t.w) == (va & kPageMask)) {
      *host = reinterpret_cast<uint8_t*>(t.addend + va);
      *page = t.page;
      return 0;
    }
    if (const uint32_t cause = translate(va, access, data_context(), &pa)) return cause;
    if (!pmp_allows_fast(pa, 4, data_context().priv, access)) return fault(access, false);
  }
  const uint64_t off = pa - kRamBase;
  if (off > ram_size_ - 4u) return fault(access, false);  // atomics work on RAM only
  *host = ram_ + off;
  *page = static_cast<uint32_t>(off >> kPageShift);
  return 0;
}

}  // namespace lockstep
