// Fault drill for the C++ client: drives InferenceEngine against a real `ovcast serve` child,
// injects faults, and prints what the client did as one JSON object per line; the checks are
// in tests/test_cpp_client.py. Built there with -fsanitize=address,undefined.
//
//   fault_drill SCENARIO WINDOWS_CSV EXPECTED_CSV [--mode-file PATH] -- SERVER_ARGV...
//   fault_drill units                 # pure logic: backoff schedule, JSON edge cases
//   fault_drill csv FILE [CONTEXT CHANNEL...]   # a CSV as the client reads it (series_csv.h)
//                                               # and the model's window from it, or the error
//
// WINDOWS_CSV holds N windows stacked ([N*context][channels]) and EXPECTED_CSV their forecasts
// ([N*horizon][channels]); request i sends window i % N and must get forecast i % N back.
// --mode-file: the server wrapper reads it at each start (real, hang, garbage, slow); the drill
// writes it to change what the next server will do.
//
// Scenarios (each ends with a "stats" line):
//   pipeline     sequential, pipelined and a burst bigger than the pipes; bad inputs
//   stop         SIGSTOP: one timeout, the frozen server replaced, then correct forecasts
//   stop-keep    SIGSTOP with restart_on_timeout off: the stdin pipe fills, every call still
//                returns on time; after SIGCONT the late answers are dropped
//   storm        SIGKILL every 150-600 ms while requests flow, then recovery
//   never-ready  a server that never becomes ready: at construction, then on restarts; with
//                max_restarts set, the client gives up, and reset() resumes
//   garbage      stray lines on stdout around every answer, then an endless line
//   slow         a server that answers late is kept; one silent for a whole timeout is not
#include <signal.h>

#include <atomic>
#include <cmath>
#include <deque>
#include <fstream>
#include <iostream>
#include <locale>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "inference_engine.h"
#include "process_state.h"
#include "series_csv.h"

namespace {

using ovcast::Clock;
using std::chrono::milliseconds;

// ------------------------------------------------------------------------- JSON lines out
std::string quote(const std::string& text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\u%04x", c);
      out += hex;
    } else
      out += static_cast<char>(c);
  }
  return out + "\"";
}

class Line {
 public:
  explicit Line(const char* event) { text_ << "{\"event\":" << quote(event); }
  ~Line() { std::cout << text_.str() << "}\n" << std::flush; }
  Line& operator()(const char* key, const std::string& value) { return raw(key, quote(value)); }
  Line& operator()(const char* key, const char* value) { return raw(key, quote(value)); }
  Line& operator()(const char* key, bool value) { return raw(key, value ? "true" : "false"); }
  Line& operator()(const char* key, double value) {
    std::ostringstream number;
    number << value;
    return raw(key, number.str());
  }
  Line& operator()(const char* key, uint64_t value) { return raw(key, std::to_string(value)); }
  Line& operator()(const char* key, int value) { return raw(key, std::to_string(value)); }

 private:
  std::ostringstream text_;
  Line& raw(const char* key, const std::string& value) {
    text_ << ',' << quote(key) << ':' << value;
    return *this;
  }
};

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

  double now_ms() const {
    return std::chrono::duration<double, std::milli>(Clock::now() - t0_).count();
  }

  void set_mode(const char* mode) {
    std::ofstream(config_.mode_file) << mode << '\n';
    Line("mode")("mode", mode)("t_ms", now_ms());
  }

  ovcast::Options options(milliseconds timeout) const {
    ovcast::Options o;
    o.command = config_.command;
    o.timeout = timeout;
    o.startup_timeout = milliseconds(30000);
    o.backoff_initial = milliseconds(50);
    o.backoff_max = milliseconds(400);
    return o;
  }

  // Reports each restart with its time; splits the stacked windows by the server's shapes.
  void attach(ovcast::InferenceEngine& engine) {
    engine.on_restart = [this](const std::string& why) {
      Line("restart")("t_ms", now_ms())("cause", why);
    };
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

  void record(const char* phase, size_t i, const ovcast::Result& r, Clock::time_point submitted,
              milliseconds timeout) {
    double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - submitted).count();
    Line("result")("phase", phase)("i", static_cast<uint64_t>(i))(
        "error", ovcast::to_string(r.error))("code", r.server_code)("message", r.message)(
        "correct", r.ok() && matches(r, i))("restarted", r.restarted)("elapsed_ms", elapsed)(
        "deadline_ms", static_cast<double>(timeout.count()))("t_ms", now_ms());
  }

  static void stats(const ovcast::InferenceEngine& engine, const char* phase) {
    const ovcast::Stats& s = engine.stats();
    Line("stats")("phase", phase)("submitted", s.submitted)("ok", s.ok)("timeouts", s.timeouts)(
        "unavailable", s.unavailable)("server_errors", s.server_errors)(
        "protocol_errors", s.protocol_errors)("child_died", s.child_died)(
        "invalid_input", s.invalid_input)("resent", s.resent)("late_answers", s.late_answers)(
        "garbage_lines", s.garbage_lines)("starts", s.starts)("restarts", s.restarts)(
        "start_failures", s.start_failures)("exits", s.exits)("hung_kills", s.hung_kills)(
        "protocol_kills", s.protocol_kills)("consecutive_failures", s.consecutive_failures)(
        "last_fault", s.last_fault)("in_flight", static_cast<uint64_t>(engine.in_flight()));
  }

  const Config& config() const { return config_; }

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
  d.ask(engine, "after_bad", 1, milliseconds(20000));
  Drill::stats(engine, "end");
}

// SIGSTOP a server and wait until it has stopped (the signal lands asynchronously).
pid_t freeze(Drill& d, pid_t server) {
  kill(server, SIGSTOP);
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
  Drill::stats(engine, "end");
}

void stop_keep(Drill& d) {
  ovcast::Options o = d.options(milliseconds(500));
  o.restart_on_timeout = false;
  ovcast::InferenceEngine engine(o);
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  pid_t frozen = freeze(d, engine.pid());
  d.pipelined(engine, "burst", 0, 100, 100, milliseconds(500));  // fills the server's stdin
  for (size_t i = 0; i < 3; ++i) d.ask(engine, "blocked", i, milliseconds(300));
  kill(frozen, SIGCONT);
  note("continued", ovcast::wait_for_process_state(frozen, "RSD", milliseconds(10000)), d.now_ms());
  d.ask(engine, "resumed", 4, milliseconds(30000));
  d.ask(engine, "resumed", 5, milliseconds(30000));
  Drill::stats(engine, "end");
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
          if (kill(child, SIGKILL) == 0) ++kills;
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
  Drill::stats(engine, "end");
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
    Line("constructor")("error", e.what())(
        "elapsed_ms", std::chrono::duration<double, std::milli>(Clock::now() - at).count())(
        "deadline_ms", 1000.0);
  }
  // 2. A good server, killed; its replacements never become ready until the fault stops.
  d.set_mode("real");
  ovcast::InferenceEngine engine(d.options(milliseconds(300)));
  d.attach(engine);
  d.ask(engine, "warm", 0, milliseconds(30000));
  engine.options().startup_timeout = milliseconds(1000);
  d.set_mode("hang");
  pid_t killed = engine.pid();
  kill(killed, SIGKILL);
  note("killed", ovcast::wait_for_process_state(killed, "Z", milliseconds(10000)), d.now_ms());
  const auto hanging_until = Clock::now() + milliseconds(3500);
  for (size_t i = 1; Clock::now() < hanging_until; ++i)
    d.ask(engine, "hanging", i, milliseconds(300));
  Drill::stats(engine, "hanging");
  d.set_mode("real");
  engine.options().startup_timeout = milliseconds(30000);
  int good = 0;
  const auto bound = Clock::now() + milliseconds(30000);
  for (size_t i = 0; good < 3 && Clock::now() < bound; ++i) {
    good = d.ask(engine, "recovery", i, milliseconds(300)).ok() ? good + 1 : 0;
  }
  Drill::stats(engine, "recovered");
  // 3. With a limit (max_restarts = 1): the second fault in a row gives up; reset() resumes.
  engine.options().max_restarts = 1;
  engine.options().startup_timeout = milliseconds(500);
  d.set_mode("hang");
  killed = engine.pid();
  kill(killed, SIGKILL);
  note("killed", ovcast::wait_for_process_state(killed, "Z", milliseconds(10000)), d.now_ms());
  const auto giving_up_until = Clock::now() + milliseconds(5000);
  for (size_t i = 0; Clock::now() < giving_up_until; ++i) {
    if (d.ask(engine, "giving_up", i, milliseconds(300)).error == ovcast::Error::ChildDied) break;
  }
  d.ask(engine, "gave_up", 0, milliseconds(300));
  Drill::stats(engine, "gave_up");
  d.set_mode("real");
  engine.options().startup_timeout = milliseconds(30000);
  engine.reset();
  d.ask(engine, "reset", 1, milliseconds(30000));
  Drill::stats(engine, "end");
}

void slow(Drill& d) {
  // The wrapper runs the server behind a relay that sends each answer 700 ms after the last
  // one; it resets the mode to real so the replacement is a plain server.
  d.set_mode("slow");
  ovcast::InferenceEngine engine(d.options(milliseconds(1000)));
  d.attach(engine);
  // Two at once: the first is answered at 700 ms; the second (due at 1400) times out at 1000
  // ms, 300 ms after an answer: a slow server, kept.
  d.pipelined(engine, "slow", 0, 2, 2, milliseconds(1000));
  Drill::stats(engine, "slow");
  d.ask(engine, "drained", 2, milliseconds(3000));  // behind the late answer, dropped
  // Silent for the whole 500 ms (the answer is due at 700): hung, replaced.
  d.ask(engine, "silent", 3, milliseconds(500));
  d.ask(engine, "replaced", 4, milliseconds(30000));
  Drill::stats(engine, "end");
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
  auto at = Clock::now();
  d.record("garbage_bad", 0,
           engine.predict(ovcast::Window(d.window(0).begin(), d.window(0).begin() + 3)), at,
           o.timeout);
  d.pipelined(engine, "garbage", 2, 5, 3, milliseconds(20000));
  Drill::stats(engine, "garbage");
  d.ask(engine, "flood", 5, milliseconds(30000));
  for (size_t i = 6; i < 9; ++i) d.ask(engine, "after", i, milliseconds(20000));
  Drill::stats(engine, "end");
}

// ------------------------------------------------------------------------- pure logic
void check(const char* name, bool passed, const std::string& detail = "") {
  Line("check")("name", name)("passed", passed)("detail", detail);
}

void units() {
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

  ovcast::detail::Json json;
  check("json: deep nesting is refused, not a stack overflow",
        !ovcast::detail::parse_json(std::string(200000, '[') + std::string(200000, ']'), &json));
  check("json: unicode escapes decode to UTF-8",
        ovcast::detail::parse_json(R"({"m":"caf\u00e9 \ud83d\ude00"})", &json) &&
            json.get("m")->string == "caf\xc3\xa9 \xf0\x9f\x98\x80");
  check("json: bad escapes and numbers are refused",
        !ovcast::detail::parse_json(R"({"m":"\uzzzz"})", &json) &&
            !ovcast::detail::parse_json("[1.2.3]", &json) &&
            !ovcast::detail::parse_json("[-]", &json) &&
            !ovcast::detail::parse_json("[NaN]", &json) &&
            !ovcast::detail::parse_json("[1e999]", &json) &&
            !ovcast::detail::parse_json("{\"a\":1", &json));
  {  // A host app with a decimal comma in its global locale: the wire still uses '.'.
    struct DecimalComma : std::numpunct<char> {
      char do_decimal_point() const override { return ','; }
    };
    std::locale previous =
        std::locale::global(std::locale(std::locale::classic(), new DecimalComma));
    std::string line, error;
    bool encoded = ovcast::detail::encode_request("1", 0, {{0.5f, -1.25f}}, &line, &error) &&
                   line.find("[[0.5,-1.25]]") != std::string::npos;
    bool parsed =
        ovcast::detail::parse_json("[-1.5e-3, 2]", &json) && json.array[0].number == -1.5e-3;
    std::locale::global(previous);
    check("json: numbers in and out ignore a decimal-comma global locale", encoded && parsed, line);
  }

  auto decoded = [](const char* line) {
    ovcast::detail::Json answer;
    ovcast::Result r;
    if (ovcast::detail::parse_json(line, &answer) && ovcast::detail::is_answer(answer))
      ovcast::detail::decode_answer(answer, &r);
    else
      r.error = ovcast::Error::InvalidInput;  // not an answer at all
    return r;
  };
  check("answer: ragged or non-numeric predictions are a protocol error",
        decoded(R"({"success":true,"predictions":[[1,2],[3]]})").error ==
                ovcast::Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[["a"]]})").error ==
                ovcast::Error::ProtocolError &&
            decoded(R"({"success":true,"predictions":[]})").error == ovcast::Error::ProtocolError &&
            decoded(R"({"success":true})").error == ovcast::Error::ProtocolError);
  ovcast::Result server_error =
      decoded(R"({"success":false,"error":{"code":"invalid_input","message":"m"}})");
  check("answer: a server error keeps its code and message",
        server_error.error == ovcast::Error::ServerError &&
            server_error.server_code == "invalid_input" && server_error.message == "m");
  ovcast::Result good =
      decoded(R"({"success":true,"predictions":[[1.5,2],[3,4]],"inference_time_ms":0.5})");
  check("answer: predictions decode as [horizon][channels]",
        good.ok() && good.predictions.size() == 2 && good.predictions[1][0] == 3.0f &&
            good.inference_time_ms == 0.5);
  check("answer: a line without a boolean success is not an answer",
        decoded(R"({"success":"yes"})").error == ovcast::Error::InvalidInput &&
            decoded(R"({"event":"log"})").error == ovcast::Error::InvalidInput);

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
}

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? "," : "") + quote(items[i]);
  return out + "]";
}

std::string json_matrix(const ovcast::Window& rows) {
  std::ostringstream out;
  out.precision(9);
  out << "[";
  for (size_t t = 0; t < rows.size(); ++t) {
    out << (t ? ",[" : "[");
    for (size_t c = 0; c < rows[t].size(); ++c) out << (c ? "," : "") << rows[t][c];
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
              << ",\"timestamp_name\":" << quote(series.timestamp_name);
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
  if (positional.size() != 3 || config.command.empty()) {
    std::cerr << "usage: " << argv[0]
              << " SCENARIO WINDOWS_CSV EXPECTED_CSV [--mode-file PATH] -- SERVER_ARGV...\n"
                 "       "
              << argv[0] << " units | csv FILE [CONTEXT CHANNEL...]\n";
    return 2;
  }
  config.scenario = positional[0];
  try {
    config.window_rows = ovcast::read_series_csv(positional[1]).values;
    config.expected_rows = ovcast::read_series_csv(positional[2]).values;
    Drill drill(config);
    const std::string& s = config.scenario;
    if (s == "pipeline")
      pipeline(drill);
    else if (s == "stop")
      stop(drill);
    else if (s == "stop-keep")
      stop_keep(drill);
    else if (s == "storm")
      storm(drill);
    else if (s == "never-ready")
      never_ready(drill);
    else if (s == "garbage")
      garbage(drill);
    else if (s == "slow")
      slow(drill);
    else
      throw std::runtime_error("unknown scenario " + s);
  } catch (const std::exception& e) {
    Line("error")("message", e.what());
    return 1;
  }
  return 0;
}
