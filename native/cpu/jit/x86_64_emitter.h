// A small x86-64 machine-code encoder for the block compiler: just the instruction forms jit.cc emits.
// Pure byte writing into a caller-owned buffer; no allocation, no system calls.
#pragma once

#include <cstdint>
#include <cstring>

namespace lockstep::x64 {

enum Reg : uint8_t { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15 };

/// Condition codes (the low nibble of Jcc / SETcc).
enum Cond : uint8_t { kO, kNO, kB, kAE, kE, kNE, kBE, kA, kS, kNS, kP, kNP, kL, kGE, kLE, kG };

/// A memory operand [base + index * scale + disp] (index < 0: none; index may not be RSP).
struct Mem {
  Reg base;
  int32_t disp = 0;
  int index = -1;
  uint8_t scale = 1;
};

class Emitter {
 public:
  /// Emits at `buf` (the address the code runs at), writing each byte at that address + `write_delta`
  /// (a writable view of the same memory; 0 when it is writable in place).
  Emitter(uint8_t* buf, size_t cap, ptrdiff_t write_delta = 0) : p_(buf), start_(buf), end_(buf + cap), delta_(write_delta) {}
  uint8_t* here() const { return p_; }
  size_t size() const { return static_cast<size_t>(p_ - start_); }
  /// False once anything was written past the end (the caller then discards the block).
  bool ok() const { return p_ <= end_; }

  void byte(uint8_t b) {
    if (p_ < end_) p_[delta_] = b;
    p_++;
  }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; i++) byte(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < 8; i++) byte(static_cast<uint8_t>(v >> (8 * i)));
  }

  // --- generic forms ---
  /// [REX] opcode ModRM(reg, mem): `w` sets REX.W; `byte_reg` forces a REX so that reg 4-7 name spl..dil.
  void op_mem(std::initializer_list<uint8_t> opcode, int reg, const Mem& m, bool w = false, bool prefix66 = false) {
    if (prefix66) byte(0x66);
    const int x = m.index >= 0 ? (m.index >> 3) & 1 : 0;
    const uint8_t rex = static_cast<uint8_t>((w ? 8 : 0) | (((reg >> 3) & 1) << 2) | (x << 1) | ((m.base >> 3) & 1));
    if (rex) byte(0x40 | rex);
    for (uint8_t b : opcode) byte(b);
    modrm_mem(reg, m);
  }
  /// [REX] opcode ModRM(reg, rm) with mod = 3.
  void op_reg(std::initializer_list<uint8_t> opcode, int reg, int rm, bool w = false) {
    const uint8_t rex = static_cast<uint8_t>((w ? 8 : 0) | (((reg >> 3) & 1) << 2) | ((rm >> 3) & 1));
    if (rex) byte(0x40 | rex);
    for (uint8_t b : opcode) byte(b);
    byte(static_cast<uint8_t>(0xc0 | ((reg & 7) << 3) | (rm & 7)));
  }

  // --- moves ---
  void mov_load32(Reg r, const Mem& m) { op_mem({0x8b}, r, m); }
  void mov_load64(Reg r, const Mem& m) { op_mem({0x8b}, r, m, true); }
  void mov_store32(const Mem& m, Reg r) { op_mem({0x89}, r, m); }
  void mov_store64(const Mem& m, Reg r) { op_mem({0x89}, r, m, true); }
  void mov_store16(const Mem& m, Reg r) { op_mem({0x89}, r, m, false, true); }
  void mov_store8(const Mem& m, Reg r) { op_mem({0x88}, r, m); }  // al, cl, dl, bl only (no REX forcing)
  void mov_store_imm32(const Mem& m, uint32_t imm) {
    op_mem({0xc7}, 0, m);
    u32(imm);
  }
  void mov_rr32(Reg dst, Reg src) { op_reg({0x89}, src, dst); }
  void mov_rr64(Reg dst, Reg src) { op_reg({0x89}, src, dst, true); }
  void mov_imm32(Reg r, uint32_t imm) {
    if (r >= 8) byte(0x41);
    byte(static_cast<uint8_t>(0xb8 + (r & 7)));
    u32(imm);
  }
  void mov_imm64(Reg r, uint64_t imm) {
    byte(static_cast<uint8_t>(0x48 | ((r >> 3) & 1)));
    byte(static_cast<uint8_t>(0xb8 + (r & 7)));
    u64(imm);
  }
  /// mov rax, [imm64] (moffs form).
  void mov_rax_abs(const void* addr) {
    byte(0x48);
    byte(0xa1);
    u64(reinterpret_cast<uintptr_t>(addr));
  }
  void movsx8(Reg r, const Mem& m) { op_mem({0x0f, 0xbe}, r, m); }
  void movzx8(Reg r, const Mem& m) { op_mem({0x0f, 0xb6}, r, m); }
  void movsx16(Reg r, const Mem& m) { op_mem({0x0f, 0xbf}, r, m); }
  void movzx16(Reg r, const Mem& m) { op_mem({0x0f, 0xb7}, r, m); }
  void movsxd(Reg r, const Mem& m) { op_mem({0x63}, r, m, true); }
  void movzx8_rr(Reg dst, Reg src8) { op_reg({0x0f, 0xb6}, dst, src8); }  // src: al, cl, dl, bl

  // --- ALU: `ext` is the /digit of the 0x81/0x83 group: add 0, or 1, and 4, sub 5, xor 6, cmp 7 ---
  enum AluExt : uint8_t { kAdd = 0, kOr = 1, kAnd = 4, kSub = 5, kXor = 6, kCmp = 7 };
  void alu_ri(AluExt ext, Reg r, int32_t imm, bool w = false) {
    op_reg({group_opcode(imm)}, ext, r, w);
    group_imm(imm);
  }
  void alu_mi(AluExt ext, const Mem& m, int32_t imm) {
    op_mem({group_opcode(imm)}, ext, m);
    group_imm(imm);
  }
  // The 0x81/0x83 group: 0x83 sign-extends an imm8, 0x81 takes an imm32.
  static uint8_t group_opcode(int32_t imm) { return imm >= -128 && imm <= 127 ? 0x83 : 0x81; }
  void group_imm(int32_t imm) {
    if (group_opcode(imm) == 0x83) byte(static_cast<uint8_t>(imm));
    else u32(static_cast<uint32_t>(imm));
  }
  /// reg op= [mem] (opcode 0x03/0x0b/0x23/0x2b/0x33/0x3b = ext * 8 + 3).
  void alu_rm(AluExt ext, Reg r, const Mem& m, bool w = false) { op_mem({static_cast<uint8_t>(ext * 8 + 3)}, r, m, w); }
  /// [mem] op= reg.
  void alu_mr(AluExt ext, const Mem& m, Reg r) { op_mem({static_cast<uint8_t>(ext * 8 + 1)}, r, m); }
  void alu_rr(AluExt ext, Reg dst, Reg src, bool w = false) { op_reg({static_cast<uint8_t>(ext * 8 + 1)}, src, dst, w); }
  void cmp_mem8_imm(const Mem& m, uint8_t imm) {
    op_mem({0x80}, 7, m);
    byte(imm);
  }
  void test_rr32(Reg a, Reg b) { op_reg({0x85}, b, a); }
  void test_rr64(Reg a, Reg b) { op_reg({0x85}, b, a, true); }
  void test_ri32(Reg r, uint32_t imm) {
    op_reg({0xf7}, 0, r);
    u32(imm);
  }
  /// Shifts: shl 4, shr 5, sar 7.
  enum ShiftExt : uint8_t { kShl = 4, kShr = 5, kSar = 7 };
  void shift_ri(ShiftExt ext, Reg r, uint8_t imm, bool w = false) {
    op_reg({0xc1}, ext, r, w);
    byte(imm);
  }
  void shift_mi(ShiftExt ext, const Mem& m, uint8_t imm) {
    op_mem({0xc1}, ext, m);
    byte(imm);
  }
  void shift_rcl(ShiftExt ext, Reg r) { op_reg({0xd3}, ext, r); }
  void imul_rm32(Reg r, const Mem& m) { op_mem({0x0f, 0xaf}, r, m); }
  void imul_rr64(Reg dst, Reg src) { op_reg({0x0f, 0xaf}, dst, src, true); }
  void imul_rr32(Reg dst, Reg src) { op_reg({0x0f, 0xaf}, dst, src); }
  void movsxd_rr(Reg dst, Reg src) { op_reg({0x63}, dst, src, true); }
  void cdq() { byte(0x99); }
  void div_r32(Reg r) { op_reg({0xf7}, 6, r); }
  void idiv_r32(Reg r) { op_reg({0xf7}, 7, r); }
  void setcc(Cond c, Reg r8) { op_reg({0x0f, static_cast<uint8_t>(0x90 + c)}, 0, r8); }  // al, cl, dl, bl
  void inc64(Reg r) { op_reg({0xff}, 0, r, true); }
  void lea32(Reg r, const Mem& m) { op_mem({0x8d}, r, m); }

  // --- control flow ---
  void push(Reg r) {
    if (r >= 8) byte(0x41);
    byte(static_cast<uint8_t>(0x50 + (r & 7)));
  }
  void pop(Reg r) {
    if (r >= 8) byte(0x41);
    byte(static_cast<uint8_t>(0x58 + (r & 7)));
  }
  void ret() { byte(0xc3); }
  void jmp_reg(Reg r) { op_reg({0xff}, 4, r); }
  /// jmp rel32 to an absolute target.
  void jmp(const uint8_t* target) {
    byte(0xe9);
    rel32_to(target);
  }
  /// jcc rel32; returns where its displacement sits, for bind().
  uint8_t* jcc_fwd(Cond c) {
    byte(0x0f);
    byte(static_cast<uint8_t>(0x80 + c));
    uint8_t* at = p_;
    u32(0);
    return at;
  }
  uint8_t* jmp_fwd() {
    byte(0xe9);
    uint8_t* at = p_;
    u32(0);
    return at;
  }
  void jcc(Cond c, const uint8_t* target) {
    byte(0x0f);
    byte(static_cast<uint8_t>(0x80 + c));
    rel32_to(target);
  }
  /// Points a forward rel32 displacement (from jcc_fwd/jmp_fwd) at `target` (default: here).
  void bind(uint8_t* at, const uint8_t* target = nullptr) {
    if (!target) target = p_;
    if (at + 4 > end_) return;  // overflowed: the block is discarded anyway
    const int32_t d = static_cast<int32_t>(target - (at + 4));
    std::memcpy(at + delta_, &d, 4);
  }

 private:
  void rel32_to(const uint8_t* target) {
    const int32_t d = static_cast<int32_t>(target - (p_ + 4));
    u32(static_cast<uint32_t>(d));
  }
  void modrm_mem(int reg, const Mem& m) {
    const int b = m.base & 7;
    const bool sib = m.index >= 0 || b == 4;
    int mod;
    if (m.disp == 0 && b != 5) mod = 0;
    else if (m.disp >= -128 && m.disp <= 127) mod = 1;
    else mod = 2;
    if (!sib) {
      byte(static_cast<uint8_t>((mod << 6) | ((reg & 7) << 3) | b));
    } else {
      byte(static_cast<uint8_t>((mod << 6) | ((reg & 7) << 3) | 4));
      const int idx = m.index >= 0 ? (m.index & 7) : 4;
      const int ss = m.scale == 8 ? 3 : m.scale == 4 ? 2 : m.scale == 2 ? 1 : 0;
      byte(static_cast<uint8_t>((ss << 6) | (idx << 3) | b));
    }
    if (mod == 1) byte(static_cast<uint8_t>(m.disp));
    else if (mod == 2) u32(static_cast<uint32_t>(m.disp));
  }

  uint8_t* p_;
  uint8_t* start_;
  uint8_t* end_;
  ptrdiff_t delta_;
};

}  // namespace lockstep::x64
