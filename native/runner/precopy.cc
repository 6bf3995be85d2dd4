// Pre-copy rounds over a PrecopyMemory: page records into a buffer the host takes. No machine, no napi.
#include "runner/precopy.h"

#include <cstring>

#include "cpu/cpu.h"

namespace lockstep {

bool PrecopyEngine::start(bool first) {
  std::lock_guard<std::mutex> lock(mu_);
  if (active_) return false;
  active_ = true;
  first_ = first;
  cursor_ = 0;
  done_ = false;
  return true;
}

bool PrecopyEngine::active() {
  std::lock_guard<std::mutex> lock(mu_);
  return active_;
}

bool PrecopyEngine::copy(PrecopyMemory& memory, uint32_t max_pages) {
  std::lock_guard<std::mutex> lock(mu_);
  return copy_locked(memory, max_pages);
}

bool PrecopyEngine::copy_locked(PrecopyMemory& memory, uint32_t max_pages) {
  if (!active_) return false;
  const uint8_t* dirty = memory.dirty();
  const uint32_t npages = memory.pages();
  const uint8_t want = first_ ? kDirtyEver : kDirtyCopy;
  // Count first, then copy once into place: a stop-and-copy of tens of MiB must not reallocate as it goes.
  uint32_t p = cursor_;
  uint32_t count = 0;
  for (uint32_t q = p; q < npages && count < max_pages; q++) count += (dirty[q] & want) ? 1 : 0;
  const size_t base = out_.size();
  out_.resize(base + static_cast<size_t>(count) * kRecordBytes);
  uint8_t* dst = out_.data() + base;
  uint32_t copied = 0;
  for (; p < npages && copied < count; p++) {
    if (!(dirty[p] & want)) continue;
    std::memcpy(dst, &p, 4);
    std::memcpy(dst + 4, memory.page(p), kPageBytes);
    dst += kRecordBytes;
    memory.clean(p);
    copied++;
  }
  // Past the last copied page, skip clean pages up to the next dirty one (or the end).
  while (p < npages && !(dirty[p] & want)) p++;
  cursor_ = p;
  const bool ended = p >= npages;
  if (ended) {
    done_ = true;
    active_ = false;
  }
  return copied || ended;
}

std::vector<uint8_t> PrecopyEngine::take(bool* done) {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint8_t> out;
  out.swap(out_);
  *done = done_;
  done_ = false;
  return out;
}

std::vector<uint8_t> PrecopyEngine::copy_all(PrecopyMemory& memory, bool first) {
  std::lock_guard<std::mutex> lock(mu_);
  active_ = true;
  first_ = first;
  cursor_ = 0;
  copy_locked(memory, UINT32_MAX);  // ends the round (done_): the next take() starts afresh
  std::vector<uint8_t> out;
  out.swap(out_);
  done_ = false;
  return out;
}

}  // namespace lockstep
