// PLIC register file and gateway (PLIC spec 1.0.0; QEMU virt layout: 7 priority levels).
#include "machine/plic.h"

namespace lockstep {

void Plic::set_level(uint32_t src, bool high) {
  if (src == 0 || src >= kSources) return;
  put(s.level, src, high);
  // The gateway forwards a new request only while no claim of this source is in flight.
  if (high && !get(s.claimed, src)) put(s.pending, src, true);
}

uint32_t Plic::best(uint32_t ctx) const {
  uint32_t id = 0, prio = s.threshold[ctx];
  for (uint32_t w = 0; w < kSources / 32; w++) {
    uint32_t cand = s.pending[w] & s.enable[ctx][w];
    while (cand) {
      const uint32_t i = w * 32 + static_cast<uint32_t>(__builtin_ctz(cand));
      cand &= cand - 1;
      if (s.priority[i] > prio) {
        prio = s.priority[i];
        id = i;
      }
    }
  }
  return id;
}

Mmio Plic::load(uint32_t off, uint32_t* v) {
  *v = 0;
  if (off < 4 * kSources) {
    *v = s.priority[off / 4];
  } else if (off >= 0x1000 && off < 0x1000 + kSources / 8) {
    *v = s.pending[(off - 0x1000) / 4];
  } else if (off >= 0x2000 && off < 0x2000 + 0x80 * kContexts) {
    const uint32_t ctx = (off - 0x2000) / 0x80, w = ((off - 0x2000) % 0x80) / 4;
    if (w < kSources / 32) *v = s.enable[ctx][w];
  } else if (off >= 0x200000 && off < 0x200000 + 0x1000 * kContexts) {
    const uint32_t ctx = (off - 0x200000) / 0x1000, reg = off & 0xfff;
    if (reg == 0) {
      *v = s.threshold[ctx];
    } else if (reg == 4) {  // claim
      const uint32_t id = best(ctx);
      if (id) {
        put(s.pending, id, false);
        put(s.claimed, id, true);
      }
      *v = id;
      return Mmio::kOkRecheck;  // the claim changed what is pending
    }
  }
  return Mmio::kOk;
}

Mmio Plic::store(uint32_t off, uint32_t v) {
  if (off < 4 * kSources) {
    if (off >= 4) s.priority[off / 4] = v & 7;
  } else if (off >= 0x2000 && off < 0x2000 + 0x80 * kContexts) {
    const uint32_t ctx = (off - 0x2000) / 0x80, w = ((off - 0x2000) % 0x80) / 4;
    if (w < kSources / 32) s.enable[ctx][w] = w == 0 ? (v & ~1u) : v;
  } else if (off >= 0x200000 && off < 0x200000 + 0x1000 * kContexts) {
    const uint32_t ctx = (off - 0x200000) / 0x1000, reg = off & 0xfff;
    if (reg == 0) {
      s.threshold[ctx] = v & 7;
    } else if (reg == 4 && v > 0 && v < kSources && get(s.claimed, v)) {  // complete
      put(s.claimed, v, false);
      if (get(s.level, v)) put(s.pending, v, true);
    }
  }
  return Mmio::kOkRecheck;  // enables, priorities, threshold and completions all move MEIP
}

}  // namespace lockstep
