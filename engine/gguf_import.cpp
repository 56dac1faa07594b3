#include "engine/gguf_import.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <unordered_map>

#include "engine/durable_file.h"
#include "engine/gguf_dequantize.h"
#include "engine/safetensors.h"
#include "engine/tensor.h"

namespace fe {
namespace {

using nlohmann::json;

constexpr const char* kSupportedArchitectures = "llama, qwen2";

// ---- hyper-parameters -------------------------------------------------------------------------

struct ModelShape {
  std::string arch;
  int64_t layers = 0, hidden = 0, intermediate = 0, heads = 0, kv_heads = 0, head_dim = 0, vocab = 0;
  bool tied = false;
  bool qkv_bias = false;  // q/k/v projections carry biases (qwen2 always)
  bool o_bias = false;
  bool mlp_bias = false;
};

std::string architecture_of(const GgufFile& f) {
  const auto arch = f.get_string("general.architecture");
  if (!arch)
    f.fail_key("general.architecture",
               "is missing: this GGUF holds no model (a LoRA adapter or a vocabulary-only file?)");
  if (*arch != "llama" && *arch != "qwen2")
    f.fail_key("general.architecture", "\"" + *arch + "\" is not supported (supported: " + kSupportedArchitectures +
                                           "); import-gguf converts models of the Llama family only");
  return *arch;
}

int64_t required_int(const GgufFile& f, const std::string& key) {
  const auto value = f.get_int(key);
  if (!value) f.fail_key(key, "is missing (every llama.cpp conversion writes it): convert the model again");
  if (*value <= 0) f.fail_key(key, "is " + std::to_string(*value) + ", expected a positive integer");
  return *value;
}

// A per-model integer that some architectures store per layer (an array): accepted when every
// layer has the same value.
std::optional<int64_t> uniform_int(const GgufFile& f, const std::string& key) {
  const GgufValue* v = f.find(key);
  if (!v || !v->as_array()) return f.get_int(key);
  const auto values = f.get_int_array(key);
  if (values->empty()) f.fail_key(key, "is an empty array");
  for (int64_t x : *values)
    if (x != values->front())
      f.fail_key(key, "differs between layers (" + std::to_string(values->front()) + " and " + std::to_string(x) +
                          "): per-layer shapes have no HF Llama equivalent");
  return values->front();
}

const GgufTensorInfo& required_tensor(const GgufFile& f, const std::string& name, const std::string& why) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (!t) f.fail_tensor(name, "is missing (" + why + ")");
  return *t;
}

// The layers the file holds tensors for: blk.0 … blk.N−1 (counted by their attn_norm.weight).
int64_t layers_in_file(const GgufFile& f) {
  int64_t layers = 0;
  while (static_cast<size_t>(layers) < f.tensors().size() &&
         f.find_tensor("blk." + std::to_string(layers) + ".attn_norm.weight"))
    ++layers;
  return layers;
}

// The row count (GGUF ne[1]) of a matrix `tensor` must be `count` groups of `unit` rows, as the
// hyper-parameter `key` says. Compared by division, so a hostile count cannot overflow; once it
// holds, count·unit is a dimension of the file and fits int64.
void expect_rows(const GgufFile& f, const std::string& tensor, int64_t count, int64_t unit, const std::string& key,
                 const std::string& meaning) {
  const GgufTensorInfo& t = required_tensor(f, tensor, "the tensor that " + key + " describes");
  const int64_t rows = t.ne.size() == 2 ? t.ne[1] : -1;
  if (rows < 0 || rows % unit != 0 || rows / unit != count)
    f.fail_key(key, "is " + std::to_string(count) + (unit == 1 ? "" : " (of " + std::to_string(unit) + " rows each)") +
                        " but " + tensor + " has the row-major shape " + t.shape().str() +
                        ": the metadata and the tensors disagree (" + meaning + ")");
}

ModelShape model_shape(const GgufFile& f) {
  ModelShape m;
  m.arch = architecture_of(f);
  const std::string a = m.arch + ".";
  m.layers = required_int(f, a + "block_count");
  m.hidden = required_int(f, a + "embedding_length");
  m.intermediate = required_int(f, a + "feed_forward_length");
  const auto heads = uniform_int(f, a + "attention.head_count");
  if (!heads) f.fail_key(a + "attention.head_count", "is missing (every llama.cpp conversion writes it)");
  m.heads = *heads;
  if (m.heads <= 0)
    f.fail_key(a + "attention.head_count", "is " + std::to_string(m.heads) + ", expected a positive integer");
  m.kv_heads = uniform_int(f, a + "attention.head_count_kv").value_or(m.heads);
  if (m.kv_heads <= 0 || m.heads % m.kv_heads != 0)
    f.fail_key(a + "attention.head_count_kv", "is " + std::to_string(m.kv_heads) + " with " + std::to_string(m.heads) +
                                                  " attention heads: expected a positive divisor");
  const auto rope_dims = f.get_int(a + "rope.dimension_count");
  m.head_dim = f.get_int(a + "attention.key_length").value_or(rope_dims.value_or(m.hidden / m.heads));
  if (m.head_dim <= 0 || m.head_dim % 2)
    f.fail_key(a + "attention.key_length",
               "head dimension " + std::to_string(m.head_dim) + " is not positive and even");
  if (rope_dims && *rope_dims != m.head_dim)
    f.fail_key(a + "rope.dimension_count", "is " + std::to_string(*rope_dims) + " but heads have " +
                                               std::to_string(m.head_dim) +
                                               " dimensions: partial rotary embeddings are not supported");
  if (const auto value_length = f.get_int(a + "attention.value_length"); value_length && *value_length != m.head_dim)
    f.fail_key(a + "attention.value_length", "is " + std::to_string(*value_length) + ", the key length is " +
                                                 std::to_string(m.head_dim) + ": HF Llama needs them equal");

  const GgufTensorInfo& embed = required_tensor(f, "token_embd.weight", "the token embedding");
  if (embed.ne.size() != 2 || embed.ne[0] != m.hidden)
    f.fail_tensor(embed.name, "has GGUF dims " + embed.shape().str() + " (row-major), expected [vocab, " +
                                  std::to_string(m.hidden) + "]");
  m.vocab = f.get_int(a + "vocab_size").value_or(embed.ne[1]);
  if (m.vocab != embed.ne[1])
    f.fail_key(a + "vocab_size",
               "is " + std::to_string(m.vocab) + " but token_embd.weight has " + std::to_string(embed.ne[1]) + " rows");
  // Every product the tensor plan forms is checked against the tensors here, before it is formed.
  if (const int64_t in_file = layers_in_file(f); m.layers != in_file)
    f.fail_key(a + "block_count", "is " + std::to_string(m.layers) + " but the file holds the tensors of " +
                                      std::to_string(in_file) + (in_file == 1 ? " layer" : " layers") + " (blk." +
                                      std::to_string(in_file) + ".attn_norm.weight is absent)");
  expect_rows(f, "blk.0.attn_q.weight", m.heads, m.head_dim, a + "attention.head_count",
              "attention heads × head dimension");
  expect_rows(f, "blk.0.attn_k.weight", m.kv_heads, m.head_dim, a + "attention.head_count_kv",
              "key/value heads × head dimension");
  expect_rows(f, "blk.0.ffn_gate.weight", m.intermediate, 1, a + "feed_forward_length", "MLP width");
  m.tied = f.find_tensor("output.weight") == nullptr;
  m.qkv_bias = f.find_tensor("blk.0.attn_q.bias") != nullptr;
  m.o_bias = f.find_tensor("blk.0.attn_output.bias") != nullptr;
  m.mlp_bias = f.find_tensor("blk.0.ffn_gate.bias") != nullptr;
  if (m.arch == "qwen2" && !m.qkv_bias)
    f.fail_tensor("blk.0.attn_q.bias", "is missing: qwen2 models have q/k/v biases");
  if (m.arch == "qwen2" && (m.o_bias || m.mlp_bias))
    f.fail_tensor(m.o_bias ? "blk.0.attn_output.bias" : "blk.0.ffn_gate.bias",
                  "has no place in an HF Qwen2 model (biases only on q/k/v)");
  if (m.arch == "llama" && m.qkv_bias != m.o_bias)
    f.fail_tensor(m.qkv_bias ? "blk.0.attn_output.bias" : "blk.0.attn_q.bias",
                  std::string(m.qkv_bias ? "is missing" : "is present") +
                      ": HF Llama's attention_bias puts biases on all of q, k, v and o or on none");
  return m;
}

// ---- rope scaling -----------------------------------------------------------------------------

// HF's llama3 rope factors (what convert_hf_to_gguf.py stores in rope_freqs.weight) for the given
// parameters: per frequency, 1 (short wavelengths), `factor` (long ones) or the smooth blend between.
std::vector<double> llama3_factors(double theta, int64_t head_dim, double factor, double low, double high,
                                   double original) {
  std::vector<double> factors;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    const double inv_freq = 1.0 / std::pow(theta, (2.0 * i) / head_dim);
    const double wavelen = 2 * std::numbers::pi / inv_freq;
    if (wavelen < original / high) {
      factors.push_back(1.0);
    } else if (wavelen > original / low) {
      factors.push_back(factor);
    } else {
      const double smooth = (original / wavelen - low) / (high - low);
      factors.push_back(1 / ((1 - smooth) / factor + smooth));
    }
  }
  return factors;
}

std::string decimal(double value, int digits) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*g", digits, value);
  return text;
}

// rope_freqs.weight back to HF's rope_scaling {rope_type: llama3}. In the transition band
// smooth = (original/wavelen − low)/(high − low) is linear in 1/wavelen, so a least-squares line
// through the band's entries gives original/(high − low) and low/(high − low); with low = 1 that
// fixes high and original. The result must reproduce every entry.
json llama3_rope_scaling(const GgufFile& f, const GgufTensorInfo& t, double theta, int64_t head_dim,
                         std::vector<std::string>* notes) {
  if (t.numel() != head_dim / 2)
    f.fail_tensor(
        t.name, "has " + std::to_string(t.numel()) + " entries, expected head_dim/2 = " + std::to_string(head_dim / 2));
  const Tensor values = dequantize(f, t);
  std::vector<double> factors(values.as<float>(), values.as<float>() + values.numel());
  const double factor = *std::max_element(factors.begin(), factors.end());
  if (!(factor >= 1.0))
    f.fail_tensor(t.name, "holds factors below 1 (" + decimal(factor, 6) + "): not llama3 rope scaling");
  const std::string fix = "; write rope_scaling into config.json by hand";
  if (factor < 1 + 1e-6) return nullptr;

  double sx = 0, sy = 0, sxx = 0, sxy = 0;
  int n = 0;
  for (size_t i = 0; i < factors.size(); ++i) {
    const double fi = factors[i];
    if (fi <= 1 + 1e-6 || fi >= factor * (1 - 1e-6)) continue;
    const double x = 1.0 / (2 * std::numbers::pi * std::pow(theta, (2.0 * i) / head_dim));  // 1/wavelen
    const double y = (1 / fi - 1 / factor) / (1 - 1 / factor);                              // smooth
    sx += x, sy += y, sxx += x * x, sxy += x * y, ++n;
  }
  if (n < 2)
    f.fail_tensor(t.name, "has " + std::to_string(n) +
                              " entries in the llama3 transition band; two are needed to recover "
                              "high_freq_factor and original_max_position_embeddings" +
                              fix);
  const double slope = (n * sxy - sx * sy) / (n * sxx - sx * sx);  // original/(high − low)
  const double intercept = (sy - slope * sx) / n;                  // −low/(high − low)
  if (!(intercept < 0) || !(slope > 0)) f.fail_tensor(t.name, "does not follow the llama3 rope scaling formula" + fix);
  const double low = 1.0;
  const double high = std::stod(decimal(low - 1 / intercept, 4));
  const double original = std::round(slope * (high - low));
  const std::vector<double> expected = llama3_factors(theta, head_dim, factor, low, high, original);
  for (size_t i = 0; i < factors.size(); ++i)
    if (std::abs(expected[i] - factors[i]) > 1e-4 * factors[i])
      f.fail_tensor(t.name, "entry " + std::to_string(i) + " is " + decimal(factors[i], 9) +
                                " but the fitted llama3 scaling (factor " + decimal(factor, 6) + ", high_freq_factor " +
                                decimal(high, 6) + ", original_max_position_embeddings " + decimal(original, 9) +
                                ") gives " + decimal(expected[i], 9) + fix);
  if (notes)
    notes->push_back("rope_scaling llama3 derived from rope_freqs.weight: factor " + decimal(factor, 6) +
                     ", low_freq_factor 1 (assumed), high_freq_factor " + decimal(high, 6) +
                     ", original_max_position_embeddings " + decimal(original, 9));
  return {{"rope_type", "llama3"},
          {"factor", std::stod(decimal(factor, 7))},
          {"low_freq_factor", low},
          {"high_freq_factor", high},
          {"original_max_position_embeddings", static_cast<int64_t>(original)}};
}

json rope_scaling(const GgufFile& f, const ModelShape& m, double theta, std::vector<std::string>* notes) {
  const std::string a = m.arch + ".";
  const std::string type = f.get_string(a + "rope.scaling.type").value_or("none");
  const GgufTensorInfo* freqs = f.find_tensor("rope_freqs.weight");
  if (type == "linear" || (type == "none" && f.get_double(a + "rope.scale_linear").value_or(1.0) != 1.0)) {
    if (freqs) f.fail_tensor(freqs->name, "and linear rope scaling are both present: the file is inconsistent");
    const std::string key = type == "linear" ? a + "rope.scaling.factor" : a + "rope.scale_linear";
    const auto factor = f.get_double(key);
    if (!factor || *factor <= 0) f.fail_key(key, "is missing or not positive: linear rope scaling needs its factor");
    return {{"rope_type", "linear"}, {"factor", *factor}};
  }
  if (type != "none")
    f.fail_key(a + "rope.scaling.type", "\"" + type +
                                            "\" is not supported (supported: none, linear, and llama3 through "
                                            "rope_freqs.weight)");
  return freqs ? llama3_rope_scaling(f, *freqs, theta, m.head_dim, notes) : json(nullptr);
}

// ---- tokenizer metadata -----------------------------------------------------------------------

enum TokenType : int64_t { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

struct Vocab {
  std::vector<std::string> tokens;
  std::vector<int64_t> types;  // kNormal where the GGUF has no token_type
};

Vocab read_vocab(const GgufFile& f) {
  Vocab v;
  auto tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens || tokens->empty())
    f.fail_key("tokenizer.ggml.tokens",
               "is missing or empty: the GGUF carries no vocabulary to build tokenizer.json from");
  v.tokens = std::move(*tokens);
  v.types = f.get_int_array("tokenizer.ggml.token_type").value_or(std::vector<int64_t>(v.tokens.size(), kNormal));
  if (v.types.size() != v.tokens.size())
    f.fail_key("tokenizer.ggml.token_type",
               "has " + std::to_string(v.types.size()) + " entries for " + std::to_string(v.tokens.size()) + " tokens");
  return v;
}

// A special token id from tokenizer.ggml.KEY_token_id, checked against the vocabulary.
std::optional<int64_t> token_id(const GgufFile& f, const Vocab& v, const std::string& name) {
  const std::string key = "tokenizer.ggml." + name + "_token_id";
  const auto id = f.get_int(key);
  if (id && (*id < 0 || *id >= static_cast<int64_t>(v.tokens.size())))
    f.fail_key(key,
               "is " + std::to_string(*id) + ", outside the vocabulary [0, " + std::to_string(v.tokens.size()) + ")");
  return id;
}

json token_string(const Vocab& v, std::optional<int64_t> id) {
  return id ? json(v.tokens[static_cast<size_t>(*id)]) : json(nullptr);
}

std::string tokenizer_model(const GgufFile& f) {
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) f.fail_key("tokenizer.ggml.model", "is missing: the GGUF carries no tokenizer");
  if (*model != "gpt2" && *model != "llama")
    f.fail_key("tokenizer.ggml.model", "\"" + *model +
                                           "\" is not supported (supported: gpt2 = byte-level BPE, llama = "
                                           "SentencePiece BPE)");
  return *model;
}

bool add_bos(const GgufFile& f) {
  // llama.cpp's defaults: SentencePiece vocabularies add BOS, byte-level BPE ones do not.
  return f.get_bool("tokenizer.ggml.add_bos_token").value_or(tokenizer_model(f) == "llama");
}

bool add_eos(const GgufFile& f) { return f.get_bool("tokenizer.ggml.add_eos_token").value_or(false); }

// ---- tokenizer.json pieces --------------------------------------------------------------------

struct PreTokenizerRecipe {
  std::vector<const char*> names;  // tokenizer.ggml.pre values
  json normalizer;
  json pre_tokenizer;
  bool ignore_merges = false;
};

json byte_level(bool trim_offsets, bool use_regex) {
  return {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", trim_offsets}, {"use_regex", use_regex}};
}

json split_regex(const char* pattern) {
  return {{"type", "Split"}, {"pattern", {{"Regex", pattern}}}, {"behavior", "Isolated"}, {"invert", false}};
}

// The HF pre-tokenizers of the models whose GGUFs carry these tokenizer.ggml.pre names (llama.cpp
// picks the same regexes for them in llama-vocab.cpp).
const std::vector<PreTokenizerRecipe>& pre_tokenizers() {
  static const std::vector<PreTokenizerRecipe> table = [] {
    const char* llama3 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    const char* qwen2 =
        R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
    std::vector<PreTokenizerRecipe> t;
    // GPT-2: the ByteLevel pre-tokenizer with its built-in regex.
    t.push_back({{"default", "gpt2"}, nullptr, byte_level(true, true), false});
    // Llama 3: the GPT-4-style Split regex (digits in groups of up to three), then bytes; its BPE
    // takes a whole word found in the vocabulary without merging (ignore_merges).
    t.push_back({{"llama-bpe", "llama3"},
                 nullptr,
                 {{"type", "Sequence"}, {"pretokenizers", {split_regex(llama3), byte_level(true, false)}}},
                 true});
    // Qwen2: NFC, then the Llama 3 regex with single digits.
    t.push_back({{"qwen2"},
                 {{"type", "NFC"}},
                 {{"type", "Sequence"}, {"pretokenizers", {split_regex(qwen2), byte_level(false, false)}}},
                 false});
    // SmolLM/StarCoder: every digit alone, then GPT-2's ByteLevel regex.
    t.push_back({{"smollm"},
                 nullptr,
                 {{"type", "Sequence"},
                  {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}}, byte_level(true, true)}}},
                 false});
    return t;
  }();
  return table;
}

const PreTokenizerRecipe& pre_tokenizer_for(const GgufFile& f) {
  // llama.cpp treats a missing tokenizer.ggml.pre as "default" (files from before 2024-04).
  const std::string name = f.get_string("tokenizer.ggml.pre").value_or("default");
  for (const PreTokenizerRecipe& p : pre_tokenizers())
    for (const char* known : p.names)
      if (name == known) return p;
  f.fail_key("tokenizer.ggml.pre", "\"" + name +
                                       "\" is not a known pre-tokenizer (known: " + gguf_pre_tokenizer_names() +
                                       "); without it the text would be split differently from the original "
                                       "tokenizer. Import the model from its HF directory instead");
}

json added_token(int64_t id, const std::string& content, bool special) {
  // llama.cpp matches added tokens in the raw text, before any normalization: normalized = false.
  return {{"id", id},        {"content", content},  {"single_word", false}, {"lstrip", false},
          {"rstrip", false}, {"normalized", false}, {"special", special}};
}

json added_tokens(const Vocab& v) {
  json out = json::array();
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const int64_t type = v.types[id];
    if (type == kUnknown || type == kControl || type == kUserDefined)
      out.push_back(added_token(static_cast<int64_t>(id), v.tokens[id], type != kUserDefined));
  }
  return out;
}

// BOS (and EOS) around each sequence, as Llama's tokenizer.json does; nullopt when neither is added.
std::optional<json> template_processing(const GgufFile& f, const Vocab& v) {
  const bool bos = add_bos(f), eos = add_eos(f);
  if (!bos && !eos) return std::nullopt;
  const auto bos_id = token_id(f, v, "bos");
  const auto eos_id = token_id(f, v, "eos");
  if (bos && !bos_id) f.fail_key("tokenizer.ggml.bos_token_id", "is missing but add_bos_token is true");
  if (eos && !eos_id) f.fail_key("tokenizer.ggml.eos_token_id", "is missing but add_eos_token is true");
  auto special = [](const std::string& token, int type_id) {
    return json{{"SpecialToken", {{"id", token}, {"type_id", type_id}}}};
  };
  auto sequence = [](const char* id, int type_id) { return json{{"Sequence", {{"id", id}, {"type_id", type_id}}}}; };
  json single = json::array(), pair = json::array(), specials = json::object();
  for (int part = 0; part < 2; ++part) {
    json& out = part == 0 ? single : pair;
    for (int s = 0; s <= part; ++s) {
      if (bos) out.push_back(special(v.tokens[*bos_id], s));
      out.push_back(sequence(s == 0 ? "A" : "B", s));
      if (eos) out.push_back(special(v.tokens[*eos_id], s));
    }
  }
  for (auto [enabled, id] : {std::pair{bos, bos_id}, std::pair{eos, eos_id}})
    if (enabled) {
      const std::string& token = v.tokens[*id];
      specials[token] = {{"id", token}, {"ids", {*id}}, {"tokens", {token}}};
    }
  return json{{"type", "TemplateProcessing"}, {"single", single}, {"pair", pair}, {"special_tokens", specials}};
}

json vocab_object(const Vocab& v) {
  json vocab = json::object();
  for (size_t id = 0; id < v.tokens.size(); ++id) vocab.emplace(v.tokens[id], static_cast<int64_t>(id));  // first wins
  return vocab;
}

json bpe_model(json vocab, json merges, json unk_token, bool byte_fallback, bool ignore_merges) {
  return {{"type", "BPE"},
          {"dropout", nullptr},
          {"unk_token", std::move(unk_token)},
          {"continuing_subword_prefix", nullptr},
          {"end_of_word_suffix", nullptr},
          {"fuse_unk", byte_fallback},
          {"byte_fallback", byte_fallback},
          {"ignore_merges", ignore_merges},
          {"vocab", std::move(vocab)},
          {"merges", std::move(merges)}};
}

json gpt2_tokenizer(const GgufFile& f, const Vocab& v) {
  const PreTokenizerRecipe& pre = pre_tokenizer_for(f);
  const auto merge_lines = f.get_string_array("tokenizer.ggml.merges");
  if (!merge_lines) f.fail_key("tokenizer.ggml.merges", "is missing: a gpt2 (BPE) tokenizer needs its merges");
  json merges = json::array();
  for (size_t i = 0; i < merge_lines->size(); ++i) {
    const std::string& line = (*merge_lines)[i];
    const size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 == line.size())
      f.fail_key("tokenizer.ggml.merges",
                 "entry " + std::to_string(i) + " \"" + line + "\" is not two tokens separated by a space");
    merges.push_back({line.substr(0, space), line.substr(space + 1)});
  }
  const json post = template_processing(f, v).value_or(
      json{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false}, {"use_regex", true}});
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_tokens(v)},
          {"normalizer", pre.normalizer},
          {"pre_tokenizer", pre.pre_tokenizer},
          {"post_processor", post},
          {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
          {"model", bpe_model(vocab_object(v), std::move(merges), nullptr, false, pre.ignore_merges)}};
}

// Byte offsets where UTF-8 code points start inside `text`, excluding 0 and the end.
std::vector<size_t> code_point_boundaries(const std::string& text) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < text.size(); ++i)
    if ((static_cast<unsigned char>(text[i]) & 0xc0) != 0x80) cuts.push_back(i);
  return cuts;
}

// BPE merges from SentencePiece scores, as transformers' generate_merges (convert_slow_tokenizer):
// for each piece in id order, every split into two pieces of the vocabulary (ordered by their ids),
// then all of them stably sorted by (piece score, left length, right length) descending, lengths
// in code points.
json merges_from_scores(const Vocab& v, const std::vector<double>& scores) {
  std::unordered_map<std::string, int64_t> ids;
  ids.reserve(v.tokens.size());
  for (size_t id = 0; id < v.tokens.size(); ++id) ids.emplace(v.tokens[id], static_cast<int64_t>(id));
  struct Merge {
    int64_t left, right;
    double score;
    size_t left_length, right_length;
  };
  std::vector<Merge> merges;
  for (size_t id = 0; id < v.tokens.size(); ++id) {
    const std::string& piece = v.tokens[id];
    if (ids.at(piece) != static_cast<int64_t>(id)) continue;  // a repeated piece: its first id speaks for it
    const std::vector<size_t> cuts = code_point_boundaries(piece);
    std::vector<Merge> local;
    for (size_t c = 0; c < cuts.size(); ++c) {
      const auto left = ids.find(piece.substr(0, cuts[c]));
      const auto right = ids.find(piece.substr(cuts[c]));
      if (left != ids.end() && right != ids.end())
        local.push_back({left->second, right->second, scores[id], c + 1, cuts.size() - c});
    }
    std::sort(local.begin(), local.end(),
              [](const Merge& a, const Merge& b) { return std::pair(a.left, a.right) < std::pair(b.left, b.right); });
    merges.insert(merges.end(), local.begin(), local.end());
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& a, const Merge& b) {
    return std::tuple(a.score, a.left_length, a.right_length) > std::tuple(b.score, b.left_length, b.right_length);
  });
  json out = json::array();
  for (const Merge& m : merges) out.push_back({v.tokens[m.left], v.tokens[m.right]});
  return out;
}

json llama_tokenizer(const GgufFile& f, const Vocab& v) {
  const auto scores = f.get_double_array("tokenizer.ggml.scores");
  if (!scores) f.fail_key("tokenizer.ggml.scores", "is missing: SentencePiece merges are derived from the scores");
  if (scores->size() != v.tokens.size())
    f.fail_key("tokenizer.ggml.scores",
               "has " + std::to_string(scores->size()) + " entries for " + std::to_string(v.tokens.size()) + " tokens");
  const bool space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix").value_or(true);
  const json replace_space = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}};
  const json normalizer =
      space_prefix
          ? json{{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\u2581"}}, replace_space}}}
          : replace_space;
  json decoders = {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                   {{"type", "ByteFallback"}},
                   {{"type", "Fuse"}}};
  if (space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  const auto unk = token_id(f, v, "unknown");
  return {{"version", "1.0"},
          {"truncation", nullptr},
          {"padding", nullptr},
          {"added_tokens", added_tokens(v)},
          {"normalizer", normalizer},
          {"pre_tokenizer", nullptr},
          {"post_processor", template_processing(f, v).value_or(json(nullptr))},
          {"decoder", {{"type", "Sequence"}, {"decoders", decoders}}},
          {"model", bpe_model(vocab_object(v), merges_from_scores(v, *scores), token_string(v, unk), true, false)}};
}

// ---- tensors ----------------------------------------------------------------------------------

struct PlannedTensor {
  std::string hf_name;
  std::string gguf_name;
  Shape shape;               // HF (row-major) shape
  int64_t rotary_heads = 0;  // > 0: rows interleaved per head by convert_hf_to_gguf.py, to undo
};

std::vector<PlannedTensor> plan_tensors(const ModelShape& m) {
  const int64_t d = m.hidden, q = m.heads * m.head_dim, kv = m.kv_heads * m.head_dim, ff = m.intermediate;
  const bool permuted = m.arch == "llama";
  std::vector<PlannedTensor> plan;
  plan.push_back({"model.embed_tokens.weight", "token_embd.weight", {m.vocab, d}});
  for (int64_t l = 0; l < m.layers; ++l) {
    const std::string hf = "model.layers." + std::to_string(l) + ".";
    const std::string gg = "blk." + std::to_string(l) + ".";
    plan.push_back({hf + "input_layernorm.weight", gg + "attn_norm.weight", {d}});
    struct Projection {
      const char* hf;
      const char* gguf;
      int64_t out, in;
      bool bias;
      int64_t rotary_heads;
    };
    const Projection projections[] = {
        {"self_attn.q_proj", "attn_q", q, d, m.qkv_bias, permuted ? m.heads : 0},
        {"self_attn.k_proj", "attn_k", kv, d, m.qkv_bias, permuted ? m.kv_heads : 0},
        {"self_attn.v_proj", "attn_v", kv, d, m.qkv_bias, 0},
        {"self_attn.o_proj", "attn_output", d, q, m.o_bias, 0},
        {"mlp.gate_proj", "ffn_gate", ff, d, m.mlp_bias, 0},
        {"mlp.up_proj", "ffn_up", ff, d, m.mlp_bias, 0},
        {"mlp.down_proj", "ffn_down", d, ff, m.mlp_bias, 0},
    };
    for (const Projection& p : projections) {
      plan.push_back({hf + p.hf + ".weight", gg + p.gguf + ".weight", {p.out, p.in}, p.rotary_heads});
      if (p.bias) plan.push_back({hf + p.hf + ".bias", gg + p.gguf + ".bias", {p.out}, p.rotary_heads});
    }
    plan.push_back({hf + "post_attention_layernorm.weight", gg + "ffn_norm.weight", {d}});
  }
  plan.push_back({"model.norm.weight", "output_norm.weight", {d}});
  if (!m.tied) plan.push_back({"lm_head.weight", "output.weight", {m.vocab, d}});
  return plan;
}

// Every planned tensor is present with its shape, and the file holds nothing else (but
// rope_freqs.weight, which becomes config.json's rope_scaling).
void check_tensors(const GgufFile& f, const std::vector<PlannedTensor>& plan) {
  std::unordered_map<std::string, const PlannedTensor*> by_gguf_name;
  for (const PlannedTensor& p : plan) {
    const GgufTensorInfo& t = required_tensor(f, p.gguf_name, "HF's " + p.hf_name);
    if (!(t.shape() == p.shape))
      f.fail_tensor(p.gguf_name, "has the row-major shape " + t.shape().str() + " (GGUF dims reversed), expected " +
                                     p.shape.str() + " for " + p.hf_name + " from the metadata");
    by_gguf_name.emplace(p.gguf_name, &p);
  }
  for (const GgufTensorInfo& t : f.tensors())
    if (!by_gguf_name.count(t.name) && t.name != "rope_freqs.weight")
      f.fail_tensor(t.name, "has no counterpart in an HF " + architecture_of(f) +
                                " checkpoint (is this a variant of the architecture import-gguf does not know?)");
}

// convert_hf_to_gguf.py's permute: within each head of hd rows, HF row i·hd/2 + j (the two
// rotary halves, i = 0, 1) was stored at row 2j + i. Put every row back.
Tensor undo_rotary_permutation(const Tensor& t, int64_t heads) {
  const int64_t rows = t.shape()[0];
  const int64_t row_elements = t.numel() / rows;
  const int64_t hd = rows / heads, half = hd / 2;
  Tensor out = Tensor::empty(t.shape(), DType::f32);
  const float* src = t.as<float>();
  float* dst = out.as<float>();
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t i = 0; i < 2; ++i)
      for (int64_t j = 0; j < half; ++j)
        std::memcpy(dst + (h * hd + i * half + j) * row_elements, src + (h * hd + 2 * j + i) * row_elements,
                    sizeof(float) * row_elements);
  return out;
}

const char* torch_dtype(DType dtype) { return dtype == DType::bf16 ? "bfloat16" : "float32"; }

std::string dump(const GgufFile& f, const json& j, const char* what) {
  try {
    return j.dump(2) + "\n";
  } catch (const json::type_error& e) {
    f.fail(std::string(what) + " cannot be written: " + e.what() + " (a token or template is not valid UTF-8)");
  }
}

json hf_config(const GgufFile& f, const ModelShape& m, std::vector<std::string>* notes) {
  const std::string a = m.arch + ".";
  const double theta = f.get_double(a + "rope.freq_base").value_or(10000.0);
  const auto eps = f.get_double(a + "attention.layer_norm_rms_epsilon");
  if (!eps) f.fail_key(a + "attention.layer_norm_rms_epsilon", "is missing (every llama.cpp conversion writes it)");
  json c = {{"architectures", {m.arch == "llama" ? "LlamaForCausalLM" : "Qwen2ForCausalLM"}},
            {"model_type", m.arch},
            {"hidden_act", "silu"},
            {"hidden_size", m.hidden},
            {"intermediate_size", m.intermediate},
            {"num_hidden_layers", m.layers},
            {"num_attention_heads", m.heads},
            {"num_key_value_heads", m.kv_heads},
            {"head_dim", m.head_dim},
            {"vocab_size", m.vocab},
            {"max_position_embeddings", f.get_int(a + "context_length").value_or(2048)},
            {"rms_norm_eps", *eps},
            {"rope_theta", theta},
            {"rope_scaling", rope_scaling(f, m, theta, notes)},
            {"tie_word_embeddings", m.tied},
            {"initializer_range", 0.02},
            {"attention_dropout", 0.0},
            {"use_cache", true}};
  if (m.arch == "llama") {
    c["attention_bias"] = m.qkv_bias;
    c["mlp_bias"] = m.mlp_bias;
  } else {
    c["use_sliding_window"] = false;
    c["sliding_window"] = nullptr;
    c["max_window_layers"] = m.layers;
  }
  for (const char* name : {"bos", "eos"})
    if (const auto id = f.get_int(std::string("tokenizer.ggml.") + name + "_token_id"))
      c[std::string(name) + "_token_id"] = *id;
  return c;
}

json hf_tokenizer(const GgufFile& f, const Vocab& v) {
  return tokenizer_model(f) == "gpt2" ? gpt2_tokenizer(f, v) : llama_tokenizer(f, v);
}

json hf_tokenizer_config(const GgufFile& f, const Vocab& v) {
  const std::string model = tokenizer_model(f);
  json c = {{"tokenizer_class", "PreTrainedTokenizerFast"},
            {"add_bos_token", add_bos(f)},
            {"add_eos_token", add_eos(f)},
            {"bos_token", token_string(v, token_id(f, v, "bos"))},
            {"eos_token", token_string(v, token_id(f, v, "eos"))},
            {"pad_token", token_string(v, token_id(f, v, "padding"))},
            {"unk_token", token_string(v, token_id(f, v, "unknown"))},
            {"clean_up_tokenization_spaces", false}};
  if (const auto arch = f.get_string("general.architecture"))
    if (const auto context = f.get_int(*arch + ".context_length")) c["model_max_length"] = *context;
  if (const auto chat_template = f.get_string("tokenizer.chat_template")) c["chat_template"] = *chat_template;
  return c;
}

json hf_generation_config(const GgufFile& f, const Vocab& v) {
  json c = json::object();
  if (const auto bos = token_id(f, v, "bos")) c["bos_token_id"] = *bos;
  // Chat models end a turn with an end-of-turn token that llama.cpp keeps apart from EOS;
  // generation stops on any of them.
  std::vector<int64_t> stops;
  for (const char* name : {"eos", "eot", "eom"})
    if (const auto id = token_id(f, v, name); id && std::find(stops.begin(), stops.end(), *id) == stops.end())
      stops.push_back(*id);
  if (stops.size() == 1) c["eos_token_id"] = stops[0];
  if (stops.size() > 1) c["eos_token_id"] = stops;
  if (const auto pad = token_id(f, v, "padding")) c["pad_token_id"] = *pad;
  return c;
}

}  // namespace

std::string gguf_pre_tokenizer_names() {
  std::string list;
  for (const PreTokenizerRecipe& p : pre_tokenizers())
    for (const char* name : p.names) list += (list.empty() ? "" : ", ") + std::string(name);
  return list;
}

json gguf_hf_config(const GgufFile& f, std::vector<std::string>* notes) { return hf_config(f, model_shape(f), notes); }

json gguf_hf_tokenizer(const GgufFile& f) { return hf_tokenizer(f, read_vocab(f)); }

json gguf_hf_tokenizer_config(const GgufFile& f) { return hf_tokenizer_config(f, read_vocab(f)); }

json gguf_hf_generation_config(const GgufFile& f) { return hf_generation_config(f, read_vocab(f)); }

GgufImportSummary import_gguf(const std::string& gguf_path, const std::string& out_dir,
                              const GgufImportOptions& options) {
  namespace fs = std::filesystem;
  if (options.dtype != DType::f32 && options.dtype != DType::bf16)
    throw Error("import-gguf: the storage dtype must be f32 or bf16, got " + std::string(dtype_name(options.dtype)));
  const GgufFile f(gguf_path);
  GgufImportSummary summary;
  const ModelShape m = model_shape(f);
  json config = hf_config(f, m, &summary.notes);
  config["torch_dtype"] = torch_dtype(options.dtype);
  // The tokenizer files are built (and any error in them raised) before the long tensor pass.
  const Vocab vocab = read_vocab(f);
  const std::string tokenizer = dump(f, hf_tokenizer(f, vocab), "tokenizer.json");
  const std::string tokenizer_config = dump(f, hf_tokenizer_config(f, vocab), "tokenizer_config.json");
  const std::string generation_config = dump(f, hf_generation_config(f, vocab), "generation_config.json");

  const std::vector<PlannedTensor> plan = plan_tensors(m);
  check_tensors(f, plan);
  fs::create_directories(out_dir);

  NamedTensors tensors;
  for (size_t i = 0; i < plan.size(); ++i) {
    const PlannedTensor& p = plan[i];
    const GgufTensorInfo& t = *f.find_tensor(p.gguf_name);
    if (options.on_tensor) options.on_tensor(i, plan.size(), p.hf_name, ggml_type_name(t.type));
    Tensor value = dequantize(f, t);
    if (p.rotary_heads > 0) value = undo_rotary_permutation(value, p.rotary_heads);
    if (options.dtype != DType::f32) value = value.to(options.dtype);
    summary.parameters += value.numel();
    tensors.emplace_back(p.hf_name, std::move(value));
  }
  const std::vector<std::pair<std::string, View>> views(tensors.begin(), tensors.end());
  write_safetensors((fs::path(out_dir) / "model.safetensors").string(), views, {{"format", "pt"}});
  write_file_whole((fs::path(out_dir) / "tokenizer.json").string(), tokenizer);
  write_file_whole((fs::path(out_dir) / "tokenizer_config.json").string(), tokenizer_config);
  write_file_whole((fs::path(out_dir) / "generation_config.json").string(), generation_config);
  write_file_whole((fs::path(out_dir) / "config.json").string(), config.dump(2) + "\n");
  summary.architecture = m.arch;
  summary.tensors = plan.size();
  return summary;
}

}  // namespace fe
