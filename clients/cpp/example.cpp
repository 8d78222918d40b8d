// Example: forecast with ovcast from C++, and watch the client ride out faults it is shown.
//
//   mkdir -p build/cpp
//   g++ -std=c++17 -O2 -Wall -Wextra -o build/cpp/example clients/cpp/example.cpp
//   build/cpp/example models/default window.csv                  # server: `ovcast serve ...`
//   build/cpp/example --python .venv/bin/python models/default window.csv  # `PYTHON -m ovcast ...`
//   build/cpp/example --no-faults --bench 300 models/default window.csv    # forecasts/s
//
// window.csv: what `ovcast predict --input` reads (series_csv.h): a row per time step, a header
// row and a timestamp column allowed, a longer series cut to the model's context, columns
// taken by name when the header names the model's channels.
//
// Output: one line per step, its first word a tag. SERVER and FORECAST; then, unless
// --no-faults, three faults the example injects on purpose, each announced by a DEMO line
// that says what is about to happen and what to expect (BAD_INPUT, RESTARTED, TIMEOUT,
// RECOVERED; ON_RESTART when the client reports a restart; SKIPPED when there is no server
// to signal at that moment); then SUMMARY. With --bench N:
// BENCH lines, forecasts/s with 1 and with --in-flight K requests in flight, and the machine.
#include <signal.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "inference_engine.h"
#include "process_state.h"
#include "series_csv.h"

namespace {

using std::chrono::milliseconds;

struct Args {
  std::string python;  // run the server as PYTHON -m ovcast (else the `ovcast` script)
  std::string model_dir;
  std::string csv;
  bool faults = true;
  int bench = 0;
  int in_flight = 4;
};

bool parse_args(int argc, char** argv, Args* args) {
  std::vector<std::string> positional;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    bool has_value = i + 1 < argc;
    if (arg == "--python" && has_value)
      args->python = argv[++i];
    else if (arg == "--no-faults")
      args->faults = false;
    else if (arg == "--bench" && has_value)
      args->bench = std::atoi(argv[++i]);
    else if (arg == "--in-flight" && has_value)
      args->in_flight = std::max(1, std::atoi(argv[++i]));
    else if (!arg.empty() && arg[0] == '-')
      return false;
    else
      positional.push_back(arg);
  }
  if (positional.size() != 2) return false;
  args->model_dir = positional[0];
  args->csv = positional[1];
  return true;
}

double ms_since(ovcast::Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(ovcast::Clock::now() - start).count();
}

void print_forecast(const char* tag, const ovcast::Result& r) {
  std::cout << tag << " steps=" << r.predictions.size()
            << " channels=" << (r.predictions.empty() ? 0 : r.predictions[0].size())
            << " restarted=" << r.restarted << " first=";
  std::cout.precision(9);
  for (float v : r.predictions.at(0)) std::cout << v << ' ';
  std::cout << '\n';
}

bool report_failure(const char* what, const ovcast::Result& r) {
  if (r.ok()) return false;
  std::cerr << what << ": " << ovcast::to_string(r.error) << ": " << r.message << '\n';
  return true;
}

// Signals the current server. pid() is -1 while the client has no server (starting, backing
// off): kill(-1, sig) would signal every process we may, so there is nothing to signal then.
bool signal_server(const ovcast::InferenceEngine& engine, int sig, const char* demo) {
  pid_t pid = engine.pid();
  if (pid <= 0) {
    std::cout << "SKIPPED " << demo << ": no server is running right now (the client is "
              << "restarting it)\n";
    return false;
  }
  if (kill(pid, sig) != 0) {
    std::cout << "SKIPPED " << demo << ": could not signal the server\n";
    return false;
  }
  return true;
}

// The demonstrations: every fault here is injected on purpose, and announced first.
bool demonstrate_faults(ovcast::InferenceEngine& engine, const ovcast::Window& window) {
  std::cout << "DEMO 1/3 bad input: sending a 3-row window. Expect invalid_input at once: the "
               "client checks windows against the model's shape before sending.\n";
  ovcast::Window short_window(window.begin(), window.begin() + std::min<size_t>(3, window.size()));
  ovcast::Result bad = engine.predict(short_window);
  std::cout << "BAD_INPUT error=" << ovcast::to_string(bad.error) << " message=" << bad.message
            << '\n';

  std::cout << "DEMO 2/3 crash: killing the server with SIGKILL. Expect the client to start a "
               "new one and answer the next request (ON_RESTART says why).\n";
  pid_t crashed = engine.pid();
  if (signal_server(engine, SIGKILL, "DEMO 2/3")) {
    ovcast::wait_for_process_state(crashed, "Z", milliseconds(5000));  // dead before we ask
    ovcast::Result after_kill = engine.predict(window);
    if (report_failure("after the kill", after_kill)) return false;
    print_forecast("RESTARTED", after_kill);
  }

  const milliseconds deadline(1000);
  std::cout << "DEMO 3/3 hang: freezing the server with SIGSTOP, then asking with a "
            << deadline.count()
            << " ms deadline. Expect a timeout on time; once the server has answered nothing "
               "for hang_timeout ("
            << engine.options().hang_timeout.count()
            << " ms), the client kills it and starts a new one.\n";
  pid_t frozen = engine.pid();
  if (signal_server(engine, SIGSTOP, "DEMO 3/3")) {
    ovcast::wait_for_process_state(frozen, "tT", milliseconds(5000));
    auto asked = ovcast::Clock::now();
    ovcast::Result late = engine.predict(window, 0, deadline);
    std::cout << "TIMEOUT error=" << ovcast::to_string(late.error)
              << " after_ms=" << static_cast<long>(ms_since(asked))
              << " deadline_ms=" << deadline.count() << '\n';
    ovcast::Result again = engine.predict(window, 0, milliseconds(60000));
    if (report_failure("after the hang", again)) return false;
    print_forecast("RECOVERED", again);
  }

  const ovcast::Stats& s = engine.stats();
  std::cout << "SUMMARY the faults above were deliberate; restarts=" << s.restarts
            << " (after an exit: " << s.exits << ", after a hang: " << s.hung_kills
            << ") timeouts=" << s.timeouts << " ok=" << s.ok << '\n';
  return true;
}

std::string shell_quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// What follows `key` on the first line of `text` that holds it ("unknown" if none).
std::string field(const std::string& text, const std::string& key) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    size_t at = line.find(key);
    if (at == std::string::npos) continue;
    size_t begin = line.find_first_not_of(' ', at + key.size());
    return begin == std::string::npos ? "unknown" : line.substr(begin);
  }
  return "unknown";
}

std::string command_output(const std::string& command) {
  std::string output;
  if (FILE* pipe = popen((command + " 2>/dev/null").c_str(), "r")) {
    char buffer[512];
    size_t n;
    while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
    pclose(pipe);
  }
  return output;
}

// Forecasts per second over n requests, keeping `depth` of them in flight.
double forecasts_per_second(ovcast::InferenceEngine& engine, const ovcast::Window& window, int n,
                            int depth) {
  std::deque<ovcast::Ticket> in_flight;
  int failed = 0;
  auto start = ovcast::Clock::now();
  for (int i = 0; i < n || !in_flight.empty();) {
    if (i < n && static_cast<int>(in_flight.size()) < depth) {
      in_flight.push_back(engine.submit(window, i, milliseconds(10000)));
      ++i;
      continue;
    }
    failed += !engine.wait(in_flight.front()).ok();
    in_flight.pop_front();
  }
  double seconds = ms_since(start) / 1000.0;
  if (failed) std::cerr << "bench: " << failed << " of " << n << " forecasts failed\n";
  return n / seconds;
}

void bench(ovcast::InferenceEngine& engine, const ovcast::Window& window, const Args& args) {
  const std::string ovcast_cmd =
      args.python.empty() ? "ovcast" : shell_quote(args.python) + " -m ovcast";
  utsname host{};
  uname(&host);
  const ovcast::ServerInfo& server = engine.server();
  const std::string doctor = command_output(ovcast_cmd + " doctor");  // ovcast's machine report
  std::cout << "BENCH machine: " << field(doctor, "cpu") << "; " << sysconf(_SC_NPROCESSORS_ONLN)
            << " CPUs online; Linux " << host.release << '\n';
  std::cout << "BENCH versions: " << field(doctor, "versions") << "; client built by " <<
#if defined(__clang__)
      "clang "
#else
      "g++ "
#endif
            << __VERSION__ << '\n';
  std::cout << "BENCH model " << server.model << ": context " << server.context_length
            << ", horizon " << server.prediction_length << ", " << server.num_channels
            << " channels; " << args.bench << " forecasts per run, runs alternate, median of 3\n";
  std::vector<double> one, many;
  forecasts_per_second(engine, window, std::min(args.bench, 20), 1);  // settle
  for (int round = 0; round < 3; ++round) {
    one.push_back(forecasts_per_second(engine, window, args.bench, 1));
    many.push_back(forecasts_per_second(engine, window, args.bench, args.in_flight));
  }
  std::sort(one.begin(), one.end());
  std::sort(many.begin(), many.end());
  std::cout.precision(4);
  std::cout << "BENCH in_flight=1 forecasts_per_s=" << one[1] << '\n';
  std::cout << "BENCH in_flight=" << args.in_flight << " forecasts_per_s=" << many[1]
            << " ratio=" << many[1] / one[1] << '\n';
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  if (!parse_args(argc, argv, &args)) {
    std::cerr
        << "usage: " << argv[0]
        << " [--python PYTHON] [--no-faults] [--bench N [--in-flight K]] MODEL_DIR WINDOW_CSV\n"
           "  PYTHON: run the server as `PYTHON -m ovcast serve` (default: `ovcast serve`)\n"
           "  --no-faults: skip the fault demonstrations\n"
           "  --bench N: forecasts/s over N forecasts, 1 and K (default 4) in flight\n";
    return 2;
  }
  ovcast::Options options;
  if (!args.python.empty())
    options.command = {args.python, "-m", "ovcast"};
  else
    options.command = {"ovcast"};
  for (const char* arg : {"serve", "--mode", "jsonl", "--model"}) options.command.push_back(arg);
  options.command.push_back(args.model_dir);
  options.timeout = milliseconds(10000);
  // A server that answers nothing for 2 s is hung (these models answer in milliseconds; a
  // tight deadline on one request does not make a server hung, only that request late).
  options.hang_timeout = milliseconds(2000);

  try {
    ovcast::Series series = ovcast::read_series_csv(args.csv);
    ovcast::InferenceEngine engine(options);
    engine.on_restart = [](const std::string& why) { std::cout << "ON_RESTART " << why << '\n'; };
    const ovcast::ServerInfo& server = engine.server();
    std::cout << "SERVER model=" << server.model << " context=" << server.context_length
              << " horizon=" << server.prediction_length << " channels=" << server.num_channels
              << '\n';
    std::vector<std::string> notes;  // as `ovcast predict` says them: rows cut, columns by name
    ovcast::Window window = series.window_for(server.context_length, server.channel_names, &notes);
    for (const auto& note : notes) std::cerr << "note: " << note << '\n';
    ovcast::Result first = engine.predict(window, 1705678900000);
    if (report_failure("predict failed", first)) return 1;
    print_forecast("FORECAST", first);
    if (args.faults && !demonstrate_faults(engine, window)) return 1;
    if (args.bench > 0) bench(engine, window, args);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << '\n';
    return 1;
  }
  return 0;
}
