// A raw disk image served by an I/O thread: the vCPU thread submits requests and collects completions,
// never waiting on the disk. Reads are plain preads (no read-ahead of our own), flush is fdatasync.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace lockstep {

class BlockFile {
 public:
  enum class Op : uint8_t { kRead, kWrite, kFlush };
  struct Request {
    uint16_t head;     // the virtqueue chain this completes
    uint32_t generation = 0;  // the device's reset count when submitted
    Op op;
    uint64_t offset;   // bytes
    std::vector<uint8_t> data;  // write: what to write; read: filled in
    uint32_t length;   // read: how much
    uint8_t status = 0;  // VIRTIO_BLK_S_OK 0, IOERR 1
  };

  /// Opens `path` read-write; with `exclusive`, also takes an exclusive lock on it (flock) for as long as
  /// it is open, so that a second writer is refused instead of interleaving its writes with ours. On
  /// failure returns nullptr with the reason in *error.
  static std::unique_ptr<BlockFile> open(const std::string& path, bool exclusive, std::string* error);
  ~BlockFile();

  uint64_t size_bytes() const { return size_; }
  /// `wake` is called on the I/O thread after a completion is queued.
  void set_wake(std::function<void()> wake) { wake_ = std::move(wake); }
  void submit(Request&& r);
  /// Performs `r` on the caller's thread (a replaying secondary with a disk of its own); sets r.status.
  /// Never while requests are in flight on the I/O thread.
  void perform(Request& r);
  /// A replaying secondary's flush on its own image (vCPU thread): owed, not done. Until this side goes
  /// live its image serves only its own replay (a write is visible to later reads without a sync) and a
  /// lost secondary is cloned anew, so one sync at go-live (settle_deferred_sync) covers every flush the
  /// replay took. A sync per flush cost the replay a disk wait per set of a write-ahead log, and on one
  /// machine it doubled the disk's syncs.
  void defer_flush() { sync_owed_ = true; }
  /// Go-live (vCPU thread, nothing in flight): the owed sync. False if it failed; the guest's next flush
  /// then fails too (its data may not be on the disk), once.
  bool settle_deferred_sync();
  /// Syncs performed (flushes, and settled deferred ones), for tests and figures. Any thread.
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  /// Disk pre-copy: chunks of kChunk bytes written since the last call (the first call turns tracking on
  /// and returns every chunk). Any thread.
  static constexpr uint64_t kChunk = 64 * 1024;
  std::vector<uint32_t> take_dirty(bool first);
  /// Completed requests, oldest first (vCPU thread).
  bool take(Request* out);
  bool idle();

 private:
  BlockFile(int fd, uint64_t size);
  void loop();
  int fd_;
  uint64_t size_;
  std::function<void()> wake_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request> todo_, done_;
  bool quit_ = false;
  uint32_t busy_ = 0;
  bool tracking_ = false;            // under mu_
  std::vector<uint8_t> dirty_;       // under mu_: one byte per chunk
  bool sync_owed_ = false;           // vCPU thread (replay, go-live)
  std::atomic<bool> sync_failed_{false};  // a settled sync failed: the next flush reports it
  std::atomic<uint64_t> syncs_{0};
  std::thread thread_;
};

}  // namespace lockstep
