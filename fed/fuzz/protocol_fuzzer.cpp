// fed/fuzz/protocol_fuzzer.cpp — libFuzzer target for the message decoder.
//
// Any input either decodes or is refused with a ProtocolError (any other exception, a crash or a
// sanitizer report is a bug). What decodes must re-encode to bytes that decode again and encode to
// the same bytes: encode() is deterministic and accepts everything decode() produces.
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. fed/fuzz/protocol_fuzzer.cpp \
//     fed/protocol.cpp engine/tensor.cpp kernels/view.cpp kernels/half.cpp kernels/cpu/elementwise.cpp -lz
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "fed/protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace fe::fed;
  Message message;
  try {
    message = decode(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const ProtocolError&) {
    return 0;
  }
  const std::string once = encode(message);
  const std::string twice = encode(decode(once));
  if (once != twice) {
    std::fprintf(stderr, "re-encoding is not stable: %zu bytes, then %zu bytes\n", once.size(), twice.size());
    std::abort();
  }
  return 0;
}
