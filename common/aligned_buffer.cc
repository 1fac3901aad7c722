#include "common/aligned_buffer.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace tessera {

void AlignedBuffer::AdviseHugePages(void* p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
  (void)madvise(p, bytes, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace tessera
