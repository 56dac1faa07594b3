// kernels/embedding.h — token embedding lookup.
#pragma once
#include "kernels/view.h"

namespace fe::kernels {

// out[n, :] = table[ids[n], :].  ids: i32 [N]; table: [V, D]; out: [N, D].
void embedding_forward(const View& out, const View& ids, const View& table);
// dtable[ids[n], :] += dout[n, :] (only full-parameter training needs it).
void embedding_backward(const View& dtable, const View& ids, const View& dout);

}  // namespace fe::kernels
