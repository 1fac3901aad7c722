// Test helper: assembles safetensors images byte by byte (independent of the reader).
#pragma once

#include <cstdint>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "nlohmann/json.hpp"

namespace tessera::testing {

class SafetensorsBuilder {
 public:
  // Appends a tensor; `bytes` is its raw little-endian data.
  SafetensorsBuilder& Add(const std::string& name, const std::string& dtype,
                          const std::vector<int64_t>& shape, const std::string& bytes) {
    header_[name] = {{"dtype", dtype},
                     {"shape", shape},
                     {"data_offsets", {data_.size(), data_.size() + bytes.size()}}};
    data_ += bytes;
    return *this;
  }
  SafetensorsBuilder& Metadata(const std::string& key, const std::string& value) {
    header_["__metadata__"][key] = value;
    return *this;
  }
  nlohmann::json& header() { return header_; }
  // The header is padded with spaces until the data section starts at `remainder` modulo
  // `pad_to` (0 mod 8 as the reference writer does; e.g. 2 mod 4 for unaligned F32 data).
  std::string Build(size_t pad_to = 8, size_t remainder = 0) const {
    std::string h = header_.dump();
    while ((8 + h.size()) % pad_to != remainder) h += ' ';
    return Image(h, data_);
  }
  static std::string Image(const std::string& header_json, const std::string& data) {
    std::string out(8, '\0');
    const uint64_t n = header_json.size();
    std::memcpy(out.data(), &n, 8);
    return out + header_json + data;
  }
  void Write(const std::string& path, size_t pad_to = 8, size_t remainder = 0) const {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    const std::string image = Build(pad_to, remainder);
    f.write(image.data(), static_cast<std::streamsize>(image.size()));
  }

 private:
  nlohmann::json header_ = nlohmann::json::object();
  std::string data_;
};

template <typename T>
std::string BytesOf(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace tessera::testing
