// Platform-Level Interrupt Controller as on QEMU virt: level-triggered sources, contexts 0 (hart 0
// M-mode: MEIP) and 1 (hart 0 S-mode: SEIP), at QEMU's addresses (enables 0x2000 + 0x80 * context,
// threshold and claim/complete 0x200000 + 0x1000 * context).
#pragma once

#include <cstdint>

#include "cpu/cpu.h"

namespace lockstep {

class Plic {
 public:
  static constexpr uint32_t kBase = 0x0C000000, kSize = 0x600000;
  static constexpr uint32_t kSources = 96;   // source 0 does not exist
  static constexpr uint32_t kContexts = 2;

  /// A device's interrupt line changed level.
  void set_level(uint32_t source, bool high);
  /// MEIP for hart 0: an enabled pending source above context 0's threshold.
  bool meip() const { return best(0) != 0; }
  /// SEIP for hart 0: the same for context 1.
  bool seip() const { return best(1) != 0; }

  Mmio load(uint32_t off, uint32_t* v);
  Mmio store(uint32_t off, uint32_t v);

  struct State {
    uint32_t priority[kSources];
    uint32_t pending[kSources / 32];
    uint32_t level[kSources / 32];
    uint32_t claimed[kSources / 32];
    uint32_t enable[kContexts][kSources / 32];
    uint32_t threshold[kContexts];
  } s{};

 private:
  uint32_t best(uint32_t ctx) const;
  static bool get(const uint32_t* bits, uint32_t i) { return (bits[i / 32] >> (i % 32)) & 1u; }
  static void put(uint32_t* bits, uint32_t i, bool v) {
    if (v) bits[i / 32] |= 1u << (i % 32);
    else bits[i / 32] &= ~(1u << (i % 32));
  }
};

}  // namespace lockstep
