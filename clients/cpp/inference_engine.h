// ovcast C++ client: runs `ovcast serve --mode jsonl` as a child process and talks JSON lines.
//
// Header-only, C++17, standard library + POSIX. Usage:
//
//   ovcast::Options options;
//   options.command = {"ovcast", "serve", "--mode", "jsonl", "--model", "models/default"};
//   options.timeout = std::chrono::milliseconds(1000);  // each request's deadline
//   ovcast::InferenceEngine engine(options);          // starts it, waits for the ready line
//   ovcast::Result r = engine.predict(window);        // window: [context][channels]
//   if (r.ok()) use(r.predictions);                   // [horizon][channels]
//   else std::cerr << ovcast::to_string(r.error) << ": " << r.message;
//
// Pipelining: submit() several windows, then wait() for each ticket; the server answers in
// order, and requests and answers flow at the same time, so full pipes cannot deadlock.
//
// What the client guarantees:
// - No call blocks past its request's deadline (plus the moment it takes to act on it): every
//   write, every read and the wait for a starting server's ready line is non-blocking I/O
//   under poll(). A request that cannot be answered in time ends as Timeout (a ready server
//   had it) or Unavailable (no ready server: starting, restarting, backing off).
// - A server that times out is treated as hung (Options::restart_on_timeout, default on):
//   it is killed and a new one started before the next request, so a stuck server costs one
//   timeout, not the pipeline. A server that answered or announced itself ready in the last
//   half of the request's timeout is not hung, only slow: the request times out, the
//   server stays.
// - A server that dies, hangs, never becomes ready (Options::startup_timeout) or writes a line
//   longer than Options::max_line_bytes is replaced, forever by default (Options::max_restarts),
//   with capped exponential backoff between failed attempts: the first restart after a fault
//   is immediate, each further consecutive fault doubles the wait from backoff_initial up to
//   backoff_max; any answer from a server resets it. Every restart calls on_restart with its
//   cause and is counted in stats().
// - Requests pending when a server fails wait for its replacement (Result::restarted); one the
//   failed server had already received is sent once more, and if that server fails too it
//   ends as ChildDied (a request that crashes every server is not retried forever).
// - Lines on the server's stdout that are not protocol lines (stray prints) are skipped and
//   counted (Stats::garbage_lines); answers are matched to requests by request_id.
// - Writing to a dead child must not kill the caller: the constructor ignores SIGPIPE if it
//   is at its default disposition (the server gets the default back).
// The server command should run the server itself (exec), not fork it: the client signals
// the process it started. Not thread-safe: use one InferenceEngine per thread (each owns a
// server process). wait() for every ticket: results are kept until then. on_restart must not
// call back into the engine. The wire format is all in detail::encode_request,
// decode_answer and decode_ready.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <locale>
#include <sstream>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

extern char** environ;

namespace ovcast {

using Clock = std::chrono::steady_clock;
using Window = std::vector<std::vector<float>>;  // [time step][channel]
using Ticket = uint64_t;                         // names a submitted request

// A further named input, for models that take more than the window (TinyTimeMixer:
// "freq_token", "future_exogenous", "past_observed_mask"; `ovcast info MODEL_DIR` lists a
// package's inputs): its values in row-major order and its shape without the batch axis
// ({} for one number), e.g. {"future_exogenous", {96, 2}, values} or {"freq_token", {}, {7}}.
struct Tensor {
  std::string name;
  std::vector<size_t> shape;
  std::vector<float> values;
};
using Inputs = std::vector<Tensor>;

enum class Error {
  None,
  Timeout,        // a ready server had the request and did not answer within its deadline
  Unavailable,    // no ready server within the deadline (starting, restarting, backing off)
  ServerError,    // the server answered success=false (see Result::server_code)
  ProtocolError,  // the answer to this request was not what the protocol says
  ChildDied,      // two servers in turn died with this request, or the client gave up
  InvalidInput,   // the window was rejected before sending (empty, ragged, NaN)
};

inline const char* to_string(Error e) {
  switch (e) {
    case Error::None: return "none";
    case Error::Timeout: return "timeout";
    case Error::Unavailable: return "unavailable";
    case Error::ServerError: return "server_error";
    case Error::ProtocolError: return "protocol_error";
    case Error::ChildDied: return "child_died";
    case Error::InvalidInput: return "invalid_input";
  }
  return "unknown";
}

struct Result {
  Ticket ticket = 0;
  Error error = Error::None;
  std::string server_code;  // the server's error.code when error == ServerError
  std::string message;
  std::vector<std::vector<float>> predictions;  // [horizon][channels]
  double inference_time_ms = 0.0;
  bool restarted = false;  // a server failed while this request was pending: any answer came
                           // from its replacement
  bool ok() const { return error == Error::None; }
};

struct Options {
  std::vector<std::string> command;         // argv of the server; --ready-line is appended
  std::chrono::milliseconds timeout{5000};  // default deadline of a request
  std::chrono::milliseconds startup_timeout{120000};  // a new server must be ready within this
  bool restart_on_timeout = true;  // a server that times out is hung: kill it, start another
  std::chrono::milliseconds backoff_initial{100};  // wait before the 2nd consecutive restart
  std::chrono::milliseconds backoff_max{5000};     // the wait never grows past this
  int max_restarts = -1;  // consecutive faults before giving up (reset() resumes); -1: never
  size_t max_line_bytes = 16u << 20;  // a longer stdout line is a protocol fault
};

// What the server announced in its ready line.
struct ServerInfo {
  std::string model;
  int context_length = 0;
  int prediction_length = 0;
  int num_channels = 0;
  std::vector<std::string> channel_names;
  std::string ready_line;
};

struct Stats {
  // Requests: each submitted request ends in exactly one outcome.
  uint64_t submitted = 0, ok = 0, timeouts = 0, unavailable = 0, server_errors = 0,
           protocol_errors = 0, child_died = 0, invalid_input = 0;
  uint64_t resent = 0;         // requests sent again to a new server after theirs failed
  uint64_t late_answers = 0;   // answers to requests that had already timed out, dropped
  uint64_t garbage_lines = 0;  // stdout lines that were not protocol lines, skipped
  // Servers.
  uint64_t starts = 0;    // servers started (attempts), the first included
  uint64_t restarts = 0;  // starts after a fault: one on_restart call each
  // Faults by cause; each one schedules a restart.
  uint64_t start_failures = 0;   // could not run, exited or over-long line before ready, or
                                 // not ready within startup_timeout
  uint64_t exits = 0;            // a ready server exited or was killed from outside
  uint64_t hung_kills = 0;       // a ready server killed after a timeout
  uint64_t protocol_kills = 0;   // a ready server killed for a line over max_line_bytes
  int consecutive_failures = 0;  // faults since the last answer: drives the backoff
  std::string last_fault;        // the cause of the latest fault
};

namespace detail {

// ---------------------------------------------------------------------------------------
// A minimal JSON value and parser: enough for the server's answers, and safe on garbage.
struct Json {
  enum Kind { Null, Bool, Number, String, Array, Object } kind = Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  const Json* get(const std::string& key) const {
    if (kind != Object) return nullptr;
    for (const auto& member : object)
      if (member.first == key) return &member.second;
    return nullptr;
  }
};

// Numbers in and out without the global locale (a host app may have set one with ',').
#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
inline void append_number(std::string* out, float value) {
  char buffer[32];
  auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  out->append(buffer, end);
}
inline bool parse_number(const char* first, const char* last, double* value) {
  auto parsed = std::from_chars(first, last, *value);
  return parsed.ec == std::errc() && parsed.ptr == last;
}
#else
inline void append_number(std::string* out, float value) {
  std::ostringstream s;
  s.imbue(std::locale::classic());
  s.precision(9);
  s << value;
  *out += s.str();
}
inline bool parse_number(const char* first, const char* last, double* value) {
  std::istringstream s(std::string(first, last));
  s.imbue(std::locale::classic());
  s >> *value;
  return !s.fail() && s.peek() == std::char_traits<char>::eof() && std::isfinite(*value);
}
#endif

class Parser {
 public:
  static constexpr int kMaxDepth = 32;  // answers nest 3 deep; garbage may nest 10^6

  explicit Parser(const std::string& text) : s_(text) {}
  Json parse() {
    Json v = value(0);
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
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  // Skips whitespace, then consumes `word` if it comes next.
  bool eat(const char* word) {
    ws();
    size_t n = std::strlen(word);
    if (s_.compare(i_, n, word) != 0) return false;
    i_ += n;
    return true;
  }
  Json value(int depth) {
    if (depth > kMaxDepth) fail("nested too deep");
    Json v;
    if (eat("{")) {
      v.kind = Json::Object;
      if (eat("}")) return v;
      do {
        ws();
        if (i_ >= s_.size() || s_[i_] != '"') fail("expected key");
        std::string key = str();
        if (!eat(":")) fail("expected ':'");
        v.object.emplace_back(std::move(key), value(depth + 1));
      } while (eat(","));
      if (!eat("}")) fail("expected ',' or '}'");
    } else if (eat("[")) {
      v.kind = Json::Array;
      if (eat("]")) return v;
      do v.array.push_back(value(depth + 1));
      while (eat(","));
      if (!eat("]")) fail("expected ',' or ']'");
    } else if (i_ < s_.size() && s_[i_] == '"') {
      v.kind = Json::String;
      v.string = str();
    } else if (eat("true")) {
      v.kind = Json::Bool;
      v.boolean = true;
    } else if (eat("false")) {
      v.kind = Json::Bool;
    } else if (!eat("null")) {
      v.kind = Json::Number;
      size_t start = i_;
      while (i_ < s_.size() && std::strchr("0123456789.eE+-", s_[i_]) && s_[i_] != '\0') ++i_;
      if (i_ == start || !parse_number(s_.data() + start, s_.data() + i_, &v.number))
        fail("expected a value");
    }
    return v;
  }
  unsigned hex4() {
    if (i_ + 4 > s_.size()) fail("bad \\u escape");
    unsigned code = 0;
    for (int k = 0; k < 4; ++k) {
      char h = s_[i_++];
      code <<= 4;
      if (h >= '0' && h <= '9')
        code |= static_cast<unsigned>(h - '0');
      else if (h >= 'a' && h <= 'f')
        code |= static_cast<unsigned>(h - 'a' + 10);
      else if (h >= 'A' && h <= 'F')
        code |= static_cast<unsigned>(h - 'A' + 10);
      else
        fail("bad \\u escape");
    }
    return code;
  }
  static void utf8(unsigned code, std::string* out) {
    if (code < 0x80) {
      *out += static_cast<char>(code);
    } else if (code < 0x800) {
      *out += static_cast<char>(0xC0 | (code >> 6));
      *out += static_cast<char>(0x80 | (code & 0x3F));
    } else if (code < 0x10000) {
      *out += static_cast<char>(0xE0 | (code >> 12));
      *out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (code & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (code >> 18));
      *out += static_cast<char>(0x80 | ((code >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((code >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (code & 0x3F));
    }
  }
  std::string str() {
    std::string out;
    ++i_;  // opening quote
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("bad escape");
      char e = s_[i_++];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case 'r': out += '\r'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'u': {
          unsigned code = hex4();
          if (code >= 0xD800 && code < 0xDC00 && s_.compare(i_, 2, "\\u") == 0) {
            i_ += 2;
            unsigned low = hex4();
            code = (low >= 0xDC00 && low < 0xE000)
                       ? 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                       : 0xFFFD;
          } else if (code >= 0xD800 && code < 0xE000) {
            code = 0xFFFD;  // a lone surrogate
          }
          utf8(code, &out);
          break;
        }
        default: out += e;  // \" \\ \/
      }
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
    return out;
  }
};

inline bool parse_json(const std::string& text, Json* json) {
  try {
    *json = Parser(text).parse();
    return true;
  } catch (const std::exception&) { return false; }
}

// ---------------------------------------------------------------------------------------
// The wire format, in one place: a request line out, an answer or the ready line in.

// Appends one input's values as nested JSON arrays of its shape; false and *error if unusable.
inline bool append_tensor(std::string* line, const Tensor& tensor, std::string* error) {
  bool name_ok = !tensor.name.empty();
  for (char c : tensor.name) {
    name_ok = name_ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
  }
  if (!name_ok) {
    *error = "input name '" + tensor.name + "' must be letters, digits and '_'";
    return false;
  }
  size_t count = 1;
  for (size_t d : tensor.shape) count *= d;
  if (count != tensor.values.size() || count == 0) {
    *error = "input '" + tensor.name + "' has " + std::to_string(tensor.values.size()) +
             " values; its shape needs " + std::to_string(count);
    return false;
  }
  for (size_t i = 0; i < count; ++i) {
    if (!std::isfinite(tensor.values[i])) {
      *error = "input '" + tensor.name + "' has NaN or inf at flat index " + std::to_string(i);
      return false;
    }
  }
  // Row-major: open a bracket whenever an index starts a new block of some dimension.
  const size_t rank = tensor.shape.size();
  std::vector<size_t> block(rank + 1, 1);  // block[d]: values under one index of dim d-1
  for (size_t d = rank; d-- > 0;) block[d] = block[d + 1] * tensor.shape[d];
  for (size_t i = 0; i < count; ++i) {
    if (i) *line += ',';
    for (size_t d = 0; d < rank; ++d) {
      if (i % block[d] == 0) *line += '[';
    }
    append_number(line, tensor.values[i]);
    for (size_t d = rank; d-- > 0;) {
      if ((i + 1) % block[d] == 0) *line += ']';
    }
  }
  return true;
}

// Encodes one request line (with its '\n'); false and *error when the window or one of the
// further inputs is unusable. The further inputs go in "inputs": {"name": values}.
inline bool encode_request(const std::string& request_id, int64_t timestamp_ms,
                           const Window& window, std::string* line, std::string* error,
                           const Inputs& inputs = {}) {
  if (window.empty() || window[0].empty()) {
    *error = "window is empty; expected [context][channels]";
    return false;
  }
  const size_t channels = window[0].size();
  line->clear();
  line->reserve(64 + window.size() * channels * 12);
  *line += "{\"request_id\":\"";
  *line += request_id;  // ours: digits only, nothing to escape
  *line += "\",\"timestamp_ms\":";
  *line += std::to_string(timestamp_ms);
  *line += ",\"past_values\":[";
  for (size_t t = 0; t < window.size(); ++t) {
    if (window[t].size() != channels) {
      *error = "row " + std::to_string(t) + " has " + std::to_string(window[t].size()) +
               " values; expected " + std::to_string(channels);
      return false;
    }
    *line += t ? ",[" : "[";
    for (size_t c = 0; c < channels; ++c) {
      if (!std::isfinite(window[t][c])) {
        *error = "NaN or inf at [" + std::to_string(t) + "][" + std::to_string(c) +
                 "]; expected finite numbers";
        return false;
      }
      if (c) *line += ',';
      append_number(line, window[t][c]);
    }
    *line += ']';
  }
  *line += ']';
  if (!inputs.empty()) {
    *line += ",\"inputs\":{";
    for (size_t k = 0; k < inputs.size(); ++k) {
      if (k) *line += ',';
      *line += '"' + inputs[k].name + "\":";
      if (!append_tensor(line, inputs[k], error)) return false;
    }
    *line += '}';
  }
  *line += "}\n";
  return true;
}

// The request_id an answer names; "" when it names none (null: the server could not read it).
inline std::string answer_id(const Json& answer) {
  const Json* rid = answer.get("request_id");
  return rid && rid->kind == Json::String ? rid->string : std::string();
}

// An answer is an object with a boolean "success"; everything else on stdout is garbage.
inline bool is_answer(const Json& line) {
  const Json* success = line.get("success");
  return success && success->kind == Json::Bool;
}

// Fills *result from an answer (is_answer() holds).
inline void decode_answer(const Json& answer, Result* result) {
  if (!answer.get("success")->boolean) {
    result->error = Error::ServerError;
    if (const Json* err = answer.get("error")) {
      const Json* code = err->get("code");
      const Json* message = err->get("message");
      if (code && code->kind == Json::String) result->server_code = code->string;
      if (message && message->kind == Json::String) result->message = message->string;
    }
    return;
  }
  const Json* preds = answer.get("predictions");
  std::vector<std::vector<float>> rows;
  bool good = preds && preds->kind == Json::Array && !preds->array.empty();
  for (size_t t = 0; good && t < preds->array.size(); ++t) {
    const Json& row = preds->array[t];
    good = row.kind == Json::Array && !row.array.empty() &&
           row.array.size() == preds->array[0].array.size();
    std::vector<float> values;
    values.reserve(row.array.size());
    for (size_t c = 0; good && c < row.array.size(); ++c) {
      good = row.array[c].kind == Json::Number;
      values.push_back(static_cast<float>(row.array[c].number));
    }
    rows.push_back(std::move(values));
  }
  if (!good) {
    result->error = Error::ProtocolError;
    result->message = "answer without a [horizon][channels] array of numbers in 'predictions'";
    return;
  }
  result->predictions = std::move(rows);
  const Json* ms = answer.get("inference_time_ms");
  if (ms && ms->kind == Json::Number) result->inference_time_ms = ms->number;
}

// True when the line is the server's {"event": "ready", ...}; fills *info.
inline bool decode_ready(const std::string& line, ServerInfo* info) {
  Json json;
  if (!parse_json(line, &json)) return false;
  const Json* event = json.get("event");
  if (!event || event->kind != Json::String || event->string != "ready") return false;
  auto number = [&json](const char* key) {
    const Json* v = json.get(key);
    return v && v->kind == Json::Number ? static_cast<int>(v->number) : 0;
  };
  const Json* model = json.get("model");
  info->model = model && model->kind == Json::String ? model->string : "";
  info->context_length = number("context_length");
  info->prediction_length = number("prediction_length");
  info->num_channels = number("num_channels");
  info->channel_names.clear();
  if (const Json* names = json.get("channel_names"))
    for (const Json& name : names->array)
      if (name.kind == Json::String) info->channel_names.push_back(name.string);
  info->ready_line = line;
  return true;
}

// ---------------------------------------------------------------------------------------

// The wait before the restart that follows `failures` consecutive faults: none after the
// first, then initial, 2 x initial, 4 x initial, ... never more than max.
inline std::chrono::milliseconds backoff_delay(int failures, std::chrono::milliseconds initial,
                                               std::chrono::milliseconds max) {
  if (failures <= 1 || initial.count() <= 0) return std::chrono::milliseconds(0);
  std::chrono::milliseconds delay = initial;
  for (int i = 2; i < failures && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

inline std::string describe_exit(int status) {
  if (status == -1) return "exited";  // reaped by someone else (SIGCHLD ignored?)
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    const char* name = strsignal(WTERMSIG(status));
    return "killed by signal " + std::to_string(WTERMSIG(status)) +
           (name ? std::string(" (") + name + ")" : "");
  }
  return "exited";
}

// Reaps pid if it has ended: true and *status (-1 if unknown); false while it runs.
inline bool try_reap(pid_t pid, int* status) {
  while (true) {
    pid_t got = waitpid(pid, status, WNOHANG);
    if (got == pid) return true;
    if (got == 0) return false;
    if (errno == EINTR) continue;
    *status = -1;  // ECHILD: already reaped elsewhere
    return true;
  }
}

inline int millis_until(Clock::time_point when, Clock::time_point now) {
  if (when <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count() + 1;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

inline std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

}  // namespace detail

class InferenceEngine {
 public:
  std::function<void(const std::string&)> on_restart;  // called with the cause, at each restart

  // Starts the server and waits (up to startup_timeout) for its ready line; throws
  // std::runtime_error("could not start the ovcast server: ...") if it cannot.
  explicit InferenceEngine(Options options) : options_(std::move(options)) {
    if (options_.command.empty()) throw std::invalid_argument("Options::command is empty");
    struct sigaction current{};
    if (sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
      signal(SIGPIPE, SIG_IGN);
    }
    start(Clock::now());
    while (state_ == State::Starting) {
      io(detail::millis_until(ready_deadline_, Clock::now()));
      if (state_ == State::Starting && Clock::now() >= ready_deadline_) not_ready();
    }
    if (state_ != State::Ready) {
      stop(std::chrono::milliseconds(0));
      throw std::runtime_error("could not start the ovcast server: " + stats_.last_fault);
    }
  }

  ~InferenceEngine() { stop(); }
  InferenceEngine(const InferenceEngine&) = delete;
  InferenceEngine& operator=(const InferenceEngine&) = delete;

  // Forecast one window [context][channels] within options().timeout (or `timeout`);
  // timestamp_ms is echoed by the server.
  Result predict(const Window& window, int64_t timestamp_ms = 0) {
    return wait(submit(window, timestamp_ms));
  }
  Result predict(const Window& window, int64_t timestamp_ms, std::chrono::milliseconds timeout) {
    return wait(submit(window, timestamp_ms, timeout));
  }
  // With further named inputs, for models that take them (see Tensor).
  Result predict(const Window& window, const Inputs& inputs, int64_t timestamp_ms = 0) {
    return wait(submit(window, inputs, timestamp_ms, options_.timeout));
  }

  // Queue a request without waiting for its answer; its deadline starts now.
  Ticket submit(const Window& window, int64_t timestamp_ms = 0) {
    return submit(window, Inputs{}, timestamp_ms, options_.timeout);
  }
  Ticket submit(const Window& window, int64_t timestamp_ms, std::chrono::milliseconds timeout) {
    return submit(window, Inputs{}, timestamp_ms, timeout);
  }
  Ticket submit(const Window& window, const Inputs& inputs, int64_t timestamp_ms,
                std::chrono::milliseconds timeout) {
    const Ticket ticket = next_ticket_++;
    ++stats_.submitted;
    Pending request;
    request.ticket = ticket;
    request.id = std::to_string(ticket);
    request.timeout = timeout;
    request.submitted_at = Clock::now();
    request.deadline = request.submitted_at + timeout;
    Result result;
    if (!detail::encode_request(request.id, timestamp_ms, window, &request.line, &result.message,
                                inputs)) {
      result.error = Error::InvalidInput;
      finish(ticket, std::move(result));
    } else if (stopped_ || gave_up_) {
      finish(ticket, unavailable_result());
    } else {
      queue_.push_back(std::move(request));
      maintain();
      if (state_ != State::Down) io(0);  // send what the pipe takes now, collect answers
    }
    return ticket;
  }

  // The result of a submitted request: returns by the request's deadline. Each ticket can
  // be waited for once; results are kept until then.
  Result wait(Ticket ticket) {
    while (true) {
      maintain();
      auto done = done_.find(ticket);
      if (done != done_.end()) {
        Result result = std::move(done->second);
        done_.erase(done);
        return result;
      }
      if (!is_pending(ticket)) {
        Result unknown;
        unknown.ticket = ticket;
        unknown.error = Error::InvalidInput;
        unknown.message = "unknown ticket " + std::to_string(ticket) + " (already waited for?)";
        return unknown;
      }
      io(detail::millis_until(next_wake(), Clock::now()));
    }
  }

  size_t in_flight() const {
    return static_cast<size_t>(
        std::count_if(queue_.begin(), queue_.end(), [](const Pending& p) { return !p.abandoned; }));
  }
  pid_t pid() const { return pid_; }  // the current server, -1 while there is none
  const ServerInfo& server() const { return info_; }
  const std::string& ready_line() const { return info_.ready_line; }
  const Stats& stats() const { return stats_; }
  int restarts() const { return static_cast<int>(stats_.restarts); }
  Options& options() { return options_; }  // changes apply to later requests and starts
  void set_timeout(std::chrono::milliseconds timeout) { options_.timeout = timeout; }

  // After giving up (max_restarts), try again now.
  void reset() {
    gave_up_ = false;
    stats_.consecutive_failures = 0;
    next_start_at_ = Clock::now();
  }

  // Close the server's stdin so it answers what it has and exits; kill it if it has not
  // within grace. Requests still pending end as Unavailable; the engine serves no more.
  void stop(std::chrono::milliseconds grace = std::chrono::milliseconds(5000)) {
    stopped_ = true;
    close_fd(&to_child_);
    const auto deadline = Clock::now() + grace;
    if (pid_ > 0) {
      int status = 0;
      while (!detail::try_reap(pid_, &status)) {
        auto now = Clock::now();
        if (now >= deadline) {
          kill(pid_, SIGKILL);
          zombies_.push_back(pid_);
          break;
        }
        if (!drain_stdout(std::min(detail::millis_until(deadline, now), 20))) usleep(5000);
      }
      pid_ = -1;
    }
    close_fd(&from_child_);
    state_ = State::Down;
    for (auto& request : queue_)
      if (!request.abandoned) finish(request.ticket, unavailable_result());
    queue_.clear();
    reap_zombies(std::chrono::milliseconds(1000));
  }

 private:
  enum class State { Down, Starting, Ready };
  enum class Fault { StartFailure, Exit, Hung, Protocol };

  struct Pending {
    Ticket ticket = 0;
    std::string id;
    std::string line;
    std::chrono::milliseconds timeout{0};
    Clock::time_point submitted_at, deadline;
    size_t written = 0;      // bytes of line written to the current server
    int sends = 0;           // servers that received the whole line
    bool abandoned = false;  // timed out; kept only to finish writing it or to drop its answer
    bool restarted = false;
  };

  Options options_;
  State state_ = State::Down;
  pid_t pid_ = -1;
  int to_child_ = -1;
  int from_child_ = -1;
  std::string inbuf_;
  std::chrono::milliseconds startup_timeout_{0};  // the one the starting server was given
  Clock::time_point ready_deadline_, next_start_at_, last_progress_;
  bool gave_up_ = false;
  bool stopped_ = false;
  std::string restart_cause_;
  std::deque<Pending> queue_;
  std::unordered_map<Ticket, Result> done_;
  std::vector<pid_t> zombies_;
  Ticket next_ticket_ = 1;
  ServerInfo info_;
  Stats stats_;

  static void close_fd(int* fd) {
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
  }

  bool is_pending(Ticket ticket) const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [ticket](const Pending& p) { return p.ticket == ticket && !p.abandoned; });
  }

  void finish(Ticket ticket, Result result) {
    result.ticket = ticket;
    switch (result.error) {
      case Error::None: ++stats_.ok; break;
      case Error::Timeout: ++stats_.timeouts; break;
      case Error::Unavailable: ++stats_.unavailable; break;
      case Error::ServerError: ++stats_.server_errors; break;
      case Error::ProtocolError: ++stats_.protocol_errors; break;
      case Error::ChildDied: ++stats_.child_died; break;
      case Error::InvalidInput: ++stats_.invalid_input; break;
    }
    done_[ticket] = std::move(result);
  }

  Result unavailable_result() const {
    Result result;
    if (stopped_) {
      result.error = Error::Unavailable;
      result.message = "the client was stopped";
    } else if (gave_up_) {
      result.error = Error::ChildDied;
      result.message = "gave up after " + std::to_string(stats_.consecutive_failures) +
                       " consecutive server faults (last: " + stats_.last_fault +
                       "); reset() tries again";
    } else {
      result.error = Error::Unavailable;
      result.message = state_ == State::Starting
                           ? "the server is starting (after: " + restart_cause_ + ")"
                           : "no server running (after: " + restart_cause_ + ")";
      if (state_ != State::Starting) {
        auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(next_start_at_ - Clock::now());
        if (left.count() > 0) result.message += "; next start in " + detail::ms_text(left);
      }
    }
    return result;
  }

  // Everything that is due now, without waiting: reap, time out, start, write.
  void maintain() {
    reap_zombies(std::chrono::milliseconds(0));
    auto now = Clock::now();
    if (state_ == State::Starting && now >= ready_deadline_) not_ready();
    expire(now);
    if (state_ == State::Down && !stopped_ && !gave_up_ && now >= next_start_at_) start(now);
    write_pending();
  }

  // The next moment something is due: a deadline, a start, a startup timeout.
  Clock::time_point next_wake() const {
    Clock::time_point wake = Clock::time_point::max();
    for (const auto& request : queue_)
      if (!request.abandoned) wake = std::min(wake, request.deadline);
    if (state_ == State::Starting) wake = std::min(wake, ready_deadline_);
    if (state_ == State::Down && !stopped_ && !gave_up_) wake = std::min(wake, next_start_at_);
    return wake;
  }

  void expire(Clock::time_point now) {
    bool hung = false;
    std::chrono::milliseconds hung_timeout{0};
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->abandoned || now < it->deadline) {
        ++it;
        continue;
      }
      if (state_ != State::Ready) {
        finish(it->ticket, unavailable_result());
        it = queue_.erase(it);
        continue;
      }
      Result result;
      result.error = Error::Timeout;
      result.restarted = it->restarted;
      result.message =
          it->written == it->line.size()
              ? "no answer within " + detail::ms_text(it->timeout)
              : "the server did not read the request within " + detail::ms_text(it->timeout);
      finish(it->ticket, std::move(result));
      // Hung, or only slow? Silent for the last half of this request's timeout: hung.
      if (now - last_progress_ >= it->timeout / 2) {
        hung = true;
        hung_timeout = it->timeout;
      }
      if (it->written > 0) {  // part of it is in the pipe: keep the stream in step
        it->abandoned = true;
        ++it;
      } else {
        it = queue_.erase(it);
      }
    }
    if (hung && options_.restart_on_timeout) {
      fault(Fault::Hung, "no answer within " + detail::ms_text(hung_timeout) + ": killed as hung");
    }
  }

  void not_ready() {
    fault(Fault::StartFailure, "not ready within " + detail::ms_text(startup_timeout_));
  }

  void start(Clock::time_point now) {
    if (stats_.starts > 0) {
      ++stats_.restarts;
      if (on_restart) {
        std::string why = restart_cause_ + "; restart " + std::to_string(stats_.restarts);
        auto waited = detail::backoff_delay(stats_.consecutive_failures, options_.backoff_initial,
                                            options_.backoff_max);
        if (waited.count() > 0) why += " after " + detail::ms_text(waited) + " backoff";
        on_restart(why);
      }
    }
    ++stats_.starts;
    std::string why;
    if (!spawn(&why)) {
      fault(Fault::StartFailure, why);
      return;
    }
    state_ = State::Starting;
    startup_timeout_ = options_.startup_timeout;
    ready_deadline_ = now + startup_timeout_;
  }

  // A pipe whose ends are closed on exec (atomically where pipe2 exists, so no other thread's
  // child inherits them) and kept clear of fds 0-2 (a dup2 onto itself would keep them open).
  static bool own_pipe(int fds[2]) {
#ifdef __linux__
    if (pipe2(fds, O_CLOEXEC) != 0) return false;
#else
    if (pipe(fds) != 0) return false;
#endif
    for (int k = 0; k < 2; ++k) {
      int moved = fcntl(fds[k], F_DUPFD_CLOEXEC, 3);
      ::close(fds[k]);
      fds[k] = moved;
    }
    if (fds[0] < 0 || fds[1] < 0) {
      if (fds[0] >= 0) ::close(fds[0]);
      if (fds[1] >= 0) ::close(fds[1]);
      return false;
    }
    return true;
  }

  bool spawn(std::string* why) {
    int in_pipe[2], out_pipe[2];
    if (!own_pipe(in_pipe)) {
      *why = std::string("cannot create a pipe: ") + std::strerror(errno);
      return false;
    }
    if (!own_pipe(out_pipe)) {
      *why = std::string("cannot create a pipe: ") + std::strerror(errno);
      ::close(in_pipe[0]);
      ::close(in_pipe[1]);
      return false;
    }
    std::vector<std::string> args = options_.command;
    args.push_back("--ready-line");
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(&a[0]);
    argv.push_back(nullptr);

    // The child: stdin/stdout are the pipes, stderr is inherited (server logs), SIGPIPE and
    // the signal mask as a fresh process has them.
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&actions, out_pipe[1], STDOUT_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t defaults, empty;
    sigemptyset(&defaults);
    sigaddset(&defaults, SIGPIPE);
    sigemptyset(&empty);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setsigmask(&attr, &empty);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    ::close(in_pipe[0]);
    ::close(out_pipe[1]);
    if (rc != 0) {
      *why = "cannot run '" + options_.command[0] + "': " + std::strerror(rc);
      ::close(in_pipe[1]);
      ::close(out_pipe[0]);
      return false;
    }
    fcntl(in_pipe[1], F_SETFL, fcntl(in_pipe[1], F_GETFL) | O_NONBLOCK);
    fcntl(out_pipe[0], F_SETFL, fcntl(out_pipe[0], F_GETFL) | O_NONBLOCK);
    pid_ = pid;
    to_child_ = in_pipe[1];
    from_child_ = out_pipe[0];
    inbuf_.clear();
    return true;
  }

  // The server failed: end it, schedule its replacement, put its requests back in line.
  void fault(Fault kind, const std::string& cause) {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);  // also when it closed its stdout but lingers
      int status = 0;
      if (!detail::try_reap(pid_, &status)) zombies_.push_back(pid_);
      pid_ = -1;
    }
    close_fd(&to_child_);
    close_fd(&from_child_);
    inbuf_.clear();
    const bool was_starting = state_ == State::Starting;
    state_ = State::Down;
    if (kind == Fault::StartFailure || was_starting)
      ++stats_.start_failures;
    else if (kind == Fault::Exit)
      ++stats_.exits;
    else if (kind == Fault::Hung)
      ++stats_.hung_kills;
    else
      ++stats_.protocol_kills;
    ++stats_.consecutive_failures;
    stats_.last_fault = cause;
    restart_cause_ = cause;
    next_start_at_ =
        Clock::now() + detail::backoff_delay(stats_.consecutive_failures, options_.backoff_initial,
                                             options_.backoff_max);
    if (options_.max_restarts >= 0 && stats_.consecutive_failures > options_.max_restarts)
      gave_up_ = true;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->abandoned) {
        it = queue_.erase(it);
        continue;
      }
      it->restarted = true;
      it->written = 0;
      if (it->sends >= 2 || gave_up_) {
        Result result = gave_up_ ? unavailable_result() : Result();
        if (!gave_up_) {
          result.error = Error::ChildDied;
          result.message = "two servers in turn failed with this request (last: " + cause + ")";
        }
        result.restarted = true;
        finish(it->ticket, std::move(result));
        it = queue_.erase(it);
        continue;
      }
      ++it;
    }
  }

  // The server closed its stdout: it exited (or is exiting).
  void stdout_closed() {
    int status = -1;
    bool reaped = false;
    for (int k = 0; k < 20 && !(reaped = detail::try_reap(pid_, &status)); ++k) usleep(1000);
    std::string what = reaped ? detail::describe_exit(status) : "closed its stdout";
    if (reaped) pid_ = -1;
    if (state_ == State::Starting)
      fault(Fault::StartFailure, "server " + what + " before it was ready");
    else
      fault(Fault::Exit, "server " + what);
  }

  void reap_zombies(std::chrono::milliseconds patience) {
    const auto until = Clock::now() + patience;
    while (true) {
      int status = 0;
      zombies_.erase(
          std::remove_if(zombies_.begin(), zombies_.end(),
                         [&status](pid_t pid) { return detail::try_reap(pid, &status); }),
          zombies_.end());
      if (zombies_.empty() || Clock::now() >= until) return;
      usleep(2000);
    }
  }

  // Writes whatever the pipe takes now, in order; never blocks.
  void write_pending() {
    if (state_ != State::Ready) return;
    for (auto& request : queue_) {
      if (request.written == request.line.size()) continue;
      while (to_child_ >= 0 && request.written < request.line.size()) {
        ssize_t n = ::write(to_child_, request.line.data() + request.written,
                            request.line.size() - request.written);
        if (n > 0) {
          request.written += static_cast<size_t>(n);
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        close_fd(&to_child_);  // EPIPE: it closed its stdin; its exit shows on stdout
      }
      if (to_child_ < 0) return;
      if (request.sends++ > 0) ++stats_.resent;
    }
  }

  // Drops the server's stdout while it shuts down; false when there is nothing to read.
  bool drain_stdout(int timeout_ms) {
    if (from_child_ < 0) return false;
    pollfd pfd{from_child_, POLLIN, 0};
    if (poll(&pfd, 1, timeout_ms) <= 0) return true;
    char chunk[65536];
    ssize_t n = ::read(from_child_, chunk, sizeof chunk);
    if (n == 0) close_fd(&from_child_);
    return n != 0;
  }

  // Waits up to timeout_ms for the pipes, then moves bytes both ways once.
  void io(int timeout_ms) {
    pollfd fds[2];
    nfds_t count = 0;
    int read_index = -1, write_index = -1;
    if (from_child_ >= 0 && state_ != State::Down) {
      read_index = static_cast<int>(count);
      fds[count++] = pollfd{from_child_, POLLIN, 0};
    }
    if (to_child_ >= 0 && state_ == State::Ready && has_unwritten()) {
      write_index = static_cast<int>(count);
      fds[count++] = pollfd{to_child_, POLLOUT, 0};
    }
    int ready = poll(count ? fds : nullptr, count, timeout_ms);
    if (ready <= 0) return;  // timeout or EINTR: the caller re-checks what is due
    if (write_index >= 0 && fds[write_index].revents) write_pending();
    if (read_index >= 0 && fds[read_index].revents && from_child_ >= 0) read_stdout();
  }

  bool has_unwritten() const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [](const Pending& p) { return p.written < p.line.size(); });
  }

  void read_stdout() {
    char chunk[65536];
    ssize_t n = ::read(from_child_, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n > 0) inbuf_.append(chunk, static_cast<size_t>(n));
    size_t start = 0;
    while (state_ != State::Down) {
      size_t newline = inbuf_.find('\n', start);
      if (newline == std::string::npos) break;
      size_t end = newline > start && inbuf_[newline - 1] == '\r' ? newline - 1 : newline;
      std::string line = inbuf_.substr(start, end - start);
      start = newline + 1;
      handle_line(line);
    }
    if (state_ == State::Down) return;  // a fault cleared the buffer
    inbuf_.erase(0, start);
    if (n <= 0) {
      stdout_closed();
    } else if (inbuf_.size() > options_.max_line_bytes) {
      fault(Fault::Protocol, "server wrote a line longer than " +
                                 std::to_string(options_.max_line_bytes) + " bytes to stdout");
    }
  }

  void handle_line(const std::string& line) {
    if (state_ == State::Starting) {
      if (detail::decode_ready(line, &info_)) {
        state_ = State::Ready;
        last_progress_ = Clock::now();
        write_pending();
      } else {
        ++stats_.garbage_lines;
      }
      return;
    }
    detail::Json json;
    Pending* front = queue_.empty() ? nullptr : &queue_.front();
    if (!front || front->written < front->line.size() || !detail::parse_json(line, &json) ||
        !detail::is_answer(json)) {
      ++stats_.garbage_lines;
      return;
    }
    const std::string id = detail::answer_id(json);
    if (!id.empty() && id != front->id) {  // not in step with our requests: not ours
      ++stats_.garbage_lines;
      return;
    }
    last_progress_ = Clock::now();
    stats_.consecutive_failures = 0;  // it answers: healthy
    if (front->abandoned) {
      ++stats_.late_answers;
    } else {
      Result result;
      result.restarted = front->restarted;
      detail::decode_answer(json, &result);
      finish(front->ticket, std::move(result));
    }
    queue_.pop_front();
  }
};

}  // namespace ovcast
