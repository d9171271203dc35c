// CRC-32C (Castagnoli), the checksum of model files and log records.
//
//   uint32_t crc = Crc32c(data, size);
//   crc = Crc32c(more, more_size, crc);   // continue over a second buffer
#ifndef RECSYS_BASE_CRC32C_H_
#define RECSYS_BASE_CRC32C_H_

#include <cstddef>
#include <cstdint>

namespace recsys {

// CRC-32C of `size` bytes, continuing from `crc` (0 to start).
uint32_t Crc32c(const void* data, size_t size, uint32_t crc = 0);

}  // namespace recsys

#endif  // RECSYS_BASE_CRC32C_H_
