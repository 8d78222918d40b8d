// Reading a window from CSV the way `ovcast predict --input FILE.csv` does (C++17, header-only).
//
// A row per time step, a column per channel. Allowed, as ovcast accepts them:
// - a header row (recognised when the last cell of the first row is not a number),
// - a leading timestamp column (recognised when the first cell of the first data row is not
//   a number, e.g. "2024-01-19 12:00:00"; a numeric epoch column is read as a channel, as
//   ovcast reads it),
// - quoted cells ("..." with "" inside), CRLF line ends, blank lines.
// Anything else throws std::runtime_error naming the file, line and what was expected.
#pragma once

#include <cctype>
#include <cmath>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "inference_engine.h"

namespace ovcast {
namespace csv_detail {

// Python's float(): surrounding whitespace, a sign, inf/nan spelled any case.
inline bool to_float(std::string text, float* value) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) return false;
  text = text.substr(begin, end - begin + 1);
  if (text[0] == '+') text.erase(0, 1);
  if (text.empty() || text[0] == '+') return false;
  double number = 0.0;
  if (!detail::parse_number(text.data(), text.data() + text.size(), &number)) {
    std::string lower;
    for (char c : text) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    bool negative = lower[0] == '-';
    std::string word = negative ? lower.substr(1) : lower;
    if (word == "inf" || word == "infinity")
      number = negative ? -HUGE_VAL : HUGE_VAL;
    else if (word == "nan")
      number = NAN;
    else
      return false;
  }
  *value = static_cast<float>(number);
  return true;
}

// Splits one CSV record; quoted cells may hold commas and "" for a quote.
inline std::vector<std::string> split_record(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted) {
      if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
        cells.back() += '"';
        ++i;
      } else if (c == '"')
        quoted = false;
      else
        cells.back() += c;
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      cells.emplace_back();
    } else if (c != '\r') {
      cells.back() += c;
    }
  }
  return cells;
}

}  // namespace csv_detail

// All rows of the CSV at `path` as a window [rows][channels]; see the rules above.
inline Window read_window_csv(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::pair<int, std::vector<std::string>>> records;  // (line number, cells)
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of("\r") == std::string::npos) continue;  // blank line
    records.emplace_back(number, csv_detail::split_record(line));
  }
  const std::string expected =
      "a row per time step, a column per channel (numbers), with an "
      "optional header row and leading timestamp column";
  float scratch = 0.0f;
  if (!records.empty() && !csv_detail::to_float(records[0].second.back(), &scratch)) {
    records.erase(records.begin());  // header
  }
  if (records.empty()) throw std::runtime_error(path + " has no data rows; expected " + expected);
  const bool timestamps = !csv_detail::to_float(records[0].second.front(), &scratch);
  Window window;
  for (const auto& record : records) {
    const auto& cells = record.second;
    std::vector<float> row;
    for (size_t c = timestamps ? 1 : 0; c < cells.size(); ++c) {
      float value = 0.0f;
      if (!csv_detail::to_float(cells[c], &value)) {
        throw std::runtime_error(path + " line " + std::to_string(record.first) + ", column " +
                                 std::to_string(c + 1) + ": '" + cells[c] +
                                 "' is not a number; expected " + expected);
      }
      row.push_back(value);
    }
    if (!window.empty() && row.size() != window[0].size()) {
      throw std::runtime_error(path + " line " + std::to_string(record.first) + " has " +
                               std::to_string(row.size()) + " values, the first data row " +
                               std::to_string(window[0].size()) + "; expected " + expected);
    }
    if (row.empty()) throw std::runtime_error(path + " has no value columns; expected " + expected);
    window.push_back(std::move(row));
  }
  return window;
}

}  // namespace ovcast
