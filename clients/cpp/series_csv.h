// A series from a CSV file, and the model's window from it, the way `ovcast predict --input
// FILE.csv` reads them (ovcast.runtime.series: read_series, Series.window_for). C++17,
// header-only.
//
//   ovcast::Series series = ovcast::read_series_csv("ETTh1.csv");
//   std::vector<std::string> notes;   // what was done: rows dropped, columns picked by name
//   ovcast::Window window = series.window_for(engine.server().context_length,
//                                             engine.server().channel_names, &notes);
//
// The file: a row per time step, a column per value; quoted cells, CRLF and blank lines are
// fine. The first row is a header when a cell after its first is not a number. The timestamp
// column is the one the header names date, datetime, time, timestamp or ts, else the first
// column when its first value is not a number. Problems throw std::runtime_error naming the
// file, the line and what was expected.
#pragma once

#include <algorithm>
#include <cctype>
#include <cmath>
#include <fstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "inference_engine.h"

namespace ovcast {
namespace series_detail {

// Python's float(): surrounding whitespace, a sign, inf/nan spelled any case.
inline bool to_double(std::string text, double* value) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  size_t end = text.find_last_not_of(" \t\r\n");
  if (begin == std::string::npos) return false;
  text = text.substr(begin, end - begin + 1);
  if (text[0] == '+') text.erase(0, 1);
  if (text.empty() || text[0] == '+') return false;
  if (detail::parse_number(text.data(), text.data() + text.size(), value)) return true;
  std::string word;
  for (char c : text) word += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const bool negative = word[0] == '-';
  if (negative) word.erase(0, 1);
  if (word == "inf" || word == "infinity")
    *value = negative ? -HUGE_VAL : HUGE_VAL;
  else if (word == "nan")
    *value = NAN;
  else
    return false;
  return true;
}

inline bool is_number(const std::string& text) {
  double ignored = 0.0;
  return to_double(text, &ignored);
}

inline std::string trim(const std::string& text) {
  size_t begin = text.find_first_not_of(" \t");
  size_t end = text.find_last_not_of(" \t");
  return begin == std::string::npos ? "" : text.substr(begin, end - begin + 1);
}

inline std::string lower(std::string text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return text;
}

// One CSV record; quoted cells may hold commas and "" for a quote.
inline std::vector<std::string> split_record(const std::string& line) {
  std::vector<std::string> cells(1);
  bool quoted = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quoted && c == '"' && i + 1 < line.size() && line[i + 1] == '"') {
      cells.back() += '"';
      ++i;
    } else if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      cells.emplace_back();
    } else if (c != '\r' || quoted) {
      cells.back() += c;
    }
  }
  return cells;
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
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::vector<std::pair<int, std::vector<std::string>>> records;  // (file line, cells)
  std::string line;
  for (int number = 1; std::getline(in, line); ++number) {
    if (line.find_first_not_of('\r') == std::string::npos) continue;  // blank line
    records.emplace_back(number, split_record(line));
  }
  const std::string expected = "; expected a row per time step, a column per channel";
  if (records.empty()) throw std::runtime_error(path + " is empty" + expected);
  Series series;
  const auto& first = records[0].second;
  bool header = !is_number(first.back());
  for (size_t i = 1; i < first.size(); ++i) header = header || !is_number(first[i]);
  std::vector<std::string> names;
  if (header) {
    for (const auto& cell : first) names.push_back(trim(cell));
    records.erase(records.begin());
  }
  if (records.empty()) throw std::runtime_error(path + " has a header but no data rows");
  const size_t width = records[0].second.size();
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
  if (stamp == width && !is_number(records[0].second[0])) stamp = 0;
  for (size_t i = 0; i < names.size(); ++i)
    if (i != stamp) series.columns.push_back(names[i]);
  if (stamp < names.size())
    series.timestamp_name = names[stamp];
  else if (stamp < width)
    series.timestamp_name = "timestamp";
  for (const auto& record : records) {
    const auto& cells = record.second;
    if (cells.size() != width) {
      throw std::runtime_error(path + " line " + std::to_string(record.first) + " has " +
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
        throw std::runtime_error(path + " line " + std::to_string(record.first) + ", column " +
                                 std::to_string(c + 1) + ": '" + cells[c] + "' is not a number" +
                                 expected);
      }
      row.push_back(static_cast<float>(value));
    }
    if (row.empty()) throw std::runtime_error(path + " has no value columns" + expected);
    series.values.push_back(std::move(row));
  }
  return series;
}

}  // namespace ovcast
