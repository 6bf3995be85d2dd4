// Names a native thread for the host's tools (top -H, perf, /proc/<pid>/task/*/comm), so that the cost
// of each thread of a VM process can be told apart. No napi; a no-op where the platform has no call.
#pragma once

#include <pthread.h>

namespace lockstep {

/// Names the calling thread `name` (at most 15 characters on Linux; longer names are cut there).
inline void name_this_thread(const char* name) {
#if defined(__linux__)
  char cut[16] = {};
  for (int i = 0; i < 15 && name[i]; i++) cut[i] = name[i];
  pthread_setname_np(pthread_self(), cut);
#elif defined(__APPLE__)
  pthread_setname_np(name);
#else
  (void)name;
#endif
}

}  // namespace lockstep
