// ovcast C++ client: runs `ovcast serve --mode jsonl` as a child process and talks JSON lines.
//
// Header-only, C++17, standard library + POSIX. Usage:
//
//   ovcast::Options options;
//   options.command = {"ovcast", "serve", "--mode", "jsonl", "--model", "models/default"};
//   ovcast::InferenceEngine engine(options);          // spawns, waits for the ready line
//   ovcast::Result r = engine.predict(window);        // window: [context][channels]
//   if (r.ok()) use(r.predictions);                   // [horizon][channels]
//   else std::cerr << ovcast::to_string(r.error) << ": " << r.message;
//
// Behaviour:
// - The client adds `--ready-line` and waits (startup_timeout) for {"event":"ready"}.
// - predict() enforces `timeout`; a late answer is recognised by its request_id and dropped.
// - If the child dies (crash, kill), predict() restarts it (at most max_restarts times in a
//   row) and retries the request once; Result::restarted says so and on_restart is called.
// - Writing to a dead child must not kill the caller: the constructor ignores SIGPIPE if it
//   is at its default disposition.
// Not thread-safe: use one InferenceEngine per thread (each owns a server process).
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace ovcast {

enum class Error {
  None,
  Timeout,        // no answer within Options::timeout
  ServerError,    // the server answered success=false (see Result::server_code)
  ProtocolError,  // the answer was not the JSON we expect
  ChildDied,      // the server died and could not be restarted
  SpawnFailed,    // the server could not be started or never became ready
  InvalidInput,   // the window was rejected before sending (empty, ragged, NaN)
};

inline const char* to_string(Error e) {
  switch (e) {
    case Error::None: return "none";
    case Error::Timeout: return "timeout";
    case Error::ServerError: return "server_error";
    case Error::ProtocolError: return "protocol_error";
    case Error::ChildDied: return "child_died";
    case Error::SpawnFailed: return "spawn_failed";
    case Error::InvalidInput: return "invalid_input";
  }
  return "unknown";
}

struct Result {
  Error error = Error::None;
  std::string server_code;  // the server's error.code when error == ServerError
  std::string message;
  std::vector<std::vector<float>> predictions;  // [horizon][channels]
  double inference_time_ms = 0.0;
  bool restarted = false;  // the server was restarted while serving this call
  bool ok() const { return error == Error::None; }
};

struct Options {
  std::vector<std::string> command;  // argv of the server; --ready-line is appended
  std::chrono::milliseconds timeout{5000};
  std::chrono::milliseconds startup_timeout{120000};
  int max_restarts = 3;  // consecutive restarts before giving up
};

namespace detail {

// A minimal JSON value and parser: enough for the server's answers.
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::map<std::string, Json> object;

  const Json* get(const std::string& key) const {
    auto it = object.find(key);
    return kind == Object && it != object.end() ? &it->second : nullptr;
  }
};

class Parser {
 public:
  explicit Parser(const std::string& text) : s_(text) {}
  Json parse() {
    Json v = value();
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return v;
  }

 private:
  const std::string& s_;
  size_t i_ = 0;

  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("invalid JSON: ") + what + " at " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t')) ++i_;
  }
  bool consume(const char* word) {
    size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) == 0) { i_ += n; return true; }
    return false;
  }
  Json value() {
    ws();
    if (i_ >= s_.size()) fail("unexpected end");
    Json v;
    char c = s_[i_];
    if (c == '{') {
      v.kind = Json::Object; ++i_; ws();
      if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
      while (true) {
        ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected key");
        std::string key = str();
        ws();
        if (i_ >= s_.size() || s_[i_] != ':') fail("expected ':'");
        ++i_;
        v.object[key] = value();
        ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == '}') { ++i_; return v; }
        fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      v.kind = Json::Array; ++i_; ws();
      if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
      while (true) {
        v.array.push_back(value());
        ws();
        if (i_ < s_.size() && s_[i_] == ',') { ++i_; continue; }
        if (i_ < s_.size() && s_[i_] == ']') { ++i_; return v; }
        fail("expected ',' or ']'");
      }
    }
    if (c == '"') { v.kind = Json::String; v.string = str(); return v; }
    if (consume("true")) { v.kind = Json::Bool; v.boolean = true; return v; }
    if (consume("false")) { v.kind = Json::Bool; return v; }
    if (consume("null")) return v;
    const char* start = s_.c_str() + i_;
    char* end = nullptr;
    v.number = std::strtod(start, &end);
    if (end == start) fail("unexpected character");
    v.kind = Json::Number;
    i_ += static_cast<size_t>(end - start);
    return v;
  }
  std::string str() {
    std::string out;
    ++i_;  // opening quote
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') { out += c; continue; }
      if (i_ >= s_.size()) fail("bad escape");
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {  // keep ASCII, replace the rest: messages only
          if (i_ + 4 > s_.size()) fail("bad \\u escape");
          unsigned code = static_cast<unsigned>(std::stoul(s_.substr(i_, 4), nullptr, 16));
          out += code < 0x80 ? static_cast<char>(code) : '?';
          i_ += 4;
          break;
        }
        default: out += e;
      }
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return out;
  }
};

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) out += ' ';
    else out += c;
  }
  return out;
}

}  // namespace detail

class InferenceEngine {
 public:
  std::function<void(const std::string&)> on_restart;  // called with the reason

  explicit InferenceEngine(Options options) : options_(std::move(options)) {
    struct sigaction current {};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
    if (options_.command.empty()) throw std::invalid_argument("Options::command is empty");
    std::string why;
    if (!spawn(&why)) throw std::runtime_error("could not start the ovcast server: " + why);
  }

  ~InferenceEngine() { stop(); }
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  pid_t pid() const { return pid_; }
  void set_timeout(std::chrono::milliseconds timeout) { options_.timeout = timeout; }
  int restarts() const { return restarts_total_; }
  const std::string& ready_line() const { return ready_line_; }

  // Forecast one window [context][channels]; timestamp_ms is echoed by the server.
  Result predict(const std::vector<std::vector<float>>& window, int64_t timestamp_ms = 0) {
    Result result;
    std::string line;
    if (!encode(window, timestamp_ms, &line, &result)) return result;
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (pid_ <= 0 && !restart("server not running", &result)) return result;
      if (!write_all(line)) {
        if (!restart("server died (write failed)", &result)) return result;
        continue;
      }
      const std::string id = current_id_;
      std::string answer;
      const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
      while (true) {
        ReadStatus status = read_line(deadline, &answer);
        if (status == ReadStatus::Timeout) {
          result.error = Error::Timeout;
          result.message = "no answer within " + std::to_string(options_.timeout.count()) + " ms";
          return result;
        }
        if (status == ReadStatus::Closed) break;  // died mid-request: restart and retry
        if (parse_answer(answer, id, &result)) {
          consecutive_restarts_ = 0;
          return result;
        }
        // else: a late answer to an earlier (timed-out) request; keep reading
      }
      if (!restart("server died (pipe closed)", &result)) return result;
    }
    result.error = Error::ChildDied;
    result.message = "the server died twice while answering this request";
    return result;
  }

  // Close stdin so the server drains and exits; kill it if it does not within grace.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
    if (pid_ <= 0) return;
    close_fd(&to_child_);
    const auto deadline = std::chrono::steady_clock::now() + grace;
    int status = 0;
    while (waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        kill(pid_, SIGKILL);
        waitpid(pid_, &status, 0);
        break;
      }
      usleep(10000);
    }
    close_fd(&from_child_);
    pid_ = -1;
  }

 private:
  enum class ReadStatus { Line, Timeout, Closed };

  Options options_;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string buffer_;
  std::string ready_line_;
  std::string current_id_;
  uint64_t next_id_ = 1;
  int restarts_total_ = 0;
  int consecutive_restarts_ = 0;

  static void close_fd(int* fd) {
    if (*fd >= 0) { ::close(*fd); *fd = -1; }
  }

  bool encode(const std::vector<std::vector<float>>& window, int64_t timestamp_ms,
              std::string* line, Result* result) {
    if (window.empty() || window[0].empty()) {
      result->error = Error::InvalidInput;
      result->message = "window is empty; expected [context][channels]";
      return false;
    }
    const size_t channels = window[0].size();
    std::ostringstream out;
    out.precision(9);
    current_id_ = std::to_string(next_id_++);
    out << "{\"request_id\":\"" << current_id_ << "\",\"timestamp_ms\":" << timestamp_ms
        << ",\"past_values\":[";
    for (size_t t = 0; t < window.size(); ++t) {
      if (window[t].size() != channels) {
        result->error = Error::InvalidInput;
        result->message = "row " + std::to_string(t) + " has " + std::to_string(window[t].size()) +
                          " values; expected " + std::to_string(channels);
        return false;
      }
      out << (t ? ",[" : "[");
      for (size_t c = 0; c < channels; ++c) {
        if (!std::isfinite(window[t][c])) {
          result->error = Error::InvalidInput;
          result->message = "NaN or inf at [" + std::to_string(t) + "][" + std::to_string(c) + "]";
          return false;
        }
        if (c) out << ',';
        out << window[t][c];
      }
      out << ']';
    }
    out << "]}\n";
    *line = out.str();
    return true;
  }

  bool parse_answer(const std::string& answer, const std::string& id, Result* result) {
    detail::Json json;
    try {
      json = detail::Parser(answer).parse();
    } catch (const std::exception& e) {
      result->error = Error::ProtocolError;
      result->message = e.what();
      return true;
    }
    const detail::Json* rid = json.get("request_id");
    if (rid && rid->kind == detail::Json::String && rid->string != id) return false;  // stale
    const detail::Json* success = json.get("success");
    if (!success || success->kind != detail::Json::Bool) {
      result->error = Error::ProtocolError;
      result->message = "answer without 'success': " + answer.substr(0, 200);
      return true;
    }
    if (!success->boolean) {
      result->error = Error::ServerError;
      if (const detail::Json* err = json.get("error")) {
        if (const detail::Json* code = err->get("code")) result->server_code = code->string;
        if (const detail::Json* msg = err->get("message")) result->message = msg->string;
      }
      return true;
    }
    const detail::Json* preds = json.get("predictions");
    if (!preds || preds->kind != detail::Json::Array) {
      result->error = Error::ProtocolError;
      result->message = "answer without 'predictions'";
      return true;
    }
    result->predictions.clear();
    for (const auto& row : preds->array) {
      std::vector<float> values;
      for (const auto& v : row.array) values.push_back(static_cast<float>(v.number));
      result->predictions.push_back(std::move(values));
    }
    if (const detail::Json* ms = json.get("inference_time_ms")) result->inference_time_ms = ms->number;
    return true;
  }

  bool spawn(std::string* why) {
    int in_pipe[2], out_pipe[2];
    if (pipe(in_pipe) != 0) { *why = std::strerror(errno); return false; }
    if (pipe(out_pipe) != 0) {
      *why = std::strerror(errno);
      ::close(in_pipe[0]); ::close(in_pipe[1]);
      return false;
    }
    std::vector<std::string> argv_s = options_.command;
    argv_s.push_back("--ready-line");
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = fork();
    if (pid < 0) { *why = std::strerror(errno); return false; }
    if (pid == 0) {  // child: stdin/stdout are the pipes, stderr is inherited (server logs)
      dup2(in_pipe[0], STDIN_FILENO);
      dup2(out_pipe[1], STDOUT_FILENO);
      ::close(in_pipe[0]); ::close(in_pipe[1]); ::close(out_pipe[0]); ::close(out_pipe[1]);
      signal(SIGPIPE, SIG_DFL);
      execvp(argv[0], argv.data());
      _exit(127);
    }
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    fcntl(in_pipe[1], F_SETFD, FD_CLOEXEC);
    fcntl(out_pipe[0], F_SETFD, FD_CLOEXEC);
    pid_ = pid;
    to_child_ = in_pipe[1];
    from_child_ = out_pipe[0];
    buffer_.clear();
    const auto deadline = std::chrono::steady_clock::now() + options_.startup_timeout;
    std::string line;
    ReadStatus status = read_line(deadline, &line);
    if (status != ReadStatus::Line || line.find("\"event\":\"ready\"") == std::string::npos) {
      *why = status == ReadStatus::Timeout ? "not ready within startup_timeout"
             : status == ReadStatus::Closed ? "exited before it was ready (see its stderr)"
                                            : "unexpected first line: " + line.substr(0, 200);
      stop(std::chrono::milliseconds(0));
      return false;
    }
    ready_line_ = line;
    return true;
  }

  bool restart(const std::string& reason, Result* result) {
    if (consecutive_restarts_ >= options_.max_restarts) {
      result->error = Error::ChildDied;
      result->message = reason + "; gave up after " + std::to_string(options_.max_restarts) +
                        " restarts";
      return false;
    }
    stop(std::chrono::milliseconds(0));
    ++consecutive_restarts_;
    ++restarts_total_;
    result->restarted = true;
    if (on_restart) on_restart(reason);
    std::string why;
    if (!spawn(&why)) {
      result->error = Error::SpawnFailed;
      result->message = reason + "; restart failed: " + why;
      return false;
    }
    return true;
  }

  bool write_all(const std::string& data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t n = ::write(to_child_, data.data() + done, data.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<size_t>(n);
    }
    return true;
  }

  ReadStatus read_line(std::chrono::steady_clock::time_point deadline, std::string* line) {
    while (true) {
      size_t newline = buffer_.find('\n');
      if (newline != std::string::npos) {
        *line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        return ReadStatus::Line;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() < 0) return ReadStatus::Timeout;
      pollfd pfd{from_child_, POLLIN, 0};
      int ready = poll(&pfd, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno == EINTR) continue;
      if (ready == 0) return ReadStatus::Timeout;
      char chunk[65536];
      ssize_t n = ::read(from_child_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return ReadStatus::Closed;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
};

}  // namespace ovcast
