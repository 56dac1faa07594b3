// tests/test_files.h — small helpers the tests share for files and expected errors. Header-only and
// free of fedengine headers, so a test of any module (the tokenizer is a leaf) can include it.
#pragma once

#include <gtest/gtest.h>

#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <typeinfo>

namespace fe::test {

// The whole file as bytes; "" when it cannot be read (the caller's expectations then fail).
inline std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

// Writes `contents` as the whole file; a failure to write fails the calling test.
inline void write_file(const std::filesystem::path& path, const std::string& contents) {
  std::ofstream out(path, std::ios::binary);
  out << contents;
  out.close();
  EXPECT_TRUE(out.good()) << "cannot write " << path;
}

// What an exception that is not the expected one says, for the failure message.
inline std::string describe_exception(const std::exception_ptr& thrown) {
  try {
    std::rethrow_exception(thrown);
  } catch (const std::exception& error) {
    return std::string(typeid(error).name()) + ": " + error.what();
  } catch (...) {
    return "an exception not derived from std::exception";
  }
}

// The message of the ErrorType that `action` throws; fails the test (and returns "") when it
// throws nothing or something else.
template <typename ErrorType>
std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const ErrorType& error) {
    return error.what();
  } catch (...) {
    ADD_FAILURE() << "expected a " << typeid(ErrorType).name() << ", got "
                  << describe_exception(std::current_exception());
    return "";
  }
  ADD_FAILURE() << "expected a " << typeid(ErrorType).name() << ", nothing was thrown";
  return "";
}

// GPT-2's printable stand-in for byte b (ByteLevel's alphabet): printable Latin-1 stays itself,
// every other byte becomes U+0100 + its rank among those.
inline std::string byte_level_char(int b) {
  int code = b, rank = 0;
  const auto printable = [](int x) {
    return (x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255);
  };
  if (!printable(b)) {
    for (int x = 0; x < b; ++x) rank += !printable(x);
    code = 256 + rank;
  }
  std::string utf8;
  if (code < 0x80) {
    utf8 += static_cast<char>(code);
  } else {
    utf8 += static_cast<char>(0xC0 | (code >> 6));
    utf8 += static_cast<char>(0x80 | (code & 0x3F));
  }
  return utf8;
}

}  // namespace fe::test
