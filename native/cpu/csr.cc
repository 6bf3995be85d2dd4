// Control and status registers of an M+S+U hart (privileged spec v1.12 chapters 3 and 4, Zicntr, and
// the debug trigger registers as "no triggers"). WARL fields are legalised on write; a CSR that does not
// exist is an illegal instruction.
#include "cpu/cpu.h"

namespace lockstep {
namespace {

constexpr uint32_t kMstatusWritable =
    Cpu::kMstatusSIE | Cpu::kMstatusMIE | Cpu::kMstatusSPIE | Cpu::kMstatusMPIE | Cpu::kMstatusSPP |
    Cpu::kMstatusMPP | Cpu::kMstatusMPRV | Cpu::kMstatusSUM | Cpu::kMstatusMXR | Cpu::kMstatusTVM |
    Cpu::kMstatusTW | Cpu::kMstatusTSR;
constexpr uint32_t kSstatusWritable =
    Cpu::kMstatusSIE | Cpu::kMstatusSPIE | Cpu::kMstatusSPP | Cpu::kMstatusSUM | Cpu::kMstatusMXR;
constexpr uint32_t kSeip = 1u << kIrqSExt;
constexpr uint32_t kSsip = 1u << kIrqSSoft;

enum Csr : uint32_t {
  kCycle = 0xC00, kTime = 0xC01, kInstret = 0xC02, kCycleH = 0xC80, kTimeH = 0xC81, kInstretH = 0xC82,
  kSstatus = 0x100, kSie = 0x104, kStvec = 0x105, kScounteren = 0x106, kSenvcfg = 0x10A,
  kSscratch = 0x140, kSepc = 0x141, kScause = 0x142, kStval = 0x143, kSip = 0x144, kSatp = 0x180,
  kMstatus = 0x300, kMisa = 0x301, kMedeleg = 0x302, kMideleg = 0x303, kMie = 0x304, kMtvec = 0x305,
  kMcounteren = 0x306, kMenvcfg = 0x30A, kMstatusH = 0x310, kMenvcfgH = 0x31A, kMcountinhibit = 0x320,
  kMscratch = 0x340, kMepc = 0x341, kMcause = 0x342, kMtval = 0x343, kMip = 0x344,
  kPmpcfg0 = 0x3A0, kPmpaddr0 = 0x3B0,
  kTselect = 0x7A0, kTdata1 = 0x7A1, kTdata2 = 0x7A2, kTdata3 = 0x7A3, kTinfo = 0x7A4,
  kMcycle = 0xB00, kMinstret = 0xB02, kMcycleH = 0xB80, kMinstretH = 0xB82,
  kMvendorid = 0xF11, kMarchid = 0xF12, kMimpid = 0xF13, kMhartid = 0xF14, kMconfigptr = 0xF15,
};

constexpr uint8_t kPmpR = 1, kPmpW = 2, kPmpL = 0x80, kPmpA = 0x18, kPmpTor = 0x08;

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
    case kSstatus: *v = mstatus & kSstatusMask; return true;
    case kSie: *v = mie & mideleg; return true;
    case kSip: *v = mip() & mideleg; return true;
    case kStvec: *v = stvec; return true;
    case kScounteren: *v = scounteren; return true;
    case kSscratch: *v = sscratch; return true;
    case kSepc: *v = sepc; return true;
    case kScause: *v = scause; return true;
    case kStval: *v = stval; return true;
    case kSatp: *v = satp; return true;
    case kMstatus: *v = mstatus; return true;
    case kMstatusH: *v = 0; return true;
    case kMisa: *v = kMisaValue; return true;
    case kMedeleg: *v = medeleg; return true;
    case kMideleg: *v = mideleg; return true;
    case kMie: *v = mie; return true;
    case kMip: *v = mip(); return true;
    case kMtvec: *v = mtvec; return true;
    case kMcounteren: *v = mcounteren; return true;
    case kMcountinhibit: *v = 0; return true;  // counting cannot be inhibited: instret is the log position
    // No envcfg field is implemented (FIOM, CBIE, CBCFE, CBZE, PBMTE, STCE are all WARL zero).
    case kMenvcfg: case kMenvcfgH: case kSenvcfg: *v = 0; return true;
    case kMscratch: *v = mscratch; return true;
    case kMepc: *v = mepc; return true;
    case kMcause: *v = mcause; return true;
    case kMtval: *v = mtval; return true;
    // Debug triggers: none. tselect holds only 0; tdata1 reads type 0 ("no trigger at this tselect")
    // and tinfo 1 (the same, as the debug spec says for a trigger that does not exist), which is where
    // OpenSBI's and debuggers' enumeration stops.
    case kTselect: case kTdata1: case kTdata2: case kTdata3: *v = 0; return true;
    case kTinfo: *v = 1; return true;
    case kMvendorid: case kMarchid: case kMimpid: case kMhartid: case kMconfigptr: *v = 0; return true;
  }
  if (csr >= kPmpcfg0 && csr < kPmpcfg0 + 16) {
    const uint32_t i = (csr - kPmpcfg0) * 4;
    *v = i < kPmpEntries ? pmpcfg[i] | (pmpcfg[i + 1] << 8) | (pmpcfg[i + 2] << 16) | (static_cast<uint32_t>(pmpcfg[i + 3]) << 24) : 0;
    return true;
  }
  if (csr >= kPmpaddr0 && csr < kPmpaddr0 + 64) {  // entries 16..63 are not implemented: zero
    const uint32_t i = csr - kPmpaddr0;
    *v = i < kPmpEntries ? pmpaddr[i] : 0;
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

void Cpu::pmp_cfg_write(uint32_t i, uint8_t v) {
  if (pmpcfg[i] & kPmpL) return;  // locked until reset
  if ((v & kPmpW) && !(v & kPmpR)) return;  // R=0 W=1 is reserved: the write is ignored, as QEMU does
  pmpcfg[i] = v & 0x9f;  // bits 5 and 6 are reserved (read as zero)
}

bool Cpu::csr_write(uint32_t csr, uint32_t v) {
  switch (csr) {
    case kMstatus: {
      uint32_t s = (mstatus & ~kMstatusWritable) | (v & kMstatusWritable);
      if (((s & kMstatusMPP) >> 11) == 2) s &= ~kMstatusMPP;  // WARL: 2 is reserved; it becomes U
      mstatus = s;
      return true;
    }
    case kSstatus: mstatus = (mstatus & ~kSstatusWritable) | (v & kSstatusWritable); return true;
    case kMie: mie = v & kMipMask; return true;
    case kSie: mie = (mie & ~mideleg) | (v & mideleg); return true;
    // MSIP, MTIP and MEIP are driven by the CLINT and the PLIC; M-mode software owns SSIP, STIP and SEIP
    // (an SBI firmware forwards the timer to S-mode through STIP), S-mode only SSIP and only if delegated.
    case kMip: mip_sw = (mip_sw & ~kMipSoftware) | (v & kMipSoftware); return true;
    case kSip: mip_sw = (mip_sw & ~(mideleg & kSsip)) | (v & mideleg & kSsip); return true;
    case kMedeleg: medeleg = v & kMedelegMask; return true;
    case kMideleg: mideleg = v & kMidelegMask; return true;
    case kMtvec: mtvec = (v & 3u) >= 2 ? (v & ~3u) : v; return true;
    case kStvec: stvec = (v & 3u) >= 2 ? (v & ~3u) : v; return true;
    case kMcounteren: mcounteren = v & 7u; return true;
    case kScounteren: scounteren = v & 7u; return true;
    case kMscratch: mscratch = v; return true;
    case kSscratch: sscratch = v; return true;
    case kMepc: mepc = v & ~1u; return true;
    case kSepc: sepc = v & ~1u; return true;
    case kMcause: mcause = v; return true;
    case kScause: scause = v; return true;
    case kMtval: mtval = v; return true;
    case kStval: stval = v; return true;
    case kSatp:  // MODE (bare or Sv32), all 9 ASID bits and the root PPN are kept
      satp = v;
      flush_tlb();
      return true;
    case kMisa: case kMstatusH: case kMcountinhibit: case kMenvcfg: case kMenvcfgH: case kSenvcfg: return true;  // WARL, fixed
    case kTselect: case kTdata1: case kTdata2: case kTdata3: case kTinfo: return true;  // no triggers
    // A written counter holds its value for the next instruction: the write replaces the writing
    // instruction's own increment, of the whole 64-bit counter (either half written).
    case kMinstret: {
      const uint64_t cur = instret + minstret_offset;
      minstret_offset = ((cur & 0xffffffff00000000ull) | v) - (instret + 1);
      return true;
    }
    case kMinstretH: {
      const uint64_t cur = instret + minstret_offset;
      minstret_offset = ((static_cast<uint64_t>(v) << 32) | (cur & 0xffffffffu)) - (instret + 1);
      return true;
    }
    case kMcycle: {
      const uint64_t cur = instret + mcycle_offset;
      mcycle_offset = ((cur & 0xffffffff00000000ull) | v) - (instret + 1);
      return true;
    }
    case kMcycleH: {
      const uint64_t cur = instret + mcycle_offset;
      mcycle_offset = ((static_cast<uint64_t>(v) << 32) | (cur & 0xffffffffu)) - (instret + 1);
      return true;
    }
  }
  if (csr >= kPmpcfg0 && csr < kPmpcfg0 + 4) {
    for (uint32_t b = 0; b < 4; b++) pmp_cfg_write((csr - kPmpcfg0) * 4 + b, static_cast<uint8_t>(v >> (8 * b)));
    pmp_changed();
    return true;
  }
  if (csr >= kPmpaddr0 && csr < kPmpaddr0 + kPmpEntries) {
    const uint32_t i = csr - kPmpaddr0;
    // Locked: by its own L bit, or as the bottom of a locked TOR entry above it.
    const bool locked = (pmpcfg[i] & kPmpL) || (i + 1 < kPmpEntries && (pmpcfg[i + 1] & kPmpL) &&
                                                (pmpcfg[i + 1] & kPmpA) == kPmpTor);
    if (!locked) pmpaddr[i] = v;
    pmp_changed();
    return true;
  }
  uint32_t ignored;
  return csr_read(csr, &ignored);  // the read-as-zero registers ignore writes
}

Cpu::CsrResult Cpu::csr_op(uint32_t csr, uint32_t op, uint32_t src, bool write, uint32_t* old) {
  const uint32_t min_priv = (csr >> 8) & 3;
  if (static_cast<uint32_t>(priv) < min_priv) return CsrResult::kIllegal;
  if (write && (csr >> 10) == 3) return CsrResult::kIllegal;  // read-only range
  if ((csr & 0xF60) == 0xC00 && priv != Priv::kMachine) {  // cycle..hpmcounter31 and their h halves
    const uint32_t bit = 1u << (csr & 31);
    if (!(mcounteren & bit) || (priv == Priv::kUser && !(scounteren & bit))) return CsrResult::kIllegal;
  }
  if (csr == kSatp && priv == Priv::kSupervisor && (mstatus & kMstatusTVM)) return CsrResult::kIllegal;
  uint32_t v;
  if (!csr_read(csr, &v)) return CsrResult::kIllegal;
  *old = v;
  if (!write) {
    const bool recheck = stop_now || recheck_after_read;
    recheck_after_read = false;
    return recheck ? CsrResult::kOkRecheck : CsrResult::kOk;
  }
  // Read-modify-write of mip uses the software-writable SEIP bit, not the PLIC's line (spec 3.1.9).
  const uint32_t base = csr == kMip ? (v & ~kSeip) | (mip_sw & kSeip) : v;
  const uint32_t nv = op == 1 ? src : op == 2 ? (base | src) : (base & ~src);
  if (!csr_write(csr, nv)) return CsrResult::kIllegal;
  switch (csr) {
    // These can enable a pending interrupt or change how memory is translated and protected: the run
    // loop must look again before the next instruction.
    case kMstatus: case kSstatus: case kMie: case kSie: case kMip: case kSip: case kMideleg: case kSatp:
      return CsrResult::kOkRecheck;
  }
  if ((csr >= kPmpcfg0 && csr < kPmpcfg0 + 4) || (csr >= kPmpaddr0 && csr < kPmpaddr0 + kPmpEntries)) {
    return CsrResult::kOkRecheck;
  }
  if (stop_now) return CsrResult::kOkRecheck;  // a replayed time read diverged
  return CsrResult::kOk;
}

bool Cpu::host_read_csr(uint32_t csr, uint32_t* value) {
  // The host's look at the clock is not the guest's: it must not log or consume a clock event.
  if (csr == kTime || csr == kTimeH) {
    const uint64_t t = platform_->mtime();
    *value = static_cast<uint32_t>(csr == kTime ? t : t >> 32);
    return true;
  }
  return csr_read(csr, value);
}

bool Cpu::host_write_csr(uint32_t csr, uint32_t value) {
  uint32_t ignored;
  if (csr == kTime || csr == kTimeH) return false;
  if (!csr_read(csr, &ignored)) return false;
  if (csr == kMinstret || csr == kMinstretH || csr == kMcycle || csr == kMcycleH) return false;
  return csr_write(csr, value);
}

}  // namespace lockstep
