// CPU twin of kernels/attention.h (CUDA twin: kernels/cuda/attention.cu): a score row at a time,
// the probabilities recomputed from the log-sum-exp in the backward.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {
namespace {

struct Dims {
  int64_t batch, seq, kv_seq, heads, kv_heads, head_dim;
  int64_t window;  // 0: every earlier key
  int64_t q_index(int64_t b, int64_t t, int64_t h) const { return ((b * seq + t) * heads + h) * head_dim; }
  int64_t kv_index(int64_t b, int64_t t, int64_t g) const { return ((b * kv_seq + t) * kv_heads + g) * head_dim; }
  int64_t lse_index(int64_t b, int64_t h, int64_t t) const { return (b * heads + h) * seq + t; }
  int64_t group_size() const { return heads / kv_heads; }
  int64_t last_key(int64_t query) const { return kv_seq - seq + query; }  // causal limit, inclusive
  int64_t first_key(int64_t query) const { return window > 0 ? std::max<int64_t>(0, last_key(query) - window + 1) : 0; }
  int64_t keys_per_query() const { return window > 0 ? std::min(window, kv_seq) : kv_seq; }
  int64_t work() const { return batch * heads * seq * keys_per_query() * head_dim; }  // multiply-adds, roughly
};

// The sizes of q [B, Tq, H, hd] and k [B, Tk, Hkv, hd].
Dims dims_of(const View& q, const View& k, int64_t window) {
  return Dims{q.shape[0], q.shape[1], k.shape[1], q.shape[2], k.shape[2], q.shape[3], window};
}

template <class T>
T dot(const T* a, const T* b, int64_t n) {
  T s = 0;
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

}  // namespace

void attention_forward(const AttentionForwardArgs& a) {
  const View &out = a.out, &lse = a.lse, &q = a.q, &k = a.k, &v = a.v;
  const Dims d = dims_of(q, k, a.window);
  with_float_type(q.dtype, [&]<class T>(T) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
#pragma omp parallel if (d.work() > kParallelWork)
    {
      std::vector<T> scores(d.kv_seq);
#pragma omp for collapse(2) schedule(static)
      for (int64_t b = 0; b < d.batch; ++b)
        for (int64_t h = 0; h < d.heads; ++h) {
          const int64_t g = h / d.group_size();
          for (int64_t i = 0; i < d.seq; ++i) {
            const T* qi = q.as<T>() + d.q_index(b, i, h);
            T max_score = -std::numeric_limits<T>::infinity();
            for (int64_t j = d.first_key(i); j <= d.last_key(i); ++j) {
              scores[j] = scale * dot(qi, k.as<T>() + d.kv_index(b, j, g), d.head_dim);
              max_score = std::max(max_score, scores[j]);
            }
            T* oi = out.as<T>() + d.q_index(b, i, h);
            std::fill(oi, oi + d.head_dim, T(0));
            double denom = 0;
            for (int64_t j = d.first_key(i); j <= d.last_key(i); ++j) {
              const T p = std::exp(scores[j] - max_score);
              denom += p;
              const T* vj = v.as<T>() + d.kv_index(b, j, g);
              for (int64_t e = 0; e < d.head_dim; ++e) oi[e] += p * vj[e];
            }
            const T inv = static_cast<T>(1.0 / denom);
            for (int64_t e = 0; e < d.head_dim; ++e) oi[e] *= inv;
            lse.as<T>()[d.lse_index(b, h, i)] = static_cast<T>(max_score + std::log(denom));
          }
        }
    }
  });
}

// With P = softmax(S) recomputed from lse and Dᵢ = dOᵢ·Oᵢ:
//   dV += Pᵀ dO;  dS = P ⊙ (dO Vᵀ − D);  dQ = scale·dS K;  dK += scale·dSᵀ Q.
// Work is split by (batch, kv head) so the query heads sharing a kv head accumulate dK, dV in one
// thread, in a fixed order.
void attention_backward(const AttentionBackwardArgs& a) {
  const View &dq = a.dq, &dk = a.dk, &dv = a.dv, &dout = a.dout, &q = a.q, &k = a.k, &v = a.v, &out = a.out,
             &lse = a.lse;
  const Dims d = dims_of(q, k, a.window);
  with_float_type(q.dtype, [&]<class T>(T) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(d.head_dim)));
    const int64_t hd = d.head_dim;
#pragma omp parallel for collapse(2) schedule(static) if (d.work() > kParallelWork)
    for (int64_t b = 0; b < d.batch; ++b)
      for (int64_t g = 0; g < d.kv_heads; ++g) {
        for (int64_t j = 0; j < d.seq; ++j) {
          std::fill_n(dk.as<T>() + d.kv_index(b, j, g), hd, T(0));
          std::fill_n(dv.as<T>() + d.kv_index(b, j, g), hd, T(0));
        }
        for (int64_t h = g * d.group_size(); h < (g + 1) * d.group_size(); ++h)
          for (int64_t i = 0; i < d.seq; ++i) {
            const T* qi = q.as<T>() + d.q_index(b, i, h);
            const T* doi = dout.as<T>() + d.q_index(b, i, h);
            T* dqi = dq.as<T>() + d.q_index(b, i, h);
            std::fill_n(dqi, hd, T(0));
            const T row_dot = dot(doi, out.as<T>() + d.q_index(b, i, h), hd);
            const T row_lse = lse.as<T>()[d.lse_index(b, h, i)];
            for (int64_t j = d.first_key(i); j <= i; ++j) {
              const T* kj = k.as<T>() + d.kv_index(b, j, g);
              const T* vj = v.as<T>() + d.kv_index(b, j, g);
              T* dkj = dk.as<T>() + d.kv_index(b, j, g);
              T* dvj = dv.as<T>() + d.kv_index(b, j, g);
              const T p = std::exp(scale * dot(qi, kj, hd) - row_lse);
              const T ds = p * (dot(doi, vj, hd) - row_dot) * scale;
              for (int64_t e = 0; e < hd; ++e) {
                dvj[e] += p * doi[e];
                dqi[e] += ds * kj[e];
                dkj[e] += ds * qi[e];
              }
            }
          }
      }
  });
}

}  // namespace fe::kernels::cpu
