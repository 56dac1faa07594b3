#include "kernels/embedding.h"

#include <cstring>
#include <vector>

#include "kernels/cpu/dispatch.h"
#include "kernels/cuda/ops.h"
#include "kernels/elementwise.h"

namespace fe::kernels {
namespace {

// Token ids come from user data: an id outside the vocabulary is an error, not a wild read. Ids on
// the GPU are read on the host (a small copy that waits for the stream).
void require_valid_ids(const detail::OpCheck& check, const View& ids, int64_t vocab) {
  check.require(ids.dtype == DType::i32, "ids must be i32");
  const int32_t* p = ids.as<int32_t>();
  std::vector<int32_t> host;
  if (ids.device == Device::cuda) {
    host.resize(ids.numel());
    copy(View{host.data(), DType::i32, ids.shape, Device::cpu}, ids);
    p = host.data();
  }
  for (int64_t n = 0; n < ids.numel(); ++n)
    if (p[n] < 0 || p[n] >= vocab)
      check.fail("token id " + std::to_string(p[n]) + " at position " + std::to_string(n) +
                 " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
}

}  // namespace

void embedding_forward(const View& out, const View& ids, const View& table) {
  detail::OpCheck check("embedding_forward", {{"out", &out}, {"ids", &ids}, {"table", &table}});
  check.require(table.shape.rank() == 2 && out.numel() == ids.numel() * table.shape[1],
                "expects table [V, D], ids [N], out [N, D]");
  const bool gpu = cpu::on_gpu_float(check, table);
  require_valid_ids(check, ids, table.shape[0]);
  if (gpu) {
    if constexpr (cpu::kHaveCuda) cuda::embedding_forward(out, ids, table);
    return;
  }
  cpu::dispatch_float(check, table, [&]<class T>(T) {
    const int64_t dim = table.shape[1];
    const int32_t* id = ids.as<int32_t>();
    for (int64_t n = 0; n < ids.numel(); ++n)
      std::memcpy(out.as<T>() + n * dim, table.as<T>() + id[n] * dim, dim * sizeof(T));
  });
}

void embedding_backward(const View& dtable, const View& ids, const View& dout) {
  detail::OpCheck check("embedding_backward", {{"dtable", &dtable}, {"ids", &ids}, {"dout", &dout}});
  check.require(dtable.shape.rank() == 2 && dout.numel() == ids.numel() * dtable.shape[1],
                "expects dtable [V, D], ids [N], dout [N, D]");
  const bool gpu = cpu::on_gpu_float(check, dtable);
  require_valid_ids(check, ids, dtable.shape[0]);
  if (gpu) {
    if constexpr (cpu::kHaveCuda) cuda::embedding_backward(dtable, ids, dout);
    return;
  }
  cpu::dispatch_float(check, dtable, [&]<class T>(T) {
    const int64_t dim = dtable.shape[1];
    const int32_t* id = ids.as<int32_t>();
    for (int64_t n = 0; n < ids.numel(); ++n) {
      T* row = dtable.as<T>() + id[n] * dim;
      const T* g = dout.as<T>() + n * dim;
      for (int64_t d = 0; d < dim; ++d) row[d] += g[d];
    }
  });
}

}  // namespace fe::kernels
