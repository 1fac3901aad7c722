#include "common/aligned_buffer.h"

#include <sys/mman.h>

namespace tessera {

void AlignedBuffer::AdviseHugePages(void* p, size_t bytes) {
  // A hint: kernels without transparent huge pages refuse it, and the buffer works the same.
  (void)::madvise(p, bytes, MADV_HUGEPAGE);
}

}  // namespace tessera
