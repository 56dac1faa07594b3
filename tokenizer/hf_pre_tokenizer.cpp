// tokenizer/hf_pre_tokenizer.cpp — the pre-tokenizers of tokenizer.json, built on one split step
// with HF's five delimiter behaviors.

#include "tokenizer/hf_pre_tokenizer.h"

#include <algorithm>
#include <functional>
#include <optional>
#include <stdexcept>
#include <utility>

#include "tokenizer/hf_regex.h"
#include "tokenizer/hf_unicode.h"
#include "tokenizer/utf8.h"

namespace fe::hf {
namespace {

constexpr const char* kSupported = "ByteLevel, Split, Digits, Metaspace, Whitespace, WhitespaceSplit, Sequence";

// GPT-2's pre-tokenization pattern, which ByteLevel applies when use_regex is true.
constexpr const char* kGpt2Pattern = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Whitespace's `\w+|[^\w\s]+` with `\w` as Rust's regex crate defines it (kWordClassItems);
// Regex::pattern reads `\s` as White_Space.
std::string word_pattern() { return std::string("[") + kWordClassItems + "]+|[^" + kWordClassItems + "\\s]+"; }

enum class Behavior { removed, isolated, merged_with_previous, merged_with_next, contiguous };

// A stretch of a piece's text that the pattern matched, or the text between two matches.
struct Segment {
  size_t begin, end;
  bool is_match;
};

std::vector<Segment> segments_from_matches(size_t size, const std::vector<Match>& matches) {
  if (size == 0) return {{0, 0, false}};
  std::vector<Segment> segments;
  size_t previous = 0;
  for (const Match& match : matches) {
    if (previous != match.begin) segments.push_back({previous, match.begin, false});
    segments.push_back({match.begin, match.end, true});
    previous = match.end;
  }
  if (previous != size) segments.push_back({previous, size, false});
  return segments;
}

// Each character for which `matches` holds is a match of its own.
std::vector<Segment> segments_from_chars(const std::string& text, const std::function<bool(char32_t)>& matches) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Segment> segments;
  size_t previous = 0;
  for (size_t pos = 0; pos < text.size();) {
    const size_t begin = pos;
    if (!matches(utf8::next(text, pos))) continue;
    if (previous < begin) segments.push_back({previous, begin, false});
    segments.push_back({begin, pos, true});
    previous = pos;
  }
  if (previous < text.size()) segments.push_back({previous, text.size(), false});
  return segments;
}

// HF's NormalizedString::split: groups the segments by `behavior` and appends the kept, non-empty
// ones to `out`.
void split_piece(const Piece& piece, const std::vector<Segment>& segments, Behavior behavior, std::vector<Piece>& out) {
  struct Range {
    size_t begin, end;
    bool remove;
  };
  std::vector<Range> ranges;
  ranges.reserve(segments.size());
  bool previous_match = false;
  switch (behavior) {
    case Behavior::isolated:
      for (const Segment& s : segments) ranges.push_back({s.begin, s.end, false});
      break;
    case Behavior::removed:
      for (const Segment& s : segments) ranges.push_back({s.begin, s.end, s.is_match});
      break;
    case Behavior::contiguous:
      for (const Segment& s : segments) {
        if (s.is_match == previous_match && !ranges.empty()) {
          ranges.back().end = s.end;
        } else {
          ranges.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::merged_with_previous:
      for (const Segment& s : segments) {
        if (s.is_match && !previous_match && !ranges.empty()) {
          ranges.back().end = s.end;
        } else {
          ranges.push_back({s.begin, s.end, false});
        }
        previous_match = s.is_match;
      }
      break;
    case Behavior::merged_with_next:
      for (auto s = segments.rbegin(); s != segments.rend(); ++s) {
        if (s->is_match && !previous_match && !ranges.empty()) {
          ranges.back().begin = s->begin;
        } else {
          ranges.push_back({s->begin, s->end, false});
        }
        previous_match = s->is_match;
      }
      std::reverse(ranges.begin(), ranges.end());
      break;
  }
  for (const Range& range : ranges) {
    if (range.remove || range.begin == range.end) continue;
    out.push_back({piece.text.substr(range.begin, range.end - range.begin), piece.starts_input && range.begin == 0});
  }
}

Behavior behavior_of(const JsonNode& node) {
  const std::string name = node.string();
  if (name == "Removed") return Behavior::removed;
  if (name == "Isolated") return Behavior::isolated;
  if (name == "MergedWithPrevious") return Behavior::merged_with_previous;
  if (name == "MergedWithNext") return Behavior::merged_with_next;
  if (name == "Contiguous") return Behavior::contiguous;
  node.fail("unknown behavior \"" + name + "\" (supported: Removed, Isolated, MergedWithPrevious, MergedWithNext, " +
            "Contiguous)");
}

class Split final : public PreTokenizer {
 public:
  Split(Regex pattern, Behavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (const Piece& piece : pieces) {
      std::vector<Segment> segments = segments_from_matches(piece.text.size(), pattern_.find_all(piece.text));
      if (invert_) {
        for (Segment& segment : segments) segment.is_match = !segment.is_match;
      }
      split_piece(piece, segments, behavior_, out);
    }
    pieces = std::move(out);
  }

 private:
  Regex pattern_;
  Behavior behavior_;
  bool invert_;
};

// Splits where a character predicate holds (Digits, WhitespaceSplit).
class CharSplit final : public PreTokenizer {
 public:
  CharSplit(std::function<bool(char32_t)> matches, Behavior behavior)
      : matches_(std::move(matches)), behavior_(behavior) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (const Piece& piece : pieces) split_piece(piece, segments_from_chars(piece.text, matches_), behavior_, out);
    pieces = std::move(out);
  }

 private:
  std::function<bool(char32_t)> matches_;
  Behavior behavior_;
};

class ByteLevel final : public PreTokenizer {
 public:
  ByteLevel(bool add_prefix_space, std::optional<Regex> gpt2)
      : add_prefix_space_(add_prefix_space), gpt2_(std::move(gpt2)) {}

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> split;
    split.reserve(pieces.size());
    for (Piece& piece : pieces) {
      if (add_prefix_space_ && (piece.text.empty() || piece.text.front() != ' '))
        piece.text.insert(piece.text.begin(), ' ');
      if (gpt2_) {
        split_piece(piece, segments_from_matches(piece.text.size(), gpt2_->find_all(piece.text)), Behavior::isolated,
                    split);
      } else {
        split.push_back(std::move(piece));
      }
    }
    for (Piece& piece : split) {
      std::string mapped;
      mapped.reserve(piece.text.size() * 2);
      for (const char byte : piece.text) mapped += byte_level_char(static_cast<unsigned char>(byte));
      piece.text = std::move(mapped);
    }
    pieces = std::move(split);
  }

 private:
  bool add_prefix_space_;
  std::optional<Regex> gpt2_;
};

class Metaspace final : public PreTokenizer {
 public:
  Metaspace(char32_t replacement, PrependScheme prepend_scheme, bool split)
      : replacement_char_(replacement), prepend_scheme_(prepend_scheme), split_(split) {
    utf8::append(replacement_, replacement);
  }

  void pre_tokenize(std::vector<Piece>& pieces) const override {
    std::vector<Piece> out;
    out.reserve(pieces.size());
    for (Piece& piece : pieces) {
      std::string text;
      text.reserve(piece.text.size() + replacement_.size());
      for (const char c : piece.text) {
        if (c == ' ') {
          text += replacement_;
        } else {
          text += c;
        }
      }
      const bool starts_with_replacement = text.compare(0, replacement_.size(), replacement_) == 0;
      if (!starts_with_replacement && (prepend_scheme_ == PrependScheme::always ||
                                       (prepend_scheme_ == PrependScheme::first && piece.starts_input))) {
        text.insert(0, replacement_);
      }
      piece.text = std::move(text);
      if (split_) {
        const char32_t replacement = replacement_char_;
        split_piece(piece, segments_from_chars(piece.text, [replacement](char32_t c) { return c == replacement; }),
                    Behavior::merged_with_next, out);
      } else {
        out.push_back(std::move(piece));
      }
    }
    pieces = std::move(out);
  }

 private:
  char32_t replacement_char_;
  std::string replacement_;
  PrependScheme prepend_scheme_;
  bool split_;
};

class Sequence final : public PreTokenizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<PreTokenizer>> steps) : steps_(std::move(steps)) {}
  void pre_tokenize(std::vector<Piece>& pieces) const override {
    for (const auto& step : steps_) step->pre_tokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> steps_;
};

// `pattern`, which the component at `node` applies without the file spelling it out.
Regex compile_builtin(const JsonNode& node, const std::string& pattern, const char* name) {
  try {
    return Regex::pattern(pattern, node.where() + " (its built-in " + name + " pattern)");
  } catch (const std::invalid_argument& error) {
    node.fail(std::string("the regex library rejects the built-in ") + name + " pattern (" + error.what() + ")");
  }
}

std::unique_ptr<PreTokenizer> make(const JsonNode& node, int depth) {
  check_component_nesting(node, depth);
  const std::string type = node.type();
  if (type == "ByteLevel") {
    std::optional<Regex> gpt2;
    if (node.boolean_or("use_regex", true)) gpt2 = compile_builtin(node, kGpt2Pattern, "GPT-2");
    return std::make_unique<ByteLevel>(node.boolean_or("add_prefix_space", true), std::move(gpt2));
  }
  if (type == "Split") {
    return std::make_unique<Split>(Regex::from_json(node.at("pattern")), behavior_of(node.at("behavior")),
                                   node.boolean_or("invert", false));
  }
  if (type == "Digits") {
    return std::make_unique<CharSplit>(
        is_numeric, node.boolean_or("individual_digits", false) ? Behavior::isolated : Behavior::contiguous);
  }
  if (type == "Metaspace") {
    return std::make_unique<Metaspace>(metaspace_replacement_of(node), prepend_scheme_of(node),
                                       node.boolean_or("split", true));
  }
  if (type == "Whitespace") {
    return std::make_unique<Split>(compile_builtin(node, word_pattern(), "\\w+|[^\\w\\s]+"), Behavior::removed,
                                   /*invert=*/true);
  }
  if (type == "WhitespaceSplit") return std::make_unique<CharSplit>(is_whitespace, Behavior::removed);
  if (type == "Sequence") {
    const JsonNode list = node.at("pretokenizers");
    std::vector<std::unique_ptr<PreTokenizer>> steps;
    for (size_t i = 0; i < list.size(); ++i) steps.push_back(make(list.at(i), depth + 1));
    return std::make_unique<Sequence>(std::move(steps));
  }
  node.unknown_type(kSupported);
}

}  // namespace

PrependScheme prepend_scheme_of(const JsonNode& node) {
  if (const auto scheme = node.find("prepend_scheme")) {
    const std::string name = scheme->string();
    if (name == "always") return PrependScheme::always;
    if (name == "first") return PrependScheme::first;
    if (name == "never") return PrependScheme::never;
    scheme->fail("unknown prepend_scheme \"" + name + "\" (supported: always, first, never)");
  }
  // Files written before prepend_scheme existed say add_prefix_space.
  return node.boolean_or("add_prefix_space", true) ? PrependScheme::always : PrependScheme::never;
}

char32_t metaspace_replacement_of(const JsonNode& node) {
  return node.find("replacement") ? node.at("replacement").character() : U'\u2581';
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const JsonNode& node) { return make(node, 0); }

}  // namespace fe::hf
