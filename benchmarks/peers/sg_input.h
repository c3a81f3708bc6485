// What the two SimGrid drivers of the benchmarks (simgrid_a2a.cpp, simgrid_layer.cpp) share:
// reading their little-endian input files, SimGrid links of netsim's directed links, a clock.
#pragma once
#include <simgrid/s4u.hpp>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sg_input {

// n values of type T from f; exits 2 (naming the driver and the field) if the file ends first
template <class T> std::vector<T> read_array(FILE* f, int64_t n, const char* what, const char* prog)
{
  std::vector<T> v(static_cast<size_t>(n));
  if (n > 0 && std::fread(v.data(), sizeof(T), v.size(), f) != v.size()) {
    std::fprintf(stderr, "%s: file ends inside %s\n", prog, what);
    std::exit(2);
  }
  return v;
}

// opens path and reads its header of `words` int64, the first of them `magic`; exits 2 otherwise
inline FILE* open_input(const char* path, int64_t magic, int64_t words, std::vector<int64_t>& head,
                        const char* prog)
{
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "%s: cannot open %s\n", prog, path);
    std::exit(2);
  }
  head = read_array<int64_t>(f, words, "the header", prog);
  if (head[0] != magic) {
    std::fprintf(stderr, "%s: %s is not its input file (bad magic)\n", prog, path);
    std::exit(2);
  }
  return f;
}

// one SimGrid link per netsim directed link (one direction: SHARED), at latency 0: CM02 would
// weight a flow's share by 1 / route latency; the drivers add route latencies themselves
inline std::vector<simgrid::s4u::Link*> make_links(simgrid::s4u::NetZone* zone, const std::vector<double>& bw)
{
  std::vector<simgrid::s4u::Link*> links;
  links.reserve(bw.size());
  for (size_t l = 0; l < bw.size(); l++)
    links.push_back(zone->create_link("l" + std::to_string(l), bw[l])
                        ->set_sharing_policy(simgrid::s4u::Link::SharingPolicy::SHARED)
                        ->set_latency(0.0)
                        ->seal());
  return links;
}

inline double now_s()
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace sg_input
