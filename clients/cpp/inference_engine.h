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
// Pipelining: submit() several windows, then wait() for each ticket. Requests and answers flow
// at the same time, so full pipes cannot deadlock; answers are matched to requests by
// request_id, in whatever order they come.
//
// What the client guarantees:
// - No call blocks past its request's deadline (plus the moment it takes to act on it): every
//   write, every read and the wait for a starting server's ready line is non-blocking I/O
//   under poll(). Before a deadline is judged, what the server has already written is read:
//   an answer in the pipe is never reported late. A request that cannot be answered in time
//   ends as Timeout (a ready server had it) or Unavailable (no ready server: starting,
//   restarting, backing off). Deadlines are clamped to [0, 100 years]: no overflow.
// - Windows are checked against the ready line's context_length and num_channels (and for
//   NaN/inf) before anything is encoded: a wrong window costs nothing but InvalidInput.
//   Answers are checked against its prediction_length and channels and for finite float32
//   values; anything else is ProtocolError. A server's error answer is ServerError with its
//   code (e.g. model_output_not_finite).
// - A slow server is not a hung one. A server is hung when it has a request to answer (one
//   sent after its newest answer) and answers nothing for Options::hang_timeout, counted
//   from the later of its last answer and that request's sending, whatever the requests'
//   own deadlines: a request with a tight (even zero) deadline times out alone and the
//   server stays.
// - A server that dies, hangs (Options::restart_hung), never becomes ready or writes a line
//   longer than the line cap is replaced, forever by default (Options::max_restarts), with
//   capped exponential backoff between failed attempts: the first restart after a fault is
//   immediate, each further consecutive fault doubles the wait from backoff_initial up to
//   backoff_max; any answer resets it. Every restart calls on_restart with its cause (an
//   exception it throws is caught and counted) and is counted in stats().
// - The first server gets Options::startup_timeout to become ready. Once one has been ready,
//   a restart gets a timeout fitted to it: 3 x the slowest start seen + 1 s, doubled after
//   each start in a row that failed, never more than startup_timeout; a server stuck before
//   it is ready costs that, not startup_timeout.
// - Requests pending when a server fails wait for its replacement (Result::restarted). Only
//   the request the failed server was working on (the oldest it had been sent and not
//   answered) is charged; one charged by two servers in turn ends as ChildDied (a window
//   that crashes every server is not retried forever); the others are simply sent again.
// - Lines on the server's stdout that are not answers to our requests (stray prints) are
//   skipped and counted (Stats::garbage_lines); each costs time linear in its length and
//   memory bounded by the line cap (Options::max_line_bytes) plus what an answer may hold.
// - The server runs in its own process group, with only fds 0-2 (stdin, stdout, stderr) of
//   the host (glibc 2.34+; elsewhere fds opened without O_CLOEXEC reach it too), and faults
//   kill the whole group: a wrapper command (a shell script, `timeout`,
//   `conda run`) that forks the server instead of exec'ing it is fine. Its stderr is the
//   host's by default (Options::server_stderr: or discarded, or captured line by line).
// - The host's signal handling is left alone: a write to a dead server cannot raise SIGPIPE
//   (it is blocked around writes and a pending one consumed), whatever the host's disposition.
// - Destroying the engine closes the server's stdin and waits at most Options::stop_grace
//   for it to exit before killing it.
// Not thread-safe: use one InferenceEngine per thread (each owns a server process). wait()
// for every ticket: results are kept until then. The callbacks must not call back into the
// engine. pid() is -1 while no server runs: never hand it to kill() unchecked (kill(-1, ...)
// signals every process you may). The wire format is all in detail::encode_request,
// decode_answer and decode_ready; Options::encoding picks windows and forecasts as base64
// float32 (the default: fewer bytes, no number formatting) or as decimal JSON numbers.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cfloat>
#include <charconv>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <deque>
#include <functional>
#include <locale>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
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
  ChildDied,      // two servers in turn failed on this request, or the client gave up
  InvalidInput,   // the window was rejected before sending (shape, ragged, NaN)
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

// Where the server's stderr goes.
enum class ServerStderr {
  Inherit,  // the host's stderr (a stalled reader of it stalls the server too)
  Discard,  // /dev/null
  Capture,  // a pipe the client reads while it runs: each line to on_server_stderr, the last
            // ones in the error of a server that could not start
};

// How windows and forecasts travel: Binary sends each window as base64 little-endian float32
// ({"base64": ..., "shape": [context, channels]}) and asks for forecasts the same way: about
// half the bytes of decimal text, and no number to print or parse on either side. Json sends
// and receives decimal numbers (any ovcast server; readable in a log).
enum class Encoding { Binary, Json };

struct Options {
  std::vector<std::string> command;         // argv of the server; --ready-line is appended
  Encoding encoding = Encoding::Binary;     // the wire form of windows and forecasts
  std::chrono::milliseconds timeout{5000};  // default deadline of a request
  // A server with requests outstanding that answers none of them for this long is hung.
  // Independent of requests' deadlines; keep it above the slowest real inference.
  std::chrono::milliseconds hang_timeout{5000};
  bool restart_hung = true;                           // kill a hung server, start another
  std::chrono::milliseconds startup_timeout{120000};  // the first server must be ready within
                                                      // this (restarts: fitted, never more)
  std::chrono::milliseconds backoff_initial{100};     // wait before the 2nd consecutive restart
  std::chrono::milliseconds backoff_max{5000};        // the wait never grows past this
  int max_restarts = -1;  // consecutive faults before giving up (reset() resumes); -1: never
  // A longer stdout line is a protocol fault. 0: automatic, 1 MiB or, for models with large
  // forecasts, 64 KiB + 48 bytes per forecast value.
  size_t max_line_bytes = 0;
  // Channels in an answer. 0: what the ready line's forecast_channel_names or a
  // `--channels I,J` in command say, else any count from 1 to num_channels (a model may
  // forecast fewer channels than it reads: TinyTimeMixer's prediction channels).
  int output_channels = 0;
  std::chrono::milliseconds stop_grace{500};  // stop()/destructor: wait for a clean exit
  ServerStderr server_stderr = ServerStderr::Inherit;
  // With ServerStderr::Capture: each line of the server's stderr (without '\n'), from its
  // start on. Called while the client runs; must not call back into the engine.
  std::function<void(const std::string&)> on_server_stderr;
};

// What the server announced in its ready line.
struct ServerInfo {
  std::string model;
  int context_length = 0;
  int prediction_length = 0;
  int num_channels = 0;
  std::vector<std::string> channel_names;
  std::vector<std::string> forecast_channel_names;  // when the server says which it forecasts
  std::string ready_line;
};

struct Stats {
  // Requests: each submitted request ends in exactly one outcome.
  uint64_t submitted = 0, ok = 0, timeouts = 0, unavailable = 0, server_errors = 0,
           protocol_errors = 0, child_died = 0, invalid_input = 0;
  uint64_t resent = 0;              // requests sent again to a new server after theirs failed
  uint64_t late_answers = 0;        // answers to requests that had already timed out, dropped
  uint64_t garbage_lines = 0;       // stdout lines that were not answers to our requests, skipped
  uint64_t stderr_lines = 0;        // lines read from the server's stderr (ServerStderr::Capture)
  uint64_t callback_errors = 0;     // exceptions thrown by on_restart / on_server_stderr
  std::string last_callback_error;  // the latest one's what()
  // Servers.
  uint64_t starts = 0;    // servers started (attempts), the first included
  uint64_t restarts = 0;  // starts after a fault: one on_restart call each
  // Faults by cause; each one schedules a restart.
  uint64_t start_failures = 0;   // could not run, exited, bad or over-long line before ready,
                                 // or not ready within its startup timeout
  uint64_t exits = 0;            // a ready server exited, closed a pipe or was killed outside
  uint64_t hung_kills = 0;       // a ready server killed for answering nothing in hang_timeout
  uint64_t protocol_kills = 0;   // a ready server killed for a line over the line cap
  int consecutive_failures = 0;  // faults since the last answer: drives the backoff
  std::string last_fault;        // the cause of the latest fault
};

namespace detail {

// ---------------------------------------------------------------------------------------
// Time: every wait the caller gives is clamped, so "forever" cannot overflow a time point.

constexpr std::chrono::milliseconds kLongestWait = std::chrono::hours(24 * 365 * 100);

inline std::chrono::milliseconds clamp_wait(std::chrono::milliseconds wait) {
  return std::clamp(wait, std::chrono::milliseconds(0), kLongestWait);
}

// now + wait (clamped), saturating at the clock's end.
inline Clock::time_point after(Clock::time_point now, std::chrono::milliseconds wait) {
  const auto span = std::chrono::duration_cast<Clock::duration>(clamp_wait(wait));
  return Clock::time_point::max() - now < span ? Clock::time_point::max() : now + span;
}

inline int millis_until(Clock::time_point when, Clock::time_point now) {
  if (when <= now) return 0;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when - now).count() + 1;
  return ms > INT_MAX ? INT_MAX : static_cast<int>(ms);
}

inline std::string ms_text(std::chrono::milliseconds ms) {
  return std::to_string(ms.count()) + " ms";
}

// The wait before the restart that follows `failures` consecutive faults: none after the
// first, then initial, 2 x initial, 4 x initial, ... never more than max.
inline std::chrono::milliseconds backoff_delay(int failures, std::chrono::milliseconds initial,
                                               std::chrono::milliseconds max) {
  initial = clamp_wait(initial);
  max = clamp_wait(max);
  if (failures <= 1 || initial.count() <= 0) return std::chrono::milliseconds(0);
  std::chrono::milliseconds delay = initial;
  for (int i = 2; i < failures && delay < max; ++i) delay *= 2;
  return std::min(delay, max);
}

// ---------------------------------------------------------------------------------------
// Numbers in and out without the global locale (a host app may have set one with ',').

// Where a decimal number that does not fit a double lies: +-inf for too large, +-0 for too
// small (as strtod and Python's float() round them). `text` is [sign] digits [.digits]
// [e[sign]digits], already checked.
inline double out_of_range(std::string_view text) {
  const bool negative = !text.empty() && text[0] == '-';
  long long exponent = 0, point = -1, first = -1, position = 0;
  size_t i = 0;
  for (; i < text.size() && text[i] != 'e' && text[i] != 'E'; ++i) {
    char c = text[i];
    if (c == '.') {
      point = position;
    } else if (c >= '0' && c <= '9') {
      if (first < 0 && c != '0') first = position;
      ++position;
    }
  }
  if (point < 0) point = position;
  if (i < text.size()) {
    bool minus = i + 1 < text.size() && text[i + 1] == '-';
    for (++i; i < text.size(); ++i)
      if (text[i] >= '0' && text[i] <= '9' && exponent < 100000000)
        exponent = exponent * 10 + (text[i] - '0');
    if (minus) exponent = -exponent;
  }
  const bool huge = first >= 0 && point - first - 1 + exponent > 0;
  const double magnitude = huge ? HUGE_VAL : 0.0;
  return negative ? -magnitude : magnitude;
}

// The characters of a JSON number (and of Python's decimal float()).
inline bool number_char(char c) {
  return (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-';
}

#if defined(__cpp_lib_to_chars) && __cpp_lib_to_chars >= 201611L
inline void append_number(std::string* out, float value) {
  char buffer[32];
  auto end = std::to_chars(buffer, buffer + sizeof buffer, value).ptr;
  out->append(buffer, end);
}
// A decimal number (no leading '+', no hex, no inf/nan words), all of [first, last).
inline bool parse_number(const char* first, const char* last, double* value) {
  if (first == last || *first == '+' || !std::all_of(first, last, number_char)) return false;
  auto parsed = std::from_chars(first, last, *value);
  if (parsed.ptr != last) return false;
  if (parsed.ec == std::errc::result_out_of_range)
    *value = out_of_range(std::string_view(first, static_cast<size_t>(last - first)));
  else if (parsed.ec != std::errc())
    return false;
  return true;
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
  if (!std::all_of(first, last, number_char)) return false;
  std::istringstream s(std::string(first, last));
  s.imbue(std::locale::classic());
  s >> *value;
  return !s.fail() && s.peek() == std::char_traits<char>::eof();
}
#endif

// A double as float32 the way numpy casts it: rounded, and beyond float's range +-inf
// (a plain static_cast of such a value is undefined behaviour).
inline float to_float(double value) {
  constexpr double kRoundsToInf = 3.4028235677973366e38;  // FLT_MAX + half an ulp
  if (std::isfinite(value) && std::fabs(value) > FLT_MAX) {
    float edge = std::fabs(value) >= kRoundsToInf ? HUGE_VALF : FLT_MAX;
    return value < 0 ? -edge : edge;
  }
  return static_cast<float>(value);
}

// ---------------------------------------------------------------------------------------
// A minimal JSON value and parser: enough for the server's answers, and safe on garbage.
struct Json {
  // Elided: a member of the top-level object with more values than the parse was allowed
  // to build; `number` holds how many it had.
  enum Kind { Null, Bool, Number, String, Array, Object, Elided } kind = Null;
  bool boolean = false;
  double number = 0.0;
  std::string string;
  std::vector<Json> array;
  std::vector<std::pair<std::string, Json>> object;

  // A member of an object; the last one of a repeated key, as Python's json reads it.
  const Json* get(const std::string& key) const {
    if (kind != Object) return nullptr;
    for (auto member = object.rbegin(); member != object.rend(); ++member)
      if (member->first == key) return &member->second;
    return nullptr;
  }
};

// How much of a line the parser may turn into Json values: memory stays bounded whatever
// the line holds. A top-level object's member with more values is Elided; more values kept
// in all fail the parse.
struct JsonLimits {
  size_t max_member_values = SIZE_MAX;
  size_t max_total_values = SIZE_MAX;
};

class Parser {
 public:
  static constexpr int kMaxDepth = 32;  // answers nest 3 deep; garbage may nest 10^6

  Parser(std::string_view text, const JsonLimits& limits) : s_(text), limits_(limits) {}

  // The whole text as one value; throws std::runtime_error when it is not one.
  Json parse() {
    Json out;
    ws();
    if (i_ < s_.size() && s_[i_] == '{') {
      object(&out);
    } else {
      const size_t start = i_;
      if (value(0, nullptr) > limits_.max_total_values) fail("too many values");
      i_ = start;
      value(0, &out);
    }
    ws();
    if (i_ != s_.size()) fail("trailing characters");
    return out;
  }

 private:
  std::string_view s_;
  JsonLimits limits_;
  size_t i_ = 0;
  size_t built_ = 0;  // values built so far

  [[noreturn]] void fail(const char* what) {
    throw std::runtime_error(std::string("invalid JSON: ") + what + " at " + std::to_string(i_));
  }
  void ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\r' || s_[i_] == '\t'))
      ++i_;
  }
  // Skips whitespace, then consumes c if it comes next.
  bool eat(char c) {
    ws();
    if (i_ >= s_.size() || s_[i_] != c) return false;
    ++i_;
    return true;
  }
  bool word(std::string_view w) {
    if (s_.substr(i_, w.size()) != w) return false;
    i_ += w.size();
    return true;
  }
  void count_built() {
    if (++built_ > limits_.max_total_values) fail("too many values");
  }

  // The top-level object: each member is measured first and built only if it is small enough.
  void object(Json* out) {
    ++i_;
    out->kind = Json::Object;
    count_built();
    if (eat('}')) return;
    do {
      std::string key;
      key_string(&key);
      const size_t start = i_;
      const size_t values = value(1, nullptr);
      out->object.emplace_back(std::move(key), Json());
      Json& member = out->object.back().second;
      if (values > limits_.max_member_values) {
        member.kind = Json::Elided;
        member.number = static_cast<double>(values);
      } else {
        i_ = start;
        value(1, &member);
      }
    } while (eat(','));
    if (!eat('}')) fail("expected ',' or '}'");
  }

  void key_string(std::string* key) {
    ws();
    if (i_ >= s_.size() || s_[i_] != '"') fail("expected a key");
    string(key);
    if (!eat(':')) fail("expected ':'");
  }

  // Reads one value, building it into *out, or only checking it when out is null (then
  // numbers are only scanned, not converted). Returns how many values it held.
  size_t value(int depth, Json* out) {
    if (depth > kMaxDepth) fail("nested too deep");
    ws();
    if (i_ >= s_.size()) fail("expected a value");
    if (out) count_built();
    size_t count = 1;
    const char c = s_[i_];
    if (c == '{') {
      ++i_;
      if (out) out->kind = Json::Object;
      if (eat('}')) return count;
      do {
        std::string key;
        key_string(out ? &key : nullptr);
        Json* member = nullptr;
        if (out) {
          out->object.emplace_back(std::move(key), Json());
          member = &out->object.back().second;
        }
        count += value(depth + 1, member);
      } while (eat(','));
      if (!eat('}')) fail("expected ',' or '}'");
    } else if (c == '[') {
      ++i_;
      if (out) out->kind = Json::Array;
      if (eat(']')) return count;
      do {
        Json* item = nullptr;
        if (out) {
          out->array.emplace_back();
          item = &out->array.back();
        }
        count += value(depth + 1, item);
      } while (eat(','));
      if (!eat(']')) fail("expected ',' or ']'");
    } else if (c == '"') {
      if (out) out->kind = Json::String;
      string(out ? &out->string : nullptr);
    } else if (c == 't' || c == 'f') {
      if (!word(c == 't' ? "true" : "false")) fail("expected a value");
      if (out) {
        out->kind = Json::Bool;
        out->boolean = c == 't';
      }
    } else if (c == 'n') {
      if (!word("null")) fail("expected a value");
    } else {
      double v = number(out != nullptr);
      if (out) {
        out->kind = Json::Number;
        out->number = v;
      }
    }
    return count;
  }

  // A number; NaN, Infinity and -Infinity too (Python's json writes them): they are values
  // the caller refuses, not garbage.
  double number(bool convert) {
    const char c = s_[i_];
    if (c == 'N' && word("NaN")) return NAN;
    if (c == 'I' && word("Infinity")) return HUGE_VAL;
    if (c == '-' && word("-Infinity")) return -HUGE_VAL;
    const size_t start = i_;
    while (i_ < s_.size() && number_char(s_[i_])) ++i_;
    double v = 0.0;
    if (i_ == start || (convert && !parse_number(s_.data() + start, s_.data() + i_, &v)))
      fail("expected a value");
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
  // A string at s_[i_] == '"', decoded into *out (or only checked when out is null).
  void string(std::string* out) {
    ++i_;  // opening quote
    while (i_ < s_.size() && s_[i_] != '"') {
      char c = s_[i_++];
      if (c != '\\') {
        if (out) *out += c;
        continue;
      }
      if (i_ >= s_.size()) fail("bad escape");
      char e = s_[i_++];
      std::string decoded;
      switch (e) {
        case 'n': decoded = "\n"; break;
        case 't': decoded = "\t"; break;
        case 'r': decoded = "\r"; break;
        case 'b': decoded = "\b"; break;
        case 'f': decoded = "\f"; break;
        case 'u': {
          unsigned code = hex4();
          if (code >= 0xD800 && code < 0xDC00 && s_.substr(i_, 2) == "\\u") {
            i_ += 2;
            unsigned low = hex4();
            code = (low >= 0xDC00 && low < 0xE000)
                       ? 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                       : 0xFFFD;
          } else if (code >= 0xD800 && code < 0xE000) {
            code = 0xFFFD;  // a lone surrogate
          }
          utf8(code, &decoded);
          break;
        }
        default: decoded = std::string(1, e);  // \" \\ \/
      }
      if (out) *out += decoded;
    }
    if (i_ >= s_.size()) fail("unterminated string");
    ++i_;
  }
};

inline bool parse_json(std::string_view text, Json* json, const JsonLimits& limits = {}) {
  try {
    *json = Parser(text, limits).parse();
    return true;
  } catch (const std::exception&) { return false; }
}

// ---------------------------------------------------------------------------------------
// base64 of little-endian float32 (the binary form of windows and forecasts).

inline void append_base64_floats(std::string* out, const Window& window) {
  static const char* const digits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string bytes;
  bytes.reserve(window.size() * (window.empty() ? 0 : window[0].size()) * 4);
  for (const auto& row : window) {
    for (float value : row) {
      uint32_t bits;
      std::memcpy(&bits, &value, sizeof bits);
      for (int shift = 0; shift < 32; shift += 8)  // little-endian whatever the host's order
        bytes += static_cast<char>((bits >> shift) & 0xFF);
    }
  }
  out->reserve(out->size() + (bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (uint32_t(uint8_t(bytes[i])) << 16) | (uint32_t(uint8_t(bytes[i + 1])) << 8) |
                 uint32_t(uint8_t(bytes[i + 2]));
    *out += digits[n >> 18];
    *out += digits[(n >> 12) & 63];
    *out += digits[(n >> 6) & 63];
    *out += digits[n & 63];
  }
  if (i < bytes.size()) {
    uint32_t n = uint32_t(uint8_t(bytes[i])) << 16;
    if (i + 1 < bytes.size()) n |= uint32_t(uint8_t(bytes[i + 1])) << 8;
    *out += digits[n >> 18];
    *out += digits[(n >> 12) & 63];
    *out += i + 1 < bytes.size() ? digits[(n >> 6) & 63] : '=';
    *out += '=';
  }
}

// Decodes base64 of little-endian float32 into *values; false on anything else.
inline bool decode_base64_floats(const std::string& text, std::vector<float>* values) {
  auto digit = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) return false;
  std::string bytes;
  bytes.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    int d[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      char c = text[i + k];
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        d[k] = 0;
        ++pad;
      } else if (pad || (d[k] = digit(c)) < 0) {
        return false;  // a digit after padding, or not a base64 digit
      }
    }
    uint32_t n = (uint32_t(d[0]) << 18) | (uint32_t(d[1]) << 12) | (uint32_t(d[2]) << 6) | d[3];
    bytes += static_cast<char>(n >> 16);
    if (pad < 2) bytes += static_cast<char>((n >> 8) & 0xFF);
    if (pad < 1) bytes += static_cast<char>(n & 0xFF);
  }
  if (bytes.size() % 4 != 0) return false;
  values->resize(bytes.size() / 4);
  for (size_t v = 0; v < values->size(); ++v) {
    uint32_t bits = 0;
    for (int k = 3; k >= 0; --k) bits = (bits << 8) | uint8_t(bytes[4 * v + k]);
    std::memcpy(&(*values)[v], &bits, sizeof bits);
  }
  return true;
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
                           const Inputs& inputs = {}, Encoding encoding = Encoding::Json) {
  if (window.empty() || window[0].empty()) {
    *error = "window is empty; expected [context][channels]";
    return false;
  }
  const size_t channels = window[0].size();
  for (size_t t = 0; t < window.size(); ++t) {
    if (window[t].size() != channels) {
      *error = "row " + std::to_string(t) + " has " + std::to_string(window[t].size()) +
               " values; expected " + std::to_string(channels);
      return false;
    }
    for (size_t c = 0; c < channels; ++c) {
      if (!std::isfinite(window[t][c])) {
        *error = "NaN or inf at [" + std::to_string(t) + "][" + std::to_string(c) +
                 "]; expected finite numbers";
        return false;
      }
    }
  }
  line->clear();
  *line += "{\"request_id\":\"";
  *line += request_id;  // ours: digits only, nothing to escape
  *line += "\",\"timestamp_ms\":";
  *line += std::to_string(timestamp_ms);
  if (encoding == Encoding::Binary) {
    line->reserve(160 + window.size() * channels * 16 / 3);
    *line += ",\"response_encoding\":\"base64\",\"past_values\":{\"shape\":[";
    *line += std::to_string(window.size()) + "," + std::to_string(channels) + "],\"base64\":\"";
    append_base64_floats(line, window);
    *line += "\"}";
  } else {
    line->reserve(64 + window.size() * channels * 12);
    *line += ",\"past_values\":[";
    for (size_t t = 0; t < window.size(); ++t) {
      *line += t ? ",[" : "[";
      for (size_t c = 0; c < channels; ++c) {
        if (c) *line += ',';
        append_number(line, window[t][c]);
      }
      *line += ']';
    }
    *line += ']';
  }
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

// The shape the server's model takes, checked before encoding (cheap: no value is read).
inline bool check_window(const Window& window, const ServerInfo& info, std::string* error) {
  const size_t rows = window.size(), channels = rows ? window[0].size() : 0;
  if (rows == static_cast<size_t>(info.context_length) &&
      channels == static_cast<size_t>(info.num_channels))
    return true;
  *error = "window is [" + std::to_string(rows) + "][" + std::to_string(channels) +
           "]; expected [" + std::to_string(info.context_length) + "][" +
           std::to_string(info.num_channels) +
           "] (the model's context_length and num_channels, from the server's ready line)";
  return false;
}

// What an answer says about which request it answers.
enum class AnswerId { Named, Null, Bad };

// The request_id an answer names (*id): a string, or a whole number as ours are digits.
// Null: it names none (null or missing: the server could not read the line).
inline AnswerId answer_id(const Json& answer, std::string* id) {
  const Json* rid = answer.get("request_id");
  if (!rid || rid->kind == Json::Null) return AnswerId::Null;
  if (rid->kind == Json::String) {
    *id = rid->string;
    return AnswerId::Named;
  }
  if (rid->kind == Json::Number && rid->number >= 0 && rid->number <= 9007199254740992.0 &&
      rid->number == std::floor(rid->number)) {
    *id = std::to_string(static_cast<long long>(rid->number));
    return AnswerId::Named;
  }
  return AnswerId::Bad;
}

// An answer is an object with a boolean "success"; everything else on stdout is garbage.
inline bool is_answer(const Json& line) {
  const Json* success = line.get("success");
  return success && success->kind == Json::Bool;
}

// {"base64": ..., "shape": [rows, columns], "datatype": "FP32"} as rows; false if it is not.
inline bool decode_binary(const Json& tensor, std::vector<std::vector<float>>* rows) {
  const Json* text = tensor.get("base64");
  const Json* shape = tensor.get("shape");
  const Json* datatype = tensor.get("datatype");
  if (!text || text->kind != Json::String || !shape || shape->kind != Json::Array ||
      shape->array.size() != 2 || (datatype && (datatype->kind != Json::String ||
                                                datatype->string != "FP32")))
    return false;
  size_t dims[2];
  for (int k = 0; k < 2; ++k) {
    const Json& d = shape->array[k];
    if (d.kind != Json::Number || d.number < 1 || d.number > 1e7 || d.number != std::floor(d.number))
      return false;
    dims[k] = static_cast<size_t>(d.number);
  }
  std::vector<float> values;
  if (!decode_base64_floats(text->string, &values) || values.size() != dims[0] * dims[1])
    return false;
  rows->clear();
  for (size_t t = 0; t < dims[0]; ++t)
    rows->emplace_back(values.begin() + t * dims[1], values.begin() + (t + 1) * dims[1]);
  return true;
}

// What an answer's predictions must be: horizon x channels; channels 0: any count from 1 to
// most_channels (0: any).
struct AnswerShape {
  int horizon = 0;
  int channels = 0;
  int most_channels = 0;
};

// How much of an answer line may be built: the predictions of `shape` with room to spare
// (a wrong shape is reported with its size); bigger members (other outputs) are elided.
inline JsonLimits answer_limits(const AnswerShape& shape) {
  const int channels = std::max({shape.channels, shape.most_channels, 1});
  const size_t values =
      1 + static_cast<size_t>(shape.horizon) * (1 + static_cast<size_t>(channels));
  JsonLimits limits;
  limits.max_member_values = 2 * values + 1024;
  limits.max_total_values = 2 * limits.max_member_values + 4096;
  return limits;
}

// Fills *result from an answer (is_answer() holds): the forecast, or why it is not one.
inline void decode_answer(const Json& answer, const AnswerShape& shape, Result* result) {
  if (!answer.get("success")->boolean) {
    result->error = Error::ServerError;
    if (const Json* err = answer.get("error")) {
      const Json* code = err->get("code");
      const Json* message = err->get("message");
      if (code && code->kind == Json::String) result->server_code = code->string;
      if (message && message->kind == Json::String) result->message = message->string;
    }
    if (result->message.empty()) result->message = "the server answered success=false";
    return;
  }
  const std::string channels = shape.channels        ? std::to_string(shape.channels)
                               : shape.most_channels ? "1.." + std::to_string(shape.most_channels)
                                                     : std::string("channels");
  const std::string expected = "[" + (shape.horizon ? std::to_string(shape.horizon) : "horizon") +
                               "][" + channels + "] finite float32 numbers";
  auto refuse = [&](const std::string& what) {
    result->error = Error::ProtocolError;
    result->message = "the answer's 'predictions' " + what + "; expected " + expected;
    result->predictions.clear();
  };
  const Json* preds = answer.get("predictions");
  if (!preds) return refuse("are missing");
  if (preds->kind == Json::Object) {  // the binary form
    std::vector<std::vector<float>> rows;
    if (!decode_binary(*preds, &rows))
      return refuse("are not {\"base64\", \"shape\": [horizon, channels]} of float32");
    if (shape.horizon > 0 && rows.size() != static_cast<size_t>(shape.horizon))
      return refuse("have " + std::to_string(rows.size()) + " rows");
    const size_t width = rows[0].size();
    if ((shape.channels > 0 && width != static_cast<size_t>(shape.channels)) ||
        (shape.channels == 0 && shape.most_channels > 0 &&
         width > static_cast<size_t>(shape.most_channels)))
      return refuse("rows have " + std::to_string(width) + " values");
    for (size_t t = 0; t < rows.size(); ++t)
      for (size_t c = 0; c < width; ++c)
        if (!std::isfinite(rows[t][c]))
          return refuse("hold a non-finite value at [" + std::to_string(t) + "][" +
                        std::to_string(c) + "]");
    result->predictions = std::move(rows);
    const Json* ms = answer.get("inference_time_ms");
    if (ms && ms->kind == Json::Number) result->inference_time_ms = ms->number;
    return;
  }
  if (preds->kind == Json::Elided)
    return refuse("hold " + std::to_string(static_cast<uint64_t>(preds->number)) + " values");
  if (preds->kind != Json::Array || preds->array.empty()) return refuse("are not a [][] array");
  const size_t rows = preds->array.size();
  if (shape.horizon > 0 && rows != static_cast<size_t>(shape.horizon))
    return refuse("have " + std::to_string(rows) + " rows");
  const size_t width =
      shape.channels > 0 ? static_cast<size_t>(shape.channels) : preds->array[0].array.size();
  if (shape.channels == 0 && shape.most_channels > 0 &&
      width > static_cast<size_t>(shape.most_channels))
    return refuse("rows have " + std::to_string(width) + " values");
  std::vector<std::vector<float>> values(rows);
  for (size_t t = 0; t < rows; ++t) {
    const Json& row = preds->array[t];
    if (row.kind != Json::Array || row.array.size() != width || width == 0)
      return refuse("row " + std::to_string(t) + " has " +
                    (row.kind == Json::Array ? std::to_string(row.array.size()) + " values"
                                             : std::string("no array")));
    values[t].reserve(width);
    for (size_t c = 0; c < width; ++c) {
      const Json& v = row.array[c];
      const std::string at = "[" + std::to_string(t) + "][" + std::to_string(c) + "]";
      if (v.kind == Json::Null)
        return refuse("hold null at " + at + " (a NaN the server could not write?)");
      if (v.kind != Json::Number) return refuse("hold a non-number at " + at);
      const float f = to_float(v.number);
      if (!std::isfinite(f))
        return refuse("hold a non-finite value at " + at + " (NaN, inf or beyond float32)");
      values[t].push_back(f);
    }
  }
  result->predictions = std::move(values);
  const Json* ms = answer.get("inference_time_ms");
  if (ms && ms->kind == Json::Number) result->inference_time_ms = ms->number;
}

// What a stdout line before readiness is.
enum class ReadyLine { No, Yes, Unusable };

constexpr int kMostPerDimension = 1 << 24;  // context, horizon, channels: far above any model

// Reads the server's {"event": "ready", ...} into *info (Yes); a ready line whose numbers
// are not usable is Unusable, with *problem saying why; any other line is No.
inline ReadyLine decode_ready(std::string_view line, ServerInfo* info, std::string* problem) {
  JsonLimits limits;
  limits.max_member_values = 1 << 14;
  limits.max_total_values = 1 << 16;
  Json json;
  if (!parse_json(line, &json, limits)) return ReadyLine::No;
  const Json* event = json.get("event");
  if (!event || event->kind != Json::String || event->string != "ready") return ReadyLine::No;
  ServerInfo read;
  auto whole = [&](const char* key, int* out) {
    const Json* v = json.get(key);
    if (v && v->kind == Json::Number && v->number >= 1 && v->number <= kMostPerDimension &&
        v->number == std::floor(v->number)) {
      *out = static_cast<int>(v->number);
      return true;
    }
    std::string seen = "missing";
    if (v && v->kind == Json::Number) {
      std::ostringstream text;
      text.imbue(std::locale::classic());
      text << v->number;
      seen = text.str();
    } else if (v) {
      seen = "not a number";
    }
    *problem = "the ready line's " + std::string(key) + " is " + seen +
               "; expected a whole number in 1.." + std::to_string(kMostPerDimension) +
               " (a server that serves one model announces it)";
    return false;
  };
  if (!whole("context_length", &read.context_length) ||
      !whole("prediction_length", &read.prediction_length) ||
      !whole("num_channels", &read.num_channels))
    return ReadyLine::Unusable;
  if (const Json* model = json.get("model"); model && model->kind == Json::String)
    read.model = model->string;
  if (const Json* names = json.get("channel_names")) {
    bool good =
        names->kind == Json::Array && names->array.size() == static_cast<size_t>(read.num_channels);
    for (const Json& name : names->array) {
      good = good && name.kind == Json::String;
      if (good) read.channel_names.push_back(name.string);
    }
    if (!good) {
      *problem = "the ready line's channel_names are not " + std::to_string(read.num_channels) +
                 " strings (num_channels)";
      return ReadyLine::Unusable;
    }
  }
  if (const Json* names = json.get("forecast_channel_names")) {
    bool good = names->kind == Json::Array && !names->array.empty();
    for (const Json& name : names->array) {
      good = good && name.kind == Json::String;
      if (good) read.forecast_channel_names.push_back(name.string);
    }
    if (!good) {
      *problem = "the ready line's forecast_channel_names are not a list of names";
      return ReadyLine::Unusable;
    }
  }
  read.ready_line = std::string(line);
  *info = std::move(read);
  return ReadyLine::Yes;
}

// The count of a `--channels I,J` (or --channels=I,J) in a server command; 0 if none.
inline int channels_in_command(const std::vector<std::string>& command) {
  for (size_t i = 0; i < command.size(); ++i) {
    std::string list;
    if (command[i] == "--channels" && i + 1 < command.size())
      list = command[i + 1];
    else if (command[i].rfind("--channels=", 0) == 0)
      list = command[i].substr(11);
    else
      continue;
    int count = 1;
    for (char c : list) {
      if (c == ',')
        ++count;
      else if (!std::isdigit(static_cast<unsigned char>(c)))
        return 0;
    }
    return list.empty() ? 0 : count;
  }
  return 0;
}

// ---------------------------------------------------------------------------------------
// Processes.

// How a child ended, if it has: peeked, not reaped (the pid, and so its process group id,
// stays ours until it is). Reaped elsewhere (SIGCHLD ignored?): "exited".
inline std::optional<std::string> exit_of(pid_t pid) {
  siginfo_t info{};
  while (waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    if (errno != EINTR) return std::string("exited");
  }
  if (info.si_pid != pid) return std::nullopt;
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  const char* name = strsignal(info.si_status);
  return "killed by signal " + std::to_string(info.si_status) +
         (name ? std::string(" (") + name + ")" : "");
}

// Reaps pid if it has ended: true (also when reaped elsewhere); false while it runs.
inline bool try_reap(pid_t pid) {
  while (true) {
    int status = 0;
    pid_t got = waitpid(pid, &status, WNOHANG);
    if (got == pid) return true;
    if (got == 0) return false;
    if (errno != EINTR) return true;  // ECHILD: already reaped elsewhere
  }
}

// SIGKILL to a server and its process group (it leads one: pgid == pid). Never a pid <= 1:
// kill(0) and kill(-1) would signal our own group or every process we may.
inline void kill_server(pid_t pid) {
  if (pid <= 1) return;
  killpg(pid, SIGKILL);
  kill(pid, SIGKILL);
}

// Blocks SIGPIPE in this thread while it writes to the server, and consumes the one a
// write to a closed pipe raised: the host's SIGPIPE disposition, whatever it is, never sees
// it. (The recipe libcurl and OpenSSL use where MSG_NOSIGNAL does not exist: pipes.)
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &previous_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeGuard() {
    const int saved = errno;
    if (broke_ && !was_pending_) {
      const timespec zero{0, 0};
      while (sigtimedwait(&pipe_, nullptr, &zero) < 0 && errno == EINTR) {}
    }
    pthread_sigmask(SIG_SETMASK, &previous_, nullptr);
    errno = saved;
  }
  void broke() { broke_ = true; }  // a write failed with EPIPE: its SIGPIPE is pending
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t pipe_, previous_;
  bool was_pending_ = false, broke_ = false;
};

// A pipe whose ends are closed on exec (atomically where pipe2 exists, so no other thread's
// child inherits them) and kept clear of fds 0-2 (a dup2 onto itself would keep them open).
inline bool own_pipe(int fds[2]) {
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

inline void close_fd(int* fd) {
  if (*fd >= 0) {
    ::close(*fd);
    *fd = -1;
  }
}

// The pipes to a running server: ours are non-blocking and close-on-exec.
struct ServerPipes {
  pid_t pid = -1;
  int to_stdin = -1, from_stdout = -1, from_stderr = -1;  // from_stderr: Capture only
};

// Starts argv as a server: stdin and stdout pipes, stderr as `where` says, nothing else of
// the host's fds (where the C library can close them: glibc 2.34+), its own process group,
// default signal handling and an empty signal mask. False and *why if it cannot run.
inline bool spawn_server(const std::vector<std::string>& command, ServerStderr where,
                         ServerPipes* out, std::string* why) {
  int in[2] = {-1, -1}, stdout_pipe[2] = {-1, -1}, stderr_pipe[2] = {-1, -1};
  auto close_all = [&] {
    for (int* fd :
         {&in[0], &in[1], &stdout_pipe[0], &stdout_pipe[1], &stderr_pipe[0], &stderr_pipe[1]})
      close_fd(fd);
  };
  if (!own_pipe(in) || !own_pipe(stdout_pipe) ||
      (where == ServerStderr::Capture && !own_pipe(stderr_pipe))) {
    *why = std::string("cannot create a pipe: ") + std::strerror(errno);
    close_all();
    return false;
  }
  std::vector<std::string> args = command;
  args.push_back("--ready-line");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(&a[0]);
  argv.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, stdout_pipe[1], STDOUT_FILENO);
  if (where == ServerStderr::Capture)
    posix_spawn_file_actions_adddup2(&actions, stderr_pipe[1], STDERR_FILENO);
  else if (where == ServerStderr::Discard)
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);  // host fds without O_CLOEXEC
#endif
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t defaults, empty;
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM})
    sigaddset(&defaults, sig);
  sigemptyset(&empty);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  posix_spawnattr_setsigmask(&attr, &empty);
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr,
                           POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0], &actions, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close_fd(&in[0]);
  close_fd(&stdout_pipe[1]);
  close_fd(&stderr_pipe[1]);
  if (rc != 0) {
    *why = "cannot run '" + command[0] + "': " + std::strerror(rc);
    close_all();
    return false;
  }
  for (int fd : {in[1], stdout_pipe[0], stderr_pipe[0]})
    if (fd >= 0) fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  out->pid = pid;
  out->to_stdin = in[1];
  out->from_stdout = stdout_pipe[0];
  out->from_stderr = stderr_pipe[0];
  return true;
}

}  // namespace detail

class InferenceEngine {
 public:
  std::function<void(const std::string&)> on_restart;  // called with the cause, at each restart

  // Starts the server and waits (up to startup_timeout) for its ready line; throws
  // std::runtime_error("could not start the ovcast server: ...") if it cannot.
  explicit InferenceEngine(Options options) : options_(std::move(options)) {
    if (options_.command.empty()) throw std::invalid_argument("Options::command is empty");
    start(Clock::now());
    while (state_ == State::Starting) {
      io(detail::millis_until(ready_deadline_, Clock::now()));
      if (state_ == State::Starting && Clock::now() >= ready_deadline_) not_ready();
    }
    if (state_ != State::Ready) {
      std::string cause = stats_.last_fault;
      if (!stderr_tail_.empty()) cause += "; its stderr ended with: " + stderr_tail_;
      stop(std::chrono::milliseconds(0));
      throw std::runtime_error("could not start the ovcast server: " + cause);
    }
  }

  ~InferenceEngine() {
    try {
      stop(options_.stop_grace);
    } catch (...) {  // a destructor must not throw; the server is killed by then
    }
  }
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
    request.timeout = detail::clamp_wait(timeout);
    request.deadline = detail::after(Clock::now(), timeout);
    Result result;
    if (!detail::check_window(window, info_, &result.message) ||
        !detail::encode_request(request.id, timestamp_ms, window, &request.line, &result.message,
                                inputs, options_.encoding)) {
      result.error = Error::InvalidInput;
      finish(ticket, std::move(result));
    } else if (stopped_ || gave_up_) {
      finish(ticket, unavailable_result());
    } else {
      queue_.push_back(std::move(request));
      maintain();  // send what the pipe takes now, collect answers
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
  // The current server (and its process group id); -1 while there is none: never pass it to
  // kill() without checking it is > 0.
  pid_t pid() const { return pid_; }
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

  // Close the server's stdin so it answers what it has and exits; kill it (its process
  // group) if it has not within grace. Requests still pending end as Unavailable; the
  // engine serves no more.
  void stop(std::chrono::milliseconds grace) {
    stopped_ = true;
    detail::close_fd(&to_child_);
    const auto deadline = detail::after(Clock::now(), grace);
    while (pid_ > 0 && !detail::exit_of(pid_)) {
      const auto now = Clock::now();
      if (now >= deadline) break;
      discard_output(std::min(detail::millis_until(deadline, now), 20));
    }
    end_server();
    state_ = State::Down;
    for (auto& request : queue_)
      if (!request.abandoned) finish(request.ticket, unavailable_result());
    queue_.clear();
    reap_zombies(std::chrono::milliseconds(100));
  }
  void stop() { stop(options_.stop_grace); }

 private:
  enum class State { Down, Starting, Ready };
  enum class Fault { StartFailure, Exit, Hung, Protocol };
  static constexpr size_t kReadChunk = 64 * 1024;
  static constexpr size_t kStderrTail = 2048;  // bytes of stderr kept for a start failure

  struct Pending {
    Ticket ticket = 0;
    std::string id;
    std::string line;
    std::chrono::milliseconds timeout{0};
    Clock::time_point deadline;
    size_t written = 0;         // bytes of line written to the current server
    Clock::time_point sent_at;  // when its first byte went to the current server
    int sends = 0;              // servers that received the whole line
    int strikes = 0;            // servers that failed while working on it
    bool abandoned = false;     // timed out; kept only to finish writing it or to drop its answer
    bool restarted = false;
  };

  Options options_;
  State state_ = State::Down;
  pid_t pid_ = -1;  // the server; it leads its own process group
  int to_child_ = -1;
  int from_child_ = -1;
  int stderr_from_child_ = -1;
  std::string inbuf_;   // stdout bytes not yet taken as lines
  size_t scanned_ = 0;  // inbuf_ holds no '\n' before this offset
  std::string errbuf_;  // a partial stderr line
  std::string stderr_tail_;
  std::chrono::milliseconds startup_timeout_{0};  // the one the starting server was given
  std::chrono::milliseconds slowest_start_{0};    // the longest a server took to be ready
  bool ever_ready_ = false;
  int failed_starts_in_a_row_ = 0;
  Clock::time_point started_at_, ready_deadline_, next_start_at_;
  Clock::time_point last_answer_at_;  // the current server's latest answer (or its ready line)
  Ticket newest_answered_ = 0;        // the newest request it answered (tickets grow in send
                                      // order): older ones still open had their answer lost
  bool gave_up_ = false;
  bool stopped_ = false;
  std::string restart_cause_;
  std::deque<Pending> queue_;
  std::unordered_map<Ticket, Result> done_;
  std::vector<pid_t> zombies_;
  Ticket next_ticket_ = 1;
  ServerInfo info_;
  Stats stats_;

  bool is_pending(Ticket ticket) const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [ticket](const Pending& p) { return p.ticket == ticket && !p.abandoned; });
  }
  // The request the current server is working on: the oldest it was sent after the newest
  // it answered (answers come in order; one older than that had its answer lost).
  const Pending* working_on() const { return oldest_unanswered(queue_, newest_answered_); }
  Pending* working_on() { return oldest_unanswered(queue_, newest_answered_); }
  template <typename Queue>
  static auto oldest_unanswered(Queue& queue, Ticket newest) -> decltype(&queue.front()) {
    for (auto& request : queue)
      if (request.written > 0 && request.ticket > newest) return &request;
    return nullptr;
  }
  // When the server counts as hung if it answers nothing before: hang_timeout after the
  // later of its last answer and the sending of the request it is working on.
  std::optional<Clock::time_point> hang_due() const {
    const Pending* request = working_on();
    if (state_ != State::Ready || !options_.restart_hung || !request) return std::nullopt;
    return detail::after(std::max(last_answer_at_, request->sent_at), options_.hang_timeout);
  }
  bool has_unwritten() const {
    return std::any_of(queue_.begin(), queue_.end(),
                       [](const Pending& p) { return p.written < p.line.size(); });
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

  // Calls a user callback; what it throws is counted, not passed on: a failing log sink must
  // not stop the restarts it reports.
  void notify(const std::function<void(const std::string&)>& callback, const std::string& text) {
    if (!callback) return;
    try {
      callback(text);
    } catch (const std::exception& e) {
      ++stats_.callback_errors;
      stats_.last_callback_error = e.what();
    } catch (...) {
      ++stats_.callback_errors;
      stats_.last_callback_error = "a non-standard exception";
    }
  }

  // Everything that is due now, without waiting: first what the server has already said,
  // then deadlines, hang, start, writes.
  void maintain() {
    reap_zombies(std::chrono::milliseconds(0));
    if (state_ != State::Down) read_output();
    const auto now = Clock::now();
    if (state_ == State::Starting && now >= ready_deadline_) not_ready();
    expire(now);
    check_hung(now);
    if (state_ == State::Down && !stopped_ && !gave_up_ && now >= next_start_at_) start(now);
    write_pending();
  }

  // The next moment something is due: a deadline, a start, a startup timeout, a hang.
  Clock::time_point next_wake() const {
    Clock::time_point wake = Clock::time_point::max();
    for (const auto& request : queue_)
      if (!request.abandoned) wake = std::min(wake, request.deadline);
    if (state_ == State::Starting) wake = std::min(wake, ready_deadline_);
    if (state_ == State::Down && !stopped_ && !gave_up_) wake = std::min(wake, next_start_at_);
    if (auto hang = hang_due()) wake = std::min(wake, *hang);
    return wake;
  }

  void expire(Clock::time_point now) {
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
          it->written == it->line.size() ? "no answer within " + detail::ms_text(it->timeout)
          : it->timeout.count() == 0
              ? std::string("a 0 ms deadline leaves no time to send it")
              : "the server did not read the request within " + detail::ms_text(it->timeout);
      finish(it->ticket, std::move(result));
      if (it->written > 0) {  // part of it is in the pipe: keep the stream in step
        it->abandoned = true;
        ++it;
      } else {
        it = queue_.erase(it);
      }
    }
  }

  // Hung: it had a request to answer and answered nothing for hang_timeout. A request's own
  // deadline plays no part: one with a tight deadline times out alone.
  void check_hung(Clock::time_point now) {
    const auto due = hang_due();
    if (!due || now < *due) return;
    fault(Fault::Hung, "no answer for " +
                           detail::ms_text(detail::clamp_wait(options_.hang_timeout)) +
                           " while it had a request to answer: killed as hung");
  }

  void not_ready() {
    fault(Fault::StartFailure, "not ready within " + detail::ms_text(startup_timeout_));
  }

  // The first server (or any before one was ready) gets startup_timeout; later ones 3 x the
  // slowest start seen + 1 s, doubled for each start in a row that failed, capped there.
  std::chrono::milliseconds next_startup_timeout() const {
    const auto limit = detail::clamp_wait(options_.startup_timeout);
    if (!ever_ready_) return limit;
    auto fitted = 3 * slowest_start_ + std::chrono::milliseconds(1000);
    for (int k = 0; k < failed_starts_in_a_row_ && fitted < limit; ++k) fitted *= 2;
    return std::min(fitted, limit);
  }

  void start(Clock::time_point now) {
    if (stats_.starts > 0) {
      ++stats_.restarts;
      std::string why = restart_cause_ + "; restart " + std::to_string(stats_.restarts);
      auto waited = detail::backoff_delay(stats_.consecutive_failures, options_.backoff_initial,
                                          options_.backoff_max);
      if (waited.count() > 0) why += " after " + detail::ms_text(waited) + " backoff";
      notify(on_restart, why);
    }
    ++stats_.starts;
    detail::ServerPipes pipes;
    std::string why;
    if (!detail::spawn_server(options_.command, options_.server_stderr, &pipes, &why)) {
      fault(Fault::StartFailure, why);
      return;
    }
    pid_ = pipes.pid;
    to_child_ = pipes.to_stdin;
    from_child_ = pipes.from_stdout;
    stderr_from_child_ = pipes.from_stderr;
    stderr_tail_.clear();
    state_ = State::Starting;
    started_at_ = now;
    startup_timeout_ = next_startup_timeout();
    ready_deadline_ = detail::after(now, startup_timeout_);
  }

  // Kills the server's process group (before reaping it, so the id cannot have been reused),
  // reaps it or keeps it to reap later, and closes its pipes.
  void end_server() {
    if (pid_ > 0) {
      detail::kill_server(pid_);
      if (!detail::try_reap(pid_)) zombies_.push_back(pid_);
      pid_ = -1;
    }
    if (stderr_from_child_ >= 0) read_stderr();  // its last words
    if (!errbuf_.empty()) stderr_line(std::exchange(errbuf_, std::string()));
    detail::close_fd(&to_child_);
    detail::close_fd(&from_child_);
    detail::close_fd(&stderr_from_child_);
    inbuf_.clear();
    scanned_ = 0;
  }

  // The server failed: end it, schedule its replacement, put its requests back in line.
  void fault(Fault kind, const std::string& cause) {
    const bool was_starting = state_ == State::Starting;
    if (state_ == State::Ready) {  // charge the request it was working on, and only that one
      if (Pending* request = working_on()) ++request->strikes;
    }
    end_server();
    state_ = State::Down;
    if (kind == Fault::StartFailure || was_starting) {
      ++stats_.start_failures;
      ++failed_starts_in_a_row_;
    } else if (kind == Fault::Exit) {
      ++stats_.exits;
    } else if (kind == Fault::Hung) {
      ++stats_.hung_kills;
    } else {
      ++stats_.protocol_kills;
    }
    ++stats_.consecutive_failures;
    stats_.last_fault = cause;
    restart_cause_ = cause;
    next_start_at_ = detail::after(
        Clock::now(), detail::backoff_delay(stats_.consecutive_failures, options_.backoff_initial,
                                            options_.backoff_max));
    if (options_.max_restarts >= 0 && stats_.consecutive_failures > options_.max_restarts)
      gave_up_ = true;
    for (auto it = queue_.begin(); it != queue_.end();) {
      if (it->abandoned) {
        it = queue_.erase(it);
        continue;
      }
      it->restarted = true;
      it->written = 0;
      if (it->strikes >= 2 || gave_up_) {
        Result result = gave_up_ ? unavailable_result() : Result();
        if (!gave_up_) {
          result.error = Error::ChildDied;
          result.message =
              "two servers in turn failed while working on this request (last: " + cause + ")";
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
    std::string what = "closed its stdout";
    for (int k = 0; k < 20 && pid_ > 0; ++k) {
      if (auto exit = detail::exit_of(pid_)) {
        what = *exit;
        break;
      }
      usleep(1000);
    }
    if (state_ == State::Starting)
      fault(Fault::StartFailure, "server " + what + " before it was ready");
    else
      fault(Fault::Exit, "server " + what);
  }

  void reap_zombies(std::chrono::milliseconds patience) {
    const auto until = detail::after(Clock::now(), patience);
    while (true) {
      zombies_.erase(std::remove_if(zombies_.begin(), zombies_.end(), detail::try_reap),
                     zombies_.end());
      if (zombies_.empty() || Clock::now() >= until) return;
      usleep(2000);
    }
  }

  // Writes whatever the pipe takes now, in order; never blocks, never raises SIGPIPE.
  void write_pending() {
    if (state_ != State::Ready || to_child_ < 0 || !has_unwritten()) return;
    bool closed = false;
    {
      detail::SigpipeGuard guard;
      for (auto& request : queue_) {
        if (request.written == request.line.size()) continue;
        while (!closed && request.written < request.line.size()) {
          ssize_t n = ::write(to_child_, request.line.data() + request.written,
                              request.line.size() - request.written);
          if (n > 0) {
            if (request.written == 0) request.sent_at = Clock::now();
            request.written += static_cast<size_t>(n);
          } else if (n < 0 && errno == EINTR) {
            continue;
          } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
          } else {
            if (errno == EPIPE) guard.broke();
            closed = true;
          }
        }
        if (closed || request.written < request.line.size()) break;
        if (request.sends++ > 0) ++stats_.resent;
      }
    }
    if (closed) stdin_closed();
  }

  // The server closed its stdin (a write failed, or poll() says so): read what it answered
  // before, then replace it (if its stdout ended too, that already did).
  void stdin_closed() {
    detail::close_fd(&to_child_);
    read_stdout();
    if (state_ == State::Ready) fault(Fault::Exit, "server closed its stdin");
  }

  // Reads and drops the server's output while it shuts down (stop()).
  void discard_output(int timeout_ms) {
    pollfd fds[2];
    nfds_t count = 0;
    for (int fd : {from_child_, stderr_from_child_})
      if (fd >= 0) fds[count++] = pollfd{fd, POLLIN, 0};
    if (poll(count ? fds : nullptr, count, timeout_ms) <= 0) return;
    if (from_child_ >= 0) {
      char chunk[kReadChunk];
      ssize_t n = ::read(from_child_, chunk, sizeof chunk);
      if (n == 0) detail::close_fd(&from_child_);
    }
    if (stderr_from_child_ >= 0) read_stderr();
  }

  // Waits up to timeout_ms for the server's pipes, then moves what they have. Its stdin is
  // watched even with nothing to write: POLLERR there says it closed it.
  void io(int timeout_ms) {
    pollfd fds[3];
    nfds_t count = 0;
    if (from_child_ >= 0 && state_ != State::Down) fds[count++] = pollfd{from_child_, POLLIN, 0};
    if (stderr_from_child_ >= 0) fds[count++] = pollfd{stderr_from_child_, POLLIN, 0};
    const bool watch_stdin = to_child_ >= 0 && state_ == State::Ready;
    if (watch_stdin)
      fds[count++] = pollfd{to_child_, static_cast<short>(has_unwritten() ? POLLOUT : 0), 0};
    int ready = poll(count ? fds : nullptr, count, timeout_ms);
    if (ready <= 0) return;  // timeout or EINTR: the caller re-checks what is due
    if (watch_stdin && (fds[count - 1].revents & (POLLERR | POLLHUP)) && !has_unwritten())
      return stdin_closed();
    pump();
  }

  // Moves what the pipes hold now, without waiting.
  void pump() {
    read_output();
    write_pending();
  }

  void read_output() {
    if (stderr_from_child_ >= 0) read_stderr();
    read_stdout();
  }

  // The line cap: Options::max_line_bytes, or 1 MiB, or room for the model's forecast.
  size_t line_cap() const {
    if (options_.max_line_bytes > 0) return options_.max_line_bytes;
    const size_t values = static_cast<size_t>(info_.prediction_length) *
                          static_cast<size_t>(std::max(info_.num_channels, expected_channels()));
    return std::max<size_t>(size_t{1} << 20, 64 * 1024 + 48 * values);
  }

  // The channels an answer must have; 0: any from 1 to num_channels.
  int expected_channels() const {
    if (options_.output_channels > 0) return options_.output_channels;
    const int selected = detail::channels_in_command(options_.command);
    if (selected > 0) return selected;
    return static_cast<int>(info_.forecast_channel_names.size());
  }

  // Reads stdout until the pipe is empty (or a budget is spent: a flood cannot hold a call
  // past its deadline) and handles each complete line.
  void read_stdout() {
    size_t budget = line_cap() + 4 * kReadChunk;
    char chunk[kReadChunk];
    while (from_child_ >= 0 && state_ != State::Down) {
      ssize_t n = ::read(from_child_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        end_of_stdout();
        return;
      }
      inbuf_.append(chunk, static_cast<size_t>(n));
      take_lines();
      if (budget <= static_cast<size_t>(n)) return;
      budget -= static_cast<size_t>(n);
    }
  }

  // Handles the complete lines in inbuf_; a line over the cap is a protocol fault.
  void take_lines() {
    const size_t cap = line_cap();
    size_t start = 0;
    while (true) {
      const void* found = std::memchr(inbuf_.data() + scanned_, '\n', inbuf_.size() - scanned_);
      if (!found) {
        scanned_ = inbuf_.size();
        break;
      }
      const size_t end = static_cast<size_t>(static_cast<const char*>(found) - inbuf_.data());
      if (end - start > cap) return too_long(cap);
      const size_t next = end + 1;
      handle_line(std::string_view(inbuf_.data() + start, end - start));
      if (state_ == State::Down) return;  // it ended the server, whose buffer is cleared
      start = scanned_ = next;
    }
    inbuf_.erase(0, start);
    scanned_ -= start;
    if (inbuf_.size() > cap) return too_long(cap);
    if (inbuf_.capacity() > 4 * kReadChunk && inbuf_.size() < kReadChunk)
      inbuf_.shrink_to_fit();  // what a long line took is given back
  }

  void too_long(size_t cap) {
    const bool starting = state_ == State::Starting;
    fault(starting ? Fault::StartFailure : Fault::Protocol,
          "server wrote a line longer than " + std::to_string(cap) + " bytes to stdout" +
              (starting ? " before it was ready" : ""));
  }

  // EOF on stdout: an unterminated last line is still a line, then the server is gone.
  void end_of_stdout() {
    if (!inbuf_.empty() && inbuf_.size() <= line_cap()) {
      std::string last = std::exchange(inbuf_, std::string());
      scanned_ = 0;
      handle_line(last);
    }
    if (state_ != State::Down) stdout_closed();
  }

  void read_stderr() {
    char chunk[kReadChunk];
    for (size_t budget = 16 * kReadChunk; stderr_from_child_ >= 0;) {
      ssize_t n = ::read(stderr_from_child_, chunk, sizeof chunk);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {  // it closed its stderr; its stdout tells when it is gone
        detail::close_fd(&stderr_from_child_);
        return;
      }
      errbuf_.append(chunk, static_cast<size_t>(n));
      size_t start = 0;
      for (size_t end; (end = errbuf_.find('\n', start)) != std::string::npos; start = end + 1)
        stderr_line(errbuf_.substr(start, end - start));
      errbuf_.erase(0, start);
      if (errbuf_.size() > kReadChunk) stderr_line(std::exchange(errbuf_, std::string()));
      if (budget <= static_cast<size_t>(n)) return;
      budget -= static_cast<size_t>(n);
    }
  }

  void stderr_line(const std::string& line) {
    ++stats_.stderr_lines;
    stderr_tail_ += line;
    stderr_tail_ += '\n';
    if (stderr_tail_.size() > kStderrTail) stderr_tail_.erase(0, stderr_tail_.size() - kStderrTail);
    notify(options_.on_server_stderr, line);
  }

  void handle_line(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (state_ == State::Starting) return handle_ready_line(line);
    const size_t first = line.find_first_not_of(" \t");
    detail::Json json;
    const detail::AnswerShape shape{info_.prediction_length, expected_channels(),
                                    info_.num_channels};
    if (first == std::string_view::npos || line[first] != '{' ||
        !detail::parse_json(line, &json, detail::answer_limits(shape)) ||
        !detail::is_answer(json)) {
      ++stats_.garbage_lines;
      return;
    }
    // Answers come in order from our server, but any order is matched: by request_id, or
    // (no id: a line it could not read) the oldest it had been sent.
    std::string id;
    const detail::AnswerId named = detail::answer_id(json, &id);
    auto target = std::find_if(queue_.begin(), queue_.end(), [&](const Pending& p) {
      return p.written == p.line.size() && (named == detail::AnswerId::Null || p.id == id);
    });
    if (named == detail::AnswerId::Bad || target == queue_.end()) {
      ++stats_.garbage_lines;  // a duplicate, or not an answer to any request of ours
      return;
    }
    last_answer_at_ = Clock::now();
    newest_answered_ = std::max(newest_answered_, target->ticket);
    stats_.consecutive_failures = 0;  // it answers: healthy
    if (target->abandoned) {
      ++stats_.late_answers;
    } else {
      Result result;
      result.restarted = target->restarted;
      detail::decode_answer(json, shape, &result);
      finish(target->ticket, std::move(result));
    }
    queue_.erase(target);
  }

  void handle_ready_line(std::string_view line) {
    std::string problem;
    switch (detail::decode_ready(line, &info_, &problem)) {
      case detail::ReadyLine::No: ++stats_.garbage_lines; return;
      case detail::ReadyLine::Unusable: return fault(Fault::StartFailure, problem);
      case detail::ReadyLine::Yes: break;
    }
    const auto now = Clock::now();
    state_ = State::Ready;
    slowest_start_ = std::max(
        slowest_start_, std::chrono::duration_cast<std::chrono::milliseconds>(now - started_at_));
    ever_ready_ = true;
    failed_starts_in_a_row_ = 0;
    last_answer_at_ = now;
    newest_answered_ = 0;
  }
};

}  // namespace ovcast
