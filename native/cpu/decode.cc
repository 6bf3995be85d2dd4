// Instruction decoding: raw bits to DecodedOp. Every reserved or unknown encoding becomes ILLEGAL
// carrying its raw bits, so garbage in memory can only ever produce an illegal-instruction trap.
#include "cpu/decode.h"

namespace lockstep {
namespace {

constexpr uint8_t kSink = 32;  // decoded destination for x0: writes land in a register nobody reads

inline int32_t sext(uint32_t v, int bits) {
  const uint32_t m = 1u << (bits - 1);
  return static_cast<int32_t>((v ^ m) - m);
}
inline uint32_t bits(uint32_t v, int hi, int lo) { return (v >> lo) & ((1u << (hi - lo + 1)) - 1); }
inline uint32_t bit(uint32_t v, int b) { return (v >> b) & 1u; }

DecodedOp make(Op op, int32_t imm, uint32_t rd, uint32_t rs1, uint32_t rs2, uint8_t len) {
  return DecodedOp{op, imm, static_cast<uint8_t>(rd == 0 ? kSink : rd), static_cast<uint8_t>(rs1),
                   static_cast<uint8_t>(rs2), len};
}
DecodedOp illegal(uint32_t raw, uint8_t len) { return DecodedOp{kOpILLEGAL, static_cast<int32_t>(raw), kSink, 0, 0, len}; }
// Stores and branches have no destination: rd carries rs2 (see the slot diagram in decode.h).
DecodedOp make_s(Op op, int32_t imm, uint32_t rs1, uint32_t rs2, uint8_t len) {
  return DecodedOp{op, imm, static_cast<uint8_t>(rs2), static_cast<uint8_t>(rs1), static_cast<uint8_t>(rs2), len};
}

// A branch against x0 compares one register with zero (bgtz and blez are blt and bge with rs1 = x0):
// one register read fewer, and the same outcome.
DecodedOp branch(Op op, int32_t imm, uint32_t rs1, uint32_t rs2, uint8_t len) {
  if (rs2 == 0) {
    switch (op) {
      case kOpBEQ: return make_s(kOpBEQZ, imm, rs1, 0, len);
      case kOpBNE: return make_s(kOpBNEZ, imm, rs1, 0, len);
      case kOpBLT: return make_s(kOpBLTZ, imm, rs1, 0, len);
      case kOpBGE: return make_s(kOpBGEZ, imm, rs1, 0, len);
      default: break;
    }
  } else if (rs1 == 0) {
    switch (op) {
      case kOpBEQ: return make_s(kOpBEQZ, imm, rs2, 0, len);
      case kOpBNE: return make_s(kOpBNEZ, imm, rs2, 0, len);
      case kOpBLT: return make_s(kOpBGTZ, imm, rs2, 0, len);  // 0 < rs2
      case kOpBGE: return make_s(kOpBLEZ, imm, rs2, 0, len);  // 0 >= rs2
      default: break;
    }
  }
  return make_s(op, imm, rs1, rs2, len);
}

// Register-register and register-immediate ALU ops with rd = x0 have no effect at all.
DecodedOp alu(Op op, int32_t imm, uint32_t rd, uint32_t rs1, uint32_t rs2, uint8_t len) {
  if (rd == 0) return DecodedOp{kOpNOP, 0, kSink, 0, 0, len};
  if (op == kOpADDI && rs1 == 0) return make(kOpLI, imm, rd, 0, 0, len);
  if (op == kOpADDI && imm == 0) return make(kOpMV, 0, rd, rs1, 0, len);
  return make(op, imm, rd, rs1, rs2, len);
}

DecodedOp decode32(uint32_t w) {
  const uint32_t opcode = w & 0x7f, rd = bits(w, 11, 7), f3 = bits(w, 14, 12), rs1 = bits(w, 19, 15),
                 rs2 = bits(w, 24, 20), f7 = bits(w, 31, 25);
  const int32_t imm_i = static_cast<int32_t>(w) >> 20;
  const int32_t imm_s = sext((bits(w, 31, 25) << 5) | bits(w, 11, 7), 12);
  const int32_t imm_b = sext((bit(w, 31) << 12) | (bit(w, 7) << 11) | (bits(w, 30, 25) << 5) | (bits(w, 11, 8) << 1), 13);
  const int32_t imm_u = static_cast<int32_t>(w & 0xfffff000u);
  const int32_t imm_j = sext((bit(w, 31) << 20) | (bits(w, 19, 12) << 12) | (bit(w, 20) << 11) | (bits(w, 30, 21) << 1), 21);
  switch (opcode) {
    case 0x37: return alu(kOpLUI, imm_u, rd, 0, 0, 2);
    case 0x17: return alu(kOpAUIPC, imm_u, rd, 0, 0, 2);
    case 0x6f: return make(rd == 0 ? kOpJ : kOpJAL, imm_j, rd, 0, 0, 2);
    case 0x67: return f3 == 0 ? make(rd == 0 ? kOpJR : kOpJALR, imm_i, rd, rs1, 0, 2) : illegal(w, 2);
    case 0x63: {
      static constexpr Op kBr[8] = {kOpBEQ, kOpBNE, kOpILLEGAL, kOpILLEGAL, kOpBLT, kOpBGE, kOpBLTU, kOpBGEU};
      return kBr[f3] == kOpILLEGAL ? illegal(w, 2) : branch(kBr[f3], imm_b, rs1, rs2, 2);
    }
    case 0x03: {
      static constexpr Op kLd[8] = {kOpLB, kOpLH, kOpLW, kOpILLEGAL, kOpLBU, kOpLHU, kOpILLEGAL, kOpILLEGAL};
      return kLd[f3] == kOpILLEGAL ? illegal(w, 2) : make(kLd[f3], imm_i, rd, rs1, 0, 2);
    }
    case 0x23: {
      if (f3 > 2) return illegal(w, 2);
      static constexpr Op kSt[3] = {kOpSB, kOpSH, kOpSW};
      return make_s(kSt[f3], imm_s, rs1, rs2, 2);
    }
    case 0x13:
      switch (f3) {
        case 0: return alu(kOpADDI, imm_i, rd, rs1, 0, 2);
        case 2: return alu(kOpSLTI, imm_i, rd, rs1, 0, 2);
        case 3: return alu(kOpSLTIU, imm_i, rd, rs1, 0, 2);
        case 4: return alu(kOpXORI, imm_i, rd, rs1, 0, 2);
        case 6: return alu(kOpORI, imm_i, rd, rs1, 0, 2);
        case 7: return alu(kOpANDI, imm_i, rd, rs1, 0, 2);
        case 1: return f7 == 0 ? alu(kOpSLLI, static_cast<int32_t>(rs2), rd, rs1, 0, 2) : illegal(w, 2);
        case 5:
          if (f7 == 0) return alu(kOpSRLI, static_cast<int32_t>(rs2), rd, rs1, 0, 2);
          if (f7 == 0x20) return alu(kOpSRAI, static_cast<int32_t>(rs2), rd, rs1, 0, 2);
          return illegal(w, 2);
      }
      return illegal(w, 2);
    case 0x33: {
      if (f7 == 0) {
        static constexpr Op kOp0[8] = {kOpADD, kOpSLL, kOpSLT, kOpSLTU, kOpXOR, kOpSRL, kOpOR, kOpAND};
        return alu(kOp0[f3], 0, rd, rs1, rs2, 2);
      }
      if (f7 == 0x20 && (f3 == 0 || f3 == 5)) return alu(f3 == 0 ? kOpSUB : kOpSRA, 0, rd, rs1, rs2, 2);
      if (f7 == 1) {
        static constexpr Op kM[8] = {kOpMUL, kOpMULH, kOpMULHSU, kOpMULHU, kOpDIV, kOpDIVU, kOpREM, kOpREMU};
        return alu(kM[f3], 0, rd, rs1, rs2, 2);
      }
      return illegal(w, 2);
    }
    case 0x0f:
      if (f3 == 0) return DecodedOp{kOpFENCE, 0, kSink, 0, 0, 2};
      if (f3 == 1) return DecodedOp{kOpFENCE_I, 0, kSink, 0, 0, 2};
      return illegal(w, 2);
    case 0x73: {
      const uint32_t csr = bits(w, 31, 20);
      if (f3 == 0) {
        if (f7 == 0x09 && rd == 0) {  // sfence.vma rs1, rs2
          return DecodedOp{kOpSFENCE_VMA, static_cast<int32_t>(w), kSink, static_cast<uint8_t>(rs1),
                           static_cast<uint8_t>(rs2), 2};
        }
        if (rd != 0 || rs1 != 0) return illegal(w, 2);
        if (w == 0x00000073) return DecodedOp{kOpECALL, 0, kSink, 0, 0, 2};
        if (w == 0x00100073) return DecodedOp{kOpEBREAK, 0, kSink, 0, 0, 2};
        if (w == 0x30200073) return DecodedOp{kOpMRET, 0, kSink, 0, 0, 2};
        if (w == 0x10200073) return DecodedOp{kOpSRET, 0, kSink, 0, 0, 2};
        if (w == 0x10500073) return DecodedOp{kOpWFI, 0, kSink, 0, 0, 2};
        return illegal(w, 2);
      }
      static constexpr Op kCsr[8] = {kOpILLEGAL, kOpCSRRW, kOpCSRRS, kOpCSRRC, kOpILLEGAL, kOpCSRRWI, kOpCSRRSI, kOpCSRRCI};
      if (kCsr[f3] == kOpILLEGAL) return illegal(w, 2);
      // rs2 keeps the raw rd (0 or not) because csrrw with rd=x0 must not read the CSR.
      DecodedOp d = make(kCsr[f3], static_cast<int32_t>(csr), rd, rs1, rd, 2);
      return d;
    }
    case 0x2f: {
      if (f3 != 2) return illegal(w, 2);
      switch (bits(w, 31, 27)) {
        case 0x02: return rs2 == 0 ? make(kOpLR_W, 0, rd, rs1, 0, 2) : illegal(w, 2);
        case 0x03: return make(kOpSC_W, 0, rd, rs1, rs2, 2);
        case 0x01: return make(kOpAMOSWAP, 0, rd, rs1, rs2, 2);
        case 0x00: return make(kOpAMOADD, 0, rd, rs1, rs2, 2);
        case 0x04: return make(kOpAMOXOR, 0, rd, rs1, rs2, 2);
        case 0x0c: return make(kOpAMOAND, 0, rd, rs1, rs2, 2);
        case 0x08: return make(kOpAMOOR, 0, rd, rs1, rs2, 2);
        case 0x10: return make(kOpAMOMIN, 0, rd, rs1, rs2, 2);
        case 0x14: return make(kOpAMOMAX, 0, rd, rs1, rs2, 2);
        case 0x18: return make(kOpAMOMINU, 0, rd, rs1, rs2, 2);
        case 0x1c: return make(kOpAMOMAXU, 0, rd, rs1, rs2, 2);
      }
      return illegal(w, 2);
    }
  }
  return illegal(w, 2);
}

DecodedOp decode16(uint32_t c) {
  const uint32_t q = c & 3, f3 = bits(c, 15, 13);
  const uint32_t rdp = bits(c, 4, 2) + 8, rs1p = bits(c, 9, 7) + 8;  // the x8..x15 register forms
  const uint32_t rd = bits(c, 11, 7), rs2 = bits(c, 6, 2);
  const int32_t imm6 = sext((bit(c, 12) << 5) | bits(c, 6, 2), 6);
  if (q == 0) {
    if (f3 == 0) {
      const uint32_t nzuimm = (bits(c, 12, 11) << 4) | (bits(c, 10, 7) << 6) | (bit(c, 6) << 2) | (bit(c, 5) << 3);
      return nzuimm == 0 ? illegal(c, 1) : make(kOpADDI, static_cast<int32_t>(nzuimm), rdp, 2, 0, 1);
    }
    const uint32_t off = (bits(c, 12, 10) << 3) | (bit(c, 6) << 2) | (bit(c, 5) << 6);
    if (f3 == 2) return make(kOpLW, static_cast<int32_t>(off), rdp, rs1p, 0, 1);
    if (f3 == 6) return make_s(kOpSW, static_cast<int32_t>(off), rs1p, rdp, 1);
    return illegal(c, 1);
  }
  if (q == 1) {
    const int32_t imm_j = sext((bit(c, 12) << 11) | (bit(c, 11) << 4) | (bits(c, 10, 9) << 8) | (bit(c, 8) << 10) |
                                   (bit(c, 7) << 6) | (bit(c, 6) << 7) | (bits(c, 5, 3) << 1) | (bit(c, 2) << 5),
                               12);
    const int32_t imm_b = sext((bit(c, 12) << 8) | (bits(c, 11, 10) << 3) | (bits(c, 6, 5) << 6) | (bits(c, 4, 3) << 1) |
                                   (bit(c, 2) << 5),
                               9);
    switch (f3) {
      case 0: return alu(kOpADDI, imm6, rd, rd, 0, 1);
      case 1: return make(kOpJAL, imm_j, 1, 0, 0, 1);
      case 2: return alu(kOpADDI, imm6, rd, 0, 0, 1);
      case 3:
        if (rd == 2) {
          const int32_t nz = sext((bit(c, 12) << 9) | (bit(c, 6) << 4) | (bit(c, 5) << 6) | (bits(c, 4, 3) << 7) |
                                      (bit(c, 2) << 5),
                                  10);
          return nz == 0 ? illegal(c, 1) : make(kOpADDI, nz, 2, 2, 0, 1);
        }
        return imm6 == 0 ? illegal(c, 1) : alu(kOpLUI, static_cast<int32_t>(static_cast<uint32_t>(imm6) << 12), rd, 0, 0, 1);
      case 4: {
        const uint32_t f2 = bits(c, 11, 10);
        if (f2 == 0 || f2 == 1) {
          if (bit(c, 12)) return illegal(c, 1);  // shamt[5] = 1 is reserved on RV32
          return make(f2 == 0 ? kOpSRLI : kOpSRAI, static_cast<int32_t>(rs2), rs1p, rs1p, 0, 1);
        }
        if (f2 == 2) return make(kOpANDI, imm6, rs1p, rs1p, 0, 1);
        if (bit(c, 12)) return illegal(c, 1);  // subw/addw: RV64 only
        static constexpr Op kArith[4] = {kOpSUB, kOpXOR, kOpOR, kOpAND};
        return make(kArith[bits(c, 6, 5)], 0, rs1p, rs1p, rdp, 1);
      }
      case 5: return make(kOpJ, imm_j, 0, 0, 0, 1);
      case 6: return make_s(kOpBEQZ, imm_b, rs1p, 0, 1);
      case 7: return make_s(kOpBNEZ, imm_b, rs1p, 0, 1);
    }
  }
  if (q == 2) {
    switch (f3) {
      case 0:
        if (bit(c, 12)) return illegal(c, 1);
        return alu(kOpSLLI, static_cast<int32_t>(rs2), rd, rd, 0, 1);
      case 2: {
        if (rd == 0) return illegal(c, 1);
        const uint32_t off = (bit(c, 12) << 5) | (bits(c, 6, 4) << 2) | (bits(c, 3, 2) << 6);
        return make(kOpLW, static_cast<int32_t>(off), rd, 2, 0, 1);
      }
      case 4:
        if (!bit(c, 12)) {
          if (rs2 == 0) return rd == 0 ? illegal(c, 1) : make(kOpJR, 0, 0, rd, 0, 1);
          return alu(kOpADD, 0, rd, 0, rs2, 1);
        }
        if (rs2 == 0) {
          if (rd == 0) return DecodedOp{kOpEBREAK, 0, kSink, 0, 0, 1};
          return make(kOpJALR, 0, 1, rd, 0, 1);
        }
        return alu(kOpADD, 0, rd, rd, rs2, 1);
      case 6: {
        const uint32_t off = (bits(c, 12, 9) << 2) | (bits(c, 8, 7) << 6);
        return make_s(kOpSW, static_cast<int32_t>(off), 2, rs2, 1);
      }
    }
    return illegal(c, 1);
  }
  return illegal(c, 1);  // unreachable: q == 3 is a 32-bit instruction
}

}  // namespace

DecodedOp decode(uint16_t lo, uint16_t hi) {
  if ((lo & 3) != 3) return decode16(lo);
  if ((lo & 0x1c) == 0x1c) return illegal(lo | (static_cast<uint32_t>(hi) << 16), 2);  // >= 48-bit encodings
  return decode32(lo | (static_cast<uint32_t>(hi) << 16));
}

const char* op_name(Op op) {
  static const char* const kNames[] = {
#define LOCKSTEP_OP_NAME(name) #name,
      LOCKSTEP_OPS(LOCKSTEP_OP_NAME)
#undef LOCKSTEP_OP_NAME
  };
  return op < kOpCount ? kNames[op] : "?";
}

}  // namespace lockstep
