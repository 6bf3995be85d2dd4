// virtio-rng, virtio-blk and virtio-net request handling (VIRTIO 1.2 §5.4, §5.2, §5.1).
#include "machine/virtio_devices.h"

#include <cstring>

#include "machine/machine.h"

namespace lockstep {
namespace {

/// Scatters `data` over writable segments; returns the bytes written.
uint32_t scatter(Machine* m, const std::vector<Chain::Segment>& segs, const uint8_t* data, uint32_t n) {
  uint32_t done = 0;
  for (const Chain::Segment& s : segs) {
    if (done == n) break;
    const uint32_t k = std::min(s.len, n - done);
    m->write_ram(kRamBase + s.offset, data + done, k);
    done += k;
  }
  return done;
}

/// Gathers readable segments, skipping the first `skip` bytes.
std::vector<uint8_t> gather(Machine* m, const std::vector<Chain::Segment>& segs, uint32_t skip, uint32_t limit) {
  std::vector<uint8_t> out;
  for (const Chain::Segment& s : segs) {
    uint32_t off = s.offset, len = s.len;
    if (skip >= len) {
      skip -= len;
      continue;
    }
    off += skip;
    len -= skip;
    skip = 0;
    len = std::min<uint32_t>(len, limit - static_cast<uint32_t>(out.size()));
    // Segments were checked against RAM when the chain was read; a restored snapshot's may not have been.
    if (static_cast<uint64_t>(off) + len > m->ram_size()) break;
    out.insert(out.end(), m->ram() + off, m->ram() + off + len);
    if (out.size() >= limit) break;
  }
  return out;
}

/// The readable segments after the first `skip` bytes (a write's data after its header).
std::vector<Chain::Segment> data_segments(const std::vector<Chain::Segment>& segs, uint32_t skip) {
  std::vector<Chain::Segment> out;
  for (Chain::Segment s : segs) {
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    s.offset += skip;
    s.len -= skip;
    skip = 0;
    out.push_back(s);
  }
  return out;
}

enum BlkType : uint32_t { kIn = 0, kOut = 1, kFlush = 4, kGetId = 8 };
enum BlkStatus : uint8_t { kOk = 0, kIoErr = 1, kUnsupported = 2 };

}  // namespace

// ---- rng -------------------------------------------------------------------------------------------

void VirtioRng::notify(uint32_t q) {
  Chain c;
  int r;
  while ((r = t_->pop(q, &c)) == 1) {
    const uint32_t n = std::min<uint32_t>(c.writable_bytes, 4096);
    std::vector<uint8_t> bytes(n);
    if (n && !m_->entropy(bytes.data(), n)) return;  // a replay divergence stops the run
    scatter(m_, c.writable, bytes.data(), n);
    t_->push(q, c.head, n);
  }
}

// ---- blk -------------------------------------------------------------------------------------------

uint64_t VirtioBlk::device_features() const {
  return (1ull << 1) | (1ull << 2) | (1ull << 9);  // SIZE_MAX, SEG_MAX, FLUSH
}

uint32_t VirtioBlk::config_read(uint32_t off, unsigned size) const {
  uint8_t cfg[16] = {};
  std::memcpy(cfg, &sectors_, 8);
  const uint32_t size_max = kSizeMax, seg_max = kSegMax;
  std::memcpy(cfg + 8, &size_max, 4);
  std::memcpy(cfg + 12, &seg_max, 4);
  uint32_t v = 0;
  if (off < sizeof(cfg) && off + size <= sizeof(cfg)) std::memcpy(&v, cfg + off, size);
  return v;
}

void VirtioBlk::notify(uint32_t q) {
  Chain c;
  int r;
  while ((r = t_->pop(q, &c)) == 1) {
    // Header (16 readable bytes) ... data ... status (the last writable byte).
    if (c.readable.empty() || c.readable[0].len < 16 || c.writable.empty() || c.writable.back().len < 1) {
      t_->fail("blk: request without a 16-byte header or a status byte");
      return;
    }
    uint32_t type;
    uint64_t sector;
    std::memcpy(&type, m_->ram() + c.readable[0].offset, 4);
    std::memcpy(&sector, m_->ram() + c.readable[0].offset + 8, 8);
    const Chain::Segment last = c.writable.back();
    const uint32_t status_offset = last.offset + last.len - 1;
    std::vector<Chain::Segment> in = c.writable;
    in.back().len -= 1;
    const uint32_t in_bytes = c.writable_bytes - 1;
    const uint32_t out_bytes = c.readable_bytes - 16;
    auto finish_now = [&](uint8_t status, uint32_t written) {
      m_->write_ram(kRamBase + status_offset, &status, 1);
      t_->push(q, c.head, written + 1);
    };
    if (pending_.count(c.head)) {
      t_->fail("blk: chain head " + std::to_string(c.head) + " is already in flight");
      return;
    }
    switch (type) {
      case kIn:
      case kOut: {
        const uint32_t bytes = type == kIn ? in_bytes : out_bytes;
        if (bytes % 512 != 0 || bytes > kMaxRequest || sector > sectors_ || bytes / 512 > sectors_ - sector) {
          finish_now(kIoErr, 0);
          break;
        }
        pending_[c.head] = Pending{static_cast<uint8_t>(type), sector, in, in_bytes, status_offset, {}, 0};
        if (type == kOut) {
          Pending& q = pending_[c.head];
          q.out = data_segments(c.readable, 16);
          q.out_bytes = bytes;
        }
        if (type == kOut) m_->block_submit(c.head, BlockFile::Op::kWrite, sector * 512, gather(m_, c.readable, 16, bytes), 0);
        else m_->block_submit(c.head, BlockFile::Op::kRead, sector * 512, {}, bytes);
        break;
      }
      case kFlush:
        pending_[c.head] = Pending{static_cast<uint8_t>(type), 0, {}, 0, status_offset, {}, 0};
        m_->block_submit(c.head, BlockFile::Op::kFlush, 0, {}, 0);
        break;
      case kGetId: {
        static const char kId[20] = "lockstep-disk";
        finish_now(kOk, scatter(m_, in, reinterpret_cast<const uint8_t*>(kId), std::min<uint32_t>(20, in_bytes)));
        break;
      }
      default:
        finish_now(kUnsupported, 0);
        break;
    }
  }
}

bool VirtioBlk::complete(uint16_t head, uint8_t status, const uint8_t* data, uint32_t n) {
  auto it = pending_.find(head);
  if (it == pending_.end()) return false;
  const Pending p = it->second;
  pending_.erase(it);
  uint32_t written = 0;
  if (p.type == kIn && status == kOk) {
    if (n != p.in_bytes) return false;
    written = scatter(m_, p.in, data, n);
  }
  m_->write_ram(kRamBase + p.status_offset, &status, 1);
  t_->push(0, head, written + 1);
  return true;
}

bool VirtioBlk::request_for(uint16_t head, BlockFile::Request* out) const {
  auto it = pending_.find(head);
  if (it == pending_.end()) return false;
  const Pending& p = it->second;
  BlockFile::Request r;
  r.head = head;
  r.generation = generation_;
  r.offset = p.sector * 512;
  r.length = 0;
  switch (p.type) {
    case kIn: r.op = BlockFile::Op::kRead; r.length = p.in_bytes; break;
    case kOut: r.op = BlockFile::Op::kWrite; r.data = gather(m_, p.out, 0, p.out_bytes); break;
    default: r.op = BlockFile::Op::kFlush; r.offset = 0; break;
  }
  *out = std::move(r);
  return true;
}

void VirtioBlk::reissue() {
  for (const auto& [head, p] : pending_) {
    BlockFile::Request r;
    request_for(head, &r);
    m_->block_submit(head, r.op, r.offset, std::move(r.data), r.length);
  }
}

void VirtioBlk::save(std::vector<uint8_t>* out) const {
  auto put = [&](const void* p, size_t n) { out->insert(out->end(), static_cast<const uint8_t*>(p), static_cast<const uint8_t*>(p) + n); };
  const uint32_t count = static_cast<uint32_t>(pending_.size());
  put(&count, 4);
  for (const auto& [head, p] : pending_) {
    const uint32_t segs = static_cast<uint32_t>(p.in.size());
    put(&head, 2); put(&p.type, 1); put(&p.sector, 8); put(&p.in_bytes, 4); put(&p.status_offset, 4); put(&segs, 4);
    for (const Chain::Segment& s : p.in) { put(&s.offset, 4); put(&s.len, 4); }
    const uint32_t osegs = static_cast<uint32_t>(p.out.size());
    put(&p.out_bytes, 4); put(&osegs, 4);
    for (const Chain::Segment& s : p.out) { put(&s.offset, 4); put(&s.len, 4); }
  }
}

bool VirtioBlk::restore(const uint8_t** p, const uint8_t* end) {
  auto get = [&](void* v, size_t n) {
    if (static_cast<size_t>(end - *p) < n) return false;
    std::memcpy(v, *p, n);
    *p += n;
    return true;
  };
  // Segments as pop() makes them: inside guest RAM, adding up to the request's byte count.
  auto segments = [&](std::vector<Chain::Segment>* out, uint32_t bytes) {
    uint32_t segs;
    if (!get(&segs, 4) || segs > Virtqueue::kMaxSize) return false;
    uint64_t total = 0;
    for (uint32_t k = 0; k < segs; k++) {
      Chain::Segment s;
      if (!get(&s.offset, 4) || !get(&s.len, 4) || static_cast<uint64_t>(s.offset) + s.len > m_->ram_size()) return false;
      total += s.len;
      out->push_back(s);
    }
    return total == bytes;
  };
  uint32_t count;
  if (!get(&count, 4) || count > Virtqueue::kMaxSize) return false;
  std::map<uint16_t, Pending> pending;  // applied only when all of it parsed
  for (uint32_t i = 0; i < count; i++) {
    uint16_t head;
    Pending q;
    if (!get(&head, 2) || head >= Virtqueue::kMaxSize || pending.count(head) || !get(&q.type, 1) || !get(&q.sector, 8) || !get(&q.in_bytes, 4) ||
        !get(&q.status_offset, 4) || q.status_offset >= m_->ram_size() || !segments(&q.in, q.in_bytes) || !get(&q.out_bytes, 4) ||
        !segments(&q.out, q.out_bytes)) {
      return false;
    }
    // Only a request notify() accepts is ever pending: a read or write of whole sectors inside the disk,
    // at most kMaxRequest bytes, or a flush.
    const uint32_t bytes = q.type == kIn ? q.in_bytes : q.out_bytes;
    switch (q.type) {
      case kIn:
      case kOut:
        if (bytes % 512 != 0 || bytes > kMaxRequest || q.sector > sectors_ || bytes / 512 > sectors_ - q.sector) return false;
        if (q.type == kIn && q.out_bytes != 0) return false;
        break;
      case kFlush:
        if (q.sector != 0 || q.in_bytes != 0 || q.out_bytes != 0) return false;
        break;
      default:
        return false;
    }
    pending[head] = std::move(q);
  }
  pending_ = std::move(pending);
  return true;
}

// ---- net -------------------------------------------------------------------------------------------

VirtioNet::VirtioNet(Machine* m, VirtioMmio* t, const uint8_t mac[6]) : m_(m), t_(t) { std::memcpy(mac_, mac, 6); }

uint32_t VirtioNet::config_read(uint32_t off, unsigned size) const {
  uint8_t cfg[8] = {};
  std::memcpy(cfg, mac_, 6);
  uint32_t v = 0;
  if (off + size <= sizeof(cfg)) std::memcpy(&v, cfg + off, size);
  return v;
}

void VirtioNet::notify(uint32_t q) {
  if (q != 1) return;  // receive buffers are taken when a frame arrives
  Chain c;
  while (t_->pop(1, &c) == 1) {
    if (c.readable_bytes > kHeader && c.readable_bytes - kHeader <= kMaxFrame) {
      const std::vector<uint8_t> frame = gather(m_, c.readable, kHeader, c.readable_bytes - kHeader);
      m_->net_transmit(frame.data(), static_cast<uint32_t>(frame.size()));
    }
    t_->push(1, c.head, 0);
  }
}

VirtioNet::Rx VirtioNet::rx_state() const {
  if (!t_->driver_ok()) return Rx::kClosed;
  return t_->has_available(0) ? Rx::kReady : Rx::kFull;
}

bool VirtioNet::deliver(const uint8_t* frame, uint32_t n) {
  if (!t_->driver_ok()) {
    dropped_++;
    return false;
  }
  // Peek: a frame is taken only if a receive buffer large enough is ready.
  Virtqueue saved = t_->queue(0);
  Chain c;
  if (t_->pop(0, &c) != 1 || c.writable_bytes < kHeader + n) {
    if (t_->driver_ok()) t_->queue(0) = saved;
    dropped_++;
    return false;
  }
  uint8_t hdr[kHeader] = {};
  hdr[10] = 1;  // num_buffers
  std::vector<uint8_t> all(hdr, hdr + kHeader);
  all.insert(all.end(), frame, frame + n);
  t_->push(0, c.head, scatter(m_, c.writable, all.data(), static_cast<uint32_t>(all.size())));
  return true;
}

}  // namespace lockstep
