// A series from a CSV file, and the model's window from it, the way `ovcast predict --input
// FILE.csv` reads them (ovcast.runtime.series: read_series, Series.window_for). C++17,
// header-only.
//
//   ovcast::Series series = ovcast::read_series_csv("ETTh1.csv");
//   std::vector<std::string> notes;   // what was done: rows dropped, columns picked by name
//   ovcast::Window window = series.window_for(engine.server().context_length,
//                                             engine.server().channel_names, &notes);
//
// It reads a CSV by ovcast's rules (ovcast._csv), so the same files are accepted, with the
// same values, and refused where `ovcast predict` refuses them:
// - the file as Python's csv module reads it (series_detail::csv_records) and every number as
//   Python's float() reads it (series_detail::to_double): quoted cells, CRLF or CR line ends,
//   Unicode digits and spaces, 1_000 are fine; a file that is not UTF-8 is refused, a BOM is
//   dropped, lines whose cells are all blank are skipped; a file whose first line is one
//   cell holding ';' or a tab is refused as not comma-separated.
// - the first line is a header unless it reads as data (numbers, perhaps after a time cell).
//   Header names are trimmed and matched ignoring case (str.casefold, series_detail::name_key);
//   a header that names a column twice (even as 'OT' and 'ot') is refused. Every row has as
//   many fields as the header (or the first row).
// - the time column is the first one named date, datetime, time, timestamp, ts or open_time
//   (any case), else the first column when its first cell is not a number. When every cell
//   of it is a time (ISO 8601 as Python 3.11's datetime.fromisoformat reads it, no offset
//   meaning UTC, or an epoch number in s, ms, us or ns told by its magnitude), the times must
//   increase strictly, epoch numbers keep one unit and stay before 2262; a column with a cell
//   that is no time at all is kept as written (Python then labels the forecast by step).
// - every other cell is a finite number: empty cells, words and nan/inf (or 1e400) are
//   refused. A value beyond float32 but finite (1e39) becomes +-inf in the float window, as
//   numpy's float32 cast makes it (the engine then refuses the window, as Python's does).
// Problems throw std::runtime_error naming the file, the line and what was expected; like
// Python, up to five bad cells are named at once. One difference is kept on purpose: a
// header with two or more empty names reads each of those columns, where Python's
// Table.numbers looks columns up by name and reads the first empty-named one for all.
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

// str.casefold() (Unicode 14, Python 3.11): code points that fold to one other code point, as
// runs {first, count, stride, delta}, and those that fold to several, as UTF-8.
struct FoldRun {
  char32_t first;
  int count, stride, delta;
};
struct FoldMany {
  char32_t from;
  const char* to;
};

inline void append_utf8(char32_t c, std::string* out) {
  if (c < 0x80) {
    *out += static_cast<char>(c);
  } else if (c < 0x800) {
    *out += static_cast<char>(0xC0 | (c >> 6));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else if (c < 0x10000) {
    *out += static_cast<char>(0xE0 | (c >> 12));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  } else {
    *out += static_cast<char>(0xF0 | (c >> 18));
    *out += static_cast<char>(0x80 | ((c >> 12) & 0x3F));
    *out += static_cast<char>(0x80 | ((c >> 6) & 0x3F));
    *out += static_cast<char>(0x80 | (c & 0x3F));
  }
}

inline std::string casefold(std::string_view text) {
  static constexpr FoldRun kRuns[] = {
      {0x41, 26, 1, 32}, {0xb5, 1, 1, 775}, {0xc0, 23, 1, 32}, {0xd8, 7, 1, 32}, {0x100, 24, 2, 1},
      {0x132, 3, 2, 1}, {0x139, 8, 2, 1}, {0x14a, 23, 2, 1}, {0x178, 1, 1, -121}, {0x179, 3, 2, 1},
      {0x17f, 1, 1, -268}, {0x181, 1, 1, 210}, {0x182, 2, 2, 1}, {0x186, 1, 1, 206},
      {0x187, 1, 1, 1}, {0x189, 2, 1, 205}, {0x18b, 1, 1, 1}, {0x18e, 1, 1, 79},
      {0x18f, 1, 1, 202}, {0x190, 1, 1, 203}, {0x191, 1, 1, 1}, {0x193, 1, 1, 205},
      {0x194, 1, 1, 207}, {0x196, 1, 1, 211}, {0x197, 1, 1, 209}, {0x198, 1, 1, 1},
      {0x19c, 1, 1, 211}, {0x19d, 1, 1, 213}, {0x19f, 1, 1, 214}, {0x1a0, 3, 2, 1},
      {0x1a6, 1, 1, 218}, {0x1a7, 1, 1, 1}, {0x1a9, 1, 1, 218}, {0x1ac, 1, 1, 1},
      {0x1ae, 1, 1, 218}, {0x1af, 1, 1, 1}, {0x1b1, 2, 1, 217}, {0x1b3, 2, 2, 1},
      {0x1b7, 1, 1, 219}, {0x1b8, 1, 1, 1}, {0x1bc, 1, 1, 1}, {0x1c4, 1, 1, 2}, {0x1c5, 1, 1, 1},
      {0x1c7, 1, 1, 2}, {0x1c8, 1, 1, 1}, {0x1ca, 1, 1, 2}, {0x1cb, 9, 2, 1}, {0x1de, 9, 2, 1},
      {0x1f1, 1, 1, 2}, {0x1f2, 2, 2, 1}, {0x1f6, 1, 1, -97}, {0x1f7, 1, 1, -56},
      {0x1f8, 20, 2, 1}, {0x220, 1, 1, -130}, {0x222, 9, 2, 1}, {0x23a, 1, 1, 10795},
      {0x23b, 1, 1, 1}, {0x23d, 1, 1, -163}, {0x23e, 1, 1, 10792}, {0x241, 1, 1, 1},
      {0x243, 1, 1, -195}, {0x244, 1, 1, 69}, {0x245, 1, 1, 71}, {0x246, 5, 2, 1},
      {0x345, 1, 1, 116}, {0x370, 2, 2, 1}, {0x376, 1, 1, 1}, {0x37f, 1, 1, 116},
      {0x386, 1, 1, 38}, {0x388, 3, 1, 37}, {0x38c, 1, 1, 64}, {0x38e, 2, 1, 63},
      {0x391, 17, 1, 32}, {0x3a3, 9, 1, 32}, {0x3c2, 1, 1, 1}, {0x3cf, 1, 1, 8},
      {0x3d0, 1, 1, -30}, {0x3d1, 1, 1, -25}, {0x3d5, 1, 1, -15}, {0x3d6, 1, 1, -22},
      {0x3d8, 12, 2, 1}, {0x3f0, 1, 1, -54}, {0x3f1, 1, 1, -48}, {0x3f4, 1, 1, -60},
      {0x3f5, 1, 1, -64}, {0x3f7, 1, 1, 1}, {0x3f9, 1, 1, -7}, {0x3fa, 1, 1, 1},
      {0x3fd, 3, 1, -130}, {0x400, 16, 1, 80}, {0x410, 32, 1, 32}, {0x460, 17, 2, 1},
      {0x48a, 27, 2, 1}, {0x4c0, 1, 1, 15}, {0x4c1, 7, 2, 1}, {0x4d0, 48, 2, 1},
      {0x531, 38, 1, 48}, {0x10a0, 38, 1, 7264}, {0x10c7, 1, 1, 7264}, {0x10cd, 1, 1, 7264},
      {0x13f8, 6, 1, -8}, {0x1c80, 1, 1, -6222}, {0x1c81, 1, 1, -6221}, {0x1c82, 1, 1, -6212},
      {0x1c83, 2, 1, -6210}, {0x1c85, 1, 1, -6211}, {0x1c86, 1, 1, -6204}, {0x1c87, 1, 1, -6180},
      {0x1c88, 1, 1, 35267}, {0x1c90, 43, 1, -3008}, {0x1cbd, 3, 1, -3008}, {0x1e00, 75, 2, 1},
      {0x1e9b, 1, 1, -58}, {0x1ea0, 48, 2, 1}, {0x1f08, 8, 1, -8}, {0x1f18, 6, 1, -8},
      {0x1f28, 8, 1, -8}, {0x1f38, 8, 1, -8}, {0x1f48, 6, 1, -8}, {0x1f59, 4, 2, -8},
      {0x1f68, 8, 1, -8}, {0x1fb8, 2, 1, -8}, {0x1fba, 2, 1, -74}, {0x1fbe, 1, 1, -7173},
      {0x1fc8, 4, 1, -86}, {0x1fd8, 2, 1, -8}, {0x1fda, 2, 1, -100}, {0x1fe8, 2, 1, -8},
      {0x1fea, 2, 1, -112}, {0x1fec, 1, 1, -7}, {0x1ff8, 2, 1, -128}, {0x1ffa, 2, 1, -126},
      {0x2126, 1, 1, -7517}, {0x212a, 1, 1, -8383}, {0x212b, 1, 1, -8262}, {0x2132, 1, 1, 28},
      {0x2160, 16, 1, 16}, {0x2183, 1, 1, 1}, {0x24b6, 26, 1, 26}, {0x2c00, 48, 1, 48},
      {0x2c60, 1, 1, 1}, {0x2c62, 1, 1, -10743}, {0x2c63, 1, 1, -3814}, {0x2c64, 1, 1, -10727},
      {0x2c67, 3, 2, 1}, {0x2c6d, 1, 1, -10780}, {0x2c6e, 1, 1, -10749}, {0x2c6f, 1, 1, -10783},
      {0x2c70, 1, 1, -10782}, {0x2c72, 1, 1, 1}, {0x2c75, 1, 1, 1}, {0x2c7e, 2, 1, -10815},
      {0x2c80, 50, 2, 1}, {0x2ceb, 2, 2, 1}, {0x2cf2, 1, 1, 1}, {0xa640, 23, 2, 1},
      {0xa680, 14, 2, 1}, {0xa722, 7, 2, 1}, {0xa732, 31, 2, 1}, {0xa779, 2, 2, 1},
      {0xa77d, 1, 1, -35332}, {0xa77e, 5, 2, 1}, {0xa78b, 1, 1, 1}, {0xa78d, 1, 1, -42280},
      {0xa790, 2, 2, 1}, {0xa796, 10, 2, 1}, {0xa7aa, 1, 1, -42308}, {0xa7ab, 1, 1, -42319},
      {0xa7ac, 1, 1, -42315}, {0xa7ad, 1, 1, -42305}, {0xa7ae, 1, 1, -42308},
      {0xa7b0, 1, 1, -42258}, {0xa7b1, 1, 1, -42282}, {0xa7b2, 1, 1, -42261}, {0xa7b3, 1, 1, 928},
      {0xa7b4, 8, 2, 1}, {0xa7c4, 1, 1, -48}, {0xa7c5, 1, 1, -42307}, {0xa7c6, 1, 1, -35384},
      {0xa7c7, 2, 2, 1}, {0xa7d0, 1, 1, 1}, {0xa7d6, 2, 2, 1}, {0xa7f5, 1, 1, 1},
      {0xab70, 80, 1, -38864}, {0xff21, 26, 1, 32}, {0x10400, 40, 1, 40}, {0x104b0, 36, 1, 40},
      {0x10570, 11, 1, 39}, {0x1057c, 15, 1, 39}, {0x1058c, 7, 1, 39}, {0x10594, 2, 1, 39},
      {0x10c80, 51, 1, 64}, {0x118a0, 32, 1, 32}, {0x16e40, 32, 1, 32}, {0x1e900, 34, 1, 34}
  };
  static constexpr FoldMany kMany[] = {
      {0xdf, "\x73\x73"}, {0x130, "\x69\xcc\x87"}, {0x149, "\xca\xbc\x6e"},
      {0x1f0, "\x6a\xcc\x8c"}, {0x390, "\xce\xb9\xcc\x88\xcc\x81"},
      {0x3b0, "\xcf\x85\xcc\x88\xcc\x81"}, {0x587, "\xd5\xa5\xd6\x82"}, {0x1e96, "\x68\xcc\xb1"},
      {0x1e97, "\x74\xcc\x88"}, {0x1e98, "\x77\xcc\x8a"}, {0x1e99, "\x79\xcc\x8a"},
      {0x1e9a, "\x61\xca\xbe"}, {0x1e9e, "\x73\x73"}, {0x1f50, "\xcf\x85\xcc\x93"},
      {0x1f52, "\xcf\x85\xcc\x93\xcc\x80"}, {0x1f54, "\xcf\x85\xcc\x93\xcc\x81"},
      {0x1f56, "\xcf\x85\xcc\x93\xcd\x82"}, {0x1f80, "\xe1\xbc\x80\xce\xb9"},
      {0x1f81, "\xe1\xbc\x81\xce\xb9"}, {0x1f82, "\xe1\xbc\x82\xce\xb9"},
      {0x1f83, "\xe1\xbc\x83\xce\xb9"}, {0x1f84, "\xe1\xbc\x84\xce\xb9"},
      {0x1f85, "\xe1\xbc\x85\xce\xb9"}, {0x1f86, "\xe1\xbc\x86\xce\xb9"},
      {0x1f87, "\xe1\xbc\x87\xce\xb9"}, {0x1f88, "\xe1\xbc\x80\xce\xb9"},
      {0x1f89, "\xe1\xbc\x81\xce\xb9"}, {0x1f8a, "\xe1\xbc\x82\xce\xb9"},
      {0x1f8b, "\xe1\xbc\x83\xce\xb9"}, {0x1f8c, "\xe1\xbc\x84\xce\xb9"},
      {0x1f8d, "\xe1\xbc\x85\xce\xb9"}, {0x1f8e, "\xe1\xbc\x86\xce\xb9"},
      {0x1f8f, "\xe1\xbc\x87\xce\xb9"}, {0x1f90, "\xe1\xbc\xa0\xce\xb9"},
      {0x1f91, "\xe1\xbc\xa1\xce\xb9"}, {0x1f92, "\xe1\xbc\xa2\xce\xb9"},
      {0x1f93, "\xe1\xbc\xa3\xce\xb9"}, {0x1f94, "\xe1\xbc\xa4\xce\xb9"},
      {0x1f95, "\xe1\xbc\xa5\xce\xb9"}, {0x1f96, "\xe1\xbc\xa6\xce\xb9"},
      {0x1f97, "\xe1\xbc\xa7\xce\xb9"}, {0x1f98, "\xe1\xbc\xa0\xce\xb9"},
      {0x1f99, "\xe1\xbc\xa1\xce\xb9"}, {0x1f9a, "\xe1\xbc\xa2\xce\xb9"},
      {0x1f9b, "\xe1\xbc\xa3\xce\xb9"}, {0x1f9c, "\xe1\xbc\xa4\xce\xb9"},
      {0x1f9d, "\xe1\xbc\xa5\xce\xb9"}, {0x1f9e, "\xe1\xbc\xa6\xce\xb9"},
      {0x1f9f, "\xe1\xbc\xa7\xce\xb9"}, {0x1fa0, "\xe1\xbd\xa0\xce\xb9"},
      {0x1fa1, "\xe1\xbd\xa1\xce\xb9"}, {0x1fa2, "\xe1\xbd\xa2\xce\xb9"},
      {0x1fa3, "\xe1\xbd\xa3\xce\xb9"}, {0x1fa4, "\xe1\xbd\xa4\xce\xb9"},
      {0x1fa5, "\xe1\xbd\xa5\xce\xb9"}, {0x1fa6, "\xe1\xbd\xa6\xce\xb9"},
      {0x1fa7, "\xe1\xbd\xa7\xce\xb9"}, {0x1fa8, "\xe1\xbd\xa0\xce\xb9"},
      {0x1fa9, "\xe1\xbd\xa1\xce\xb9"}, {0x1faa, "\xe1\xbd\xa2\xce\xb9"},
      {0x1fab, "\xe1\xbd\xa3\xce\xb9"}, {0x1fac, "\xe1\xbd\xa4\xce\xb9"},
      {0x1fad, "\xe1\xbd\xa5\xce\xb9"}, {0x1fae, "\xe1\xbd\xa6\xce\xb9"},
      {0x1faf, "\xe1\xbd\xa7\xce\xb9"}, {0x1fb2, "\xe1\xbd\xb0\xce\xb9"},
      {0x1fb3, "\xce\xb1\xce\xb9"}, {0x1fb4, "\xce\xac\xce\xb9"}, {0x1fb6, "\xce\xb1\xcd\x82"},
      {0x1fb7, "\xce\xb1\xcd\x82\xce\xb9"}, {0x1fbc, "\xce\xb1\xce\xb9"},
      {0x1fc2, "\xe1\xbd\xb4\xce\xb9"}, {0x1fc3, "\xce\xb7\xce\xb9"}, {0x1fc4, "\xce\xae\xce\xb9"},
      {0x1fc6, "\xce\xb7\xcd\x82"}, {0x1fc7, "\xce\xb7\xcd\x82\xce\xb9"},
      {0x1fcc, "\xce\xb7\xce\xb9"}, {0x1fd2, "\xce\xb9\xcc\x88\xcc\x80"},
      {0x1fd3, "\xce\xb9\xcc\x88\xcc\x81"}, {0x1fd6, "\xce\xb9\xcd\x82"},
      {0x1fd7, "\xce\xb9\xcc\x88\xcd\x82"}, {0x1fe2, "\xcf\x85\xcc\x88\xcc\x80"},
      {0x1fe3, "\xcf\x85\xcc\x88\xcc\x81"}, {0x1fe4, "\xcf\x81\xcc\x93"},
      {0x1fe6, "\xcf\x85\xcd\x82"}, {0x1fe7, "\xcf\x85\xcc\x88\xcd\x82"},
      {0x1ff2, "\xe1\xbd\xbc\xce\xb9"}, {0x1ff3, "\xcf\x89\xce\xb9"}, {0x1ff4, "\xcf\x8e\xce\xb9"},
      {0x1ff6, "\xcf\x89\xcd\x82"}, {0x1ff7, "\xcf\x89\xcd\x82\xce\xb9"},
      {0x1ffc, "\xcf\x89\xce\xb9"}, {0xfb00, "\x66\x66"}, {0xfb01, "\x66\x69"},
      {0xfb02, "\x66\x6c"}, {0xfb03, "\x66\x66\x69"}, {0xfb04, "\x66\x66\x6c"},
      {0xfb05, "\x73\x74"}, {0xfb06, "\x73\x74"}, {0xfb13, "\xd5\xb4\xd5\xb6"},
      {0xfb14, "\xd5\xb4\xd5\xa5"}, {0xfb15, "\xd5\xb4\xd5\xab"}, {0xfb16, "\xd5\xbe\xd5\xb6"},
      {0xfb17, "\xd5\xb4\xd5\xad"}
  };
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const char32_t c = next_code_point(text, &i);
    if (c < 0x80) {
      out += static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
      continue;
    }
    const auto many = std::find_if(std::begin(kMany), std::end(kMany),
                                   [c](const FoldMany& m) { return m.from == c; });
    if (many != std::end(kMany)) {
      out += many->to;
      continue;
    }
    char32_t folded = c;
    for (const FoldRun& run : kRuns) {
      const auto offset = static_cast<long>(c) - static_cast<long>(run.first);
      if (offset >= 0 && offset < static_cast<long>(run.count) * run.stride &&
          offset % run.stride == 0) {
        folded = static_cast<char32_t>(static_cast<long>(c) + run.delta);
        break;
      }
    }
    append_utf8(folded, &out);
  }
  return out;
}

// ovcast._csv.name_key: how header names are matched, trimmed and ignoring case.
inline std::string name_key(std::string_view name) { return casefold(strip(name)); }

// Python's repr() of a str, for messages: quoted, with line ends and controls escaped.
inline std::string repr(std::string_view text) {
  const bool double_quotes =
      text.find('\'') != std::string_view::npos && text.find('"') == std::string_view::npos;
  const char quote = double_quotes ? '"' : '\'';
  std::string out(1, quote);
  for (char c : text) {
    const auto byte = static_cast<unsigned char>(c);
    if (c == quote || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (byte < 0x20 || byte == 0x7F) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", byte);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + quote;
}

// Times as ovcast._csv reads them: ISO 8601 by Python 3.11's datetime.fromisoformat (after
// _iso_seconds' rewrites: every 'Z' to '+00:00', the first ' ' to 'T', a fraction to six
// digits), no offset meaning UTC; or an epoch number, its unit told by its magnitude.

// The C parser's view of a string: bytes, '\0' past the end.
struct IsoText {
  std::string text;
  char at(size_t i) const { return i < text.size() ? text[i] : '\0'; }
};

// parse_digits: n ASCII digits from *pos.
inline bool iso_digits(const IsoText& s, size_t* pos, int n, int* value) {
  *value = 0;
  for (int k = 0; k < n; ++k, ++*pos) {
    const char c = s.at(*pos);
    if (!is_digit(c)) return false;
    *value = *value * 10 + (c - '0');
  }
  return true;
}

inline bool is_leap(int year) { return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0); }

// Days from 1970-01-01 to a proleptic Gregorian date.
inline long days_from_civil(long y, int m, int d) {
  y -= m <= 2;
  const long era = (y >= 0 ? y : y - 399) / 400;
  const long yoe = y - era * 400;
  const long doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// parse_hh_mm_ss_ff over [*pos, end): -1 bad, 0 done, 1 done with text left.
inline int iso_clock(const IsoText& s, size_t* pos, size_t end, int parts[4]) {
  bool separator = true;
  for (int i = 0; i < 3; ++i) {
    if (!iso_digits(s, pos, 2, &parts[i])) return -1;
    const char c = s.at((*pos)++);
    if (i == 0) separator = c == ':';
    if (*pos >= end) return c != '\0';
    if (separator && c == ':') continue;
    if (c == '.' || c == ',') break;
    if (separator) return -1;
    --*pos;
  }
  const size_t to_parse = std::min<size_t>(end - *pos, 6);
  if (!iso_digits(s, pos, static_cast<int>(to_parse), &parts[3])) return -1;
  for (size_t k = to_parse; k < 6; ++k) parts[3] *= 10;
  while (is_digit(s.at(*pos))) ++*pos;
  return s.at(*pos) != '\0';
}

// _find_isoformat_datetime_separator
inline size_t iso_separator(const IsoText& s) {
  const size_t n = s.text.size();
  if (n == 7) return 7;
  if (s.at(4) == '-') {
    if (s.at(5) != 'W') return 10;
    if (n > 8 && s.at(8) == '-') {
      if (n == 9) return std::string::npos;
      return n > 10 && is_digit(s.at(10)) ? 8 : 10;
    }
    return 8;
  }
  if (s.at(4) != 'W') return 8;
  size_t i = 7;
  while (i < n && is_digit(s.at(i))) ++i;
  if (i < 9) return i;
  return i % 2 == 0 ? 7 : 8;
}

// parse_isoformat_date and iso_to_ymd: false where fromisoformat raises.
inline bool iso_date(const IsoText& s, size_t length, int* year, int* month, int* day) {
  size_t p = 0;
  if (!iso_digits(s, &p, 4, year)) return false;
  const bool dashes = s.at(p) == '-';
  p += dashes;
  if (s.at(p) != 'W') {
    if (!iso_digits(s, &p, 2, month)) return false;
    if (dashes && s.at(p++) != '-') return false;
    return iso_digits(s, &p, 2, day);
  }
  ++p;
  int week = 0, weekday = 1;
  if (!iso_digits(s, &p, 2, &week)) return false;
  if (p < length) {
    if (dashes && s.at(p++) != '-') return false;
    if (!iso_digits(s, &p, 1, &weekday)) return false;
  }
  if (*year < 1 || *year > 9999) return false;
  const long jan1 = days_from_civil(*year, 1, 1);
  const long jan1_weekday = ((jan1 + 3) % 7 + 7) % 7;  // 0 Monday
  if (week < 1 || week > 53) return false;
  if (week == 53 && !(jan1_weekday == 3 || (jan1_weekday == 2 && is_leap(*year)))) return false;
  if (weekday < 1 || weekday > 7) return false;
  const long week1_monday = jan1 - jan1_weekday + (jan1_weekday > 3 ? 7 : 0);
  long days = week1_monday + (week - 1) * 7 + (weekday - 1) + 719468;  // civil_from_days
  const long era = (days >= 0 ? days : days - 146096) / 146097;
  const long doe = days - era * 146097;
  const long yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const long doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const long mp = (5 * doy + 2) / 153;
  *day = static_cast<int>(doy - (153 * mp + 2) / 5 + 1);
  *month = static_cast<int>(mp < 10 ? mp + 3 : mp - 9);
  *year = static_cast<int>(yoe + era * 400 + (*month <= 2));
  return true;
}

// datetime.fromisoformat(text).timestamp() (UTC when no offset); false where it raises.
inline bool fromisoformat_seconds(std::u32string text, double* seconds) {
  for (size_t pos : {7, 8, 10}) {  // a separator outside ASCII reads as 'T'
    if (pos >= text.size()) break;
    if (text[pos] >= 0x80) {
      text[pos] = 'T';
      break;
    }
  }
  IsoText s;
  for (char32_t c : text) s.text += c < 0x80 ? static_cast<char>(c) : '\x01';  // never valid
  if (s.text.size() < 7) return false;
  const size_t separator = iso_separator(s);
  if (separator == std::string::npos) return false;
  int year = 0, month = 0, day = 0, clock[4] = {0, 0, 0, 0}, zone[4] = {0, 0, 0, 0};
  long offset_us = 0;
  if (!iso_date(s, separator, &year, &month, &day)) return false;
  if (s.text.size() > separator) {
    size_t p = separator + 1;
    const size_t end = s.text.size();
    size_t zone_at = p;
    do {
      const char c = s.at(zone_at);
      if (c == 'Z' || c == '+' || c == '-') break;
    } while (++zone_at < end);
    const int rv = iso_clock(s, &p, zone_at, clock);
    if (rv < 0) return false;
    if (zone_at >= end) {
      if (rv == 1) return false;
    } else if (s.at(zone_at) == 'Z') {
      if (s.at(zone_at + 1) != '\0') return false;
    } else {
      const long sign = s.at(zone_at) == '-' ? -1 : 1;
      size_t q = zone_at + 1;
      if (iso_clock(s, &q, end, zone) != 0) return false;
      offset_us = sign * ((zone[0] * 3600L + zone[1] * 60L + zone[2]) * 1000000L + zone[3]);
      if (offset_us <= -86400000000L || offset_us >= 86400000000L) return false;
    }
  }
  static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1 ||
      day > kDays[month - 1] + (month == 2 && is_leap(year)) || clock[0] > 23 || clock[1] > 59 ||
      clock[2] > 59)
    return false;
  const long long us =
      (days_from_civil(year, month, day) * 86400LL + clock[0] * 3600LL + clock[1] * 60LL +
       clock[2]) * 1000000LL + clock[3] - offset_us;
  *seconds = static_cast<double>(static_cast<long double>(us) / 1e6L);
  return true;
}

// ovcast._csv._iso_seconds: the rewrites, then fromisoformat.
inline bool iso_seconds(std::string_view text, double* seconds) {
  std::u32string iso;
  bool spaced = false;
  for (size_t i = 0; i < text.size();) {
    const char32_t c = next_code_point(text, &i);
    if (c == 'Z') {
      iso += U"+00:00";
    } else if (c == ' ' && !spaced) {
      iso += 'T';
      spaced = true;
    } else {
      iso += c;
    }
  }
  const size_t dot = iso.find('.');
  if (dot != std::u32string::npos) {
    const std::u32string rest = iso.substr(dot + 1);
    std::u32string digits;  // every digit after the dot, as str.isdigit() finds them
    for (char32_t c : rest)
      if (decimal_value(c) >= 0) digits += c;
    std::u32string fraction = digits.substr(0, 6);
    fraction.resize(6, U'0');
    iso = iso.substr(0, dot + 1) + fraction + rest.substr(std::min(digits.size(), rest.size()));
  }
  return fromisoformat_seconds(std::move(iso), seconds);
}

// ovcast._csv.is_time: an epoch number or ISO 8601.
inline bool is_time(std::string_view text) {
  double ignored = 0.0;
  return is_number(text) || iso_seconds(strip(text), &ignored);
}

// ovcast._csv.time_seconds with the unit told by magnitude: the seconds, and the unit of an
// epoch number ("" for ISO); false and *problem where Python raises.
inline bool time_seconds(std::string_view cell, double* seconds, std::string* unit,
                         std::string* problem) {
  const std::string text = strip(cell);
  double value = 0.0;
  unit->clear();
  if (!to_double(text, &value)) {
    if (iso_seconds(text, seconds)) return true;
    *problem = "cannot parse time " + repr(text) + "; expected ISO 8601 or epoch s, ms, us or ns";
    return false;
  }
  if (!std::isfinite(value)) {
    *problem = "time " + repr(text) + " is not a finite number";
    return false;
  }
  const double size = std::fabs(value);
  *unit = size < 1e11 ? "seconds" : size < 1e14 ? "milliseconds" : size < 1e17 ? "microseconds"
                                                                               : "nanoseconds";
  *seconds = value * (size < 1e11 ? 1.0 : size < 1e14 ? 1e-3 : size < 1e17 ? 1e-6 : 1e-9);
  if (std::fabs(*seconds) >= 9.2e9) {
    *problem = "time " + text + " in " + *unit + " is beyond the year 2261; is its unit another?";
    return false;
  }
  return true;
}

struct Record {
  int line = 0;  // the file line it ends on (csv.reader.line_num, which Python's messages give)
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
  int line = 1;
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
    for (; i < end; ++i) process(static_cast<unsigned char>(text[i]));
    process(kEndOfLine);
    if (state == StartRecord && !cells.empty()) records.push_back({line, std::move(cells)});
    if (state == StartRecord) cells.clear();
  }
  if (state == InQuoted) {  // the file ended inside quotes: Python keeps what it read
    save();
    records.push_back({line - 1, std::move(cells)});
  }
  return records;
}

// What is wrong with a file, collected to be thrown once as ovcast._csv.Problems raises:
// "FILE: the first 5, in file order; and N more. Advice".
struct Problems {
  std::string path;
  std::vector<std::pair<size_t, std::string>> found;  // (row, message)

  void add(size_t row, std::string message) { found.emplace_back(row, std::move(message)); }
  void raise_if_any(const std::string& advice) {
    if (found.empty()) return;
    std::vector<size_t> order(found.size());  // by row, then as added (a stable sort)
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [this](size_t a, size_t b) {
      return std::make_pair(found[a].first, a) < std::make_pair(found[b].first, b);
    });
    std::string message = path + ": ";
    const size_t shown = std::min<size_t>(found.size(), 5);
    for (size_t i = 0; i < shown; ++i) message += (i ? "; " : "") + found[order[i]].second;
    if (found.size() > shown) message += "; and " + std::to_string(found.size() - shown) + " more";
    throw std::runtime_error(message + ". " + advice);
  }
};

// ovcast._csv.is_data_row: a line of numbers (its first cell may be a time), not a header.
inline bool is_data_row(const std::vector<std::string>& cells) {
  return !cells.empty() && is_number(cells.back()) &&
         std::all_of(cells.begin() + 1, cells.end(), [](const auto& c) { return is_number(c); });
}

// ovcast._csv.time_column: the first column named like a time (any case), else the first
// column when its first cell is not a number; npos: none.
inline size_t time_column(const std::vector<std::string>& names,
                          const std::vector<std::string>& first_row) {
  static const char* const kTimeNames[] = {"date", "datetime",  "time",
                                           "ts",   "timestamp", "open_time"};
  for (size_t i = 0; i < names.size(); ++i)
    for (const char* time_name : kTimeNames)
      if (name_key(names[i]) == time_name) return i;
  if (!first_row.empty() && !is_number(first_row[0])) return 0;
  return std::string::npos;
}

// The time column's cells (trimmed), checked as ovcast.runtime.series._timestamps checks
// them: when every cell is a time, a cell Python cannot read as one, epoch numbers in more
// than one unit, or a time that does not come after the one before throws. A column with a
// cell that is no time at all is kept as it is (Python labels the forecast by step).
inline std::vector<std::string> checked_times(const std::string& path,
                                              const std::vector<Record>& records, size_t column,
                                              const std::string& name) {
  std::vector<std::string> cells;
  for (const auto& record : records) cells.push_back(strip(record.cells[column]));
  if (!std::all_of(cells.begin(), cells.end(), [](const auto& c) { return is_time(c); }))
    return cells;
  Problems problems{path, {}};
  std::vector<double> seconds(cells.size());
  std::vector<std::string> units(cells.size());
  auto line = [&](size_t row) { return "line " + std::to_string(records[row].line); };
  for (size_t r = 0; r < cells.size(); ++r) {
    std::string problem;
    if (!time_seconds(cells[r], &seconds[r], &units[r], &problem))
      problems.add(r, line(r) + ": " + problem);
  }
  const auto first = std::find_if(units.begin(), units.end(), [](auto& u) { return !u.empty(); });
  const size_t f = static_cast<size_t>(first - units.begin());
  for (size_t r = f + 1; r < units.size(); ++r)
    if (!units[r].empty() && units[r] != units[f])
      problems.add(r, line(r) + ": " + cells[r] + " reads as " + units[r] + " but " + line(f) +
                          "'s " + cells[f] + " as " + units[f]);
  problems.raise_if_any("The time column is " + repr(name) +
                        ": times are ISO 8601 or epoch s, ms, us or ns, one unit per file");
  for (size_t r = 1; r < cells.size(); ++r)
    if (!(seconds[r] > seconds[r - 1]))
      problems.add(r, line(r) + " (" + cells[r] + ") " +
                          (seconds[r] == seconds[r - 1] ? "repeats the time of "
                                                        : "is earlier than ") +
                          line(r - 1) + " (" + cells[r - 1] + ")");
  problems.raise_if_any("Times must increase from row to row: sort the file, drop repeats");
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
  std::vector<std::string> timestamps;  // the time column's cells, trimmed; empty: none
  std::string timestamp_name;           // its header name

  // The model's window. Channels are taken by name when the header holds every model channel
  // (trimmed and ignoring case; any order, extra columns ignored), else by position when the
  // count matches (with a note when the header names other columns: Python logs a warning); a
  // series longer than the context gives its last context_length rows. *notes (if given) says
  // what was done; a series that cannot be made a window throws std::runtime_error saying why.
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
    std::vector<std::string> keys, wanted;  // matched trimmed and ignoring case (name_key)
    for (const auto& column : columns) keys.push_back(series_detail::name_key(column));
    for (const auto& name : names) wanted.push_back(series_detail::name_key(name));
    auto has = [&keys](const std::string& key) {
      return std::find(keys.begin(), keys.end(), key) != keys.end();
    };
    if (!keys.empty() && std::all_of(wanted.begin(), wanted.end(), has) && keys != wanted) {
      std::vector<size_t> picked;
      for (const auto& key : wanted)
        picked.push_back(
            static_cast<size_t>(std::find(keys.begin(), keys.end(), key) - keys.begin()));
      std::vector<std::string> extra;
      for (size_t c = 0; c < columns.size(); ++c)
        if (std::find(wanted.begin(), wanted.end(), keys[c]) == wanted.end())
          extra.push_back(columns[c]);
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
      if (!keys.empty() && keys != wanted)
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
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string expected = "a row per time step, a column per channel";
  const size_t bad = utf8_error(text);
  if (bad != std::string::npos) {
    char byte[8];
    std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[bad]));
    throw std::runtime_error(path + " is not UTF-8 text (byte " + byte + " at offset " +
                             std::to_string(bad) + "); save it as UTF-8; expected " + expected);
  }
  if (text.rfind("\xEF\xBB\xBF", 0) == 0) text.erase(0, 3);  // Excel's BOM, as utf-8-sig
  std::vector<Record> records;
  for (Record& record : csv_records(text, path))  // rows with a cell that is not blank
    if (std::any_of(record.cells.begin(), record.cells.end(),
                    [](const std::string& cell) { return !strip(cell).empty(); }))
      records.push_back(std::move(record));
  if (records.empty()) throw std::runtime_error(path + " has no data rows; expected " + expected);
  const auto& first = records[0].cells;
  if (first.size() == 1 && first[0].find_first_of(";\t") != std::string::npos) {
    std::u32string shown;  // its first 60 characters
    for (size_t i = 0; i < first[0].size() && shown.size() < 60;)
      shown += next_code_point(first[0], &i);
    std::string head;
    for (char32_t c : shown) append_utf8(c, &head);
    throw std::runtime_error(
        path + " looks " + (first[0].find(';') != std::string::npos ? "';'" : "tab") +
        "-separated (its first line is " + repr(head) +
        "); ovcast reads comma-separated files with '.' as the decimal point: save it as such "
        "(expected " + expected + ")");
  }
  std::vector<std::string> names;  // the header's; empty: the file has none
  if (!is_data_row(first)) {
    if (records.size() < 2)
      throw std::runtime_error(path + " has no data rows; expected " + expected);
    for (const auto& cell : first) names.push_back(strip(cell));
    records.erase(records.begin());
    std::vector<std::string> keys;
    for (size_t i = 0; i < names.size(); ++i) {
      keys.push_back(name_key(names[i]));
      const auto same = std::find(keys.begin(), keys.end() - 1, keys.back());
      if (keys.back().empty() || same == keys.end() - 1) continue;
      const size_t earlier = static_cast<size_t>(same - keys.begin());
      throw std::runtime_error(path + ": the header names column " + std::to_string(earlier + 1) +
                               " (" + repr(names[earlier]) + ") and column " +
                               std::to_string(i + 1) + " (" + repr(names[i]) +
                               ") alike; every column needs a name of its own (names are "
                               "matched ignoring case and spaces)");
    }
  }
  const size_t width = names.empty() ? records[0].cells.size() : names.size();
  for (const auto& record : records)
    if (record.cells.size() != width)
      throw std::runtime_error(path + " line " + std::to_string(record.line) + " has " +
                               std::to_string(record.cells.size()) + " fields; expected " +
                               std::to_string(width));
  const size_t stamp = time_column(names, records[0].cells);
  Series series;
  std::vector<std::string> labels = names;  // a column in messages: its header name or number
  for (size_t c = 0; names.empty() && c < width; ++c) labels.push_back(std::to_string(c + 1));
  for (size_t c = 0; c < names.size(); ++c)
    if (c != stamp) series.columns.push_back(names[c]);
  if (stamp < width) series.timestamp_name = names.empty() ? "timestamp" : names[stamp];
  Problems problems{path, {}};
  for (size_t r = 0; r < records.size(); ++r) {
    const Record& record = records[r];
    std::vector<float> row;
    for (size_t c = 0; c < width; ++c) {
      if (c == stamp) continue;
      const std::string cell = strip(record.cells[c]);
      double value = 0.0;
      std::string problem = cell.empty()                ? "empty"
                            : !to_double(cell, &value) ? "non-numeric value " + repr(cell)
                            : !std::isfinite(value)    ? cell + " is not a finite number"
                                                       : "";
      if (!problem.empty())
        problems.add(r, "line " + std::to_string(record.line) + ", column " + repr(labels[c]) +
                     ": " + problem);
      row.push_back(detail::to_float(value));  // as numpy: beyond float32 is inf
    }
    series.values.push_back(std::move(row));
  }
  problems.raise_if_any("Expected " + expected + ", each value a finite number");
  if (stamp < width) series.timestamps = checked_times(path, records, stamp, labels[stamp]);
  return series;
}

}  // namespace ovcast
