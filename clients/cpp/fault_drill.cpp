// Fault drill for the C++ client: drives InferenceEngine against real `ovcast serve` children
// (this file) and against tests/cpp_fake_server.py (protocol_drill.cpp), injects faults, and
// prints what the client did as one JSON object per line; the checks are in
// tests/test_cpp_client.py. Built there with -fsanitize=address,undefined.
//
//   fault_drill SCENARIO WINDOWS_CSV EXPECTED_CSV [--mode-file PATH] -- SERVER_ARGV...
//   fault_drill fake SCENARIO [--mode-file PATH] -- FAKE_SERVER_ARGV...   (protocol_drill.cpp)
//   fault_drill units                 # pure logic: backoff, deadlines, JSON, the wire format
//   fault_drill csv FILE [CONTEXT CHANNEL...]   # a CSV as the client reads it (series_csv.h)
//                                               # and the model's window from it, or the error
//
// WINDOWS_CSV holds N windows stacked ([N*context][channels]) and EXPECTED_CSV their forecasts
// ([N*horizon][channels]); request i sends window i % N and must get forecast i % N back.
// --mode-file: the server wrapper reads it at each start (real, hang, garbage, slow); the drill
// writes it to change what the next server will do.
//
// Scenarios (each ends with a "stats" line):
//   pipeline     sequential, pipelined and a burst bigger than the pipes; bad inputs; a
//                window whose forecast is not finite (model_output_not_finite)
//   stop         SIGSTOP: one timeout, the frozen server replaced, then correct forecasts
//   stop-keep    SIGSTOP with restart_hung off: the stdin pipe fills, every call still
//                returns on time; after SIGCONT the late answers are dropped
//   storm        SIGKILL every 150-600 ms while requests flow, then recovery
//   never-ready  a server that never becomes ready: at construction, then on restarts; with
//                max_restarts set, the client gives up, and reset() resumes
//   garbage      stray lines on stdout around every answer, then an endless line
//   slow         a server that answers late is kept; one that answers nothing is replaced
//   late-wait    the host waits for answers after their deadlines passed: they were in time
//   tight        deadlines of 0-2 ms at a bar's cadence: timeouts, never a killed server
#include <malloc.h>
#include <signal.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <iostream>
#include <locale>
#include <map>
#include <new>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "drill_output.h"
#include "inference_engine.h"
#include "process_state.h"
#include "series_csv.h"

// ------------------------------------------------------------------------- the heap meter
// Every operator new of the drill is counted, so a scenario can say how much memory the
// client took for a line (malloc_usable_size: the same size at new and at delete).
namespace {
std::atomic<size_t> g_heap_now{0}, g_heap_peak{0};

void* counted_new(size_t size) {
  void* p = std::malloc(size ? size : 1);
  if (!p) throw std::bad_alloc();
  const size_t now = g_heap_now += malloc_usable_size(p);
  size_t peak = g_heap_peak.load();
  while (now > peak && !g_heap_peak.compare_exchange_weak(peak, now)) {}
  return p;
}
void counted_delete(void* p) noexcept {
  if (!p) return;
  g_heap_now -= malloc_usable_size(p);
  std::free(p);
}
}  // namespace

void* operator new(size_t size) { return counted_new(size); }
void* operator new[](size_t size) { return counted_new(size); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { counted_delete(p); }

size_t drill::heap_now() { return g_heap_now; }
size_t drill::heap_peak() { return g_heap_peak; }
void drill::heap_peak_reset() { g_heap_peak = g_heap_now.load(); }

int protocol_drill(const std::string& scenario, const std::string& mode_file,
                   const std::vector<std::string>& command);

namespace {

using drill::Line;
using drill::ms_since;
using ovcast::Clock;
using std::chrono::milliseconds;

// ------------------------------------------------------------------------- the drill
struct Config {
  std::string scenario;
  ovcast::Window window_rows, expected_rows;
  std::string mode_file;
  std::vector<std::string> command;
};

class Drill {
 public:
  explicit Drill(Config config) : config_(std::move(config)), t0_(Clock::now()) {}

  double now_ms() const { return ms_since(t0_); }

  void set_mode(const char* mode) { drill::set_mode(config_.mode_file, mode, now_ms()); }

  ovcast::Options options(milliseconds timeout) const {
    return drill::options(config_.command, timeout);
  }

  // Reports each restart with its time; splits the stacked windows by the server's shapes.
  void attach(ovcast::InferenceEngine& engine) {
    drill::log_restarts(engine, t0_);
    const ovcast::ServerInfo& info = engine.server();
    Line("server")("model", info.model)("context_length", info.context_length)(
        "prediction_length", info.prediction_length)("num_channels", info.num_channels);
    if (windows_.empty()) {
      windows_ = split(config_.window_rows, info.context_length);
      expected_ = split(config_.expected_rows, info.prediction_length);
      if (windows_.empty() || windows_.size() != expected_.size())
        throw std::runtime_error("windows and expected forecasts do not match the server's shapes");
    }
  }

  const ovcast::Window& window(size_t i) const { return windows_[i % windows_.size()]; }

  // One request: submitted now, waited for now.
  ovcast::Result ask(ovcast::InferenceEngine& engine, const char* phase, size_t i,
                     milliseconds timeout) {
    auto submitted = Clock::now();
    ovcast::Result r = engine.wait(engine.submit(window(i), static_cast<int64_t>(i), timeout));
    record(phase, i, r, submitted, timeout);
    return r;
  }

  // Requests first..last-1 with `depth` in flight, each with `timeout`.
  void pipelined(ovcast::InferenceEngine& engine, const char* phase, size_t first, size_t last,
                 size_t depth, milliseconds timeout) {
    struct Sent {
      size_t i;
      ovcast::Ticket ticket;
      Clock::time_point at;
    };
    std::deque<Sent> in_flight;
    for (size_t i = first; i < last || !in_flight.empty();) {
      if (i < last && in_flight.size() < depth) {
        in_flight.push_back(
            {i, engine.submit(window(i), static_cast<int64_t>(i), timeout), Clock::now()});
        ++i;
        continue;
      }
      Sent sent = in_flight.front();
      in_flight.pop_front();
      record(phase, sent.i, engine.wait(sent.ticket), sent.at, timeout);
    }
  }

  // A result line; elapsed_ms is how long the request was in the caller's hands (from
  // `since`), checked against deadline_ms by the test.
  void record(const char* phase, size_t i, const ovcast::Result& r, Clock::time_point since,
              milliseconds timeout) {
    Line("result")("phase", phase)("i", static_cast<uint64_t>(i))(
        "error", ovcast::to_string(r.error))("code", r.server_code)("message", r.message)(
        "correct", r.ok() && matches(r, i))("restarted", r.restarted)(
        "elapsed_ms", ms_since(since))("deadline_ms", static_cast<double>(timeout.count()))(
        "t_ms", now_ms());
  }

 private:
  Config config_;
  Clock::time_point t0_;
  std::vector<ovcast::Window> windows_, expected_;

  static std::vector<ovcast::Window> split(const ovcast::Window& rows, int per) {
    std::vector<ovcast::Window> out;
    if (per <= 0 || rows.size() % static_cast<size_t>(per) != 0) return out;
    for (size_t start = 0; start < rows.size(); start += static_cast<size_t>(per))
      out.emplace_back(rows.begin() + static_cast<long>(start),
                       rows.begin() + static_cast<long>(start) + per);
    return out;
  }

  bool matches(const ovcast::Result& r, size_t i) const {
    const ovcast::Window& want = expected_[i % expected_.size()];
    if (r.predictions.size() != want.size()) return false;
    for (size_t t = 0; t < want.size(); ++t) {
      if (r.predictions[t].size() != want[t].size()) return false;
      for (size_t c = 0; c < want[t].size(); ++c)
        if (std::fabs(r.predictions[t][c] - want[t][c]) > 1e-4f + 1e-4f * std::fabs(want[t][c]))
          return false;
    }
    return true;
  }
};

void note(const char* what, bool value, double t_ms) {
  Line("note")("what", what)("value", value)("t_ms", t_ms);
}

// ------------------------------------------------------------------------- scenarios
void pipeline(Drill& d) {
  ovcast::InferenceEngine engine(d.options(milliseconds(20000)));
  d.attach(engine);
  for (size_t i = 0; i < 10; ++i) d.ask(engine, "sequential", i, milliseconds(20000));
  d.pipelined(engine, "pipelined", 0, 60, 8, milliseconds(20000));
  // A burst of 300 requests at once: far more than either pipe holds, while answers pile up.
  d.pipelined(engine, "burst", 0, 300, 300, milliseconds(30000));
  auto bad = [&](const char* phase, const ovcast::Window& w) {
    auto at = Clock::now();
    d.record(phase, 0, engine.predict(w, 0), at, engine.options().timeout);
  };
  bad("empty", {});
  bad("ragged", {{1.0f, 2.0f}, {3.0f}});
  bad("nan", {{1.0f, NAN}});
  bad("short", ovcast::Window(d.window(0).begin(), d.window(0).begin() + 3));
  ovcast::Window ragged = d.window(0);
  ragged[5].pop_back();
  bad("ragged_row", ragged);
  // Finite, but so large that this model's forecast is not: the server says so.
  ovcast::Window huge = d.window(0);
  for (size_t t = 0; t < huge.size(); ++t)
    for (float& v : huge[t]) v = t % 2 ? 1e30f : -1e30f;
  bad("not_finite", huge);
  d.ask(engine, "after_bad", 1, milliseconds(20000));
  drill::stats(engine, "end");
}

// SIGSTOP a server and wait until it has stopped (the signal lands asynchronously).
pid_t freeze(Drill& d, pid_t server) {
  drill::signal_process(server, SIGSTOP);
  note("stopped", ovcast::wait_for_process_state(server, "tT", milliseconds(10000)), d.now_ms());
  return server;
}

void stop(Drill& d) {
  ovcast::InferenceEngine engine(d.options(milliseconds(1000)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  pid_t frozen = freeze(d, engine.pid());
  d.ask(engine, "frozen", 1, milliseconds(1000));
  d.ask(engine, "after", 2, milliseconds(1000));
  d.ask(engine, "recovered", 3, milliseconds(30000));
  note("frozen_server_gone", !ovcast::wait_for_process_state(frozen, "RSDtT", milliseconds(0)),
       d.now_ms());
  drill::stats(engine, "end");
}

void stop_keep(Drill& d) {
  ovcast::Options o = d.options(milliseconds(500));
  o.restart_hung = false;
  ovcast::InferenceEngine engine(o);
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  pid_t frozen = freeze(d, engine.pid());
  d.pipelined(engine, "burst", 0, 100, 100, milliseconds(500));  // fills the server's stdin
  for (size_t i = 0; i < 3; ++i) d.ask(engine, "blocked", i, milliseconds(300));
  drill::signal_process(frozen, SIGCONT);
  note("continued", ovcast::wait_for_process_state(frozen, "RSD", milliseconds(10000)), d.now_ms());
  d.ask(engine, "resumed", 4, milliseconds(30000));
  d.ask(engine, "resumed", 5, milliseconds(30000));
  drill::stats(engine, "end");
}

void storm(Drill& d) {
  ovcast::InferenceEngine engine(d.options(milliseconds(300)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  std::atomic<bool> storming{true};
  std::atomic<uint64_t> kills{0};
  std::atomic<double> stopped_at{0.0};
  // The storm of the bug report (a kill every 150-600 ms), then a crash loop (every 10-50 ms,
  // faster than a server can start) that drives the backoff to its cap.
  std::thread killer([&] {
    std::mt19937 rng(7);
    auto storm = [&](int least_ms, int most_ms, milliseconds length) {
      std::uniform_int_distribution<int> pause(least_ms, most_ms);
      const auto end = Clock::now() + length;
      while (true) {
        std::this_thread::sleep_for(milliseconds(pause(rng)));
        if (Clock::now() >= end) return;
        for (pid_t child : ovcast::live_children())
          if (drill::signal_process(child, SIGKILL)) ++kills;
      }
    };
    storm(150, 600, milliseconds(2000));
    storm(10, 50, milliseconds(1500));
    stopped_at = d.now_ms();
    storming = false;
  });
  int most_failures = 0;
  size_t i = 1;
  while (storming) {
    d.pipelined(engine, "storm", i, i + 4, 4, milliseconds(300));
    i += 4;
    most_failures = std::max(most_failures, engine.stats().consecutive_failures);
  }
  killer.join();
  Line("storm")("kills", static_cast<uint64_t>(kills))(
      "stopped_ms", static_cast<double>(stopped_at))("most_consecutive_failures", most_failures);
  // Recovery: ask until five answers in a row are right (bounded).
  int good = 0;
  const auto bound = Clock::now() + milliseconds(30000);
  for (; good < 5 && Clock::now() < bound; ++i) {
    good = d.ask(engine, "recovery", i, milliseconds(300)).ok() ? good + 1 : 0;
  }
  drill::stats(engine, "end");
}

void never_ready(Drill& d) {
  // 1. The very first server never becomes ready: the constructor gives up on time.
  d.set_mode("hang");
  ovcast::Options first = d.options(milliseconds(300));
  first.startup_timeout = milliseconds(1000);
  auto at = Clock::now();
  try {
    ovcast::InferenceEngine engine(first);
    Line("constructor")("error", "none");
  } catch (const std::exception& e) {
    Line("constructor")("error", e.what())("elapsed_ms", ms_since(at))("deadline_ms", 1000.0);
  }
  // 2. A good server, killed; its replacements never become ready until the fault stops.
  d.set_mode("real");
  ovcast::InferenceEngine engine(d.options(milliseconds(300)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  engine.options().startup_timeout = milliseconds(1000);
  d.set_mode("hang");
  pid_t killed = engine.pid();
  drill::signal_process(killed, SIGKILL);
  note("killed", ovcast::wait_for_process_state(killed, "Z", milliseconds(10000)), d.now_ms());
  const auto hanging_until = Clock::now() + milliseconds(3500);
  for (size_t i = 1; Clock::now() < hanging_until; ++i)
    d.ask(engine, "hanging", i, milliseconds(300));
  drill::stats(engine, "hanging");
  d.set_mode("real");
  engine.options().startup_timeout = milliseconds(30000);
  int good = 0;
  const auto bound = Clock::now() + milliseconds(30000);
  for (size_t i = 0; good < 3 && Clock::now() < bound; ++i) {
    good = d.ask(engine, "recovery", i, milliseconds(300)).ok() ? good + 1 : 0;
  }
  drill::stats(engine, "recovered");
  // 3. With a limit (max_restarts = 1): the second fault in a row gives up; reset() resumes.
  engine.options().max_restarts = 1;
  engine.options().startup_timeout = milliseconds(500);
  d.set_mode("hang");
  killed = engine.pid();
  drill::signal_process(killed, SIGKILL);
  note("killed", ovcast::wait_for_process_state(killed, "Z", milliseconds(10000)), d.now_ms());
  const auto giving_up_until = Clock::now() + milliseconds(5000);
  for (size_t i = 0; Clock::now() < giving_up_until; ++i) {
    if (d.ask(engine, "giving_up", i, milliseconds(300)).error == ovcast::Error::ChildDied) break;
  }
  d.ask(engine, "gave_up", 0, milliseconds(300));
  drill::stats(engine, "gave_up");
  d.set_mode("real");
  engine.options().startup_timeout = milliseconds(30000);
  engine.reset();
  d.ask(engine, "reset", 1, milliseconds(30000));
  drill::stats(engine, "end");
}

void slow(Drill& d) {
  // The wrapper runs the server behind a relay that sends each answer 700 ms after the last
  // one; it resets the mode to real so the replacement is a plain server.
  d.set_mode("slow");
  ovcast::Options o = d.options(milliseconds(300));
  o.hang_timeout = milliseconds(1500);
  ovcast::InferenceEngine engine(o);
  d.attach(engine);
  // Deadlines far below the server's latency: each request times out, the server answers
  // each one late, and it is kept: slow, not hung.
  for (size_t i = 0; i < 3; ++i) d.ask(engine, "slow", i, milliseconds(300));
  d.ask(engine, "drained", 3, milliseconds(3000));  // behind the three late answers
  drill::stats(engine, "slow");
  // The relay stops: nothing is answered for hang_timeout, the server is replaced.
  pid_t relay = freeze(d, engine.pid());
  d.ask(engine, "silent", 4, milliseconds(500));
  d.ask(engine, "replaced", 5, milliseconds(30000));
  note("frozen_server_gone", !ovcast::wait_for_process_state(relay, "RSDtT", milliseconds(0)),
       d.now_ms());
  drill::stats(engine, "end");
}

void garbage(Drill& d) {
  // The wrapper runs the server behind a relay that writes stray lines before each of its
  // lines and, after six answers, an endless line instead of the seventh; it resets the mode
  // to real so the replacement is a plain server.
  d.set_mode("garbage");
  ovcast::Options o = d.options(milliseconds(20000));
  o.max_line_bytes = 1u << 20;
  ovcast::InferenceEngine engine(o);
  d.attach(engine);
  d.ask(engine, "garbage", 0, milliseconds(20000));
  d.ask(engine, "garbage", 1, milliseconds(20000));
  d.pipelined(engine, "garbage", 2, 6, 4, milliseconds(20000));
  drill::stats(engine, "garbage");
  d.ask(engine, "flood", 6, milliseconds(30000));
  for (size_t i = 7; i < 10; ++i) d.ask(engine, "after", i, milliseconds(20000));
  drill::stats(engine, "end");
}

void late_wait(Drill& d) {
  // The header's own pattern: submit, do other work past the deadline, then wait. The
  // answers came back in milliseconds; they are in the pipe when wait() is called.
  ovcast::InferenceEngine engine(d.options(milliseconds(1000)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  std::vector<ovcast::Ticket> tickets;
  for (size_t i = 1; i <= 4; ++i)
    tickets.push_back(engine.submit(d.window(i), static_cast<int64_t>(i), milliseconds(1000)));
  std::this_thread::sleep_for(milliseconds(1500));  // the host's other work
  for (size_t i = 1; i <= 4; ++i) {
    auto waited = Clock::now();  // the wait() call itself must return at once
    d.record("late_wait", i, engine.wait(tickets[i - 1]), waited, milliseconds(0));
  }
  drill::stats(engine, "end");
}

void tight(Drill& d) {
  // Once-per-bar requests with deadlines below the server's latency (0, 1, 2 ms), a bar every
  // 50 ms: each may time out, none makes the server hung.
  ovcast::InferenceEngine engine(d.options(milliseconds(1000)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  for (size_t i = 0; i < 24; ++i) {
    d.ask(engine, "tight", i, milliseconds(static_cast<long>(i % 3)));
    std::this_thread::sleep_for(milliseconds(50));
  }
  for (size_t i = 0; i < 3; ++i) d.ask(engine, "after", i, milliseconds(30000));
  drill::stats(engine, "end");
}

// ------------------------------------------------------------------------- pure logic
void check(const char* name, bool passed, const std::string& detail = "") {
  Line("check")("name", name)("passed", passed)("detail", detail);
}

ovcast::Result decoded(const std::string& line, ovcast::detail::AnswerShape shape = {}) {
  ovcast::detail::Json answer;
  ovcast::Result r;
  if (ovcast::detail::parse_json(line, &answer, ovcast::detail::answer_limits(shape)) &&
      ovcast::detail::is_answer(answer))
    ovcast::detail::decode_answer(answer, shape, &r);
  else
    r.error = ovcast::Error::InvalidInput;  // not an answer at all
  return r;
}

void units_time() {
  using ovcast::detail::backoff_delay;
  const milliseconds initial(100), cap(5000);
  std::string schedule;
  bool doubling = true;
  for (int n = 1; n <= 10; ++n) {
    long got = static_cast<long>(backoff_delay(n, initial, cap).count());
    long want = n == 1 ? 0 : std::min(5000L, 100L << (n - 2));
    schedule += std::to_string(got) + " ";
    doubling = doubling && got == want;
  }
  check("backoff doubles from initial after an immediate first restart, capped", doubling,
        schedule);
  check(
      "backoff stays capped for a long outage",
      backoff_delay(1000000, initial, cap) == cap && backoff_delay(INT32_MAX, initial, cap) == cap);
  check("backoff with zero initial never waits",
        backoff_delay(50, milliseconds(0), cap).count() == 0);
  check("backoff with 'forever' settings is clamped, not overflowed",
        backoff_delay(INT32_MAX, milliseconds::max(), milliseconds::max()) ==
                ovcast::detail::kLongestWait &&
            backoff_delay(3, milliseconds::max() / 2 + milliseconds(1), milliseconds::max()) ==
                ovcast::detail::kLongestWait);
  const auto now = Clock::now();
  check("deadlines clamp: 'forever' is 100 years ahead, negative is now",
        ovcast::detail::after(now, milliseconds::max()) > now + std::chrono::hours(24 * 365 * 99) &&
            ovcast::detail::after(now, milliseconds::min()) == now &&
            ovcast::detail::after(Clock::time_point::max() - std::chrono::hours(1),
                                  milliseconds::max()) == Clock::time_point::max());
}

std::string ones(int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += i ? ",1" : "1";
  return out;
}

void units_json() {
  using ovcast::detail::parse_json;
  ovcast::detail::Json json;
  check("json: deep nesting is refused, not a stack overflow",
        !parse_json(std::string(200000, '[') + std::string(200000, ']'), &json));
  check("json: unicode escapes decode to UTF-8",
        parse_json(R"({"m":"caf\u00e9 \ud83d\ude00"})", &json) &&
            json.get("m")->string == "caf\xc3\xa9 \xf0\x9f\x98\x80");
  check("json: bad escapes and numbers are refused",
        !parse_json(R"({"m":"\uzzzz"})", &json) && !parse_json("[1.2.3]", &json) &&
            !parse_json("[-]", &json) && !parse_json("{\"a\":1", &json) &&
            !parse_json("[+1]", &json) && !parse_json("[nan]", &json));
  check("json: NaN, Infinity and out-of-range numbers are values, not garbage",
        parse_json("[NaN, Infinity, -Infinity, 1e999, -1e999, 1e-999]", &json) &&
            std::isnan(json.array[0].number) && json.array[1].number == HUGE_VAL &&
            json.array[2].number == -HUGE_VAL && json.array[3].number == HUGE_VAL &&
            json.array[4].number == -HUGE_VAL && json.array[5].number == 0.0);
  check("json: a repeated key reads as its last value, as in Python",
        parse_json(R"({"a":1,"a":2})", &json) && json.get("a")->number == 2.0);
  ovcast::detail::JsonLimits limits;
  limits.max_member_values = 10;
  limits.max_total_values = 30;
  check("json: a top-level member over the limit is elided and counted, not built",
        parse_json("{\"keep\":[1,2],\"big\":[" + ones(100) + "]}", &json, limits) &&
            json.get("keep")->array.size() == 2 &&
            json.get("big")->kind == ovcast::detail::Json::Elided &&
            json.get("big")->number == 101.0);
  std::string members = "{";
  for (char key = 'a'; key <= 'z'; ++key)
    members += std::string(key == 'a' ? "" : ",") + "\"" + key + "\":[1,1]";
  check("json: more values than the total limit fail the parse",
        !parse_json("[" + ones(40) + "]", &json, limits) &&
            !parse_json(members + "}", &json, limits) &&
            parse_json("[" + ones(29) + "]", &json, limits));
  {  // A host app with a decimal comma in its global locale: the wire still uses '.'.
    struct DecimalComma : std::numpunct<char> {
      char do_decimal_point() const override { return ','; }
    };
    std::locale previous =
        std::locale::global(std::locale(std::locale::classic(), new DecimalComma));
    std::string line, error;
    bool encoded = ovcast::detail::encode_request("1", 0, {{0.5f, -1.25f}}, &line, &error) &&
                   line.find("[[0.5,-1.25]]") != std::string::npos;
    bool parsed = parse_json("[-1.5e-3, 2]", &json) && json.array[0].number == -1.5e-3;
    std::locale::global(previous);
    check("json: numbers in and out ignore a decimal-comma global locale", encoded && parsed, line);
  }
}

void units_wire() {
  using ovcast::Error;
  const ovcast::detail::AnswerShape shape{2, 2};
  check("answer: ragged or non-numeric predictions are a protocol error",
        decoded(R"({"success":true,"predictions":[[1,2],[3]]})").error == Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[["a"]]})").error == Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[]})").error == Error::ProtocolError &&
            decoded(R"({"success":true})").error == Error::ProtocolError);
  ovcast::Result wrong = decoded(R"({"success":true,"predictions":[[1.0]]})", shape);
  check("answer: a shape other than the ready line's horizon x channels is a protocol error",
        wrong.error == Error::ProtocolError &&
            wrong.message.find("have 1 rows; expected [2][2]") != std::string::npos &&
            decoded(R"({"success":true,"predictions":[[1,2,3],[1,2,3]]})", shape).error ==
                Error::ProtocolError,
        wrong.message);
  const ovcast::detail::AnswerShape some{2, 0, 3};  // a model may forecast fewer channels
  check("answer: unless told the channels, any count from 1 to num_channels is taken",
        decoded(R"({"success":true,"predictions":[[1],[2]]})", some).ok() &&
            decoded(R"({"success":true,"predictions":[[1,2,3],[4,5,6]]})", some).ok() &&
            decoded(R"({"success":true,"predictions":[[1,2,3,4],[4,5,6,7]]})", some)
                    .message.find("rows have 4 values; expected [2][1..3]") != std::string::npos &&
            decoded(R"({"success":true,"predictions":[[1,2],[3]]})", some).error ==
                Error::ProtocolError);
  ovcast::Result big = decoded(R"({"success":true,"predictions":[[1e39,1],[1,1]]})", shape);
  check("answer: values beyond float32, NaN, Infinity or null are a protocol error",
        big.error == Error::ProtocolError &&
            big.message.find("non-finite value at [0][0]") != std::string::npos &&
            decoded(R"({"success":true,"predictions":[[NaN,1],[1,1]]})", shape).error ==
                Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[[1,1],[1,-Infinity]]})", shape).error ==
                Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[[null,1],[1,1]]})", shape)
                    .message.find("null at [0][0]") != std::string::npos &&
            decoded(R"({"success":true,"predictions":[[3.4028235e38,-3.4028235e38],[0,1e-46]]})",
                    shape)
                .ok(),
        big.message);
  std::string many =
      R"({"success":true,"outputs":{"other":[)" + ones(5000) + R"(]},"predictions":[[1,2],[3,4]]})";
  ovcast::Result elided = decoded(many, shape);
  check("answer: a big member beside the predictions is skipped, not built",
        elided.ok() && elided.predictions[1][1] == 4.0f, elided.message);
  ovcast::Result server_error =
      decoded(R"({"success":false,"error":{"code":"model_output_not_finite","message":"m"}})");
  check("answer: a server error keeps its code and message",
        server_error.error == Error::ServerError &&
            server_error.server_code == "model_output_not_finite" && server_error.message == "m");
  ovcast::Result good =
      decoded(R"({"success":true,"predictions":[[1.5,2],[3,4]],"inference_time_ms":0.5})", shape);
  check("answer: predictions decode as [horizon][channels]",
        good.ok() && good.predictions.size() == 2 && good.predictions[1][0] == 3.0f &&
            good.inference_time_ms == 0.5);
  check("answer: a line without a boolean success is not an answer",
        decoded(R"({"success":"yes"})").error == Error::InvalidInput &&
            decoded(R"({"event":"log"})").error == Error::InvalidInput);
  ovcast::detail::Json json;
  std::string id;
  auto id_of = [&](const char* line) {
    id.clear();
    ovcast::detail::parse_json(line, &json);
    return ovcast::detail::answer_id(json, &id);
  };
  using ovcast::detail::AnswerId;
  check("answer: request_id as a string or a whole number; null or missing names none",
        id_of(R"({"request_id":"7"})") == AnswerId::Named && id == "7" &&
            id_of(R"({"request_id":7})") == AnswerId::Named && id == "7" &&
            id_of(R"({"request_id":7.5})") == AnswerId::Bad &&
            id_of(R"({"request_id":-1})") == AnswerId::Bad &&
            id_of(R"({"request_id":[7]})") == AnswerId::Bad &&
            id_of(R"({"request_id":null})") == AnswerId::Null && id_of("{}") == AnswerId::Null);

  std::string line, error;
  check("encode: NaN is refused before sending",
        !ovcast::detail::encode_request("1", 0, {{1.0f, NAN}}, &line, &error) &&
            error.find("NaN") != std::string::npos);
  check("encode: a ragged window is refused before sending",
        !ovcast::detail::encode_request("1", 0, {{1.0f, 2.0f}, {1.0f}}, &line, &error) &&
            error.find("row 1") != std::string::npos);
  check(
      "encode: floats round-trip exactly",
      ovcast::detail::encode_request("7", 5, {{0.1f, -3.4028235e38f}, {1e-45f, 123456.79f}}, &line,
                                     &error) &&
          ovcast::detail::parse_json(line.substr(0, line.size() - 1), &json) &&
          static_cast<float>(json.get("past_values")->array[0].array[0].number) == 0.1f &&
          static_cast<float>(json.get("past_values")->array[0].array[1].number) == -3.4028235e38f &&
          static_cast<float>(json.get("past_values")->array[1].array[0].number) == 1e-45f &&
          static_cast<float>(json.get("past_values")->array[1].array[1].number) == 123456.79f,
      line);
  ovcast::Inputs inputs = {{"freq_token", {}, {7}},
                           {"future_exogenous", {2, 3}, {1, 2, 3, 4, 5, 6}}};
  bool with_inputs = ovcast::detail::encode_request("8", 0, {{1.0f}}, &line, &error, inputs);
  const char* expected = R"("inputs":{"freq_token":7,"future_exogenous":[[1,2,3],[4,5,6]]})";
  check("encode: further inputs go in \"inputs\", nested by their shape",
        with_inputs && line.find(expected) != std::string::npos &&
            ovcast::detail::parse_json(line.substr(0, line.size() - 1), &json),
        line);
  check("encode: an input whose values do not fill its shape is refused",
        !ovcast::detail::encode_request("9", 0, {{1.0f}}, &line, &error,
                                        {{"future_exogenous", {2, 2}, {1, 2, 3}}}) &&
            error.find("shape needs 4") != std::string::npos);
  check("encode: an input name that would need escaping is refused",
        !ovcast::detail::encode_request("9", 0, {{1.0f}}, &line, &error, {{"a\"b", {}, {1}}}) &&
            error.find("letters, digits") != std::string::npos);
  ovcast::ServerInfo info;
  info.context_length = 4;
  info.num_channels = 2;
  check("window: a shape other than the ready line's context x channels is refused",
        !ovcast::detail::check_window(ovcast::Window(1000000, {1.0f, 2.0f}), info, &error) &&
            error.find("window is [1000000][2]; expected [4][2]") != std::string::npos &&
            !ovcast::detail::check_window(ovcast::Window(4, {1.0f}), info, &error) &&
            ovcast::detail::check_window(ovcast::Window(4, {1.0f, 2.0f}), info, &error),
        error);
  check("command: the output channels of a --channels option",
        ovcast::detail::channels_in_command({"ovcast", "serve", "--channels", "0,2"}) == 2 &&
            ovcast::detail::channels_in_command({"ovcast", "--channels=3"}) == 1 &&
            ovcast::detail::channels_in_command({"ovcast", "serve"}) == 0 &&
            ovcast::detail::channels_in_command({"x", "--channels", "a"}) == 0);
  check("float32: beyond its range is +-inf (as numpy), within it rounds",
        std::isinf(ovcast::detail::to_float(1e39)) && ovcast::detail::to_float(-1e39) < 0 &&
            ovcast::detail::to_float(3.4028235e38) == FLT_MAX &&
            ovcast::detail::to_float(3.40282356e38) == FLT_MAX &&
            std::isinf(ovcast::detail::to_float(3.4028236e38)) &&
            std::isnan(ovcast::detail::to_float(NAN)));
}

void units_ready() {
  auto ready = [](const std::string& fields, std::string* problem) {
    ovcast::ServerInfo info;
    std::string line = R"({"event":"ready","model":"m",)" + fields + "}";
    return ovcast::detail::decode_ready(line, &info, problem);
  };
  using ovcast::detail::ReadyLine;
  std::string problem;
  const std::string good =
      R"("context_length":512,"prediction_length":96,"num_channels":2,"channel_names":["a","b"])";
  check("ready: a good ready line is read", ready(good, &problem) == ReadyLine::Yes);
  ovcast::ServerInfo forecasts;
  check("ready: forecast_channel_names, when the server says them, are read",
        ovcast::detail::decode_ready(
            R"({"event":"ready",)" + good + R"(,"forecast_channel_names":["b"]})", &forecasts,
            &problem) == ReadyLine::Yes &&
            forecasts.forecast_channel_names == std::vector<std::string>{"b"} &&
            ready(good + R"(,"forecast_channel_names":[1])", &problem) == ReadyLine::Unusable);
  std::string bad_cases[] = {
      R"("context_length":1e300,"prediction_length":96,"num_channels":2)",
      R"("context_length":-1,"prediction_length":96,"num_channels":2)",
      R"("context_length":512,"prediction_length":2.5,"num_channels":2)",
      R"("context_length":512,"prediction_length":96,"num_channels":"2")",
      R"("context_length":512,"prediction_length":96)",
      R"("context_length":NaN,"prediction_length":96,"num_channels":2)",
      R"("context_length":512,"prediction_length":96,"num_channels":2,"channel_names":["a"])",
  };
  bool all_refused = true;
  std::string problems;
  for (const auto& fields : bad_cases) {
    all_refused = all_refused && ready(fields, &problem) == ReadyLine::Unusable;
    problems += problem + " | ";
  }
  check("ready: numbers that are not whole, positive and sane are refused, with the reason",
        all_refused &&
            problems.find("context_length is 1e+300; expected a whole number") != std::string::npos,
        problems);
  ovcast::ServerInfo info;
  check("ready: other lines are not ready lines",
        ovcast::detail::decode_ready(R"({"event":"log"})", &info, &problem) == ReadyLine::No &&
            ovcast::detail::decode_ready("ready", &info, &problem) == ReadyLine::No);
}

void units() {
  units_time();
  units_json();
  units_wire();
  units_ready();
}

// The binary form: windows out and forecasts in as base64 little-endian float32.
void check_binary_form() {
  ovcast::detail::Json json;
  std::string line, error;
  const ovcast::Window window = {{0.1f, -3.4028235e38f, 1e-45f}, {123456.79f, -0.0f, 2.5f}};
  bool encoded = ovcast::detail::encode_request("7", 5, window, &line, &error, {},
                                                ovcast::Encoding::Binary) &&
                 ovcast::detail::parse_json(line.substr(0, line.size() - 1), &json);
  const ovcast::detail::Json* values = encoded ? json.get("past_values") : nullptr;
  std::vector<std::vector<float>> back;
  check("binary: a window round-trips bit for bit, shape [rows, channels]",
        values && values->get("shape")->array.size() == 2 &&
            values->get("shape")->array[0].number == 2 &&
            values->get("shape")->array[1].number == 3 &&
            json.get("response_encoding")->string == "base64" &&
            ovcast::detail::decode_binary(*values, &back) && back == window &&
            std::signbit(back[1][1]),
        line);
  const ovcast::Inputs token = {{"freq_token", {}, {7.0f}}};
  check("binary: further inputs travel beside a binary window",
        ovcast::detail::encode_request("8", 0, window, &line, &error, token,
                                       ovcast::Encoding::Binary) &&
            ovcast::detail::parse_json(line.substr(0, line.size() - 1), &json) &&
            json.get("inputs") && json.get("inputs")->get("freq_token") &&
            json.get("past_values")->get("base64"),
        line);
  // 1.0f, 2.0f, -1.5f, 0.25f as little-endian float32, base64 (Python's base64 of '<f4').
  std::vector<float> decoded;
  check("binary: base64 of little-endian float32 decodes, with padding and without",
        ovcast::detail::decode_base64_floats("AACAPwAAAEAAAMC/AACAPg==", &decoded) &&
            decoded == std::vector<float>({1.0f, 2.0f, -1.5f, 0.25f}) &&
            ovcast::detail::decode_base64_floats("AACAPwAAAEAAAMC/", &decoded) &&
            decoded == std::vector<float>({1.0f, 2.0f, -1.5f}));
  for (const std::string& text :
       {std::string("AAC AP=="), std::string("AA=A"), std::string("AACAPw=A"),
        std::string("AACAPwAA"), std::string("AACAPwAAAEAAAMC/AACAPg"),
        std::string("AACAPwAAAEAAAMC/AACAPg==AAAA")}) {
    check(("binary: not base64 float32 is refused: " + text).c_str(),
          !ovcast::detail::decode_base64_floats(text, &decoded));
  }
  auto answer = [](const std::string& predictions) {
    ovcast::detail::Json json;
    ovcast::Result r;
    ovcast::detail::parse_json(R"({"success":true,"predictions":)" + predictions + "}", &json);
    ovcast::detail::decode_answer(json, {}, &r);
    return r;
  };
  ovcast::Result good =
      answer(R"({"base64":"AACAPwAAAEAAAMC/AACAPg==","shape":[2,2],"datatype":"FP32"})");
  check("binary: forecasts decode as [horizon][channels]",
        good.ok() && good.predictions.size() == 2 && good.predictions[1][0] == -1.5f &&
            good.predictions[1][1] == 0.25f);
  for (const char* bad : {R"({"base64":"AACAPwAAAEAAAMC/AACAPg==","shape":[3,2]})",
                          R"({"base64":"AACAPwAAAEAAAMC/AACAPg==","shape":[4]})",
                          R"({"base64":"AACAPwAAAEAAAMC/AACAPg==","shape":[2,2],"datatype":"FP64"})",
                          R"({"base64":"!!!!","shape":[1,1]})", R"({"shape":[1,1]})"}) {
    check((std::string("binary: a malformed forecast is a protocol error: ") + bad).c_str(),
          answer(bad).error == ovcast::Error::ProtocolError);
  }
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + drill::quote(items[i]);
  return out + "]";
}

std::string json_matrix(const ovcast::Window& rows) {
  std::ostringstream out;
  out.precision(9);
  out << "[";
  for (size_t t = 0; t < rows.size(); ++t) {
    out << (t ? ",[" : "[");
    for (size_t c = 0; c < rows[t].size(); ++c) {
      const float v = rows[t][c];
      out << (c ? "," : "");
      if (std::isnan(v))
        out << "NaN";  // as Python's json reads them
      else if (std::isinf(v))
        out << (v > 0 ? "Infinity" : "-Infinity");
      else
        out << v;
    }
    out << "]";
  }
  return out.str() + "]";
}

// A CSV as the client reads it, and with CONTEXT and channel names the model's window from it.
int read_csv(int argc, char** argv) {
  try {
    ovcast::Series series = ovcast::read_series_csv(argv[2]);
    std::cout << "{\"values\":" << json_matrix(series.values)
              << ",\"columns\":" << json_list(series.columns)
              << ",\"timestamps\":" << json_list(series.timestamps)
              << ",\"timestamp_name\":" << drill::quote(series.timestamp_name);
    if (argc > 3) {
      std::vector<std::string> names(argv + 4, argv + argc), notes;
      ovcast::Window window = series.window_for(std::atoi(argv[3]), names, &notes);
      std::cout << ",\"window\":" << json_matrix(window) << ",\"notes\":" << json_list(notes);
    }
    std::cout << "}\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    return 2;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::string(argv[1]) == "units") {
    units();
    check_binary_form();
    return 0;
  }
  if (argc >= 3 && std::string(argv[1]) == "csv") return read_csv(argc, argv);
  Config config;
  int i = 1;
  std::vector<std::string> positional;
  for (; i < argc && std::string(argv[i]) != "--"; ++i) {
    std::string arg = argv[i];
    if (arg == "--mode-file" && i + 1 < argc)
      config.mode_file = argv[++i];
    else
      positional.push_back(arg);
  }
  for (++i; i < argc; ++i) config.command.push_back(argv[i]);
  const bool fake = positional.size() == 2 && positional[0] == "fake";
  if ((!fake && positional.size() != 3) || config.command.empty()) {
    std::cerr << "usage: " << argv[0]
              << " SCENARIO WINDOWS_CSV EXPECTED_CSV [--mode-file PATH] -- SERVER_ARGV...\n"
                 "       "
              << argv[0] << " fake SCENARIO [--mode-file PATH] -- FAKE_SERVER_ARGV...\n       "
              << argv[0] << " units | csv FILE [CONTEXT CHANNEL...]\n";
    return 2;
  }
  try {
    if (fake) return protocol_drill(positional[1], config.mode_file, config.command);
    config.scenario = positional[0];
    config.window_rows = ovcast::read_series_csv(positional[1]).values;
    config.expected_rows = ovcast::read_series_csv(positional[2]).values;
    static const std::map<std::string, void (*)(Drill&)> scenarios = {{"pipeline", pipeline},
                                                                      {"stop", stop},
                                                                      {"stop-keep", stop_keep},
                                                                      {"storm", storm},
                                                                      {"never-ready", never_ready},
                                                                      {"garbage", garbage},
                                                                      {"slow", slow},
                                                                      {"late-wait", late_wait},
                                                                      {"tight", tight}};
    const auto found = scenarios.find(config.scenario);
    if (found == scenarios.end()) throw std::runtime_error("unknown scenario " + config.scenario);
    Drill drill(config);
    found->second(drill);
  } catch (const std::exception& e) {
    Line("error")("message", e.what());
    return 1;
  }
  return 0;
}
