#include "engine/gguf_dequantize.h"

#include <cstring>

#include "kernels/half.h"

namespace fe {
namespace {

// Each decoder turns one block at `b` into its elements at `y`. Byte offsets follow ggml's block
// structs (ggml-common.h); every multi-byte field is read with memcpy (blocks are not aligned).
// The float operations are ggml's, in its order (scale times code, then plus the minimum), so
// results are bit-identical to the reference dequantizers.

constexpr int64_t kQK = 32;    // elements per block of the Qn_m types
constexpr int64_t kQKK = 256;  // elements per super-block of the K types

float f16_at(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return f16_to_f32(h);
}

uint32_t u32_at(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

void block_f32(const uint8_t* b, float* y) { std::memcpy(y, b, 4); }

void block_f16(const uint8_t* b, float* y) { *y = f16_at(b); }

void block_bf16(const uint8_t* b, float* y) {
  uint16_t h;
  std::memcpy(&h, b, 2);
  *y = bf16_to_f32(h);
}

// block_q8_0: f16 d, int8 qs[32]; x = qs·d.
void block_q8_0(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  for (int j = 0; j < kQK; ++j) y[j] = static_cast<float>(static_cast<int8_t>(b[2 + j])) * d;
}

// block_q4_0, block_q4_1, block_q5_0, block_q5_1: f16 d; for the _1 kinds an f16 minimum m; for
// Q5 a uint32 qh whose bit j is the fifth bit of element j; then qs[16], element j in the low
// nibble of byte j and element j+16 in its high nibble. x = (q − 8)·d (Q4_0), (q − 16)·d (Q5_0),
// or q·d + m (Q4_1, Q5_1).
template <bool kFifthBit, bool kMinimum>
void block_q_legacy(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float m = kMinimum ? f16_at(b + 2) : 0.0f;
  const uint8_t* after_scales = b + (kMinimum ? 4 : 2);
  const uint32_t qh = kFifthBit ? u32_at(after_scales) : 0;
  const uint8_t* qs = after_scales + (kFifthBit ? 4 : 0);
  constexpr int kCentre = kFifthBit ? 16 : 8;
  for (int j = 0; j < kQK / 2; ++j) {
    int low = qs[j] & 0x0f;
    int high = qs[j] >> 4;
    if constexpr (kFifthBit) {
      low |= static_cast<int>(((qh >> j) & 1u) << 4);
      high |= static_cast<int>(((qh >> (j + 16)) & 1u) << 4);
    }
    if constexpr (kMinimum) {
      y[j] = static_cast<float>(low) * d + m;
      y[j + kQK / 2] = static_cast<float>(high) * d + m;
    } else {
      y[j] = static_cast<float>(low - kCentre) * d;
      y[j + kQK / 2] = static_cast<float>(high - kCentre) * d;
    }
  }
}

// The 6-bit scale and min of sub-block s (0..7) of a Q4_K/Q5_K super-block, packed in 12 bytes:
// sub-blocks 0-3 in the low 6 bits of bytes s and s+4; sub-blocks 4-7 in the nibbles of bytes
// s+4 with their top 2 bits in the high bits of bytes s−4 and s (ggml's get_scale_min_k4).
void scale_min_k4(int s, const uint8_t* q, uint8_t& scale, uint8_t& min) {
  if (s < 4) {
    scale = q[s] & 63;
    min = q[s + 4] & 63;
  } else {
    scale = static_cast<uint8_t>((q[s + 4] & 0x0f) | ((q[s - 4] >> 6) << 4));
    min = static_cast<uint8_t>((q[s + 4] >> 4) | ((q[s] >> 6) << 4));
  }
}

// block_q4_K: f16 d, f16 dmin, scales[12], qs[128]; block_q5_K adds qh[32] before qs, bit s of
// qh[l] being the fifth bit of element l of sub-block s. Eight sub-blocks of 32: sub-blocks 2c and
// 2c+1 are the low and high nibbles of bytes qs[32c .. 32c+31]; x = (d·scale)·q − dmin·min.
template <bool kFifthBit>
void block_qk(const uint8_t* b, float* y) {
  const float d = f16_at(b);
  const float dmin = f16_at(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* qh = b + 16;
  const uint8_t* qs = b + (kFifthBit ? 48 : 16);
  for (int s = 0; s < 8; ++s) {
    uint8_t scale, min;
    scale_min_k4(s, scales, scale, min);
    const float d1 = d * static_cast<float>(scale);
    const float m1 = dmin * static_cast<float>(min);
    const uint8_t* q = qs + 32 * (s / 2);
    const int shift = 4 * (s % 2);
    for (int l = 0; l < 32; ++l) {
      int code = (q[l] >> shift) & 0x0f;
      if constexpr (kFifthBit) code |= ((qh[l] >> s) & 1) << 4;
      y[32 * s + l] = d1 * static_cast<float>(code) - m1;
    }
  }
}

// block_q6_K: ql[128] (low 4 bits), qh[64] (high 2 bits), int8 scales[16], f16 d. Two halves of
// 128 elements; in half h, element 32·k + l takes the low nibble (k = 0, 1) or high nibble (k = 2,
// 3) of ql[64h + l + 32·(k % 2)] and bits 2k..2k+1 of qh[32h + l]; x = (d·scale[e/16])·(q − 32).
void block_q6_k(const uint8_t* b, float* y) {
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const auto* scales = reinterpret_cast<const int8_t*>(b + 192);
  const float d = f16_at(b + 208);
  for (int h = 0; h < 2; ++h) {
    for (int k = 0; k < 4; ++k) {
      for (int l = 0; l < 32; ++l) {
        const int e = 128 * h + 32 * k + l;
        const int low = (ql[64 * h + l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0f;
        const int high = (qh[32 * h + l] >> (2 * k)) & 3;
        const float scale = d * static_cast<float>(scales[e / 16]);
        y[e] = scale * static_cast<float>((low | (high << 4)) - 32);
      }
    }
  }
}

using BlockDecoder = void (*)(const uint8_t*, float*);

BlockDecoder decoder_for(GgmlType type) {
  switch (type) {
    case GgmlType::F32:
      return block_f32;
    case GgmlType::F16:
      return block_f16;
    case GgmlType::BF16:
      return block_bf16;
    case GgmlType::Q8_0:
      return block_q8_0;
    case GgmlType::Q4_0:
      return block_q_legacy<false, false>;
    case GgmlType::Q4_1:
      return block_q_legacy<false, true>;
    case GgmlType::Q5_0:
      return block_q_legacy<true, false>;
    case GgmlType::Q5_1:
      return block_q_legacy<true, true>;
    case GgmlType::Q4_K:
      return block_qk<false>;
    case GgmlType::Q5_K:
      return block_qk<true>;
    case GgmlType::Q6_K:
      return block_q6_k;
    default:
      return nullptr;
  }
}

std::string unsupported_message(GgmlType type) {
  return "type " + ggml_type_name(type) + " cannot be dequantized (supported: " + dequantizable_type_names() +
         "); requantize the model to one of them, e.g. llama-quantize --allow-requantize IN.gguf OUT.gguf Q8_0";
}

}  // namespace

bool ggml_type_dequantizable(GgmlType type) { return decoder_for(type) != nullptr; }

const char* dequantizable_type_names() { return "F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K"; }

void dequantize_blocks(GgmlType type, const std::byte* blocks, int64_t count, float* out) {
  const BlockDecoder decode = decoder_for(type);
  const GgmlTypeLayout* layout = ggml_type_layout(type);
  if (!decode || !layout) throw Error("dequantize: " + unsupported_message(type));
  if (count < 0 || count % layout->block_elements != 0)
    throw Error("dequantize: " + std::to_string(count) + " elements are not a whole number of " + layout->name +
                " blocks of " + std::to_string(layout->block_elements));
  const int64_t n_blocks = count / layout->block_elements;
  const auto* bytes = reinterpret_cast<const uint8_t*>(blocks);
  // Blocks are independent; a team only pays for itself on large tensors.
#pragma omp parallel for schedule(static) if (count > (1 << 20))
  for (int64_t i = 0; i < n_blocks; ++i) decode(bytes + i * layout->block_bytes, out + i * layout->block_elements);
}

Tensor dequantize(const GgufFile& file, const GgufTensorInfo& tensor) {
  if (!ggml_type_dequantizable(tensor.type)) file.fail_tensor(tensor.name, unsupported_message(tensor.type));
  Tensor out = Tensor::empty(tensor.shape(), DType::f32);
  dequantize_blocks(tensor.type, tensor.data, tensor.numel(), out.as<float>());
  return out;
}

}  // namespace fe
