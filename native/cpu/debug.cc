// Debugger support of the hart: one instruction at a time under breakpoints and watchpoints. Reached
// from run() only while Cpu::debug is set, so the plain run loop pays one test per slice for it.
#include <cstring>

#include "cpu/cpu.h"

namespace lockstep {

bool Cpu::pending_access(uint32_t* addr, uint32_t* size, uint8_t* on) {
  uint32_t off = 0;
  if (fetch_bare_) {
    off = pc - kRamBase;
    if (off >= ram_size_ || ram_size_ - off < 2) return false;
  } else if (fetch_offset(pc, &off) != 0) {
    return false;  // the fetch faults: the instruction makes no access
  }
  uint16_t lo, hi = 0;
  std::memcpy(&lo, ram_ + off, 2);
  if ((lo & 3) == 3) {
    uint32_t off2 = off + 2;
    if ((pc & (kPageSize - 1)) == kPageSize - 2 && !fetch_bare_) {
      if (fetch_offset(pc + 2, &off2) != 0) return false;
    }
    if (off2 >= ram_size_ || ram_size_ - off2 < 2) return false;
    std::memcpy(&hi, ram_ + off2, 2);
  }
  const DecodedOp d = decode(lo, hi);
  const uint32_t base = x[d.rs1];
  const uint32_t offset_addr = base + static_cast<uint32_t>(d.imm);
  switch (d.op) {
    case kOpLB: case kOpLBU: *addr = offset_addr; *size = 1; *on = 1; return true;
    case kOpLH: case kOpLHU: *addr = offset_addr; *size = 2; *on = 1; return true;
    case kOpLW: *addr = offset_addr; *size = 4; *on = 1; return true;
    case kOpSB: *addr = offset_addr; *size = 1; *on = 2; return true;
    case kOpSH: *addr = offset_addr; *size = 2; *on = 2; return true;
    case kOpSW: *addr = offset_addr; *size = 4; *on = 2; return true;
    case kOpLR_W: *addr = base; *size = 4; *on = 1; return true;
    case kOpSC_W:
      // A store-conditional that fails stores nothing.
      if (!reservation_valid || reservation != base) return false;
      *addr = base; *size = 4; *on = 2; return true;
    case kOpAMOSWAP: case kOpAMOADD: case kOpAMOXOR: case kOpAMOAND: case kOpAMOOR:
    case kOpAMOMIN: case kOpAMOMAX: case kOpAMOMINU: case kOpAMOMAXU:
      *addr = base; *size = 4; *on = 3; return true;
    default:
      return false;
  }
}

bool Cpu::debug_step(Stop* out) {
  DebugState& d = *debug;
  // The position a run resumed from is stepped over: its breakpoint or watchpoint was reported.
  if (!(instret == d.resume_instret && pc == d.resume_pc)) {
    for (const uint32_t b : d.breakpoints) {
      if (b == pc) {
        d.hit = DebugState::kBreakpoint;
        d.hit_addr = pc;
        *out = Stop::kDebug;
        return true;
      }
    }
    // Watchpoints fire before the accessing instruction executes, as RISC-V debug triggers do (gdb
    // steps the instruction itself and then compares the watched value).
    update_mode();
    uint32_t addr = 0, size = 0;
    uint8_t on = 0;
    if (!d.watches.empty() && pending_access(&addr, &size, &on)) {
      for (const DebugState::Watch& w : d.watches) {
        if ((w.on & on) == 0) continue;
        const uint64_t lo = addr, hi = static_cast<uint64_t>(addr) + size;
        const uint64_t wlo = w.addr, whi = static_cast<uint64_t>(w.addr) + w.len;
        if (hi <= wlo || whi <= lo) continue;
        d.hit = w.on == 3 ? DebugState::kWatchAccess : w.on == 2 ? DebugState::kWatchWrite : DebugState::kWatchRead;
        d.hit_addr = static_cast<uint32_t>(lo > wlo ? lo : wlo);
        *out = Stop::kDebug;
        return true;
      }
    }
  }
  update_mode();  // a translated fetch above may have refilled the caches run_inner reads
  switch (run_inner(instret + 1)) {
    case Inner::kExit: *out = Stop::kExit; return true;
    case Inner::kFatal: *out = Stop::kFatalTrap; return true;
    default: break;
  }
  if (d.step) {
    d.hit = DebugState::kStep;
    d.hit_addr = pc;
    *out = Stop::kDebug;
    return true;
  }
  return false;
}

bool Cpu::debug_translate(uint32_t va, uint32_t* pa) const {
  if (data_context().priv == Priv::kMachine || (satp >> 31) == 0) {
    *pa = va;
    return true;
  }
  constexpr uint32_t kV = 1, kR = 2, kW = 4, kX = 8;
  auto read_pte = [this](uint64_t addr, uint32_t* pte) {
    const uint64_t off = addr - kRamBase;
    if (addr < kRamBase || off + 4 > ram_size_) return false;
    std::memcpy(pte, ram_ + off, 4);
    return true;
  };
  uint64_t table = static_cast<uint64_t>(satp & 0x3fffffu) << kPageShift;
  for (int level = 1; level >= 0; level--) {
    const uint32_t vpn = level == 1 ? va >> 22 : (va >> 12) & 0x3ffu;
    uint32_t pte = 0;
    if (!read_pte(table + vpn * 4u, &pte)) return false;
    if (!(pte & kV) || (!(pte & kR) && (pte & kW))) return false;
    const uint64_t ppn = pte >> 10;
    if (pte & (kR | kX)) {
      uint64_t phys;
      if (level == 1) {
        if (ppn & 0x3ffu) return false;  // a misaligned superpage
        phys = (ppn << kPageShift) | (va & 0x3fffffu);
      } else {
        phys = (ppn << kPageShift) | (va & (kPageSize - 1));
      }
      if (phys > UINT32_MAX) return false;
      *pa = static_cast<uint32_t>(phys);
      return true;
    }
    table = ppn << kPageShift;
  }
  return false;
}

}  // namespace lockstep
