// Reference semantics in plain TypeScript for the tests that compare the machine with a model: the
// integer operations of RV32I and M (BigInt where 64-bit products or exact division are needed).

const INT_MIN = 0x80000000;
const s32 = (v: number) => v | 0;
const u = (v: number | bigint) => Number(BigInt.asUintN(32, BigInt(v)));
const hi = (p: bigint) => Number(BigInt.asUintN(32, p >> 32n));
export type Op3 = (a: number, b: number) => number;
export const rrModel: Record<string, Op3> = {
  add: (a, b) => u(a + b),
  sub: (a, b) => u(a - b),
  sll: (a, b) => u(a << (b & 31)),
  slt: (a, b) => (s32(a) < s32(b) ? 1 : 0),
  sltu: (a, b) => (a >>> 0 < b >>> 0 ? 1 : 0),
  xor: (a, b) => u(a ^ b),
  srl: (a, b) => a >>> (b & 31),
  sra: (a, b) => u(s32(a) >> (b & 31)),
  or: (a, b) => u(a | b),
  and: (a, b) => u(a & b),
  mul: (a, b) => u(Math.imul(a, b)),
  mulh: (a, b) => hi(BigInt(s32(a)) * BigInt(s32(b))),
  mulhsu: (a, b) => hi(BigInt(s32(a)) * BigInt(b >>> 0)),
  mulhu: (a, b) => hi(BigInt(a >>> 0) * BigInt(b >>> 0)),
  div: (a, b) => (b === 0 ? 0xffffffff : s32(a) === s32(INT_MIN) && s32(b) === -1 ? INT_MIN
    : u(BigInt(s32(a)) / BigInt(s32(b)))),
  divu: (a, b) => (b === 0 ? 0xffffffff : u(BigInt(a >>> 0) / BigInt(b >>> 0))),
  rem: (a, b) => (b === 0 ? u(a) : s32(a) === s32(INT_MIN) && s32(b) === -1 ? 0 : u(BigInt(s32(a)) % BigInt(s32(b)))),
  remu: (a, b) => (b === 0 ? u(a) : u(BigInt(a >>> 0) % BigInt(b >>> 0))),
};
export const riModel: Record<string, Op3> = {
  addi: rrModel.add!, slti: rrModel.slt!, sltiu: rrModel.sltu!, xori: rrModel.xor!, ori: rrModel.or!,
  andi: rrModel.and!, slli: rrModel.sll!, srli: rrModel.srl!, srai: rrModel.sra!,
};
