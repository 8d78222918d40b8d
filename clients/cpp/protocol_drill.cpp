// The fault drill's protocol half: InferenceEngine against tests/cpp_fake_server.py, a server
// that misbehaves on cue (a window's last value) or by mode. Part of the fault_drill binary:
//
//   fault_drill fake SCENARIO [--mode-file PATH] -- python tests/cpp_fake_server.py ...
//
// The fake's model takes [8][3] and answers [4][3], every value of step t being the window's
// last value (the cue) + t. One JSON object per line, as fault_drill.cpp prints them.
//
// Scenarios:
//   answers      wrong shapes, values beyond float32, NaN literals, nulls, a huge answer, a
//                server error, numeric and foreign request ids
//   ordering     answers out of order, matched by request_id
//   poison       a window that crashes every server, pipelined between good ones
//   deadlines    "forever", zero, negative deadlines and settings
//   windows      windows of the wrong shape, up to a million rows, refused at once
//   slow         a server later than every deadline is kept; a frozen one found by hang_timeout
//   fds          the host's fds do not reach the server
//   group        a wrapper that forks the server: the whole process group is killed
//   ready        ready lines with unusable numbers
//   sigpipe      the host restores SIGPIPE's default; servers close their stdin
//   callback     callbacks that throw
//   destroy      the destructor with a frozen server and requests in flight
//   stuck-start  a restarted server frozen before its ready line
//   stderr       the host's stderr is a full pipe nobody reads
//   huge-line    16 MB stray lines (time and memory), and the default line cap
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <climits>
#include <cmath>
#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "drill_output.h"
#include "inference_engine.h"
#include "process_state.h"

namespace {

using drill::Line;
using drill::ms_since;
using ovcast::Clock;
using std::chrono::milliseconds;

constexpr size_t kContext = 8, kChannels = 3, kHorizon = 4;

class Fake {
 public:
  Fake(std::vector<std::string> command, std::string mode_file)
      : command_(std::move(command)), mode_file_(std::move(mode_file)), t0_(Clock::now()) {}

  double now_ms() const { return ms_since(t0_); }

  ovcast::Options options(milliseconds timeout) const { return drill::options(command_, timeout); }

  void set_mode(const std::string& mode) const { drill::set_mode(mode_file_, mode, now_ms()); }

  void attach(ovcast::InferenceEngine& engine) const { drill::log_restarts(engine, t0_); }

  static ovcast::Window window(float cue, size_t rows = kContext, size_t channels = kChannels) {
    ovcast::Window w(rows, std::vector<float>(channels, 0.0f));
    for (size_t t = 0; t < rows; ++t)
      for (size_t c = 0; c < channels; ++c) w[t][c] = 0.1f * static_cast<float>(t + c);
    if (rows && channels) w.back()[0] = cue;
    return w;
  }

  static bool correct(const ovcast::Result& r, float cue) {
    if (!r.ok() || r.predictions.size() != kHorizon) return false;
    for (size_t t = 0; t < kHorizon; ++t) {
      if (r.predictions[t].size() != kChannels) return false;
      for (float v : r.predictions[t])
        if (v != cue + static_cast<float>(t)) return false;
    }
    return true;
  }

  // A result line; elapsed_ms is checked against the deadline the client applied (a
  // negative one is zero) by the test.
  void record(const char* phase, float cue, const ovcast::Result& r, Clock::time_point since,
              milliseconds timeout) const {
    Line("result")("phase", phase)("cue", static_cast<double>(cue))(
        "error", ovcast::to_string(r.error))("code", r.server_code)("message", r.message)(
        "correct", correct(r, cue))("restarted", r.restarted)("elapsed_ms", ms_since(since))(
        "deadline_ms", static_cast<double>(ovcast::detail::clamp_wait(timeout).count()))("t_ms",
                                                                                         now_ms());
  }

  ovcast::Result ask(ovcast::InferenceEngine& engine, const char* phase, float cue,
                     milliseconds timeout) const {
    const auto at = Clock::now();
    ovcast::Result r = engine.predict(window(cue), 0, timeout);
    record(phase, cue, r, at, timeout);
    return r;
  }

  // Submits every cue at once, then waits for each in turn; phase(cue) names its result.
  template <typename Phase>
  void all_at_once(ovcast::InferenceEngine& engine, const std::vector<float>& cues,
                   milliseconds timeout, Phase phase) const {
    std::vector<std::pair<ovcast::Ticket, Clock::time_point>> sent;
    for (float cue : cues) sent.emplace_back(engine.submit(window(cue), 0, timeout), Clock::now());
    for (size_t i = 0; i < sent.size(); ++i)
      record(phase(cues[i]), cues[i], engine.wait(sent[i].first), sent[i].second, timeout);
  }

 private:
  std::vector<std::string> command_;
  std::string mode_file_;
  Clock::time_point t0_;
};

// SIGSTOP a server and wait until it has stopped; SIGKILL one and wait for its zombie.
bool freeze(pid_t pid) {
  return drill::signal_process(pid, SIGSTOP) &&
         ovcast::wait_for_process_state(pid, "tT", milliseconds(10000));
}
bool crash(pid_t pid) {
  return drill::signal_process(pid, SIGKILL) &&
         ovcast::wait_for_process_state(pid, "Z", milliseconds(10000));
}
// Gone: no such process, or a zombie nobody has reaped yet.
bool gone(pid_t pid, milliseconds bound) {
  const auto until = Clock::now() + bound;
  while (true) {
    char state = ovcast::process_state(pid);
    if (state == '?' || state == 'Z') return true;
    if (Clock::now() >= until) return false;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

// The pid of the process that answers, from the fake's ready line.
pid_t server_pid(const ovcast::InferenceEngine& engine) {
  ovcast::detail::Json ready;
  if (!ovcast::detail::parse_json(engine.ready_line(), &ready)) return -1;
  const ovcast::detail::Json* pid = ready.get("server_pid");
  return pid && pid->kind == ovcast::detail::Json::Number ? static_cast<pid_t>(pid->number) : -1;
}

// ------------------------------------------------------------------------- scenarios
void answers(const Fake& f) {
  ovcast::InferenceEngine engine(f.options(milliseconds(1000)));
  f.attach(engine);
  f.ask(engine, "warm", 5, milliseconds(1000));
  f.ask(engine, "wrong_shape", 1001, milliseconds(1000));
  f.ask(engine, "beyond_float32", 1002, milliseconds(1000));
  f.ask(engine, "nan_literals", 1003, milliseconds(1000));
  f.ask(engine, "nulls", 1004, milliseconds(1000));
  f.ask(engine, "too_many", 1014, milliseconds(1000));
  f.ask(engine, "not_finite", 1005, milliseconds(1000));
  f.ask(engine, "numeric_id", 1006, milliseconds(1000));
  f.ask(engine, "foreign_id", 1007, milliseconds(300));
  f.ask(engine, "after", 7, milliseconds(1000));
  drill::stats(engine, "end");
}

void ordering(const Fake& f) {
  ovcast::InferenceEngine engine(f.options(milliseconds(2000)));
  f.attach(engine);
  f.all_at_once(engine, {1009, 11, 1009, 12, 1006, 13}, milliseconds(2000),
                [](float) { return "ordered"; });
  drill::stats(engine, "end");
}

void poison(const Fake& f) {
  ovcast::InferenceEngine engine(f.options(milliseconds(5000)));
  f.attach(engine);
  f.all_at_once(engine, {5, 1008, 6, 7, 8, 9}, milliseconds(5000),
                [](float cue) { return cue == 1008 ? "poison" : "good"; });
  drill::stats(engine, "end");
}

void deadlines(const Fake& f) {
  {
    ovcast::InferenceEngine engine(f.options(milliseconds(2000)));
    f.attach(engine);
    f.ask(engine, "max", 5, milliseconds::max());
    f.ask(engine, "300_years", 6, std::chrono::hours(24 * 365 * 300));
    f.ask(engine, "zero", 7, milliseconds(0));
    f.ask(engine, "negative", 8, milliseconds(-5));
    f.ask(engine, "min", 9, milliseconds::min());
    f.ask(engine, "after", 10, milliseconds(2000));
    engine.options().timeout = milliseconds::max();
    const auto at = Clock::now();
    f.record("default_max", 11, engine.predict(Fake::window(11)), at, milliseconds::max());
    drill::stats(engine, "requests");
  }
  ovcast::Options o = f.options(milliseconds::max());
  o.startup_timeout = o.hang_timeout = o.backoff_initial = o.backoff_max = o.stop_grace =
      milliseconds::max();
  auto* engine = new ovcast::InferenceEngine(o);
  f.attach(*engine);
  f.ask(*engine, "forever_settings", 12, milliseconds(2000));
  Line("note")("what", "crashed")("value", crash(engine->pid()));
  f.ask(*engine, "after_crash", 13, milliseconds(5000));
  drill::stats(*engine, "settings");
  const auto at = Clock::now();
  delete engine;
  Line("destroy")("took_ms", ms_since(at));
}

void windows(const Fake& f) {
  ovcast::InferenceEngine engine(f.options(milliseconds(1000)));
  f.attach(engine);
  auto bad = [&](const char* phase, const ovcast::Window& w) {
    const auto at = Clock::now();
    f.record(phase, 0, engine.predict(w, 0, milliseconds(20)), at, milliseconds(20));
  };
  bad("rows_1000000", Fake::window(5, 1000000));
  bad("rows_100000", Fake::window(5, 100000));
  bad("rows_3", Fake::window(5, 3));
  bad("channels_2", Fake::window(5, kContext, 2));
  bad("channels_7", Fake::window(5, kContext, 7));
  ovcast::Window ragged = Fake::window(5);
  ragged[3].pop_back();
  bad("ragged", ragged);
  ovcast::Window nan = Fake::window(5);
  nan[2][1] = NAN;
  bad("nan", nan);
  f.ask(engine, "after", 5, milliseconds(1000));
  drill::stats(engine, "end");
}

void slow(const Fake& f) {
  ovcast::Options o = f.options(milliseconds(1000));
  o.hang_timeout = milliseconds(800);
  ovcast::InferenceEngine engine(o);
  f.attach(engine);
  f.ask(engine, "warm", 5, milliseconds(1000));
  // Once per "bar" (100 ms), a deadline of 0-3 ms for an answer that takes 60 ms.
  for (int i = 0; i < 10; ++i) {
    f.ask(engine, "tight", 1012, milliseconds(i % 4));
    std::this_thread::sleep_for(milliseconds(100));
  }
  f.ask(engine, "kept", 6, milliseconds(1000));
  drill::stats(engine, "tight");
  // Frozen: requests with short deadlines keep coming; the server is replaced hang_timeout
  // after the first of them was sent, not before.
  Line("note")("what", "frozen")("value", freeze(engine.pid()))("t_ms", f.now_ms());
  const auto until = Clock::now() + milliseconds(10000);
  while (engine.stats().hung_kills == 0 && Clock::now() < until)
    f.ask(engine, "frozen", 7, milliseconds(200));
  f.ask(engine, "recovered", 8, milliseconds(5000));
  drill::stats(engine, "end");
}

void fds(const Fake& f) {
  int host[2];
  if (pipe(host) != 0) throw std::runtime_error("pipe");  // no O_CLOEXEC, as pipe() makes them
  ovcast::InferenceEngine engine(f.options(milliseconds(1000)));
  f.ask(engine, "warm", 5, milliseconds(1000));
  ::close(host[1]);  // "no more data": its reader must see EOF now
  pollfd reader{host[0], POLLIN, 0};
  const bool eof = poll(&reader, 1, 0) == 1 && (reader.revents & POLLHUP);
  auto link = [](const std::string& path) {
    char target[256];
    ssize_t n = readlink(path.c_str(), target, sizeof target - 1);
    return std::string(target, n > 0 ? static_cast<size_t>(n) : 0);
  };
  const std::string ours = link("/proc/self/fd/" + std::to_string(host[0]));
  const std::string dir = "/proc/" + std::to_string(engine.pid()) + "/fd";
  std::vector<std::string> theirs;
  bool inherited = false;
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* entry = readdir(d)) {
      if (entry->d_name[0] == '.') continue;
      theirs.push_back(entry->d_name);
      inherited = inherited || link(dir + "/" + entry->d_name) == ours;
    }
    closedir(d);
  }
  ::close(host[0]);
  Line("fds")("eof_seen", eof)("inherited", inherited)("server_fds", theirs);
}

void group(const Fake& f) {
  f.set_mode("fork");
  ovcast::Options o = f.options(milliseconds(1000));
  o.hang_timeout = milliseconds(500);
  pid_t first = -1, second = -1;
  {
    ovcast::InferenceEngine engine(o);
    f.attach(engine);
    f.ask(engine, "warm", 5, milliseconds(1000));
    first = server_pid(engine);
    f.ask(engine, "hang", 1010, milliseconds(300));
    f.ask(engine, "after", 6, milliseconds(5000));
    second = server_pid(engine);
    drill::stats(engine, "end");
  }
  Line("group")("first", static_cast<int>(first))("second", static_cast<int>(second))(
      "first_gone", first > 0 && gone(first, milliseconds(2000)))(
      "second_gone", second > 0 && gone(second, milliseconds(2000)));
}

void ready(const Fake& f) {
  const char* cases[] = {"context_length=1e300", "prediction_length=-1", "num_channels=2.5",
                         "context_length=",      "context_length=\"8\"", "channel_names=[\"a\"]"};
  for (const char* bad : cases) {
    f.set_mode(std::string("bad-ready:") + bad);
    ovcast::Options o = f.options(milliseconds(1000));
    o.startup_timeout = milliseconds(5000);
    const auto at = Clock::now();
    try {
      ovcast::InferenceEngine engine(o);
      Line("constructor")("case", bad)("error", "none")(
          "context_length", engine.server().context_length)("prediction_length",
                                                            engine.server().prediction_length);
    } catch (const std::exception& e) {
      Line("constructor")("case", bad)("error", e.what())("took_ms", ms_since(at));
    }
  }
}

void sigpipe(const Fake& f) {
  ovcast::InferenceEngine engine(f.options(milliseconds(2000)));
  f.attach(engine);
  f.ask(engine, "warm", 5, milliseconds(2000));
  signal(SIGPIPE, SIG_DFL);  // the host (a library's init) restores the default
  const pid_t server = engine.pid();
  f.ask(engine, "before_close", 1011, milliseconds(2000));
  // The server closes its stdin (told while the client is idle, and seen in /proc): the next
  // request's write meets a pipe without a reader.
  drill::signal_process(server, SIGUSR1);
  const std::string stdin_link = "/proc/" + std::to_string(server) + "/fd/0";
  const auto until = Clock::now() + milliseconds(10000);
  while (access(stdin_link.c_str(), F_OK) == 0 && Clock::now() < until)
    std::this_thread::sleep_for(milliseconds(1));
  Line("note")("what", "stdin_closed")("value", access(stdin_link.c_str(), F_OK) != 0);
  f.ask(engine, "after", 6, milliseconds(5000));
  // A server that closes its stdin while the client waits with nothing to write: seen at
  // once (POLLERR), not after hang_timeout. Each server does it: two in turn, ChildDied.
  f.ask(engine, "closes_stdin_silently", 1016, milliseconds(5000));
  struct sigaction now{};
  sigaction(SIGPIPE, nullptr, &now);
  sigset_t pending, mask;
  sigpending(&pending);
  pthread_sigmask(SIG_SETMASK, nullptr, &mask);
  Line("sigpipe")("disposition_default", now.sa_handler == SIG_DFL)(
      "pending", sigismember(&pending, SIGPIPE) == 1)("blocked", sigismember(&mask, SIGPIPE) == 1);
  drill::stats(engine, "end");
}

void callback(const Fake& f) {
  {
    ovcast::InferenceEngine engine(f.options(milliseconds(2000)));
    engine.on_restart = [](const std::string&) { throw std::runtime_error("log sink full"); };
    f.ask(engine, "warm", 5, milliseconds(2000));
    Line("note")("what", "crashed")("value", crash(engine.pid()));
    for (float cue : {6.0f, 7.0f, 8.0f}) {
      try {
        f.ask(engine, "after_crash", cue, milliseconds(5000));
      } catch (const std::exception& e) { Line("threw")("what", e.what()); }
    }
    drill::stats(engine, "restart");
  }
  f.set_mode("stderr:4");
  ovcast::Options o = f.options(milliseconds(2000));
  o.server_stderr = ovcast::ServerStderr::Capture;
  o.on_server_stderr = [](const std::string&) { throw std::runtime_error("no room"); };
  ovcast::InferenceEngine engine(o);
  f.ask(engine, "captured", 9, milliseconds(2000));
  drill::stats(engine, "stderr");
}

void destroy(const Fake& f) {
  for (int grace : {300, -1}) {
    ovcast::Options o = f.options(milliseconds(1000));
    if (grace >= 0) o.stop_grace = milliseconds(grace);
    auto* engine = new ovcast::InferenceEngine(o);
    f.ask(*engine, "warm", 5, milliseconds(1000));
    const pid_t server = engine->pid();
    const bool frozen = freeze(server);
    for (int i = 0; i < 8; ++i) engine->submit(Fake::window(6), 0, milliseconds(100));
    const auto at = Clock::now();
    delete engine;
    Line("destroy")("grace_ms", static_cast<double>(o.stop_grace.count()))("frozen", frozen)(
        "took_ms", ms_since(at))("server_gone", gone(server, milliseconds(2000)));
  }
}

void stuck_start(const Fake& f) {
  ovcast::Options o = f.options(milliseconds(1000));
  o.startup_timeout = milliseconds(60000);
  ovcast::InferenceEngine engine(o);
  f.attach(engine);
  f.ask(engine, "warm", 5, milliseconds(1000));
  Line("note")("what", "crashed")("value", crash(engine.pid()));
  const auto at = Clock::now();
  // This call finds the server gone and starts the next one at once: freeze that one before
  // it can write its ready line.
  const ovcast::Ticket trigger = engine.submit(Fake::window(6), 0, milliseconds(1));
  const pid_t starting = engine.pid();
  Line("note")("what", "starting_frozen")("value", freeze(starting))("t_ms", f.now_ms());
  f.record("trigger", 6, engine.wait(trigger), at, milliseconds(1));
  const auto until = Clock::now() + milliseconds(30000);
  while (Clock::now() < until && !f.ask(engine, "stuck", 7, milliseconds(300)).ok()) {}
  Line("stuck")("first_ok_ms", ms_since(at))("startup_timeout_ms",
                                             static_cast<double>(o.startup_timeout.count()))(
      "frozen_gone", gone(starting, milliseconds(2000)));
  drill::stats(engine, "end");
}

// Makes fd 2 a pipe that is full and that nobody reads (a stalled log shipper), for the
// servers started meanwhile; restores it when destroyed.
class StalledStderr {
 public:
  StalledStderr() {
    if (pipe(pipe_) != 0) throw std::runtime_error("pipe");
    fcntl(pipe_[1], F_SETFL, O_NONBLOCK);
    const std::string block(4096, 'x');
    while (::write(pipe_[1], block.data(), block.size()) > 0) {}
    fcntl(pipe_[1], F_SETFL, 0);  // blocking again: a writer now waits, as on a real stall
    saved_ = dup(STDERR_FILENO);
    dup2(pipe_[1], STDERR_FILENO);
  }
  ~StalledStderr() {
    dup2(saved_, STDERR_FILENO);
    ::close(saved_);
    ::close(pipe_[0]);
    ::close(pipe_[1]);
  }

 private:
  int pipe_[2] = {-1, -1};
  int saved_ = -1;
};

void stderr_stalled(const Fake& f) {
  struct Case {
    const char* name;
    ovcast::ServerStderr where;
  };
  const Case cases[] = {{"capture", ovcast::ServerStderr::Capture},
                        {"discard", ovcast::ServerStderr::Discard},
                        {"inherit", ovcast::ServerStderr::Inherit}};
  f.set_mode("stderr:256");  // 256 KiB of logging before the ready line
  {
    StalledStderr stalled;
    for (const Case& c : cases) {
      ovcast::Options o = f.options(milliseconds(1000));
      o.startup_timeout = milliseconds(3000);
      o.server_stderr = c.where;
      uint64_t lines = 0;
      o.on_server_stderr = [&lines](const std::string&) { ++lines; };
      const auto at = Clock::now();
      try {
        ovcast::InferenceEngine engine(o);
        ovcast::Result r = engine.predict(Fake::window(5), 0, milliseconds(1000));
        Line("stderr")("case", c.name)("started", true)("ok", r.ok())("lines", lines)("took_ms",
                                                                                      ms_since(at));
      } catch (const std::exception& e) {
        Line("stderr")("case", c.name)("started", false)("error", e.what())("took_ms",
                                                                            ms_since(at));
      }
    }
  }
  // A server that cannot start says why on its stderr: the error carries it.
  f.set_mode("exit:3");
  ovcast::Options o = f.options(milliseconds(1000));
  o.server_stderr = ovcast::ServerStderr::Capture;
  try {
    ovcast::InferenceEngine engine(o);
    Line("exit")("error", "none");
  } catch (const std::exception& e) { Line("exit")("error", e.what()); }
}

void huge_line(const Fake& f) {
  // A 16 MB valid JSON line that is no answer before every answer, under a raised cap.
  f.set_mode("stray:16000000");
  ovcast::Options o = f.options(milliseconds(10000));
  o.max_line_bytes = 32u << 20;
  {
    ovcast::InferenceEngine engine(o);
    f.attach(engine);
    for (float cue : {5.0f, 6.0f}) {
      drill::heap_peak_reset();
      const size_t before = drill::heap_now();
      f.ask(engine, "huge_stray", cue, milliseconds(10000));
      Line("heap")("phase", "huge_stray")(
          "peak_mb", static_cast<double>(drill::heap_peak() - before) / (1 << 20));
    }
    drill::stats(engine, "huge");
  }
  // The default cap (1 MiB for this model): a 2 MB line replaces the server.
  f.set_mode("stray-once:2000000");
  ovcast::InferenceEngine engine(f.options(milliseconds(5000)));
  f.attach(engine);
  drill::heap_peak_reset();
  const size_t before = drill::heap_now();
  f.ask(engine, "default_cap", 8, milliseconds(5000));
  Line("heap")("phase", "default_cap")(
      "peak_mb", static_cast<double>(drill::heap_peak() - before) / (1 << 20));
  drill::stats(engine, "default_cap");
}

}  // namespace

int protocol_drill(const std::string& scenario, const std::string& mode_file,
                   const std::vector<std::string>& command) {
  static const std::map<std::string, void (*)(const Fake&)> scenarios = {
      {"answers", answers},
      {"ordering", ordering},
      {"poison", poison},
      {"deadlines", deadlines},
      {"windows", windows},
      {"slow", slow},
      {"fds", fds},
      {"group", group},
      {"ready", ready},
      {"sigpipe", sigpipe},
      {"callback", callback},
      {"destroy", destroy},
      {"stuck-start", stuck_start},
      {"stderr", stderr_stalled},
      {"huge-line", huge_line}};
  const auto found = scenarios.find(scenario);
  if (found == scenarios.end()) throw std::runtime_error("unknown scenario " + scenario);
  found->second(Fake(command, mode_file));
  return 0;
}
