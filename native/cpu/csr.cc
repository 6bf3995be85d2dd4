// Control and status registers of an M+U hart (privileged spec chapter 3 and Zicntr).
// WARL fields are legalised on write; a CSR that does not exist is an illegal instruction.
#include "cpu/cpu.h"

namespace lockstep {
namespace {

constexpr uint32_t kMstatusWritable =
    Cpu::kMstatusMIE | Cpu::kMstatusMPIE | Cpu::kMstatusMPP | Cpu::kMstatusMPRV | Cpu::kMstatusTW;

enum Csr : uint32_t {
  kCycle = 0xC00, kTime = 0xC01, kInstret = 0xC02, kCycleH = 0xC80, kTimeH = 0xC81, kInstretH = 0xC82,
  kMstatus = 0x300, kMisa = 0x301, kMie = 0x304, kMtvec = 0x305, kMcounteren = 0x306, kMenvcfg = 0x30A,
  kMstatusH = 0x310, kMenvcfgH = 0x31A, kMcountinhibit = 0x320,
  kMscratch = 0x340, kMepc = 0x341, kMcause = 0x342, kMtval = 0x343, kMip = 0x344,
  kPmpcfg0 = 0x3A0, kPmpaddr0 = 0x3B0,
  kMcycle = 0xB00, kMinstret = 0xB02, kMcycleH = 0xB80, kMinstretH = 0xB82,
  kMvendorid = 0xF11, kMarchid = 0xF12, kMimpid = 0xF13, kMhartid = 0xF14, kMconfigptr = 0xF15,
};

}  // namespace

bool Cpu::csr_read(uint32_t csr, uint32_t* v) {
  const uint64_t cycle = instret + mcycle_offset;   // one instruction per cycle
  const uint64_t minstret = instret + minstret_offset;
  switch (csr) {
    case kCycle: case kMcycle: *v = static_cast<uint32_t>(cycle); return true;
    case kCycleH: case kMcycleH: *v = static_cast<uint32_t>(cycle >> 32); return true;
    case kInstret: case kMinstret: *v = static_cast<uint32_t>(minstret); return true;
    case kInstretH: case kMinstretH: *v = static_cast<uint32_t>(minstret >> 32); return true;
    case kTime: *v = static_cast<uint32_t>(platform_->guest_time()); return true;
    case kTimeH: *v = static_cast<uint32_t>(platform_->guest_time() >> 32); return true;
    case kMstatus: *v = mstatus; return true;
    case kMstatusH: *v = 0; return true;
    case kMisa: *v = kMisaValue; return true;
    case kMie: *v = mie; return true;
    case kMip: *v = mip(); return true;
    case kMtvec: *v = mtvec; return true;
    case kMcounteren: *v = mcounteren; return true;
    case kMcountinhibit: *v = 0; return true;  // counting cannot be inhibited: instret is the log position
    case kMenvcfg: case kMenvcfgH: *v = 0; return true;
    case kMscratch: *v = mscratch; return true;
    case kMepc: *v = mepc; return true;
    case kMcause: *v = mcause; return true;
    case kMtval: *v = mtval; return true;
    case kMvendorid: case kMarchid: case kMimpid: case kMhartid: case kMconfigptr: *v = 0; return true;
  }
  // No PMP entries are implemented (allowed by the privileged spec, 3.7): the registers read as zero
  // and ignore writes, so firmware that programs them runs unchanged and U-mode is not restricted.
  if ((csr >= kPmpcfg0 && csr < kPmpcfg0 + 16) || (csr >= kPmpaddr0 && csr < kPmpaddr0 + 64)) {
    *v = 0;
    return true;
  }
  // Unimplemented hardware performance counters and their event selectors read as zero.
  if ((csr >= 0xB03 && csr <= 0xB1F) || (csr >= 0xB83 && csr <= 0xB9F) || (csr >= 0x323 && csr <= 0x33F) ||
      (csr >= 0xC03 && csr <= 0xC1F) || (csr >= 0xC83 && csr <= 0xC9F)) {
    *v = 0;
    return true;
  }
  return false;
}

bool Cpu::csr_write(uint32_t csr, uint32_t v) {
  switch (csr) {
    case kMstatus: {
      uint32_t s = (mstatus & ~kMstatusWritable) | (v & kMstatusWritable);
      const uint32_t mpp = (s & kMstatusMPP) >> 11;
      if (mpp != 0 && mpp != 3) s &= ~kMstatusMPP;  // WARL: only M (3) and U (0) exist
      mstatus = s;
      return true;
    }
    case kMie: mie = v & kMipMask; return true;
    case kMip: return true;  // MSIP/MTIP/MEIP are driven by CLINT and PLIC; nothing else exists
    case kMtvec: mtvec = (v & 3u) >= 2 ? (v & ~3u) : v; return true;
    case kMcounteren: mcounteren = v & 7u; return true;
    case kMscratch: mscratch = v; return true;
    case kMepc: mepc = v & ~1u; return true;
    case kMcause: mcause = v; return true;
    case kMtval: mtval = v; return true;
    case kMisa: case kMstatusH: case kMcountinhibit: case kMenvcfg: case kMenvcfgH: return true;  // WARL, fixed
    // A written counter holds its value for the next instruction: the writer itself does not count.
    case kMinstret: {
      const uint64_t cur = instret + minstret_offset;
      const uint64_t want = (cur & 0xffffffff00000000ull) | v;
      minstret_offset = want - (instret + 1);
      return true;
    }
    case kMinstretH: {
      const uint64_t cur = instret + 1 + minstret_offset;
      const uint64_t want = (static_cast<uint64_t>(v) << 32) | (cur & 0xffffffffu);
      minstret_offset = want - (instret + 1);
      return true;
    }
    case kMcycle: {
      const uint64_t cur = instret + mcycle_offset;
      mcycle_offset = ((cur & 0xffffffff00000000ull) | v) - (instret + 1);
      return true;
    }
    case kMcycleH: {
      const uint64_t cur = instret + 1 + mcycle_offset;
      mcycle_offset = ((static_cast<uint64_t>(v) << 32) | (cur & 0xffffffffu)) - (instret + 1);
      return true;
    }
  }
  uint32_t ignored;
  return csr_read(csr, &ignored);  // the read-as-zero counters ignore writes
}

Cpu::CsrResult Cpu::csr_op(uint32_t csr, uint32_t op, uint32_t src, bool write, uint32_t* old) {
  const uint32_t min_priv = (csr >> 8) & 3;
  if (static_cast<uint32_t>(priv) < min_priv) return CsrResult::kIllegal;
  if (write && (csr >> 10) == 3) return CsrResult::kIllegal;  // read-only range
  if (priv == Priv::kUser && (csr & 0xF60) == 0xC00) {  // cycle..hpmcounter31 and their h halves
    if (!(mcounteren & (1u << (csr & 31)))) return CsrResult::kIllegal;
  }
  uint32_t v;
  if (!csr_read(csr, &v)) return CsrResult::kIllegal;
  *old = v;
  if (!write) return stop_now ? CsrResult::kOkRecheck : CsrResult::kOk;
  const uint32_t nv = op == 1 ? src : op == 2 ? (v | src) : (v & ~src);
  if (!csr_write(csr, nv)) return CsrResult::kIllegal;
  // These can enable a pending interrupt: the run loop must look again before the next instruction.
  if (csr == kMstatus || csr == kMie || csr == kMip) return CsrResult::kOkRecheck;
  if (stop_now) return CsrResult::kOkRecheck;  // a replayed time read diverged
  return CsrResult::kOk;
}

bool Cpu::host_read_csr(uint32_t csr, uint32_t* value) { return csr_read(csr, value); }

bool Cpu::host_write_csr(uint32_t csr, uint32_t value) {
  uint32_t ignored;
  if (!csr_read(csr, &ignored)) return false;
  if (csr == kMinstret || csr == kMinstretH || csr == kMcycle || csr == kMcycleH) return false;
  return csr_write(csr, value);
}

}  // namespace lockstep
