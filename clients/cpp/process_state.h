// Watching a process's scheduler state in /proc (Linux), for fault demonstrations and drills:
// after kill(pid, SIGSTOP) the signal lands asynchronously; wait_for_process_state(pid, "tT")
// waits, with a bound, until it has, instead of sleeping and hoping.
#pragma once

#include <dirent.h>
#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace ovcast {

// The state letter of /proc/PID/stat (R running, S sleeping, T stopped, Z zombie, ...);
// '?' when the process is gone or /proc is not there.
inline char process_state(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  size_t paren = text.rfind(')');  // the command name may hold spaces and ')'
  return paren == std::string::npos || paren + 2 >= text.size() ? '?' : text[paren + 2];
}

// Polls until pid's state is one of `states` (true) or `bound` has passed (false).
inline bool wait_for_process_state(pid_t pid, const char* states, std::chrono::milliseconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (true) {
    char state = process_state(pid);
    if (state != '?' && std::strchr(states, state)) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

// The live (not zombie) children of this process: /proc/self/task/*/children where the
// kernel has it, else a scan of every /proc/PID/stat for our pid as parent.
inline std::vector<pid_t> live_children() {
  std::vector<pid_t> candidates;
  std::ifstream list("/proc/self/task/" + std::to_string(getpid()) + "/children");
  if (list) {
    pid_t pid = 0;
    while (list >> pid) candidates.push_back(pid);
  } else if (DIR* proc = opendir("/proc")) {
    while (dirent* entry = readdir(proc)) {
      char* end = nullptr;
      long pid = std::strtol(entry->d_name, &end, 10);
      if (*end || pid <= 0) continue;
      std::ifstream stat(std::string("/proc/") + entry->d_name + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      size_t paren = text.rfind(')');
      if (paren == std::string::npos) continue;
      std::istringstream fields(text.substr(paren + 2));
      char state = 0;
      long parent = 0;
      if (fields >> state >> parent && parent == getpid())
        candidates.push_back(static_cast<pid_t>(pid));
    }
    closedir(proc);
  }
  std::vector<pid_t> children;
  for (pid_t pid : candidates) {
    char state = process_state(pid);
    if (state != 'Z' && state != '?') children.push_back(pid);
  }
  return children;
}

}  // namespace ovcast
