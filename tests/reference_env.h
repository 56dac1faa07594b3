// tests/reference_env.h — where the tests find the independent references that Debian does not
// package: a Python virtual environment with HF `tokenizers` and `gguf` (over Debian's python3, so
// torch, numpy and jinja2 are importable too) and a real checkpoint, SmolLM2-135M-Instruct as a
// GGUF. scripts/reference_env.sh prepares both in the cache directory (scripts/test.sh runs it).
//
// A test that needs one of them starts with FE_NEED_REFERENCE(found, what): without it the test
// skips and says why, unless FE_REQUIRE_REFERENCES=1 (CI sets it), which makes that a failure.
// FE_NEED_OR_SKIP is the same rule for any reference and the variable that requires it
// (FE_REQUIRE_TORCH for Debian's python3-torch and numpy).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>

namespace fe::test {

// $FE_CACHE_DIR, else $XDG_CACHE_HOME/fedengine, else ~/.cache/fedengine (as the script decides).
inline std::string reference_cache_dir() {
  if (const char* dir = std::getenv("FE_CACHE_DIR"); dir && *dir) return dir;
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return std::string(xdg) + "/fedengine";
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "/root") + "/.cache/fedengine";
}

// The venv's python when it can import every module of `modules` ("tokenizers, gguf"), else "".
inline std::string reference_python(const std::string& modules) {
  const std::string python = reference_cache_dir() + "/venv/bin/python";
  if (!std::filesystem::exists(python)) return "";
  const std::string command = python + " -c 'import " + modules + "' >/dev/null 2>&1";
  return std::system(command.c_str()) == 0 ? python : "";
}

// The SmolLM2-135M-Instruct GGUF, or "" when it has not been fetched.
inline std::string smollm2_gguf() {
  const std::string path = reference_cache_dir() + "/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
  return std::filesystem::exists(path) ? path : "";
}

// True when the environment variable `name` is "1": CI's way of saying a reference must be there.
inline bool required_by(const char* name) {
  const char* value = std::getenv(name);
  return value && std::string(value) == "1";
}

}  // namespace fe::test

// Skips the calling test saying `missing` and `fix` when `found` is false, or fails it when the
// environment variable `required` is 1 (scripts/test.sh and CI set them).
#define FE_NEED_OR_SKIP(found, missing, required, fix)                                                                \
  do {                                                                                                                \
    if (!(found)) {                                                                                                   \
      if (::fe::test::required_by(required)) FAIL() << (missing) << ", and " << (required) << "=1 (" << (fix) << ")"; \
      GTEST_SKIP() << (missing) << " (" << (fix) << ")";                                                              \
    }                                                                                                                 \
  } while (0)

// A reference from scripts/reference_env.sh.
#define FE_NEED_REFERENCE(found, what)                                                              \
  FE_NEED_OR_SKIP(found, std::string(what) + " is missing in " + ::fe::test::reference_cache_dir(), \
                  "FE_REQUIRE_REFERENCES", "run scripts/reference_env.sh; it needs PyPI")
