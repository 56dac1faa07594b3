// The public embedding ops: argument checks (the token ids too), then the CPU or CUDA twin
// (kernels/twins.h).
#include "kernels/embedding.h"

#include <vector>

#include "kernels/dispatch.h"
#include "kernels/elementwise.h"
#include "kernels/twins.h"

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

// Whether the op runs on the GPU; the floating views are checked for their device first.
bool embedding_on_gpu(const detail::OpCheck& check, const View& table) {
  if (detail::on_gpu_float(check, table)) return true;
  detail::require_cpu_float(check, table);
  return false;
}

}  // namespace

void embedding_forward(const View& out, const View& ids, const View& table) {
  detail::OpCheck check("embedding_forward", {{"out", &out}, {"ids", &ids}, {"table", &table}});
  check.require(table.shape.rank() == 2 && out.numel() == ids.numel() * table.shape[1],
                "expects table [V, D], ids [N], out [N, D]");
  const bool gpu = embedding_on_gpu(check, table);
  require_valid_ids(check, ids, table.shape[0]);
  const EmbeddingForwardArgs args{out, ids, table};
  if (gpu) {
    if constexpr (detail::kHaveCuda) cuda::embedding_forward(args);
    return;
  }
  cpu::embedding_forward(args);
}

void embedding_backward(const View& dtable, const View& ids, const View& dout) {
  detail::OpCheck check("embedding_backward", {{"dtable", &dtable}, {"ids", &ids}, {"dout", &dout}});
  check.require(dtable.shape.rank() == 2 && dout.numel() == ids.numel() * dtable.shape[1],
                "expects dtable [V, D], ids [N], dout [N, D]");
  const bool gpu = embedding_on_gpu(check, dtable);
  require_valid_ids(check, ids, dtable.shape[0]);
  const EmbeddingBackwardArgs args{dtable, ids, dout};
  if (gpu) {
    if constexpr (detail::kHaveCuda) cuda::embedding_backward(args);
    return;
  }
  cpu::embedding_backward(args);
}

}  // namespace fe::kernels
