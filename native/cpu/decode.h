// Instruction decoding: raw RV32IMAC (+Zicsr, Zifencei) bits to a pre-decoded slot.
// Pure functions of the instruction bits; compressed forms decode to their base-ISA expansions.
#pragma once

#include <cstdint>

namespace lockstep {

// X-macro: every operation the dispatch loop implements, in one place (labels, names, block ends).
#define LOCKSTEP_OPS(X)                                                                         \
  X(ILLEGAL) X(LUI) X(AUIPC) X(JAL) X(JALR) X(BEQ) X(BNE) X(BLT) X(BGE) X(BLTU) X(BGEU)         \
  X(BEQZ) X(BNEZ) X(BLTZ) X(BGEZ) X(BGTZ) X(BLEZ)                                             \
  X(LB) X(LH) X(LW) X(LBU) X(LHU) X(SB) X(SH) X(SW)                                            \
  X(ADDI) X(SLTI) X(SLTIU) X(XORI) X(ORI) X(ANDI) X(SLLI) X(SRLI) X(SRAI)                     \
  X(ADD) X(SUB) X(SLL) X(SLT) X(SLTU) X(XOR) X(SRL) X(SRA) X(OR) X(AND)                       \
  X(FENCE) X(FENCE_I) X(ECALL) X(EBREAK) X(MRET) X(SRET) X(WFI) X(SFENCE_VMA)                  \
  X(CSRRW) X(CSRRS) X(CSRRC) X(CSRRWI) X(CSRRSI) X(CSRRCI)                                     \
  X(MUL) X(MULH) X(MULHSU) X(MULHU) X(DIV) X(DIVU) X(REM) X(REMU)                              \
  X(LR_W) X(SC_W) X(AMOSWAP) X(AMOADD) X(AMOXOR) X(AMOAND) X(AMOOR)                            \
  X(AMOMIN) X(AMOMAX) X(AMOMINU) X(AMOMAXU)                                                    \
  X(LI) X(MV) X(NOP) X(J) X(JR)                                                                \
  X(STRADDLE) X(PAGE_END)

enum Op : uint8_t {
#define LOCKSTEP_OP_ENUM(name) kOp##name,
  LOCKSTEP_OPS(LOCKSTEP_OP_ENUM)
#undef LOCKSTEP_OP_ENUM
  kOpCount
};

/// What a slot names its handler by: the address of a label in the dispatch loop (GNU computed goto,
/// the default), or with -DLOCKSTEP_DISPATCH_SWITCH a handler number that one `switch` maps to the same
/// labels (portable C++: no labels as values). Either way the handler bodies are the same code.
#if defined(LOCKSTEP_DISPATCH_SWITCH)
using Handler = uintptr_t;
#else
using Handler = const void*;
#endif

/// One pre-decoded instruction slot (16 bytes: four fit a cache line).
///
///   0        8        12   13    14
///   +--------+--------+----+-----+--------+
///   | h      | imm    | rd | rs1 | n      |
///   +--------+--------+----+-----+--------+
///
/// h: handler of the dispatch loop (see Handler). rd is 32 (the sink) when the instruction
/// names x0 as destination, so handlers write without a check. n: the instructions from this slot
/// through the end of its block (Cpu's block accounting: a jump to the slot reads the count it
/// lands on). The length (16- or 32-bit) is in the handler, not the slot.
/// Register-register operations (ALU, M, LR/SC, AMOs) keep rs2 in imm; stores and branches, which
/// have no destination, keep rs2 in rd. ILLEGAL keeps the raw bits in imm (for mtval); CSR ops keep
/// the CSR number in imm bits 0-11 and the instruction's rd field in bits 16-20, and, for the
/// immediate forms, the 5-bit zimm in rs1. AMOs keep aq/rl nowhere (one hart: no effect). STRADDLE (a
/// 32-bit instruction in a page's last halfword) keeps its low halfword in imm; SFENCE_VMA its raw bits.
/// jalr with rd = x0 (ret, jr, c.jr) decodes to JR, which links nothing.
/// A branch that compares with x0 decodes to its compare-with-zero form (BEQZ … BLEZ: one register, in rs1).
/// Branches and jal keep their target as its byte offset from the pc of the slot's page, scaled by 8 to the
/// target slot's byte offset when it is on the page (Cpu::slot_of).
struct Decoded {
  Handler h;
  int32_t imm;
  uint8_t rd, rs1;
  uint16_t n;
};
static_assert(sizeof(Decoded) == 16, "a decoded slot is 16 bytes");

/// The decoder's output before the handler address is known.
struct DecodedOp {
  Op op;
  int32_t imm;
  uint8_t rd, rs1, rs2, len;
};

/// Decodes the instruction whose low halfword is `lo` and (for 32-bit forms) high halfword `hi`.
DecodedOp decode(uint16_t lo, uint16_t hi);

/// True for operations that end a block: control flow and traps-by-design. Every other operation
/// falls through to the next slot. Inline: re-decoding after a store asks it for every slot it recounts.
inline bool ends_block(Op op) {
  switch (op) {
    case kOpJAL: case kOpJ: case kOpJALR: case kOpJR: case kOpBEQ: case kOpBNE: case kOpBLT: case kOpBGE: case kOpBLTU:
    case kOpBGEU: case kOpBEQZ: case kOpBNEZ: case kOpBLTZ: case kOpBGEZ: case kOpBGTZ: case kOpBLEZ:
    case kOpECALL: case kOpEBREAK: case kOpMRET: case kOpSRET: case kOpWFI: case kOpFENCE_I:
    case kOpILLEGAL: case kOpSTRADDLE: case kOpPAGE_END:
      return true;
    default:
      return false;
  }
}

/// Mnemonic for diagnostics and tests.
const char* op_name(Op op);

}  // namespace lockstep
