// The output rule's queue (see output_gate.h): hold, release, shadow outputs and go-live, under one lock.
#include "runner/output_gate.h"

#include <algorithm>
#include <chrono>

namespace lockstep {
namespace {
int64_t now_ns() { return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

bool OutputGate::hold(Kind kind, bool replay, uint64_t tag, const uint8_t* data, size_t n, BlockFile::Request* block) {
  std::lock_guard<std::mutex> lock(mu_);
  // gate_ and shadow_ are the truth (hint_ only a fast peek): an output that raced with the gate opening
  // goes out at once instead of waiting for a release that will not come.
  if (replay ? !shadow_ : !gate_) return false;
  // Only writes change what the disk holds, so only writes are outputs. A read or a flush may pass when
  // no write is held (a read must see every earlier write; a flush covers only writes that already
  // completed, which were released before they could complete); behind a held write they wait.
  if (block && block->op != BlockFile::Op::kWrite && held_blocks_ == 0) return false;
  if (replay && tag < shadow_released_) return true;  // the primary released it: nothing to re-emit
  // Console bytes arrive one at a time: they extend the entry of their batch without a new allocation.
  if (kind == Kind::kConsole && !held_.empty() && held_.back().kind == Kind::kConsole && held_.back().lsn == tag) {
    held_.back().bytes.insert(held_.back().bytes.end(), data, data + n);
    return true;
  }
  Held h{tag, kind, std::vector<uint8_t>(data, data + n), {}, replay ? 0 : now_ns()};
  if (block) {
    h.block = std::move(*block);
    held_blocks_++;
  }
  held_.push_back(std::move(h));
  return true;
}

void OutputGate::emit(std::vector<std::vector<uint8_t>>& frames, Outputs* out) {
  if (frames.empty()) return;
  const auto n = static_cast<uint32_t>(frames.size());
  if (sinks_.frames_to_device && sinks_.frames_to_device(frames)) {
    out->device_frames += n;
    return;
  }
  for (auto& f : frames) out->frames.push_back(std::move(f));
}

void OutputGate::release_locked(uint64_t lsn, Outputs* out, std::vector<std::vector<uint8_t>>* frames) {
  if (!held_.empty() && held_.front().lsn <= lsn && delays_.size() < kDelaySamples) {
    delays_.push_back(static_cast<uint64_t>(std::max<int64_t>(0, now_ns() - held_.front().at_ns)));
  }
  while (!held_.empty() && held_.front().lsn <= lsn) {
    Held& h = held_.front();
    switch (h.kind) {
      case Kind::kConsole:
        out->console.insert(out->console.end(), h.bytes.begin(), h.bytes.end());
        break;
      case Kind::kFrame:
        frames->push_back(std::move(h.bytes));
        break;
      case Kind::kBlock:
        held_blocks_--;
        out->blocks++;
        if (sinks_.block) sinks_.block(std::move(h.block));
        break;
    }
    held_.pop_front();
  }
}

OutputGate::Outputs OutputGate::set_gate(bool closed) {
  Outputs out;
  std::vector<std::vector<uint8_t>> frames;
  std::lock_guard<std::mutex> order(emit_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  gate_ = closed;
  shadow_ = false;
  // release: the hint is seen after gate_ changed; pairs with the acquire load in engaged().
  hint_.store(closed, std::memory_order_release);
  if (!closed) release_locked(UINT64_MAX, &out, &frames);
  // Under mu_ still: once the gate is open the vCPU sends directly, and must not overtake these.
  emit(frames, &out);
  return out;
}

OutputGate::Outputs OutputGate::release(uint64_t lsn) {
  Outputs out;
  std::vector<std::vector<uint8_t>> frames;
  std::lock_guard<std::mutex> order(emit_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (gate_) release_locked(lsn, &out, &frames);
  }
  emit(frames, &out);
  return out;
}

void OutputGate::set_shadow(bool on) {
  std::lock_guard<std::mutex> lock(mu_);
  shadow_ = on;
  gate_ = false;
  shadow_released_ = 0;
  held_.clear();
  held_blocks_ = 0;
  hint_.store(on, std::memory_order_release);  // pairs with the acquire load in engaged()
}

void OutputGate::shadow_release(uint64_t lsn) {
  std::lock_guard<std::mutex> lock(mu_);
  if (lsn == UINT64_MAX || lsn + 1 <= shadow_released_) return;
  shadow_released_ = lsn + 1;
  while (!held_.empty() && held_.front().lsn <= lsn) held_.pop_front();
}

void OutputGate::go_live(uint64_t released, Outputs* out) {
  std::vector<std::vector<uint8_t>> frames;
  std::lock_guard<std::mutex> order(emit_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  for (Held& h : held_) {
    if (h.lsn <= released && released != UINT64_MAX) continue;
    if (h.kind == Kind::kConsole) {
      out->console.insert(out->console.end(), h.bytes.begin(), h.bytes.end());
    } else if (h.kind == Kind::kFrame) {
      frames.push_back(std::move(h.bytes));
    }
  }
  emit(frames, out);
  held_.clear();
  held_blocks_ = 0;
  shadow_ = false;
  gate_ = false;
  hint_.store(false, std::memory_order_release);  // pairs with the acquire load in engaged()
}

std::vector<uint64_t> OutputGate::take_delays() {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<uint64_t> out;
  out.swap(delays_);
  return out;
}

size_t OutputGate::held() {
  std::lock_guard<std::mutex> lock(mu_);
  return held_.size();
}

}  // namespace lockstep
