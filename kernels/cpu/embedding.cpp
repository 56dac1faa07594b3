// CPU twin of kernels/embedding.h (CUDA twin: kernels/cuda/embedding.cu).
#include <cstring>

#include "kernels/cpu/common.h"
#include "kernels/twins.h"

namespace fe::kernels::cpu {

void embedding_forward(const EmbeddingForwardArgs& a) {
  with_float_type(a.table.dtype, [&]<class T>(T) {
    const int64_t dim = a.table.shape[1];
    const int32_t* id = a.ids.as<int32_t>();
    for (int64_t n = 0; n < a.ids.numel(); ++n)
      std::memcpy(a.out.as<T>() + n * dim, a.table.as<T>() + id[n] * dim, dim * sizeof(T));
  });
}

// Rows are added in the order of n, so repeated ids accumulate in a fixed order.
void embedding_backward(const EmbeddingBackwardArgs& a) {
  with_float_type(a.dtable.dtype, [&]<class T>(T) {
    const int64_t dim = a.dtable.shape[1];
    const int32_t* id = a.ids.as<int32_t>();
    for (int64_t n = 0; n < a.ids.numel(); ++n) {
      T* row = a.dtable.as<T>() + id[n] * dim;
      const T* g = a.dout.as<T>() + n * dim;
      for (int64_t d = 0; d < dim; ++d) row[d] += g[d];
    }
  });
}

}  // namespace fe::kernels::cpu
