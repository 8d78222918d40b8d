// What the fault drills print: one JSON object per line, for tests/test_cpp_client.py.
//
//   Line("result")("phase", "warm")("elapsed_ms", 1.5);   // {"event":"result","phase":...}
//
// Also the heap meter the drill binary keeps (fault_drill.cpp replaces operator new): how
// many bytes the program holds now and at most since heap_peak_reset().
#pragma once

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "inference_engine.h"

namespace drill {

inline std::string quote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\u%04x", c);
      out += hex;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + "\"";
}

class Line {
 public:
  explicit Line(const char* event) { text_ << "{\"event\":" << quote(event); }
  ~Line() { std::cout << text_.str() << "}\n" << std::flush; }
  Line(const Line&) = delete;
  Line& operator=(const Line&) = delete;
  Line& operator()(const char* key, const std::string& value) { return raw(key, quote(value)); }
  Line& operator()(const char* key, const char* value) { return raw(key, quote(value)); }
  Line& operator()(const char* key, bool value) { return raw(key, value ? "true" : "false"); }
  Line& operator()(const char* key, double value) {
    std::ostringstream number;
    number.precision(12);
    number << value;
    return raw(key, number.str());
  }
  Line& operator()(const char* key, uint64_t value) { return raw(key, std::to_string(value)); }
  Line& operator()(const char* key, int value) { return raw(key, std::to_string(value)); }
  Line& operator()(const char* key, const std::vector<std::string>& items) {
    std::string list = "[";
    for (size_t i = 0; i < items.size(); ++i) list += (i ? "," : "") + quote(items[i]);
    return raw(key, list + "]");
  }

 private:
  std::ostringstream text_;
  Line& raw(const char* key, const std::string& value) {
    text_ << ',' << quote(key) << ':' << value;
    return *this;
  }
};

inline double ms_since(ovcast::Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(ovcast::Clock::now() - start).count();
}

// A "stats" line: the engine's counters.
inline void stats(const ovcast::InferenceEngine& engine, const char* phase) {
  const ovcast::Stats& s = engine.stats();
  Line("stats")("phase", phase)("submitted", s.submitted)("ok", s.ok)("timeouts", s.timeouts)(
      "unavailable", s.unavailable)("server_errors", s.server_errors)(
      "protocol_errors", s.protocol_errors)("child_died", s.child_died)(
      "invalid_input", s.invalid_input)("resent", s.resent)("late_answers", s.late_answers)(
      "garbage_lines", s.garbage_lines)("stderr_lines", s.stderr_lines)(
      "callback_errors", s.callback_errors)("last_callback_error", s.last_callback_error)(
      "starts", s.starts)("restarts", s.restarts)("start_failures", s.start_failures)(
      "exits", s.exits)("hung_kills", s.hung_kills)("protocol_kills", s.protocol_kills)(
      "consecutive_failures", s.consecutive_failures)("last_fault", s.last_fault)(
      "in_flight", static_cast<uint64_t>(engine.in_flight()));
}

// The options every drill starts from: a quick backoff, a 1 s hang timeout, 30 s to start.
inline ovcast::Options options(const std::vector<std::string>& command,
                               std::chrono::milliseconds timeout) {
  ovcast::Options o;
  o.command = command;
  o.timeout = timeout;
  o.hang_timeout = std::chrono::milliseconds(1000);
  o.startup_timeout = std::chrono::milliseconds(30000);
  o.backoff_initial = std::chrono::milliseconds(50);
  o.backoff_max = std::chrono::milliseconds(400);
  return o;
}

// Writes the mode file a server wrapper reads at each start, and says so.
inline void set_mode(const std::string& file, const std::string& mode, double t_ms) {
  if (file.empty()) throw std::runtime_error("this scenario needs --mode-file");
  std::ofstream(file) << mode << '\n';
  Line("mode")("mode", mode)("t_ms", t_ms);
}

// Reports each restart as a "restart" line with its time since t0.
inline void log_restarts(ovcast::InferenceEngine& engine, ovcast::Clock::time_point t0) {
  engine.on_restart = [t0](const std::string& why) {
    Line("restart")("t_ms", ms_since(t0))("cause", why);
  };
}

// Signals a process the drill means; never a pid <= 0 (kill(-1) signals every process).
inline bool signal_process(pid_t pid, int sig) { return pid > 0 && kill(pid, sig) == 0; }

size_t heap_now();
size_t heap_peak();
void heap_peak_reset();

}  // namespace drill
