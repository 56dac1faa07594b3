// engine/gguf_dequantize.h — ggml's tensor storage types decoded to f32.
//
// Supported: F32, F16, BF16 (plain floats) and the block formats Q8_0, Q4_0, Q4_1, Q5_0, Q5_1
// (32 elements per block: an f16 scale d, for the _1 kinds an f16 minimum m, 4/5/8-bit codes q;
// x = d·q (q centred: −8, −16) or d·q + m) and the K-quants Q4_K, Q5_K, Q6_K (256-element
// super-blocks of 16 or 32-element sub-blocks with 6- or 8-bit scales under an f16 d, Q4_K/Q5_K
// also with mins under an f16 dmin). The layouts are ggml's (ggml-common.h) and the arithmetic is
// the reference dequantizer's (ggml-quants.c), in the same order of float operations, so the
// result is bit-identical to it (tests/gguf_test.cpp checks every type against the gguf Python
// package's dequantizer).
// Any other type (Q2_K, Q3_K, the IQ and TQ kinds, integer types) is an error naming the tensor and
// the type, with the fix: requantize the model to a supported type with llama-quantize.
#pragma once

#include <cstddef>
#include <cstdint>

#include "engine/gguf.h"
#include "engine/tensor.h"

namespace fe {

bool ggml_type_dequantizable(GgmlType type);
const char* dequantizable_type_names();  // "F32, F16, BF16, Q8_0, ..." for messages and --help

// Decodes `count` elements of `type` stored at `blocks` into `out`. `count` must be a whole number
// of blocks; an unsupported type or a partial block is an Error naming the type.
void dequantize_blocks(GgmlType type, const std::byte* blocks, int64_t count, float* out);

// The tensor as a new f32 CPU Tensor in row-major order (the GGUF dims reversed). Error naming the
// file, the tensor and its type when the type is not supported.
Tensor dequantize(const GgufFile& file, const GgufTensorInfo& tensor);

}  // namespace fe
