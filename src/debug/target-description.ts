// The target description gdb reads with qXfer:features:read: an RV32 hart's integer registers, pc,
// the CSRs this machine implements (named, so `info registers mstatus` works) and the privilege mode.
// Register numbers here are the ones `p`/`P` packets use.

/** `g` carries x0..x31 and pc: numbers 0..32. */
export const PC_REGNUM = 32;
/** A CSR's register number: gdb's own convention for RISC-V (first CSR at 65). */
export const CSR_REGNUM_BASE = 65;
/** The virtual `priv` register (gdb's org.gnu.gdb.riscv.virtual feature). */
export const PRIV_REGNUM = CSR_REGNUM_BASE + 0x1000;

const ABI_NAMES = [
  'zero', 'ra', 'sp', 'gp', 'tp', 't0', 't1', 't2', 'fp', 's1', 'a0', 'a1', 'a2', 'a3', 'a4', 'a5',
  'a6', 'a7', 's2', 's3', 's4', 's5', 's6', 's7', 's8', 's9', 's10', 's11', 't3', 't4', 't5', 't6',
];

/** The CSRs of this machine (native/cpu/csr.cc), by number. */
export const CSRS: ReadonlyMap<number, string> = new Map([
  [0x100, 'sstatus'], [0x104, 'sie'], [0x105, 'stvec'], [0x106, 'scounteren'], [0x140, 'sscratch'],
  [0x141, 'sepc'], [0x142, 'scause'], [0x143, 'stval'], [0x144, 'sip'], [0x180, 'satp'],
  [0x300, 'mstatus'], [0x301, 'misa'], [0x302, 'medeleg'], [0x303, 'mideleg'], [0x304, 'mie'],
  [0x305, 'mtvec'], [0x306, 'mcounteren'], [0x340, 'mscratch'], [0x341, 'mepc'], [0x342, 'mcause'],
  [0x343, 'mtval'], [0x344, 'mip'],
  ...[0, 1, 2, 3].map((i): [number, string] => [0x3a0 + i, `pmpcfg${i}`]),
  ...Array.from({ length: 16 }, (_, i): [number, string] => [0x3b0 + i, `pmpaddr${i}`]),
  [0xb00, 'mcycle'], [0xb02, 'minstret'], [0xb80, 'mcycleh'], [0xb82, 'minstreth'],
  [0xc00, 'cycle'], [0xc01, 'time'], [0xc02, 'instret'], [0xc80, 'cycleh'], [0xc81, 'timeh'], [0xc82, 'instreth'],
  [0xf11, 'mvendorid'], [0xf12, 'marchid'], [0xf13, 'mimpid'], [0xf14, 'mhartid'],
]);

/** The whole target.xml. */
export function targetXml(): string {
  const cpu = ABI_NAMES.map((n, i) => {
    const type = i === 1 ? 'code_ptr' : i === 2 ? 'data_ptr' : 'int';
    return `  <reg name="${n}" bitsize="32" type="${type}" regnum="${i}"/>`;
  });
  cpu.push(`  <reg name="pc" bitsize="32" type="code_ptr" regnum="${PC_REGNUM}"/>`);
  const csrs = [...CSRS].map(([n, name]) => `  <reg name="${name}" bitsize="32" type="int" regnum="${CSR_REGNUM_BASE + n}" group="csr"/>`);
  return [
    '<?xml version="1.0"?>',
    '<!DOCTYPE target SYSTEM "gdb-target.dtd">',
    '<target version="1.0">',
    '<architecture>riscv:rv32</architecture>',
    '<feature name="org.gnu.gdb.riscv.cpu">',
    ...cpu,
    '</feature>',
    '<feature name="org.gnu.gdb.riscv.csr">',
    ...csrs,
    '</feature>',
    '<feature name="org.gnu.gdb.riscv.virtual">',
    `  <reg name="priv" bitsize="32" type="int" regnum="${PRIV_REGNUM}" group="general"/>`,
    '</feature>',
    '</target>',
    '',
  ].join('\n');
}
