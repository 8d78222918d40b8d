// Force-included (g++ -include tests/cpp_kill_guard.h) into every C++ program the tests build:
// a kill() of a pid <= 0 or a killpg() of a group <= 1 would signal our own process group or
// every process we may (as root: the whole machine). The guard refuses it, says so on stderr
// and ends the program with status 97, so a test sees it instead of the machine.
#pragma once
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdio>

static inline int guarded_kill(pid_t pid, int sig) {
  if (pid <= 0) {
    std::fprintf(stderr, "GUARD: refused kill(%d, %d)\n", static_cast<int>(pid), sig);
    _exit(97);
  }
  return kill(pid, sig);
}

static inline int guarded_killpg(pid_t group, int sig) {
  if (group <= 1) {
    std::fprintf(stderr, "GUARD: refused killpg(%d, %d)\n", static_cast<int>(group), sig);
    _exit(97);
  }
  return killpg(group, sig);
}

#define kill guarded_kill
#define killpg guarded_killpg
