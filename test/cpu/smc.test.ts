// Self-modifying code: a store over an instruction that already ran (so may sit in the decoded cache) takes
// effect after fence.i, and also, on this machine, without fence.i once control reaches it in a later block.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Asm, rv, rvc } from '../helpers/asm.js';
import { CAUSE, RAM, expectRegs, le32, load, runToEbreak, useEngine } from './harness.js';

/**
 * Runs `target: addi x5, x0, 1` once, then overwrites it with `addi x5, x0, 2` (sw from x8), optionally
 * executes fence.i, and jumps back to it.
 */
function patchAndRerun(withFence: boolean, store: (a: Asm) => void = (a) => a.sw(8, 0, 7)): Asm {
  const a = new Asm();
  a.li(6, 0); //                                   pass = 0
  a.label('target').addi(5, 0, 1); //             addi x5, x0, 1   (to be replaced)
  a.bne(6, 0, 'done'); //                          second pass: stop
  a.li(6, 1);
  a.la(7, 'target').li(8, rv.addi(5, 0, 2)); //    x8 = encoding of addi x5, x0, 2
  store(a); //                                     sw x8, 0(x7) or another store of x8 to (x7)
  if (withFence) a.fence_i();
  a.j('target');
  a.label('done');
  return a;
}

// Every test on both engines: with the block compiler, jumps go through dispatch and hot code is compiled.
describe.each(['interp', 'jit'] as const)('self-modifying code (engine: %s)', (engine) => {
  beforeEach(() => useEngine(engine));
  afterEach(() => useEngine(undefined));
  it('a store over an executed instruction followed by fence.i runs the new instruction', async () => {
    const { m } = await runToEbreak(patchAndRerun(true));
    expectRegs(m, { 5: 2, 6: 1 });
  });

  it('a store over an executed instruction runs the new one in a later block even without fence.i', async () => {
    const { m } = await runToEbreak(patchAndRerun(false));
    expectRegs(m, { 5: 2, 6: 1 });
  });

  // Every kind of store must invalidate decoded code, not only sw.
  const stores: Array<[string, (a: Asm) => void]> = [
    ['amoswap.w x0, x8, (x7)', (a) => a.amoswap_w(0, 8, 7)],
    ['lr.w x9, (x7); sc.w x9, x8, (x7)', (a) => a.lr_w(9, 7).sc_w(9, 8, 7)],
    ['c.sw x8, 0(x15) (x15 = x7)', (a) => a.addi(15, 7, 0).c_sw(8, 0, 15)],
    ['c.swsp x8, 0(sp) (sp = x7)', (a) => a.addi(2, 7, 0).c_swsp(8, 0)],
    ['two sh of the halves', (a) => a.sh(8, 0, 7).srli(9, 8, 16).sh(9, 2, 7)],
  ];
  it.each(stores)('%s over an executed instruction, then fence.i, runs the new instruction', async (_asm, store) => {
    const { m } = await runToEbreak(patchAndRerun(true, store));
    expectRegs(m, { 5: 2, 6: 1 });
  });

  it('fence.i makes a store to the very next instruction visible within the same straight-line code', async () => {
    const a = new Asm();
    a.la(7, 'next').li(8, rv.addi(5, 0, 7)); //     x8 = addi x5, x0, 7
    a.sw(8, 0, 7).fence_i(); //                      sw x8, 0(x7); fence.i
    a.label('next').addi(5, 0, 3); //                addi x5, x0, 3  (replaced before it runs)
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 7 });
  });

  it('patching the body of a hot loop changes what later iterations compute', async () => {
    // Two passes of 100 iterations; between them, body := addi x5, x5, 2. x6 counts the passes.
    const a = new Asm();
    a.li(6, 0).li(1, 100);
    a.label('loop').label('body').addi(5, 5, 1).addi(1, 1, -1).bne(1, 0, 'loop');
    a.bne(6, 0, 'done').li(6, 1);
    a.la(7, 'body').li(8, rv.addi(5, 5, 2)).sw(8, 0, 7).fence_i();
    a.li(1, 100).j('loop');
    a.label('done');
    const { m } = await runToEbreak(a, {}, 10_000);
    expectRegs(m, { 5: 100 + 2 * 100 });
  });

  it('a loop compiled, patched and compiled again ten times runs each version in turn', async () => {
    // Ten passes of 50 iterations; after pass k the body becomes addi x5, x5, k + 1 (no fence.i).
    const a = new Asm();
    a.li(6, 1).li(5, 0).li(10, 11).la(7, 'body').li(11, rv.addi(5, 5, 0));
    a.label('pass').li(1, 50);
    a.label('loop').label('body').addi(5, 5, 1).addi(1, 1, -1).bne(1, 0, 'loop');
    a.addi(6, 6, 1).beq(6, 10, 'done');
    a.slli(12, 6, 20).or(12, 12, 11).sw(12, 0, 7); // body := addi x5, x5, x6
    a.j('pass');
    a.label('done');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 50 * (1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9 + 10) });
  });

  it('a halfword store replaces a compressed instruction', async () => {
    const a = new Asm();
    a.li(6, 0);
    a.label('target').c_li(5, 1); //               c.li x5, 1  (to be replaced by c.li x5, 9)
    a.bne(6, 0, 'done').li(6, 1);
    a.la(7, 'target').li(8, rvc.c_li(5, 9)).sh(8, 0, 7).fence_i().j('target');
    a.label('done');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 9 });
  });

  it('a byte store that turns a 32-bit instruction into a different one takes effect', async () => {
    const a = new Asm();
    a.li(6, 0);
    a.label('target').addi(5, 0, 1); //             addi x5, x0, 1 (its low byte is rewritten below)
    a.bne(6, 0, 'done').li(6, 1);
    // addi x5, x0, 1 = 0x00100293; its low byte 0x93 holds rd[0] in bit 7. Writing 0x13 makes rd = x4.
    a.la(7, 'target').li(8, 0x13).sb(8, 0, 7).fence_i().j('target');
    a.label('done');
    expect(rv.addi(5, 0, 1) & 0xff).toBe(0x93);
    expect((rv.addi(5, 0, 1) & ~0xff) | 0x13).toBe(rv.addi(4, 0, 1));
    const { m } = await runToEbreak(a, { regs: { 4: 0 } });
    expectRegs(m, { 4: 1, 5: 1 });
  });

  it('a misaligned store that starts on a data page and ends over code already run changes that code', async () => {
    // Only the store's last two bytes are on the code page, so the page's decode is found through the
    // page of its last byte (the fast store path looks up one page and leaves misaligned stores to the
    // slow path). `target: addi x5, x0, 1` runs once; sw x8, -2(x7) then makes its low half the low half
    // of addi x9, x0, 1 (the destination register), and the second call must run that.
    const a = new Asm();
    a.jal(1, 'target'); //                                         x5 = 1
    a.li(5, 0).la(7, 'target');
    a.li(8, ((rv.addi(9, 0, 1) & 0xffff) << 16) | 0x1234); //     high half: the new low half of target
    a.sw(8, -2, 7); //                                             misaligned, across the page boundary
    a.jal(1, 'target'); //                                         x9 = 1, x5 stays 0
    a.j('done');
    a.align(4096).label('data').word(0);
    a.align(4096).label('target').addi(5, 0, 1);
    a.jalr(0, 1, 0);
    a.label('done');
    const { m } = await runToEbreak(a);
    expectRegs(m, { 5: 0, 9: 1 });
  });

  it('stores that change the blocks of a whole page of code not running take effect, with exact counts', async () => {
    // `far` fills most of a page with one straight-line block (N addi, then ret). After a first call the
    // code patches that ret into an addi (so every slot's block count changes: far more than a store's
    // fix-up walks on a page that is not running), then patches the next instruction too, and calls again
    // at the start and in the middle.
    const N = 900;
    const a = new Asm();
    a.li(5, 0).jal(1, 'far'); //                          x5 = N
    a.li(8, rv.addi(5, 5, 1000)).la(7, 'ret1').sw(8, 0, 7); // ret1: addi x5, x5, 1000
    a.li(8, rv.addi(5, 5, 200)).la(7, 'after').sw(8, 0, 7); // after: addi x5, x5, 200
    a.jal(1, 'far'); //                                    x5 += N + 1000 + 200
    a.jal(1, 'mid'); //                                    x5 += N / 2 + 1000 + 200
    a.j('done');
    a.align(4096).label('far');
    for (let i = 0; i < N; i++) {
      if (i === N / 2) a.label('mid');
      a.addi(5, 5, 1);
    }
    a.label('ret1').jalr(0, 1, 0);
    a.label('after').addi(5, 5, 100);
    a.jalr(0, 1, 0);
    a.label('done');
    const { m, r } = await runToEbreak(a, {}, 100_000);
    expectRegs(m, { 5: N + (N + 1200) + (N / 2 + 1200) });
    // Retired: li (1) + jal + N + ret; two patches of li (2) + la (2) + sw each; jal + N + 3; jal +
    // N / 2 + 3; j. instret counts every one of them, branches the jal, jalr and j.
    const li = (v: number) => (((v & 0xfff) ^ 0x800) - 0x800 === (v | 0) ? 1 : 2);
    const patches = li(rv.addi(5, 5, 1000)) + li(rv.addi(5, 5, 200)) + 2 * (2 + 1);
    expect(r.instret).toBe(BigInt(1 + 1 + N + 1 + patches + 1 + N + 3 + 1 + N / 2 + 3 + 1));
    expect(r.branches).toBe(7n);
  });

  it.each([
    ['on a page not running', true],
    ['on the running page', false],
  ])('a store that lengthens the block after a forward branch keeps the counts exact (%s)', async (_, ownPage) => {
    // f: a forward bnez (not taken) followed by `addi; ret`: a short block, which the interpreter counts
    // through the branch. The store turns the ret into an addi, so the block after the branch runs on
    // through 40 more (too long to count through: the branch ends its block again), then f runs once
    // with the branch not taken and once taken.
    const build = () => {
      const a = new Asm();
      a.li(5, 0).li(10, 0).jal(1, 'f');
      a.li(8, rv.addi(5, 5, 1)).la(7, 'patch').sw(8, 0, 7);
      a.jal(1, 'f');
      a.li(10, 1).jal(1, 'f');
      a.ebreak();
      if (ownPage) a.align(4096);
      a.label('f').c_bnez(10, 'out');
      a.addi(5, 5, 1);
      a.label('patch').jalr(0, 1, 0);
      for (let i = 0; i < 40; i++) a.addi(5, 5, 1);
      a.label('out').jalr(0, 1, 0);
      return a;
    };
    const m = load(build());
    const r = await m.run({ maxInstructions: 10_000 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint });
    expectRegs(m, { 5: 1 + 42 });
    // li, li, jal, f (3); li of the patch, la (2), sw, jal, f (44); li, jal, f (2). Branches: three jal,
    // three bnez, three ret.
    const li = new Asm().li(8, rv.addi(5, 5, 1)).bytes().length / 4;
    expect({ instret: r.instret, branches: r.branches }).toEqual({ instret: BigInt(6 + li + 4 + 44 + 4), branches: 9n });
  });

  it('memory written by the host between runs replaces code that already ran', async () => {
    const a = new Asm();
    a.label('loop').addi(5, 5, 1).j('loop'); //      loop: addi x5, x5, 1; j loop
    const m = load(a);
    let r = await m.run({ maxInstructions: 100 });
    expect(r.kind).toBe('budget');
    expectRegs(m, { 5: 50 });
    m.writeMemory(RAM, le32(rv.addi(5, 5, 3))); //      loop: addi x5, x5, 3
    r = await m.run({ maxInstructions: 100 });
    expect(r.kind).toBe('budget');
    expectRegs(m, { 5: 50 + 150 });
    m.writeMemory(RAM + 4, le32(rv.ebreak()));
    r = await m.run({ maxInstructions: 100 });
    expect(r).toMatchObject({ kind: 'trap', cause: CAUSE.breakpoint, pc: RAM + 4 });
    expectRegs(m, { 5: 50 + 150 + 3 });
  });
});
