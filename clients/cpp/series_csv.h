// A series from a CSV file, and the model's window from it, the way `ovcast predict --input
// FILE.csv` reads them (ovcast.runtime.series: read_series, Series.window_for). C++17,
// header-only.
//
//   ovcast::Series series = ovcast::read_series_csv("ETTh1.csv");
//   std::vector<std::string> notes;   // what was done: rows dropped, columns picked by name
//   ovcast::Window window = series.window_for(engine.server().context_length,
//                                             engine.server().channel_names, &notes);
//
// The file is read as Python's csv module reads it (series_detail::csv_records) and every
// number as Python's float() reads it (series_detail::to_double): quoted cells, CRLF or CR
// line ends, blank lines, Unicode digits and spaces, 1_000 are fine; a file that is not
// UTF-8 is refused. The first row is a header when a cell after its first is not a number.
// The timestamp column is the one the header names date, datetime, time, timestamp or ts,
// else the first column when its first value is not a number. Problems throw
// std::runtime_error naming the file, the line and what was expected.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "inference_engine.h"

namespace ovcast {
namespace series_detail {

// Text as Python 3.11 reads it: strict UTF-8, str.isspace(), unicodedata.decimal().

// The offset of the first byte Python's strict UTF-8 decoder refuses; npos if none.
inline size_t utf8_error(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    const unsigned char b = s[i];
    size_t length = b < 0x80                 ? 1
                    : b >= 0xC2 && b <= 0xDF ? 2
                    : b >= 0xE0 && b <= 0xEF ? 3
                    : b >= 0xF0 && b <= 0xF4 ? 4
                                             : 0;
    if (length == 0 || i + length > n) return i;
    for (size_t k = 1; k < length; ++k)
      if ((s[i + k] & 0xC0) != 0x80) return i;
    const unsigned char second = length > 1 ? s[i + 1] : 0;
    if ((b == 0xE0 && second < 0xA0) || (b == 0xED && second >= 0xA0) ||  // overlong, surrogate
        (b == 0xF0 && second < 0x90) || (b == 0xF4 && second >= 0x90))    // overlong, > U+10FFFF
      return i;
    i += length;
  }
  return std::string_view::npos;
}

// The code point at text[*i] (valid UTF-8), moving *i past it.
inline char32_t next_code_point(std::string_view text, size_t* i) {
  const auto b = static_cast<unsigned char>(text[(*i)++]);
  if (b < 0x80) return b;
  const int extra = b >= 0xF0 ? 3 : b >= 0xE0 ? 2 : 1;
  char32_t c = b & (0x3F >> extra);
  for (int k = 0; k < extra; ++k) c = (c << 6) | (static_cast<unsigned char>(text[(*i)++]) & 0x3F);
  return c;
}

// str.isspace()
inline bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

// unicodedata.decimal(c, -1) (Unicode 14, Python 3.11): every decimal digit is in a run of
// ten from one of these zeros.
inline int decimal_value(char32_t c) {
  static constexpr char32_t kZeros[] = {
      0x30,    0x660,   0x6f0,   0x7c0,   0x966,   0x9e6,   0xa66,   0xae6,   0xb66,   0xbe6,
      0xc66,   0xce6,   0xd66,   0xde6,   0xe50,   0xed0,   0xf20,   0x1040,  0x1090,  0x17e0,
      0x1810,  0x1946,  0x19d0,  0x1a80,  0x1a90,  0x1b50,  0x1bb0,  0x1c40,  0x1c50,  0xa620,
      0xa8d0,  0xa900,  0xa9d0,  0xa9f0,  0xaa50,  0xabf0,  0xff10,  0x104a0, 0x10d30, 0x11066,
      0x110f0, 0x11136, 0x111d0, 0x112f0, 0x11450, 0x114d0, 0x11650, 0x116c0, 0x11730, 0x118e0,
      0x11950, 0x11c50, 0x11d50, 0x11da0, 0x16a60, 0x16ac0, 0x16b50, 0x1d7ce, 0x1d7d8, 0x1d7e2,
      0x1d7ec, 0x1d7f6, 0x1e140, 0x1e2f0, 0x1e950, 0x1fbf0};
  for (char32_t zero : kZeros)
    if (c >= zero && c < zero + 10) return static_cast<int>(c - zero);
  return -1;
}

inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Python's float(text): Unicode whitespace around, Unicode decimal digits, '_' between
// digits, a sign, inf/infinity/nan in any case; beyond a double's range +-inf or 0. False
// where float() raises ValueError (no hex, no '+-5', no '1_', no NUL, no other letters).
inline bool to_double(std::string_view text, double* value) {
  std::string ascii;  // what float() parses after mapping digits and spaces to ASCII
  for (size_t i = 0; i < text.size();) {
    const char32_t c = next_code_point(text, &i);
    if (c < 0x7F) {
      ascii += static_cast<char>(c);
    } else if (is_space(c)) {
      ascii += ' ';
    } else {
      const int digit = decimal_value(c);
      if (digit < 0) return false;
      ascii += static_cast<char>('0' + digit);
    }
  }
  if (ascii.find('\0') != std::string::npos) return false;
  if (ascii.find('_') != std::string::npos) {
    std::string kept;
    char previous = '\0';
    for (char c : ascii) {
      if (c == '_' ? !is_digit(previous) : previous == '_' && !is_digit(c)) return false;
      if (c != '_') kept += c;
      previous = c;
    }
    if (previous == '_') return false;
    ascii = std::move(kept);
  }
  const char* spaces = " \t\n\v\f\r";
  const size_t begin = ascii.find_first_not_of(spaces);
  if (begin == std::string::npos) return false;
  std::string_view number(ascii);
  number = number.substr(begin, ascii.find_last_not_of(spaces) - begin + 1);
  const bool negative = number[0] == '-';
  if (number[0] == '-' || number[0] == '+') number.remove_prefix(1);
  std::string word;
  for (char c : number) word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (word == "inf" || word == "infinity" || word == "nan") {
    *value = word == "nan" ? std::nan("") : HUGE_VAL;
    if (negative) *value = -*value;
    return true;
  }
  // digits [. digits] (one digit at least) [e [sign] digits]
  size_t i = 0, digits = 0;
  while (i < number.size() && is_digit(number[i])) ++i, ++digits;
  if (i < number.size() && number[i] == '.')
    for (++i; i < number.size() && is_digit(number[i]); ++i) ++digits;
  if (digits == 0) return false;
  if (i < number.size() && (number[i] == 'e' || number[i] == 'E')) {
    size_t exponent = i + 1;
    if (exponent < number.size() && (number[exponent] == '+' || number[exponent] == '-'))
      ++exponent;
    if (exponent == number.size() || !is_digit(number[exponent])) return false;
    for (i = exponent; i < number.size() && is_digit(number[i]);) ++i;
  }
  if (i != number.size() ||
      !detail::parse_number(number.data(), number.data() + number.size(), value))
    return false;
  if (negative) *value = -*value;
  return true;
}

inline bool is_number(std::string_view text) {
  double ignored = 0.0;
  return to_double(text, &ignored);
}

// str.strip()
inline std::string strip(std::string_view text) {
  size_t begin = 0, end = text.size();
  for (size_t i = 0; i < text.size();) {
    const size_t at = i;
    if (!is_space(next_code_point(text, &i))) {
      begin = at;
      break;
    }
    begin = i;
  }
  for (size_t i = begin; i < text.size();) {
    if (!is_space(next_code_point(text, &i))) end = i;
  }
  return begin >= end ? std::string() : std::string(text.substr(begin, end - begin));
}

inline std::string lower(std::string text) {  // ASCII: what the timestamp names need
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

struct Record {
  int line = 0;  // the file line it starts on
  std::vector<std::string> cells;
};

// The records of Python's csv.reader (excel dialect) over a file opened with newline="":
// lines end at \n, \r\n or a lone \r; quoted cells may hold commas, line ends and "" for a
// quote; a quote inside an unquoted cell is a character; empty records are dropped (as
// `if r`); a cell over csv.field_size_limit() (131072 characters) is an error.
inline std::vector<Record> csv_records(std::string_view text, const std::string& path) {
  enum State { StartRecord, StartField, InField, InQuoted, QuoteInQuoted, EatLineEnd };
  constexpr int kEndOfLine = -1;
  constexpr size_t kFieldLimit = 131072;
  std::vector<Record> records;
  std::vector<std::string> cells;
  std::string cell;
  size_t cell_chars = 0;
  State state = StartRecord;
  int line = 1, record_line = 1;
  auto save = [&] {
    cells.push_back(std::move(cell));
    cell.clear();
    cell_chars = 0;
  };
  auto add = [&](char c) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80 && cell_chars++ >= kFieldLimit)
      throw std::runtime_error(path + " line " + std::to_string(line) +
                               ": a field larger than the field limit (131072)");
    cell += c;
  };
  auto end_record = [&](int c) {
    save();
    state = c == kEndOfLine ? StartRecord : EatLineEnd;
  };
  auto process = [&](int c) {
    const bool line_end = c == '\n' || c == '\r' || c == kEndOfLine;
    switch (state) {
      case StartRecord:
        if (c == kEndOfLine) break;
        if (line_end) {
          state = EatLineEnd;
          break;
        }
        state = StartField;
        [[fallthrough]];
      case StartField:
        if (line_end)
          end_record(c);
        else if (c == '"')
          state = InQuoted;
        else if (c == ',')
          save();
        else {
          add(static_cast<char>(c));
          state = InField;
        }
        break;
      case InField:
        if (line_end)
          end_record(c);
        else if (c == ',') {
          save();
          state = StartField;
        } else
          add(static_cast<char>(c));
        break;
      case InQuoted:
        if (c == '"')
          state = QuoteInQuoted;
        else if (c != kEndOfLine)
          add(static_cast<char>(c));
        break;
      case QuoteInQuoted:
        if (c == '"') {
          add('"');
          state = InQuoted;
        } else if (c == ',') {
          save();
          state = StartField;
        } else if (line_end) {
          end_record(c);
        } else {
          add(static_cast<char>(c));
          state = InField;
        }
        break;
      case EatLineEnd:
        if (c == kEndOfLine) state = StartRecord;
        break;
    }
  };
  for (size_t i = 0; i < text.size(); ++line) {
    size_t end = text.find_first_of("\r\n", i);
    end = end == std::string_view::npos                                         ? text.size()
          : text[end] == '\r' && end + 1 < text.size() && text[end + 1] == '\n' ? end + 2
                                                                                : end + 1;
    if (state == StartRecord) record_line = line;
    for (; i < end; ++i) process(static_cast<unsigned char>(text[i]));
    process(kEndOfLine);
    if (state == StartRecord && !cells.empty()) records.push_back({record_line, std::move(cells)});
    if (state == StartRecord) cells.clear();
  }
  if (state == InQuoted) {  // the file ended inside quotes: Python keeps what it read
    save();
    records.push_back({record_line, std::move(cells)});
  }
  return records;
}

inline std::string list(const std::vector<std::string>& names) {
  std::string out = "[";
  for (size_t i = 0; i < names.size(); ++i) out += (i ? ", '" : "'") + names[i] + "'";
  return out + "]";
}

}  // namespace series_detail

struct Series {
  Window values;                        // [time][value column]
  std::vector<std::string> columns;     // the value columns' header names; empty: no header
  std::vector<std::string> timestamps;  // the timestamp column's cells; empty: none
  std::string timestamp_name;           // its header name

  // The model's window. Channels are taken by name when the header holds every model channel
  // (any order, extra columns ignored), else by position when the count matches; a series
  // longer than the context gives its last context_length rows. *notes (if given) says what
  // was done; a series that cannot be made a window throws std::runtime_error saying why.
  Window window_for(int context_length, const std::vector<std::string>& channel_names,
                    std::vector<std::string>* notes = nullptr) const {
    std::vector<std::string> said;
    Window window = channels(channel_names, &said);
    const size_t rows = window.size(), context = static_cast<size_t>(context_length);
    const std::string expected =
        "[" + std::to_string(context_length) + ", " + std::to_string(channel_names.size()) + "]";
    if (rows > context) {
      said.push_back("using the last " + std::to_string(context) + " of " + std::to_string(rows) +
                     " rows");
      window.erase(window.begin(), window.end() - static_cast<long>(context));
    } else if (rows != context) {
      throw std::runtime_error("the input has " + std::to_string(rows) + " rows; the model needs " +
                               std::to_string(context) + ", expected " + expected +
                               " (a longer series is cut to its last " + std::to_string(context) +
                               " rows)");
    }
    if (notes) notes->insert(notes->end(), said.begin(), said.end());
    return window;
  }

 private:
  Window channels(const std::vector<std::string>& names, std::vector<std::string>* notes) const {
    const size_t width = values.empty() ? 0 : values[0].size();
    auto has = [this](const std::string& name) {
      return std::find(columns.begin(), columns.end(), name) != columns.end();
    };
    if (!columns.empty() && std::all_of(names.begin(), names.end(), has) && columns != names) {
      std::vector<size_t> picked;
      for (const auto& name : names)
        picked.push_back(
            static_cast<size_t>(std::find(columns.begin(), columns.end(), name) - columns.begin()));
      std::vector<std::string> extra;
      for (const auto& column : columns)
        if (std::find(names.begin(), names.end(), column) == names.end()) extra.push_back(column);
      notes->push_back("channels taken by name" +
                       (extra.empty() ? std::string("; reordered to the model's order")
                                      : "; ignored column(s) " + series_detail::list(extra)));
      Window picked_values;
      for (const auto& row : values) {
        std::vector<float> out;
        for (size_t index : picked) out.push_back(row[index]);
        picked_values.push_back(std::move(out));
      }
      return picked_values;
    }
    if (width == names.size()) {
      bool same = columns.size() == names.size();
      for (size_t i = 0; same && i < names.size(); ++i)
        same = series_detail::lower(columns[i]) == series_detail::lower(names[i]);
      if (!columns.empty() && !same)
        notes->push_back("columns " + series_detail::list(columns) + " taken in order as the " +
                         "model's " + series_detail::list(names));
      return values;
    }
    std::string have = columns.empty() ? std::to_string(width) + " columns"
                                       : "columns " + series_detail::list(columns);
    throw std::runtime_error(
        "the input has " + have + "; the model takes " + std::to_string(names.size()) +
        " channels " + series_detail::list(names) + " (by name, in any order, or by position)");
  }
};

inline Series read_series_csv(const std::string& path) {
  using namespace series_detail;
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string expected = "; expected a row per time step, a column per channel";
  const size_t bad = utf8_error(text);
  if (bad != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw std::runtime_error(path + " is not UTF-8 text (byte " + byte + " at offset " +
                             std::to_string(bad) + "); save it as UTF-8" + expected);
  }
  std::vector<Record> records = csv_records(text, path);
  if (records.empty()) throw std::runtime_error(path + " is empty" + expected);
  Series series;
  const auto& first = records[0].cells;
  bool header = !is_number(first.back());
  for (size_t i = 1; i < first.size(); ++i) header = header || !is_number(first[i]);
  std::vector<std::string> names;
  if (header) {
    for (const auto& cell : first) names.push_back(strip(cell));
    records.erase(records.begin());
  }
  if (records.empty()) throw std::runtime_error(path + " has a header but no data rows");
  const size_t width = records[0].cells.size();
  if (header && names.size() != width) {
    throw std::runtime_error(path + " has " + std::to_string(names.size()) +
                             " names in its header and " + std::to_string(width) +
                             " fields in its first data row; expected as many");
  }
  size_t stamp = width;  // none
  for (size_t i = 0; i < names.size() && stamp == width; ++i) {
    std::string name = lower(names[i]);
    if (name == "date" || name == "datetime" || name == "time" || name == "timestamp" ||
        name == "ts")
      stamp = i;
  }
  if (stamp == width && !is_number(records[0].cells[0])) stamp = 0;
  for (size_t i = 0; i < names.size(); ++i)
    if (i != stamp) series.columns.push_back(names[i]);
  if (stamp < names.size())
    series.timestamp_name = names[stamp];
  else if (stamp < width)
    series.timestamp_name = "timestamp";
  for (const auto& record : records) {
    const auto& cells = record.cells;
    if (cells.size() != width) {
      throw std::runtime_error(path + " line " + std::to_string(record.line) + " has " +
                               std::to_string(cells.size()) + " fields; expected " +
                               std::to_string(width));
    }
    std::vector<float> row;
    for (size_t c = 0; c < width; ++c) {
      if (c == stamp) {
        series.timestamps.push_back(cells[c]);
        continue;
      }
      double value = 0.0;
      if (!to_double(cells[c], &value)) {
        throw std::runtime_error(path + " line " + std::to_string(record.line) + ", column " +
                                 std::to_string(c + 1) + ": '" + cells[c] + "' is not a number" +
                                 expected);
      }
      row.push_back(detail::to_float(value));  // as numpy: beyond float32 is inf
    }
    if (row.empty()) throw std::runtime_error(path + " has no value columns" + expected);
    series.values.push_back(std::move(row));
  }
  return series;
}

}  // namespace ovcast
