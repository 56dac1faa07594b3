// core/error.h — the exception every fedengine library throws, below every layer so that any of
// them (kernels, engine, fed, apps) can throw it without including a tensor header.
//
// One type so that a caller can tell fedengine's diagnoses from the standard library's failures.
// The message is the whole diagnosis: it names the file, key, op or tensor, the expected value and
// the fix. The tokenizer is a leaf that depends on no fedengine library and throws
// std::runtime_error, which Error derives from, so one `catch (const std::runtime_error&)` sees both.
#pragma once

#include <stdexcept>

namespace fe {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace fe
