// Every op's cases, defined once and run on every backend against the CPU in double precision
// (ggml's test-backend-ops). A backend is a device and the activation dtypes its twins take: the
// CPU in f32, CUDA in f32 and bf16. Each case draws random inputs (never zeros), rounds them to the
// dtype under test, runs the public op with views on the backend — outputs poisoned with NaN first,
// so an unwritten element fails, and misaligned views where a kernel has a 128-bit path — and
// compares with the same op run by the CPU twin in f64 on the same rounded values. Tolerances are
// relative L2 errors: 1e-5 for f32 and 1e-2 for bf16 unless a case says otherwise; dtype
// conversions and fills are compared bit for bit. A backend that is not available (CUDA without a
// GPU or without nvcc) skips every case, saying why. What needs f64 (finite differences) and the
// CPU's own edge cases live in kernels_test.cpp and clip_test.cpp.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <string>
#include <tuple>
#include <vector>

#include "engine/rng.h"
#include "engine/tensor.h"
#include "kernels/adamw.h"
#include "kernels/attention.h"
#include "kernels/clip.h"
#include "kernels/cross_entropy.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/half.h"
#include "kernels/linear.h"
#include "kernels/rmsnorm.h"
#include "kernels/rope.h"
#include "kernels/swiglu.h"
#include "tests/test_util.h"

#ifdef FE_HAVE_CUDA
#include "kernels/cuda/check.h"
#endif

namespace fe {
namespace {

using test::relative_error;

// ---- backends

struct Backend {
  const char* name;
  Device device;
  std::vector<DType> dtypes;  // the activation dtypes its twins take
};

const Backend kBackends[] = {{"cpu", Device::cpu, {DType::f32}}, {"cuda", Device::cuda, {DType::f32, DType::bf16}}};

// Why the backend cannot run on this machine; empty when it can.
std::string unavailable(const Backend& b) {
  if (b.device == Device::cpu) return "";
#ifdef FE_HAVE_CUDA
  return cuda::device_count() == 0 ? "no CUDA device on this machine" : "";
#else
  return "built without CUDA (nvcc was not found at configure time)";
#endif
}

bool takes(const Backend& b, DType dtype) {
  for (DType d : b.dtypes)
    if (d == dtype) return true;
  return false;
}

// A float dtype the backend cannot mix with f32 in one op (the CPU's other dtype, the GPU's bf16).
DType other_float(const Backend& b) { return b.device == Device::cpu ? DType::f64 : DType::bf16; }

// A view on the other device than the backend's: a host tensor for CUDA, and for the CPU a view that
// claims to be on the GPU (the checks reject it before anything reads it).
View on_other_device(const Backend& b, const Tensor& host) {
  if (b.device == Device::cuda) return host;
  View v = host;
  v.device = Device::cuda;
  return v;
}

// ---- inputs and comparisons

// A host tensor of N(0, scale) values rounded to dtype.
Tensor random_host(Shape shape, DType dtype, Rng& rng, double scale = 1.0) {
  return test::random_tensor(shape, rng, scale).to(dtype);
}

// The backend's copy of a host tensor, optionally one element past a 16-byte boundary (the
// kernels' one-element path, and an operand cuBLASLt is told is misaligned).
Tensor misaligned_copy(const Tensor& t) {
  Tensor storage = Tensor::empty(Shape{t.numel() + 1}, t.dtype(), t.device());
  Tensor view = storage.rows(1, t.numel() + 1).reshaped(t.shape());
  kernels::copy(view, t);
  return view;
}
Tensor put(const Backend& b, const Tensor& host, bool aligned = true) {
  const Tensor t = host.to_device(b.device);
  return aligned ? t : misaligned_copy(t);
}

// The f64 reference input: the same (rounded) values, on the host.
Tensor f64(const Tensor& t) { return t.to_device(Device::cpu).to(DType::f64); }

// Memory filled with NaN (integers: a sentinel), so what a kernel does not write shows.
Tensor poisoned(const Backend& b, Shape shape, DType dtype) {
  Tensor t = Tensor::empty(shape, dtype, b.device);
  kernels::fill(t, is_floating(dtype) ? std::nan("") : -123456.0);
  return t;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  const Tensor ha = a.to_device(Device::cpu), hb = b.to_device(Device::cpu);
  return ha.nbytes() == hb.nbytes() && std::memcmp(ha.data(), hb.data(), ha.nbytes()) == 0;
}

bool all_nan(const Tensor& t) {
  const Tensor h = f64(t);
  for (int64_t i = 0; i < h.numel(); ++i)
    if (!std::isnan(h.as<double>()[i])) return false;
  return true;
}

// The relative L2 tolerance of most twins: 1e-5 for f32, 1e-2 for bf16.
double default_tolerance(DType dtype) { return dtype == DType::bf16 ? 1e-2 : 1e-5; }

using ErrorOf = double (*)(const Tensor& got, const Tensor& want);

// EXPECT error(got, want) < tolerance, naming what, the dtype under test and the shape.
void expect_close(const Tensor& got, const Tensor& want, DType dtype, double tolerance, const std::string& what,
                  ErrorOf error = relative_error) {
  EXPECT_LT(error(f64(got), want.to(DType::f64)), tolerance)
      << what << " " << dtype_name(dtype) << " " << got.shape().str();
}
void expect_close(const Tensor& got, const Tensor& want, DType dtype, const std::string& what) {
  expect_close(got, want, dtype, default_tolerance(dtype), what);
}

std::vector<View> views_of(const std::vector<Tensor>& tensors) {
  return std::vector<View>(tensors.begin(), tensors.end());
}

// Element counts around the 128-bit packs (4 f32, 8 bf16) and the 16384-element chunks.
const int64_t kSizes[] = {1, 7, 8, 1000, 16384, 16389, 70001};

// ---- copy, convert, fill

void copy_round_trip(const Backend& b) {
  Rng rng(1);
  const Tensor host = random_host(Shape{3, 5}, DType::f32, rng);
  const Tensor there = put(b, host);
  EXPECT_EQ(there.device(), b.device);
  EXPECT_TRUE(same_bytes(there.to_device(b.device), host));  // on the device
  EXPECT_TRUE(same_bytes(there, host));                      // and back
}

// The contract of convert and fill, written out: f64 values (exact for every source dtype here)
// rounded to dtype as the CPU rounds them — bf16 and f16 through f32, integers by truncation.
Tensor rounded_as_the_cpu(const Tensor& values, DType dtype) {
  const Tensor v = values.dtype() == DType::f64 ? values : f64(values);
  Tensor out = Tensor::empty(v.shape(), dtype);
  for (int64_t i = 0; i < v.numel(); ++i) {
    const double x = v.as<double>()[i];
    switch (dtype) {
      case DType::f32:
        out.as<float>()[i] = static_cast<float>(x);
        break;
      case DType::f64:
        out.as<double>()[i] = x;
        break;
      case DType::bf16:
        out.as<uint16_t>()[i] = f32_to_bf16(static_cast<float>(x));
        break;
      case DType::f16:
        out.as<uint16_t>()[i] = f32_to_f16(static_cast<float>(x));
        break;
      case DType::i32:
        out.as<int32_t>()[i] = static_cast<int32_t>(x);
        break;
      case DType::i64:
        out.as<int64_t>()[i] = static_cast<int64_t>(x);
        break;
    }
  }
  return out;
}

void convert_bit_for_bit(const Backend& b) {
  Rng rng(2);
  const DType floats[] = {DType::f32, DType::f64, DType::bf16, DType::f16};
  for (int64_t n : {int64_t{1}, int64_t{13}, int64_t{40000}})
    for (DType from : floats)
      for (DType to : floats) {
        const Tensor src = random_host(Shape{n}, from, rng, 100.0);
        const Tensor want = rounded_as_the_cpu(src, to);
        Tensor out = poisoned(b, Shape{n}, to);
        kernels::convert(out, put(b, src));
        EXPECT_TRUE(same_bytes(out, want)) << dtype_name(from) << " → " << dtype_name(to) << " n=" << n;
        Tensor odd = misaligned_copy(poisoned(b, Shape{n}, to));
        kernels::convert(odd, put(b, src, false));
        EXPECT_TRUE(same_bytes(odd, want)) << "misaligned " << dtype_name(from) << " → " << dtype_name(to);
      }
  Tensor id_values = Tensor::empty(Shape{1001}, DType::f64);
  for (int i = 0; i < 1001; ++i) id_values.as<double>()[i] = i * 7919 - 3000000;
  const Tensor ids32 = rounded_as_the_cpu(id_values, DType::i32);
  Tensor ids64 = poisoned(b, Shape{1001}, DType::i64);
  kernels::convert(ids64, put(b, ids32));
  EXPECT_TRUE(same_bytes(ids64, rounded_as_the_cpu(id_values, DType::i64)));
  Tensor back = poisoned(b, Shape{1001}, DType::i32);
  kernels::convert(back, ids64);
  EXPECT_TRUE(same_bytes(back, ids32));
}

void fill_bits(const Backend& b) {
  for (DType dtype : {DType::f32, DType::f64, DType::bf16, DType::f16, DType::i32, DType::i64})
    for (int64_t n : kSizes)
      for (double value : {0.0, -3.25, 7.0}) {
        Tensor filled = Tensor::empty(Shape{n}, dtype, b.device);
        kernels::fill(filled, value);
        Tensor values = Tensor::empty(Shape{n}, DType::f64);
        for (int64_t i = 0; i < n; ++i) values.as<double>()[i] = value;
        EXPECT_TRUE(same_bytes(filled, rounded_as_the_cpu(values, dtype)))
            << dtype_name(dtype) << " n=" << n << " value=" << value;
      }
}

// ---- elementwise and list ops

void axpy_scale_sum_squares(const Backend& b) {
  Rng rng(3);
  for (DType dtype : b.dtypes)
    for (int64_t n : kSizes)
      for (bool aligned : {true, false}) {
        const Tensor y = random_host(Shape{n}, dtype, rng), x = random_host(Shape{n}, dtype, rng);
        Tensor by = put(b, y, aligned);
        kernels::axpy(by, put(b, x, aligned), -0.75);
        Tensor ry = f64(y);
        kernels::axpy(ry, f64(x), -0.75);
        expect_close(by, ry, dtype, "axpy");

        kernels::scale(by, 1.5);
        kernels::scale(ry, 1.5);
        expect_close(by, ry, dtype, "scale");

        const double sq = kernels::sum_squares(by);
        const double expected = kernels::sum_squares(f64(by));
        EXPECT_NEAR(sq, expected, 1e-6 * expected) << "sum_squares n=" << n;
        EXPECT_EQ(kernels::sum_squares(by), sq) << "sum_squares is deterministic";
      }
}

void global_norm_and_scale_all(const Backend& b) {
  Rng rng(4);
  const int64_t sizes[] = {16, 70001, 1, 0, 4099, 16384};
  for (DType dtype : b.dtypes) {
    std::vector<Tensor> on_backend, reference;
    for (size_t k = 0; k < std::size(sizes); ++k) {
      const Tensor host = random_host(Shape{sizes[k]}, dtype, rng);
      on_backend.push_back(put(b, host, k % 2 == 0));
      reference.push_back(f64(host));
    }
    const double norm = kernels::global_norm(views_of(on_backend));
    const double expected = kernels::global_norm(views_of(reference));
    EXPECT_NEAR(norm, expected, 1e-6 * expected) << dtype_name(dtype);
    EXPECT_EQ(kernels::global_norm(views_of(on_backend)), norm) << "deterministic";

    kernels::scale_all(views_of(on_backend), 0.3);
    kernels::scale_all(views_of(reference), 0.3);
    for (size_t k = 0; k < on_backend.size(); ++k)
      if (on_backend[k].numel() > 0)
        expect_close(on_backend[k], reference[k], dtype, "scale_all[" + std::to_string(k) + "]");
  }
}

void gaussian_noise(const Backend& b) {
  Rng rng(5);
  for (DType dtype : b.dtypes)
    for (int64_t n : kSizes)
      for (uint64_t offset : {uint64_t{0}, uint64_t{3}, uint64_t{1} << 40}) {
        const Tensor x = random_host(Shape{n}, dtype, rng);
        Tensor noisy = put(b, x, offset % 2 == 0);
        kernels::add_gaussian_noise(noisy, 0.7, 1234, offset);
        Tensor reference = f64(x);
        kernels::add_gaussian_noise(reference, 0.7, 1234, offset);
        expect_close(noisy, reference, dtype, "noise offset " + std::to_string(offset));
      }
}

void adamw(const Backend& b) {
  Rng rng(6);
  const kernels::AdamWHyper h{.lr = 1e-2, .beta1 = 0.9, .beta2 = 0.99, .eps = 1e-8, .weight_decay = 0.05};
  for (DType dtype : b.dtypes) {
    // [0] param, [1] grad, [2] m, [3] v: on the backend (every other one misaligned) and in f64.
    std::vector<Tensor> there[4], reference[4];
    for (int64_t n : kSizes) {
      Tensor v = test::random_tensor(Shape{n}, rng, 0.01);
      for (int64_t i = 0; i < n; ++i) v.as<double>()[i] = std::abs(v.as<double>()[i]);  // v ≥ 0
      const Tensor state[4] = {random_host(Shape{n}, dtype, rng), random_host(Shape{n}, dtype, rng, 0.1),
                               random_host(Shape{n}, dtype, rng, 0.01), v.to(dtype)};
      const bool aligned = there[0].size() % 2 == 0;
      for (int k = 0; k < 4; ++k) {
        there[k].push_back(put(b, state[k], aligned));
        reference[k].push_back(f64(state[k]));
      }
    }
    auto& [bp, bg, bm, bv] = there;
    auto& [rp, rg, rm, rv] = reference;
    for (int step = 1; step <= 3; ++step) {
      kernels::adamw_step_all(views_of(bp), views_of(bg), views_of(bm), views_of(bv), h, step);
      kernels::adamw_step_all(views_of(rp), views_of(rg), views_of(rm), views_of(rv), h, step);
    }
    kernels::adamw_step(bp[3], bg[3], bm[3], bv[3], h, 4);
    kernels::adamw_step(rp[3], rg[3], rm[3], rv[3], h, 4);
    for (size_t i = 0; i < bp.size(); ++i) {
      expect_close(bp[i], rp[i], dtype, "adamw param " + std::to_string(i));
      expect_close(bm[i], rm[i], dtype, "adamw m " + std::to_string(i));
      expect_close(bv[i], rv[i], dtype, "adamw v " + std::to_string(i));
    }
  }
}

// ---- the transformer's pointwise and row ops

void swiglu(const Backend& b) {
  Rng rng(7);
  for (DType dtype : b.dtypes)
    for (int64_t n : kSizes)
      for (bool aligned : {true, false}) {
        const Shape shape{n};
        const Tensor g = random_host(shape, dtype, rng, 2.0), u = random_host(shape, dtype, rng);
        const Tensor d = random_host(shape, dtype, rng);
        Tensor out = put(b, poisoned(b, shape, dtype), aligned);
        kernels::swiglu_forward(out, put(b, g, aligned), put(b, u, aligned));
        Tensor ref = Tensor::empty(shape, DType::f64);
        kernels::swiglu_forward(ref, f64(g), f64(u));
        expect_close(out, ref, dtype, "swiglu_forward");

        Tensor dg = put(b, poisoned(b, shape, dtype), aligned), du = put(b, poisoned(b, shape, dtype), aligned);
        kernels::swiglu_backward(dg, du, put(b, d, aligned), put(b, g, aligned), put(b, u, aligned));
        Tensor rdg = Tensor::empty(shape, DType::f64), rdu = Tensor::empty(shape, DType::f64);
        kernels::swiglu_backward(rdg, rdu, f64(d), f64(g), f64(u));
        expect_close(dg, rdg, dtype, "swiglu dgate");
        expect_close(du, rdu, dtype, "swiglu dup");
      }
}

void rmsnorm(const Backend& b) {
  Rng rng(8);
  // Rows × dim: odd dims leave the pack path; 600 rows span several dw slabs.
  const std::pair<int64_t, int64_t> shapes[] = {{1, 8}, {5, 37}, {64, 256}, {600, 1024}, {3, 4096}, {7, 4100}};
  // rstd in the rows' dtype, and f32 beside bf16 rows (what the bf16 model keeps).
  std::vector<std::pair<DType, DType>> dtypes;
  for (DType dtype : b.dtypes) {
    dtypes.emplace_back(dtype, dtype);
    if (dtype == DType::bf16) dtypes.emplace_back(dtype, DType::f32);
  }
  for (const auto& [dtype, rstd_dtype] : dtypes)
    for (const auto& [rows, dim] : shapes)
      for (bool accumulate : {false, true}) {
        const Tensor x = random_host(Shape{rows, dim}, dtype, rng), w = random_host(Shape{dim}, dtype, rng);
        Tensor y = poisoned(b, x.shape(), dtype), rstd = poisoned(b, Shape{rows}, rstd_dtype);
        kernels::rmsnorm_forward(y, rstd, put(b, x), put(b, w), 1e-5);
        Tensor ry = Tensor::empty(x.shape(), DType::f64), rrstd = Tensor::empty(Shape{rows}, DType::f64);
        kernels::rmsnorm_forward(ry, rrstd, f64(x), f64(w), 1e-5);
        expect_close(y, ry, dtype, "rmsnorm y");
        expect_close(rstd, rrstd, rstd_dtype, "rmsnorm rstd");

        // The backward from the backend's own rstd, so both sides start from the same values.
        const Tensor dy = random_host(x.shape(), dtype, rng), dx0 = random_host(x.shape(), dtype, rng);
        const Tensor dw0 = random_host(Shape{dim}, dtype, rng);
        Tensor dx = accumulate ? put(b, dx0) : poisoned(b, x.shape(), dtype), dw = put(b, dw0);
        kernels::rmsnorm_backward(dx, dw, put(b, dy), put(b, x), put(b, w), rstd, accumulate);
        Tensor rdx = accumulate ? f64(dx0) : Tensor::empty(x.shape(), DType::f64), rdw = f64(dw0);
        kernels::rmsnorm_backward(rdx, rdw, f64(dy), f64(x), f64(w), f64(rstd), accumulate);
        expect_close(dx, rdx, dtype, "rmsnorm dx");
        expect_close(dw, rdw, dtype, "rmsnorm dw");

        Tensor dw_again = put(b, dw0), dx_again = poisoned(b, x.shape(), dtype);
        kernels::rmsnorm_backward(dx_again, dw_again, put(b, dy), put(b, x), put(b, w), rstd, false);
        kernels::rmsnorm_backward(dx_again, dw_again, put(b, dy), put(b, x), put(b, w), rstd, false);
        Tensor dw_twice = put(b, dw0);
        kernels::rmsnorm_backward(dx_again, dw_twice, put(b, dy), put(b, x), put(b, w), rstd, false);
        kernels::rmsnorm_backward(dx_again, dw_twice, put(b, dy), put(b, x), put(b, w), rstd, false);
        EXPECT_TRUE(same_bytes(dw_again, dw_twice)) << "dw is deterministic";
        Tensor dx_frozen = poisoned(b, x.shape(), dtype);  // frozen weights: no dw
        kernels::rmsnorm_backward(dx_frozen, View{}, put(b, dy), put(b, x), put(b, w), rstd, false);
        EXPECT_TRUE(same_bytes(dx_frozen, dx_again));
      }
}

void rope(const Backend& b) {
  Rng rng(9);
  // Tokens × heads × head_dim; hd = 10 gives an odd half.
  const int64_t shapes[][3] = {{3, 2, 8}, {5, 3, 10}, {17, 4, 64}, {64, 8, 128}, {9, 32, 128}};
  for (DType dtype : b.dtypes)
    for (const auto& s : shapes) {
      const int64_t tokens = s[0], heads = s[1], hd = s[2], half = hd / 2;
      Tensor positions = Tensor::empty(Shape{tokens}, DType::i32);
      for (int64_t n = 0; n < tokens; ++n) positions.as<int32_t>()[n] = static_cast<int32_t>(n * 37 % 5000);
      Tensor inv_freq = Tensor::empty(Shape{half}, DType::f64);
      for (int64_t i = 0; i < half; ++i) inv_freq.as<double>()[i] = std::pow(10000.0, -2.0 * i / hd);
      Tensor cos = poisoned(b, Shape{tokens, half}, dtype), sin = poisoned(b, Shape{tokens, half}, dtype);
      kernels::rope_tables(cos, sin, put(b, positions), put(b, inv_freq));
      Tensor rcos = Tensor::empty(cos.shape(), DType::f64), rsin = Tensor::empty(sin.shape(), DType::f64);
      kernels::rope_tables(rcos, rsin, positions, inv_freq);
      expect_close(cos, rcos, dtype, "rope cos");
      expect_close(sin, rsin, dtype, "rope sin");

      for (bool inverse : {false, true}) {  // with the backend's own tables on both sides
        const Tensor x = random_host(Shape{tokens, heads, hd}, dtype, rng);
        Tensor rotated = put(b, x);
        kernels::rope_apply(rotated, cos, sin, inverse);
        Tensor rx = f64(x);
        kernels::rope_apply(rx, f64(cos), f64(sin), inverse);
        expect_close(rotated, rx, dtype, inverse ? "rope inverse" : "rope forward");
      }
    }
}

void embedding(const Backend& b) {
  Rng rng(10);
  const int64_t vocab = 50;
  for (DType dtype : b.dtypes)
    for (int64_t dim : {8, 13, 64, 4096})
      for (int64_t tokens : {1, 20, 300}) {
        Tensor ids = Tensor::empty(Shape{tokens}, DType::i32);
        for (int64_t n = 0; n < tokens; ++n) ids.as<int32_t>()[n] = static_cast<int32_t>((n * 7 + n * n) % vocab);
        const Tensor table = random_host(Shape{vocab, dim}, dtype, rng);
        Tensor out = poisoned(b, Shape{tokens, dim}, dtype);
        kernels::embedding_forward(out, put(b, ids), put(b, table));
        Tensor rout = Tensor::empty(out.shape(), DType::f64);
        kernels::embedding_forward(rout, ids, f64(table));
        expect_close(out, rout, dtype, "embedding_forward");

        const Tensor dout = random_host(Shape{tokens, dim}, dtype, rng);
        const Tensor dtable0 = random_host(table.shape(), dtype, rng);
        Tensor dtable = put(b, dtable0);
        kernels::embedding_backward(dtable, put(b, ids), put(b, dout));
        Tensor rdtable = f64(dtable0);
        kernels::embedding_backward(rdtable, ids, f64(dout));
        expect_close(dtable, rdtable, dtype, "embedding_backward");
        Tensor again = put(b, dtable0);
        kernels::embedding_backward(again, put(b, ids), put(b, dout));
        EXPECT_TRUE(same_bytes(again, dtable)) << "embedding_backward is deterministic";
      }
  Tensor bad = Tensor::empty(Shape{1}, DType::i32);
  bad.as<int32_t>()[0] = static_cast<int32_t>(vocab);
  Tensor out = poisoned(b, Shape{1, 8}, DType::f32);
  const Tensor table = put(b, random_host(Shape{vocab, 8}, DType::f32, rng));
  EXPECT_THROW(kernels::embedding_forward(out, put(b, bad), table), Error);
}

// ---- GEMM and the LoRA linear layer: 1e-5 for f32, 2e-2 for bf16 (the GPU also rounds xa, dxa and
// the LoRA term to bf16 on the way).

double linear_tolerance(DType dtype) { return dtype == DType::bf16 ? 2e-2 : 1e-5; }

void gemm_every_transpose(const Backend& b) {
  Rng rng(21);
  // m, n, k: odd sizes, K = 1, and a long K.
  const int64_t shapes[][3] = {{1, 1, 1}, {5, 7, 3}, {37, 64, 129}, {100, 2048, 64}, {130, 96, 2048}, {16, 8, 1}};
  for (DType dtype : b.dtypes)
    for (const auto& s : shapes)
      for (bool ta : {false, true})
        for (bool tb : {false, true})
          for (double beta : {0.0, 1.0, -0.5}) {
            const int64_t m = s[0], n = s[1], k = s[2];
            const bool aligned = (m + n + k + (ta ? 1 : 0)) % 2 == 0;
            const Tensor a = random_host(ta ? Shape{k, m} : Shape{m, k}, dtype, rng);
            const Tensor bm = random_host(tb ? Shape{n, k} : Shape{k, n}, dtype, rng);
            const Tensor c0 = random_host(Shape{m, n}, dtype, rng);
            Tensor c = beta == 0.0 ? poisoned(b, c0.shape(), dtype) : put(b, c0, aligned);
            kernels::gemm(c, put(b, a, aligned), ta, put(b, bm, aligned), tb, 1.5, beta);
            Tensor rc = f64(c0);
            kernels::gemm(rc, f64(a), ta, f64(bm), tb, 1.5, beta);
            expect_close(c, rc, dtype, linear_tolerance(dtype),
                         "gemm m=" + std::to_string(m) + " n=" + std::to_string(n) + " k=" + std::to_string(k) +
                             " ta=" + std::to_string(ta) + " tb=" + std::to_string(tb) +
                             " beta=" + std::to_string(beta) + (aligned ? "" : " misaligned"));
          }
}

void gemm_bf16_into_f32(const Backend& b) {
  if (!takes(b, DType::bf16)) GTEST_SKIP() << b.name << " has no bf16 kernels";
  Rng rng(22);
  for (double beta : {0.0, 1.0}) {
    const Tensor a = random_host(Shape{333, 48}, DType::bf16, rng), bm = random_host(Shape{333, 160}, DType::bf16, rng);
    const Tensor c0 = random_host(Shape{48, 160}, DType::f32, rng);
    Tensor c = beta == 0.0 ? poisoned(b, c0.shape(), DType::f32) : put(b, c0);
    kernels::gemm(c, put(b, a), true, put(b, bm), false, 0.25, beta);  // a gradient's shape: Σ over 333 rows
    Tensor rc = f64(c0);
    kernels::gemm(rc, f64(a), true, f64(bm), false, 0.25, beta);
    // Inputs are exact bf16 values and the sum is fp32, so this is as tight as f32.
    expect_close(c, rc, DType::f32, "gemm bf16·bf16 → f32 beta=" + std::to_string(beta));
  }
}

void gemm_empty_inner_dimension(const Backend& b) {
  Rng rng(23);
  for (DType dtype : b.dtypes) {
    const Tensor c0 = random_host(Shape{9, 5}, dtype, rng);
    Tensor a = Tensor::empty(Shape{9, 0}, dtype, b.device), bm = Tensor::empty(Shape{0, 5}, dtype, b.device);
    Tensor c = put(b, c0);
    kernels::gemm(c, a, false, bm, false, 1.0, 0.5);
    Tensor rc = f64(c0);
    kernels::scale(rc, 0.5);
    expect_close(c, rc, dtype, "gemm K=0");
  }
}

void gemm_rejects_mixed_arguments(const Backend& b) {
  Tensor a = Tensor::zeros(Shape{4, 4}, DType::f32, b.device);
  Tensor other = Tensor::zeros(Shape{4, 4}, other_float(b), b.device);
  Tensor c = Tensor::zeros(Shape{4, 4}, DType::f32, b.device);
  EXPECT_THROW(kernels::gemm(c, a, false, other, false, 1.0, 0.0), Error);
  const Tensor host = Tensor::zeros(Shape{4, 4}, DType::f32);
  EXPECT_THROW(kernels::gemm(c, a, false, on_other_device(b, host), false, 1.0, 0.0), Error);
}

struct LinearShape {
  int64_t m, in, out, rank;
};
// M not a multiple of 16; ranks 8 and 16; in/out from 64 to 2048.
const LinearShape kShapes[] = {{1, 64, 64, 8},      {37, 64, 96, 8},   {300, 256, 128, 16},
                               {129, 2048, 64, 16}, {17, 64, 2048, 8}, {255, 512, 1536, 16}};

// One layer's inputs on the host, rounded to the dtype under test.
struct Layer {
  Tensor x, w, bias, a, b;
  double scale = 2.0;
};

Layer random_layer(const LinearShape& s, DType dtype, Rng& rng) {
  Layer l;
  l.x = random_host(Shape{s.m, s.in}, dtype, rng);
  l.w = random_host(Shape{s.out, s.in}, dtype, rng);
  l.bias = random_host(Shape{s.out}, dtype, rng, 10.0);  // comparable to x·Wᵀ, so a lost bias shows
  l.a = random_host(Shape{s.rank, s.in}, dtype, rng);
  l.b = random_host(Shape{s.out, s.rank}, dtype, rng);
  return l;
}

std::string describe(const LinearShape& s, bool bias, bool lora, bool aligned) {
  return "M=" + std::to_string(s.m) + " in=" + std::to_string(s.in) + " out=" + std::to_string(s.out) +
         " r=" + std::to_string(s.rank) + (bias ? " bias" : "") + (lora ? " lora" : "") +
         (aligned ? "" : " misaligned");
}

void linear_forward(const Backend& b) {
  Rng rng(24);
  for (DType dtype : b.dtypes)
    for (const LinearShape& s : kShapes)
      for (bool with_bias : {false, true})
        for (bool with_lora : {false, true})
          for (bool aligned : {true, false}) {
            if (!aligned && s.m * s.in * s.out > 1 << 24) continue;  // the misaligned path on the small shapes
            const Layer l = random_layer(s, dtype, rng);
            const std::string what = describe(s, with_bias, with_lora, aligned);
            Tensor y = put(b, poisoned(b, Shape{s.m, s.out}, dtype), aligned);
            Tensor xa = with_lora ? put(b, poisoned(b, Shape{s.m, s.rank}, dtype), aligned) : Tensor{};
            const Tensor la = put(b, l.a, aligned), lb = put(b, l.b, aligned);
            const kernels::LoraBranch lora = with_lora ? kernels::LoraBranch{la, lb, l.scale} : kernels::LoraBranch{};
            kernels::linear_forward(y, xa, put(b, l.x, aligned), put(b, l.w, aligned),
                                    with_bias ? put(b, l.bias, aligned) : Tensor{}, lora);

            Tensor ry = Tensor::empty(y.shape(), DType::f64);
            Tensor rxa = with_lora ? Tensor::empty(Shape{s.m, s.rank}, DType::f64) : Tensor{};
            const Tensor ra = f64(l.a), rb = f64(l.b);
            const kernels::LoraBranch rlora = with_lora ? kernels::LoraBranch{ra, rb, l.scale} : kernels::LoraBranch{};
            kernels::linear_forward(ry, rxa, f64(l.x), f64(l.w), with_bias ? f64(l.bias) : Tensor{}, rlora);
            expect_close(y, ry, dtype, linear_tolerance(dtype), "linear_forward y " + what);
            if (with_lora) expect_close(xa, rxa, dtype, linear_tolerance(dtype), "linear_forward xa " + what);
          }
}

// The backward from the backend forward's own xa, so both sides start from the same values.
// Gradients start random (they accumulate); dx is poisoned unless accumulating. `f32_grads`: dA,
// dB, dW, dbias in f32 beside bf16 activations (the engine's mixed precision).
void check_linear_backward(const Backend& b, DType dtype, bool f32_grads, const LinearShape& s, bool with_bias,
                           bool with_lora, bool accumulate_dx, bool aligned, Rng& rng) {
  const Layer l = random_layer(s, dtype, rng);
  const DType grad_dtype = f32_grads ? DType::f32 : dtype;
  const std::string what = describe(s, with_bias, with_lora, aligned) + (accumulate_dx ? " accumulate_dx" : "") +
                           (f32_grads ? " f32 grads" : "");
  const Tensor lx = put(b, l.x, aligned), lw = put(b, l.w, aligned), la = put(b, l.a, aligned);
  const Tensor lb = put(b, l.b, aligned);
  const kernels::LoraBranch lora = with_lora ? kernels::LoraBranch{la, lb, l.scale} : kernels::LoraBranch{};
  Tensor y = put(b, poisoned(b, Shape{s.m, s.out}, dtype), aligned);
  Tensor xa = with_lora ? put(b, poisoned(b, Shape{s.m, s.rank}, dtype), aligned) : Tensor{};
  kernels::linear_forward(y, xa, lx, lw, Tensor{}, lora);

  const Tensor dy = random_host(Shape{s.m, s.out}, dtype, rng), dx0 = random_host(Shape{s.m, s.in}, dtype, rng);
  const Tensor da0 = random_host(l.a.shape(), grad_dtype, rng), db0 = random_host(l.b.shape(), grad_dtype, rng);
  const Tensor dw0 = random_host(l.w.shape(), grad_dtype, rng), dbias0 = random_host(l.bias.shape(), grad_dtype, rng);
  kernels::LinearGrads g;
  Tensor dx = accumulate_dx ? put(b, dx0, aligned) : put(b, poisoned(b, dx0.shape(), dtype), aligned);
  Tensor da = put(b, da0, aligned), db = put(b, db0, aligned), dw = put(b, dw0, aligned);
  Tensor dbias = put(b, dbias0, aligned);
  g.dx = dx;
  g.accumulate_dx = accumulate_dx;
  if (with_lora) {
    g.da = da;
    g.db = db;
  }
  g.dw = dw;
  if (with_bias) g.dbias = dbias;
  kernels::linear_backward(g, put(b, dy, aligned), lx, xa, lw, lora);

  const Tensor ra = f64(l.a), rb = f64(l.b);
  const kernels::LoraBranch rlora = with_lora ? kernels::LoraBranch{ra, rb, l.scale} : kernels::LoraBranch{};
  kernels::LinearGrads rg;
  Tensor rdx = accumulate_dx ? f64(dx0) : Tensor::empty(dx0.shape(), DType::f64);
  Tensor rda = f64(da0), rdb = f64(db0), rdw = f64(dw0), rdbias = f64(dbias0);
  rg.dx = rdx;
  rg.accumulate_dx = accumulate_dx;
  if (with_lora) {
    rg.da = rda;
    rg.db = rdb;
  }
  rg.dw = rdw;
  if (with_bias) rg.dbias = rdbias;
  const Tensor rxa = with_lora ? f64(xa) : Tensor{};
  kernels::linear_backward(rg, f64(dy), f64(l.x), rxa, f64(l.w), rlora);

  // f32 gradients from bf16 operands: the products are exact, but dA comes from the bf16-rounded
  // dxa, so the bf16 tolerance applies to all of them.
  const double tolerance = linear_tolerance(dtype);
  expect_close(dx, rdx, dtype, tolerance, "linear_backward dx " + what);
  expect_close(dw, rdw, dtype, tolerance, "linear_backward dW " + what);
  if (with_lora) {
    expect_close(da, rda, dtype, tolerance, "linear_backward dA " + what);
    expect_close(db, rdb, dtype, tolerance, "linear_backward dB " + what);
  }
  if (with_bias) expect_close(dbias, rdbias, dtype, tolerance, "linear_backward dbias " + what);
}

void linear_backward(const Backend& b) {
  Rng rng(25);
  for (DType dtype : b.dtypes)
    for (const LinearShape& s : kShapes)
      for (bool with_bias : {false, true})
        for (bool with_lora : {false, true})
          for (bool accumulate_dx : {false, true}) {
            const bool aligned = !(s.m * s.in * s.out <= 1 << 24 && with_bias && accumulate_dx);
            check_linear_backward(b, dtype, false, s, with_bias, with_lora, accumulate_dx, aligned, rng);
          }
}

void linear_backward_f32_grads_beside_bf16(const Backend& b) {
  if (!takes(b, DType::bf16)) GTEST_SKIP() << b.name << " has no bf16 kernels";
  Rng rng(26);
  for (const LinearShape& s : kShapes) check_linear_backward(b, DType::bf16, true, s, true, true, false, true, rng);
}

void linear_bias_gradient_is_deterministic(const Backend& b) {
  Rng rng(27);
  const Tensor x = random_host(Shape{1000, 64}, DType::f32, rng), w = random_host(Shape{96, 64}, DType::f32, rng);
  const Tensor dy = put(b, random_host(Shape{1000, 96}, DType::f32, rng));
  Tensor first = Tensor::zeros(Shape{96}, DType::f32, b.device),
         second = Tensor::zeros(Shape{96}, DType::f32, b.device);
  for (Tensor* dbias : {&first, &second}) {
    kernels::LinearGrads g;
    g.dbias = *dbias;
    kernels::linear_backward(g, dy, put(b, x), Tensor{}, put(b, w), kernels::LoraBranch{});
  }
  EXPECT_TRUE(same_bytes(first, second));
}

// ---- cross-entropy

// Targets in [0, V), every fifth row ignored, the first and last classes used.
Tensor random_targets(int64_t rows, int64_t vocab, Rng& rng) {
  Tensor t = Tensor::empty(Shape{rows}, DType::i32);
  const Tensor u = test::random_tensor(Shape{rows}, rng);
  for (int64_t n = 0; n < rows; ++n) {
    const double x = std::fabs(u.as<double>()[n]) * 1e6;
    t.as<int32_t>()[n] =
        n % 5 == 3 ? kernels::kIgnoreIndex : static_cast<int32_t>(std::fmod(x, static_cast<double>(vocab)));
  }
  t.as<int32_t>()[0] = 0;
  if (rows > 1) t.as<int32_t>()[1] = static_cast<int32_t>(vocab - 1);
  return t;
}

// Loss relative error: fp32 math on the same inputs, whatever the storage.
double loss_tolerance(DType dtype) { return dtype == DType::bf16 ? 1e-4 : 1e-5; }

void expect_loss_close(const kernels::CrossEntropyResult& got, const kernels::CrossEntropyResult& want, DType dtype,
                       const std::string& what) {
  EXPECT_EQ(got.count, want.count) << what;
  EXPECT_LT(std::fabs(got.loss_sum - want.loss_sum), loss_tolerance(dtype) * std::fabs(want.loss_sum))
      << what << " " << dtype_name(dtype) << ": " << got.loss_sum << " vs " << want.loss_sum;
}

struct XentCase {
  int64_t rows, vocab;
};
// V = 320 (64-thread blocks), an odd V (the one-element path), 32000 (Llama 2) in 512-thread blocks.
const XentCase kXentCases[] = {{37, 320}, {29, 1001}, {23, 32000}, {5, 12289}};

void cross_entropy(const Backend& b) {
  Rng rng(31);
  const double grad_scale = 0.37;
  for (const XentCase& c : kXentCases)
    for (DType dtype : b.dtypes) {
      const std::string what = "V=" + std::to_string(c.vocab);
      const Tensor logits = random_host(Shape{c.rows, c.vocab}, dtype, rng, 3.0);
      const Tensor targets = random_targets(c.rows, c.vocab, rng);
      Tensor rdl = Tensor::empty(Shape{c.rows, c.vocab}, DType::f64);
      const auto want = kernels::cross_entropy(rdl, f64(logits), targets, grad_scale);

      const Tensor blogits = put(b, logits), btargets = put(b, targets);
      Tensor dl = poisoned(b, logits.shape(), dtype);
      const auto got = kernels::cross_entropy(dl, blogits, btargets, grad_scale);
      expect_loss_close(got, want, dtype, what);
      expect_close(dl, rdl, dtype, what + " dlogits");
      EXPECT_TRUE(same_bytes(blogits, logits)) << what << ": logits are read only";

      // Loss only: the same loss bits; a second call: the same bits everywhere.
      const auto loss_only = kernels::cross_entropy(View{}, blogits, btargets, grad_scale);
      EXPECT_EQ(loss_only.loss_sum, got.loss_sum) << what;
      EXPECT_EQ(loss_only.count, got.count) << what;
      Tensor again = poisoned(b, logits.shape(), dtype);
      const auto got2 = kernels::cross_entropy(again, blogits, btargets, grad_scale);
      EXPECT_EQ(got2.loss_sum, got.loss_sum) << what << ": deterministic";
      EXPECT_TRUE(same_bytes(again, dl)) << what << ": deterministic";

      // Misaligned views: the one-element path.
      Tensor odd = misaligned_copy(poisoned(b, logits.shape(), dtype));
      const auto got3 = kernels::cross_entropy(odd, misaligned_copy(blogits), btargets, grad_scale);
      expect_loss_close(got3, want, dtype, what + " misaligned");
      expect_close(odd, rdl, dtype, what + " misaligned dlogits");
    }
}

void cross_entropy_in_place(const Backend& b) {
  Rng rng(32);
  for (const XentCase& c : kXentCases)
    for (DType dtype : b.dtypes) {
      const Tensor logits = random_host(Shape{c.rows, c.vocab}, dtype, rng, 2.0);
      const Tensor targets = random_targets(c.rows, c.vocab, rng);
      Tensor rz = f64(logits);
      const auto want = kernels::cross_entropy(rz, rz, targets, 1.0 / 3);  // the reference in place too
      Tensor z = put(b, logits);
      const auto got = kernels::cross_entropy(z, z, put(b, targets), 1.0 / 3);
      expect_loss_close(got, want, dtype, "in place V=" + std::to_string(c.vocab));
      expect_close(z, rz, dtype, "in place dlogits V=" + std::to_string(c.vocab));
    }
}

void cross_entropy_ignored_rows_and_large_logits(const Backend& b) {
  Rng rng(33);
  for (DType dtype : b.dtypes) {
    // Every row ignored: no loss, zero gradient.
    const Tensor logits = random_host(Shape{6, 320}, dtype, rng);
    Tensor ignored = Tensor::empty(Shape{6}, DType::i32);
    for (int n = 0; n < 6; ++n) ignored.as<int32_t>()[n] = kernels::kIgnoreIndex;
    Tensor dl = poisoned(b, logits.shape(), dtype);
    const auto none = kernels::cross_entropy(dl, put(b, logits), put(b, ignored), 1.0);
    EXPECT_EQ(none.count, 0);
    EXPECT_EQ(none.loss_sum, 0.0);
    EXPECT_TRUE(same_bytes(dl, Tensor::zeros(logits.shape(), dtype)));

    // Logits around ±80: exp would overflow without the max.
    const Tensor big = random_host(Shape{9, 4000}, dtype, rng, 40.0);
    const Tensor targets = random_targets(9, 4000, rng);
    Tensor rdl = Tensor::empty(big.shape(), DType::f64);
    const auto want = kernels::cross_entropy(rdl, f64(big), targets, 1.0);
    Tensor bdl = poisoned(b, big.shape(), dtype);
    const auto got = kernels::cross_entropy(bdl, put(b, big), put(b, targets), 1.0);
    expect_loss_close(got, want, dtype, "large logits");
    expect_close(bdl, rdl, dtype, "large logits dlogits");
  }
  // No rows at all.
  Tensor empty_logits = Tensor::empty(Shape{0, 320}, DType::f32, b.device);
  Tensor empty_targets = Tensor::empty(Shape{0}, DType::i32, b.device);
  const auto zero = kernels::cross_entropy(View{}, empty_logits, empty_targets, 1.0);
  EXPECT_EQ(zero.count, 0);
}

void cross_entropy_target_outside_the_vocabulary(const Backend& b) {
  Rng rng(34);
  const DType dtype = b.dtypes.back();
  const Tensor logits = random_host(Shape{8, 320}, dtype, rng);
  for (int32_t bad : {320, -1, -101, 1 << 30}) {
    Tensor targets = random_targets(8, 320, rng);
    targets.as<int32_t>()[5] = bad;
    targets.as<int32_t>()[6] = bad;  // the first bad row is named
    Tensor dl = poisoned(b, logits.shape(), dtype);
    try {
      kernels::cross_entropy(dl, put(b, logits), put(b, targets), 1.0);
      ADD_FAILURE() << "target " << bad << " was accepted";
    } catch (const Error& e) {
      const std::string message = e.what();
      EXPECT_NE(message.find("cross_entropy"), std::string::npos) << message;
      EXPECT_NE(message.find("target " + std::to_string(bad) + " at row 5 "), std::string::npos) << message;
    }
    EXPECT_TRUE(all_nan(dl)) << "nothing is written when a target is bad";
    // In place: the logits survive.
    Tensor z = put(b, logits);
    EXPECT_THROW(kernels::cross_entropy(z, z, put(b, targets), 1.0), Error);
    EXPECT_TRUE(same_bytes(z, logits));
  }
  // The next call is not affected.
  const Tensor targets = random_targets(8, 320, rng);
  Tensor rdl = Tensor::empty(logits.shape(), DType::f64);
  const auto want = kernels::cross_entropy(rdl, f64(logits), targets, 1.0);
  Tensor dl = poisoned(b, logits.shape(), dtype);
  expect_loss_close(kernels::cross_entropy(dl, put(b, logits), put(b, targets), 1.0), want, dtype, "after an error");
  // The targets must be on the logits' device.
  EXPECT_THROW(kernels::cross_entropy(dl, put(b, logits), on_other_device(b, targets), 1.0), Error);
}

// ---- per-example LoRA gradient norms (DP-SGD's ghost norms)

// ‖dB_b‖² + ‖dA_b‖² of each example from per-example gradients materialised in f64:
// dB_b = scale·dy_bᵀ·xa_b [out, r], dA_b = dxa_bᵀ·x_b [r, in] with dxa = scale·dy·B.
std::vector<double> explicit_sq_norms(const Tensor& dy, const Tensor& x, const Tensor& xa, const Tensor& b,
                                      double scale, int64_t examples) {
  const Tensor d = f64(dy), xx = f64(x), a = f64(xa), bb = f64(b);
  const int64_t rows = dy.shape()[0], out = dy.shape()[1], in = x.shape()[1], rank = xa.shape()[1];
  const int64_t t_len = rows / examples;
  auto at = [](const Tensor& t, int64_t r, int64_t c) { return t.as<double>()[r * t.shape()[1] + c]; };
  std::vector<double> dxa(rows * rank, 0.0);
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t j = 0; j < rank; ++j) {
      double s = 0;
      for (int64_t k = 0; k < out; ++k) s += at(d, m, k) * at(bb, k, j);
      dxa[m * rank + j] = scale * s;
    }
  std::vector<double> norms(examples, 0.0);
  for (int64_t e = 0; e < examples; ++e) {
    const int64_t first = e * t_len;
    for (int64_t o = 0; o < out; ++o)
      for (int64_t j = 0; j < rank; ++j) {
        double g = 0;
        for (int64_t t = first; t < first + t_len; ++t) g += at(d, t, o) * at(a, t, j);
        norms[e] += scale * scale * g * g;
      }
    for (int64_t j = 0; j < rank; ++j)
      for (int64_t i = 0; i < in; ++i) {
        double g = 0;
        for (int64_t t = first; t < first + t_len; ++t) g += dxa[t * rank + j] * at(xx, t, i);
        norms[e] += g * g;
      }
  }
  return norms;
}

struct GhostCase {
  int64_t examples, seq, rank, in, out;
};
const GhostCase kGhostCases[] = {
    {3, 17, 4, 64, 96}, {3, 64, 16, 64, 96}, {3, 17, 16, 96, 64}, {3, 64, 4, 96, 64}, {2, 130, 20, 200, 136}};

void ghost_norms(const Backend& b) {
  Rng rng(41);
  for (const GhostCase& c : kGhostCases)
    for (DType dtype : b.dtypes)
      for (DType weight_dtype : {dtype, DType::f32})
        for (bool norms_on_device : {false, true}) {
          if (b.device == Device::cpu && norms_on_device) continue;  // the CPU's norms are host memory
          const std::string what =
              "B=" + std::to_string(c.examples) + " T=" + std::to_string(c.seq) + " r=" + std::to_string(c.rank) +
              " in=" + std::to_string(c.in) + " out=" + std::to_string(c.out) + " " + dtype_name(dtype) + " B " +
              dtype_name(weight_dtype) + (norms_on_device ? " norms on the device" : " norms on host");
          const int64_t rows = c.examples * c.seq;
          const double scale = 2.0;
          const Tensor x = random_host(Shape{rows, c.in}, dtype, rng);
          const Tensor dy = random_host(Shape{rows, c.out}, dtype, rng, 0.1);
          const Tensor a = random_host(Shape{c.rank, c.in}, weight_dtype, rng, 0.1);
          const Tensor lb = random_host(Shape{c.out, c.rank}, weight_dtype, rng, 0.1);
          // xa = x·Aᵀ as the forward leaves it, in the activations' dtype.
          Tensor xa64 = Tensor::empty(Shape{rows, c.rank}, DType::f64);
          kernels::gemm(xa64, f64(x), false, f64(a), true, 1.0, 0.0);
          const Tensor xa = xa64.to(dtype);

          Tensor base = Tensor::empty(Shape{c.examples}, DType::f64);
          for (int64_t e = 0; e < c.examples; ++e) base.as<double>()[e] = 0.25 * (e + 1);  // accumulated onto
          Tensor want = base.clone();
          kernels::lora_per_example_sq_norms(want, f64(dy), f64(x), f64(xa),
                                             kernels::LoraBranch{f64(a), f64(lb), scale});
          const std::vector<double> exact = explicit_sq_norms(dy, x, xa, lb, scale, c.examples);

          const Tensor la = put(b, a), lbb = put(b, lb);  // the branch's views point into these
          const kernels::LoraBranch lora{la, lbb, scale};
          Tensor got = norms_on_device ? put(b, base) : base.clone();
          kernels::lora_per_example_sq_norms(got, put(b, dy), put(b, x), put(b, xa), lora);
          const Tensor got_host = got.to_device(Device::cpu);
          Tensor got_delta = Tensor::empty(base.shape(), DType::f64), want_delta = got_delta.clone();
          Tensor exact_delta = got_delta.clone();
          for (int64_t e = 0; e < c.examples; ++e) {
            got_delta.as<double>()[e] = got_host.as<double>()[e] - base.as<double>()[e];
            want_delta.as<double>()[e] = want.as<double>()[e] - base.as<double>()[e];
            exact_delta.as<double>()[e] = exact[e];
          }
          // The inputs are the same values on both sides and both compute in fp32 or better, so
          // even bf16 storage agrees to fp32 rounding.
          EXPECT_LT(relative_error(got_delta, want_delta), 1e-5) << what << " vs the CPU twin in f64";
          EXPECT_LT(relative_error(got_delta, exact_delta), 1e-5) << what << " vs materialised gradients";
          for (int64_t e = 0; e < c.examples; ++e)
            EXPECT_NEAR(got_delta.as<double>()[e], exact[e], 1e-5 * exact[e]) << what << " example " << e;

          Tensor again = norms_on_device ? put(b, base) : base.clone();
          kernels::lora_per_example_sq_norms(again, put(b, dy), put(b, x), put(b, xa), lora);
          EXPECT_TRUE(same_bytes(again, got)) << what << ": deterministic";
        }
}

void ghost_norms_reject_mixed_arguments(const Backend& b) {
  Rng rng(42);
  const Tensor x = put(b, random_host(Shape{8, 16}, other_float(b), rng));
  const Tensor dy = put(b, random_host(Shape{8, 24}, DType::f32, rng));
  const Tensor xa = put(b, random_host(Shape{8, 4}, other_float(b), rng));
  const Tensor a = put(b, random_host(Shape{4, 16}, DType::f32, rng));
  const Tensor lb = put(b, random_host(Shape{24, 4}, DType::f32, rng));
  Tensor norms = Tensor::zeros(Shape{2}, DType::f64);
  EXPECT_THROW(kernels::lora_per_example_sq_norms(norms, dy, x, xa, kernels::LoraBranch{a, lb, 1.0}), Error);
  // Activations on the backend, A elsewhere.
  const Tensor x32 = x.to(DType::f32), xa32 = xa.to(DType::f32);
  const Tensor a_host = a.to_device(Device::cpu);
  EXPECT_THROW(kernels::lora_per_example_sq_norms(norms, dy, x32, xa32,
                                                  kernels::LoraBranch{on_other_device(b, a_host), lb, 1.0}),
               Error);
  // The same arguments all on the backend are accepted.
  kernels::lora_per_example_sq_norms(norms, dy, x32, xa32, kernels::LoraBranch{a, lb, 1.0});
  EXPECT_GT(norms.as<double>()[0], 0.0);
}

// ---- attention: B = 2, H = 8, Hkv ∈ {2, 8}, hd ∈ {64, 128} (what the CUDA kernel takes),
// T ∈ {1, 17, 128, 257} (tile edges of 32 and 64), Tq < Tk for the forward, lse f32 and in the
// activations' dtype, sliding windows W ∈ {1, 5, 32, 64, 100, 300} (within one tile, on tile edges,
// spanning tiles, longer than the sequence). Relative L2 errors 1e-4 for f32 and 2e-2 for bf16.

const int64_t kBatch = 2, kHeads = 8;
const int64_t kKvHeads[] = {2, 8};
const int64_t kHeadDims[] = {64, 128};
const int64_t kSeqs[] = {1, 17, 128, 257};
const int64_t kWindows[] = {1, 5, 32, 64, 100, 300};

double attention_tolerance(DType dtype) { return dtype == DType::bf16 ? 2e-2 : 1e-4; }

// ||a − b|| / max(||b||, 1e-3·sqrt(n)): relative, except where the reference is all but zero. At
// T = 1 dq and dk are exactly zero in the reference (dP − D cancels: out = v) and round-off
// elsewhere, which sums in another order.
double attention_error(const Tensor& ha, const Tensor& hb) {
  EXPECT_EQ(ha.numel(), hb.numel());
  double diff = 0, ref = 0;
  for (int64_t i = 0; i < hb.numel(); ++i) {
    const double x = ha.as<double>()[i], y = hb.as<double>()[i];
    diff += (x - y) * (x - y);
    ref += y * y;
  }
  if (std::isnan(diff)) return diff;
  return std::sqrt(diff) / std::max(std::sqrt(ref), 1e-3 * std::sqrt(static_cast<double>(hb.numel())));
}

void expect_attention_close(const Tensor& got, const Tensor& want, DType dtype, const std::string& what) {
  expect_close(got, want, dtype, attention_tolerance(dtype), what, attention_error);
}

std::string describe(int64_t tq, int64_t tk, int64_t kv_heads, int64_t hd, int64_t window) {
  return "Tq=" + std::to_string(tq) + " Tk=" + std::to_string(tk) + " Hkv=" + std::to_string(kv_heads) +
         " hd=" + std::to_string(hd) + " W=" + std::to_string(window);
}

// Forward on the backend and in f64; out and lse compared.
void check_attention_forward(const Backend& b, DType dtype, DType lse_dtype, int64_t tq, int64_t tk, int64_t kv_heads,
                             int64_t hd, Rng& rng, int64_t window = 0) {
  const Shape qs{kBatch, tq, kHeads, hd}, kvs{kBatch, tk, kv_heads, hd}, ls{kBatch, kHeads, tq};
  const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
  Tensor out = poisoned(b, qs, dtype), lse = poisoned(b, ls, lse_dtype);
  kernels::attention_forward(out, lse, put(b, q), put(b, k), put(b, v), window);
  Tensor rout = Tensor::empty(qs, DType::f64), rlse = Tensor::empty(ls, DType::f64);
  kernels::attention_forward(rout, rlse, f64(q), f64(k), f64(v), window);
  const std::string what = describe(tq, tk, kv_heads, hd, window) + " lse " + dtype_name(lse_dtype);
  expect_attention_close(out, rout, dtype, "forward out " + what);
  expect_attention_close(lse, rlse, dtype, "forward lse " + what);
}

// Backward on the backend and in f64 from the same out and lse (the f64 forward's, rounded to the
// dtypes under test); dq, dk and dv compared.
void check_attention_backward(const Backend& b, DType dtype, DType lse_dtype, int64_t t, int64_t kv_heads, int64_t hd,
                              Rng& rng, int64_t window = 0) {
  const Shape qs{kBatch, t, kHeads, hd}, kvs{kBatch, t, kv_heads, hd}, ls{kBatch, kHeads, t};
  const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
  const Tensor dout = random_host(qs, dtype, rng);
  Tensor out64 = Tensor::empty(qs, DType::f64), lse64 = Tensor::empty(ls, DType::f64);
  kernels::attention_forward(out64, lse64, f64(q), f64(k), f64(v), window);
  const Tensor out = out64.to(dtype), lse = lse64.to(lse_dtype);

  Tensor dq = poisoned(b, qs, dtype), dk = poisoned(b, kvs, dtype), dv = poisoned(b, kvs, dtype);
  kernels::attention_backward(dq, dk, dv, put(b, dout), put(b, q), put(b, k), put(b, v), put(b, out), put(b, lse),
                              window);
  Tensor rdq = Tensor::empty(qs, DType::f64), rdk = Tensor::empty(kvs, DType::f64),
         rdv = Tensor::empty(kvs, DType::f64);
  kernels::attention_backward(rdq, rdk, rdv, f64(dout), f64(q), f64(k), f64(v), f64(out), f64(lse), window);
  const std::string what = describe(t, t, kv_heads, hd, window) + " lse " + dtype_name(lse_dtype);
  expect_attention_close(dq, rdq, dtype, "backward dq " + what);
  expect_attention_close(dk, rdk, dtype, "backward dk " + what);
  expect_attention_close(dv, rdv, dtype, "backward dv " + what);
}

void attention_forward(const Backend& b) {
  Rng rng(11);
  for (DType dtype : b.dtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (int64_t t : kSeqs) check_attention_forward(b, dtype, DType::f32, t, t, kv_heads, hd, rng);
}

void attention_forward_fewer_queries_than_keys(const Backend& b) {
  Rng rng(12);
  const int64_t cases[][2] = {{1, 1}, {1, 17}, {1, 257}, {17, 128}, {33, 257}, {128, 257}};
  for (DType dtype : b.dtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (const auto& c : cases) check_attention_forward(b, dtype, DType::f32, c[0], c[1], kv_heads, hd, rng);
}

void attention_forward_lse_in_the_activation_dtype(const Backend& b) {
  Rng rng(13);
  for (DType dtype : b.dtypes)
    for (int64_t t : {int64_t{17}, int64_t{257}}) check_attention_forward(b, dtype, dtype, t, t, 2, 64, rng);
}

void attention_backward(const Backend& b) {
  Rng rng(21);
  for (DType dtype : b.dtypes)
    for (int64_t kv_heads : kKvHeads)
      for (int64_t hd : kHeadDims)
        for (int64_t t : kSeqs) check_attention_backward(b, dtype, DType::f32, t, kv_heads, hd, rng);
}

void attention_forward_with_sliding_window(const Backend& b) {
  Rng rng(14);
  const int64_t cases[][2] = {{17, 17}, {128, 128}, {257, 257}, {1, 257}, {33, 257}};
  for (DType dtype : b.dtypes)
    for (int64_t hd : kHeadDims)
      for (const auto& c : cases)
        for (int64_t window : kWindows) check_attention_forward(b, dtype, DType::f32, c[0], c[1], 2, hd, rng, window);
}

void attention_backward_with_sliding_window(const Backend& b) {
  Rng rng(24);
  for (DType dtype : b.dtypes)
    for (int64_t hd : kHeadDims)
      for (int64_t t : {int64_t{17}, int64_t{128}, int64_t{257}})
        for (int64_t window : kWindows) check_attention_backward(b, dtype, DType::f32, t, 2, hd, rng, window);
}

void attention_backward_lse_in_the_activation_dtype(const Backend& b) {
  if (!takes(b, DType::bf16)) GTEST_SKIP() << b.name << " has no bf16 kernels";
  Rng rng(22);
  check_attention_backward(b, DType::bf16, DType::bf16, 128, 2, 128, rng);
}

// The backend's forward then its backward (the engine's chain) against the f64 chain, and the same
// bits on a second run (no atomics).
void attention_chain_is_deterministic(const Backend& b) {
  Rng rng(23);
  const int64_t t = 200, kv_heads = 2, hd = 64;
  const Shape qs{kBatch, t, kHeads, hd}, kvs{kBatch, t, kv_heads, hd}, ls{kBatch, kHeads, t};
  for (DType dtype : b.dtypes) {
    const Tensor q = random_host(qs, dtype, rng), k = random_host(kvs, dtype, rng), v = random_host(kvs, dtype, rng);
    const Tensor dout = random_host(qs, dtype, rng);
    const Tensor bq = put(b, q), bk = put(b, k), bv = put(b, v), bdout = put(b, dout);
    Tensor out = poisoned(b, qs, dtype), lse = poisoned(b, ls, DType::f32);
    kernels::attention_forward(out, lse, bq, bk, bv, 0);
    Tensor dq[2], dk[2], dv[2];
    for (int run = 0; run < 2; ++run) {
      dq[run] = poisoned(b, qs, dtype);
      dk[run] = poisoned(b, kvs, dtype);
      dv[run] = poisoned(b, kvs, dtype);
      kernels::attention_backward(dq[run], dk[run], dv[run], bdout, bq, bk, bv, out, lse, 0);
    }
    EXPECT_TRUE(same_bytes(dq[0], dq[1]) && same_bytes(dk[0], dk[1]) && same_bytes(dv[0], dv[1])) << dtype_name(dtype);

    Tensor rout = Tensor::empty(qs, DType::f64), rlse = Tensor::empty(ls, DType::f64);
    kernels::attention_forward(rout, rlse, f64(q), f64(k), f64(v), 0);
    Tensor rdq = Tensor::empty(qs, DType::f64), rdk = Tensor::empty(kvs, DType::f64),
           rdv = Tensor::empty(kvs, DType::f64);
    kernels::attention_backward(rdq, rdk, rdv, f64(dout), f64(q), f64(k), f64(v), rout, rlse, 0);
    expect_attention_close(dq[0], rdq, dtype, "chained dq");
    expect_attention_close(dk[0], rdk, dtype, "chained dk");
    expect_attention_close(dv[0], rdv, dtype, "chained dv");
  }
}

void attention_rejects_what_the_backend_cannot_take(const Backend& b) {
  const Shape qs{1, 4, 2, 32}, ls{1, 2, 4};
  Tensor q = Tensor::zeros(qs, DType::f32, b.device);
  Tensor out = Tensor::empty(qs, DType::f32, b.device), lse = Tensor::empty(ls, DType::f32, b.device);
  if (b.device == Device::cuda)
    EXPECT_THROW(kernels::attention_forward(out, lse, q, q, q, 0), Error);  // the CUDA kernel takes hd 64 or 128
  else
    EXPECT_NO_THROW(kernels::attention_forward(out, lse, q, q, q, 0));  // the CPU any hd
  const Shape q64{1, 4, 2, 64};
  Tensor q_other = Tensor::zeros(q64, other_float(b), b.device), k32 = Tensor::zeros(q64, DType::f32, b.device);
  Tensor out_other = Tensor::empty(q64, other_float(b), b.device);
  EXPECT_THROW(kernels::attention_forward(out_other, lse, q_other, k32, k32, 0), Error);  // q and k dtypes differ
  Tensor lse_f16 = Tensor::empty(ls, DType::f16, b.device);
  EXPECT_THROW(kernels::attention_forward(out_other, lse_f16, q_other, q_other, q_other, 0), Error);  // lse f16
}

// ---- the case list

struct OpCase {
  const char* name;
  void (*run)(const Backend&);
};

const OpCase kCases[] = {
    {"Copy", copy_round_trip},
    {"ConvertBitForBit", convert_bit_for_bit},
    {"FillBits", fill_bits},
    {"AxpyScaleSumSquares", axpy_scale_sum_squares},
    {"GlobalNormScaleAll", global_norm_and_scale_all},
    {"GaussianNoise", gaussian_noise},
    {"AdamW", adamw},
    {"SwiGlu", swiglu},
    {"RmsNorm", rmsnorm},
    {"Rope", rope},
    {"Embedding", embedding},
    {"GemmEveryTransposeAlphaBeta", gemm_every_transpose},
    {"GemmBf16IntoF32", gemm_bf16_into_f32},
    {"GemmEmptyInnerDimension", gemm_empty_inner_dimension},
    {"GemmRejectsMixedArguments", gemm_rejects_mixed_arguments},
    {"LinearForward", linear_forward},
    {"LinearBackward", linear_backward},
    {"LinearBackwardF32GradsBesideBf16", linear_backward_f32_grads_beside_bf16},
    {"LinearBiasGradientDeterministic", linear_bias_gradient_is_deterministic},
    {"CrossEntropy", cross_entropy},
    {"CrossEntropyInPlace", cross_entropy_in_place},
    {"CrossEntropyIgnoredRowsLargeLogits", cross_entropy_ignored_rows_and_large_logits},
    {"CrossEntropyTargetOutsideVocabulary", cross_entropy_target_outside_the_vocabulary},
    {"GhostNorms", ghost_norms},
    {"GhostNormsRejectMixedArguments", ghost_norms_reject_mixed_arguments},
    {"AttentionForward", attention_forward},
    {"AttentionForwardFewerQueries", attention_forward_fewer_queries_than_keys},
    {"AttentionForwardLseInActivationDtype", attention_forward_lse_in_the_activation_dtype},
    {"AttentionBackward", attention_backward},
    {"AttentionForwardSlidingWindow", attention_forward_with_sliding_window},
    {"AttentionBackwardSlidingWindow", attention_backward_with_sliding_window},
    {"AttentionBackwardLseInActivationDtype", attention_backward_lse_in_the_activation_dtype},
    {"AttentionChainDeterministic", attention_chain_is_deterministic},
    {"AttentionRejects", attention_rejects_what_the_backend_cannot_take},
};

using BackendCase = std::tuple<const Backend*, const OpCase*>;

class BackendOps : public ::testing::TestWithParam<BackendCase> {};

TEST_P(BackendOps, MatchTheCpuInDouble) {
  const auto [backend, op] = GetParam();
  const std::string why = unavailable(*backend);
  if (!why.empty()) GTEST_SKIP() << backend->name << ": " << why;
  op->run(*backend);
}

template <class T, size_t N>
std::vector<const T*> addresses(const T (&items)[N]) {
  std::vector<const T*> out;
  for (const T& item : items) out.push_back(&item);
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryBackend, BackendOps,
                         ::testing::Combine(::testing::ValuesIn(addresses(kBackends)),
                                            ::testing::ValuesIn(addresses(kCases))),
                         [](const ::testing::TestParamInfo<BackendCase>& info) {
                           return std::string(std::get<0>(info.param)->name) + "_" + std::get<1>(info.param)->name;
                         });

}  // namespace
}  // namespace fe
