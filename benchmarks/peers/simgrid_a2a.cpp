// SimGrid driver for benchmarks/bench_peers.py: one all-to-all (or any flow list) on a platform
// read from a binary file, simulated by SimGrid's flow-level max-min (LMM) network model.
//
// Input file (little-endian, written by bench_peers.write_simgrid_platform):
//   int64 magic 0x53474132 ("SGA2"), int64 hosts, int64 links, int64 flows, int64 route_len
//   float64 bandwidth[links] (bytes/s), float64 latency[links] (s)
//   int64 src[flows], int64 dst[flows] (host numbers), float64 bytes[flows]
//   int64 route_ptr[flows + 1], int64 route_links[route_len]
// Every flow is a distinct (src, dst) pair; its route is the list of directed links it crosses.
//
// Each directed link is one SimGrid link (SharingPolicy::SHARED, i.e. one direction) in a
// single FullZone with an explicit route per pair. SimGrid's CM02 model weights a flow's share
// by 1 / (route latency) (its TCP RTT-unfairness term); to solve the plain max-min problem the
// links are given latency 0 here and each flow's route latency (the sum of its links'
// latencies) is added to its completion time instead, which is also netsim's flow-model
// convention (bytes arrive one path latency after the last byte leaves).
//
// Usage: simgrid_a2a PLATFORM.bin [--cfg=...]   (the bench passes CM02, no cross-traffic,
// no TCP window bound). Prints "makespan_s <t>", "flows <n>", "setup_s <s>", "simulate_s <s>".
#include <simgrid/s4u.hpp>
#include <simgrid/version.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

namespace sg4 = simgrid::s4u;

namespace {

template <class T> std::vector<T> read_array(FILE* f, int64_t n, const char* what)
{
  std::vector<T> v(static_cast<size_t>(n));
  if (n > 0 && std::fread(v.data(), sizeof(T), v.size(), f) != v.size()) {
    std::fprintf(stderr, "simgrid_a2a: file ends inside %s\n", what);
    std::exit(2);
  }
  return v;
}

struct Problem {
  int64_t hosts = 0;
  std::vector<double> bw, lat, bytes;
  std::vector<int64_t> src, dst, ptr, links;
};

Problem load(const char* path)
{
  FILE* f = std::fopen(path, "rb");
  if (f == nullptr) {
    std::fprintf(stderr, "simgrid_a2a: cannot open %s\n", path);
    std::exit(2);
  }
  auto head = read_array<int64_t>(f, 5, "the header");
  if (head[0] != 0x53474132) {
    std::fprintf(stderr, "simgrid_a2a: %s is not a platform file (bad magic)\n", path);
    std::exit(2);
  }
  Problem p;
  p.hosts      = head[1];
  int64_t nl   = head[2];
  int64_t nf   = head[3];
  int64_t nr   = head[4];
  p.bw         = read_array<double>(f, nl, "bandwidths");
  p.lat        = read_array<double>(f, nl, "latencies");
  p.src        = read_array<int64_t>(f, nf, "sources");
  p.dst        = read_array<int64_t>(f, nf, "destinations");
  p.bytes      = read_array<double>(f, nf, "sizes");
  p.ptr        = read_array<int64_t>(f, nf + 1, "route pointers");
  p.links      = read_array<int64_t>(f, nr, "route links");
  std::fclose(f);
  return p;
}

double now_s()
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

} // namespace

int main(int argc, char** argv)
{
  double t0 = now_s();
  sg4::Engine e(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s PLATFORM.bin [--cfg=...]\n", argv[0]);
    return 2;
  }
  Problem p = load(argv[1]);
  const size_t nf = p.src.size();

  auto* zone = sg4::create_full_zone("fabric");
  std::vector<sg4::Host*> hosts;
  hosts.reserve(static_cast<size_t>(p.hosts));
  std::unordered_map<const sg4::Host*, int64_t> host_id;
  for (int64_t h = 0; h < p.hosts; h++) {
    hosts.push_back(zone->create_host("h" + std::to_string(h), 1e9));
    host_id[hosts.back()] = h;
  }
  std::vector<sg4::Link*> links;
  links.reserve(p.bw.size());
  for (size_t l = 0; l < p.bw.size(); l++)
    links.push_back(zone->create_link("l" + std::to_string(l), p.bw[l])
                        ->set_sharing_policy(sg4::Link::SharingPolicy::SHARED)
                        ->set_latency(0.0)
                        ->seal());
  // route latency of each flow, looked up by (src, dst) when it completes
  std::vector<double> pair_lat(static_cast<size_t>(p.hosts * p.hosts), 0.0);
  std::vector<sg4::LinkInRoute> route;
  for (size_t i = 0; i < nf; i++) {
    route.clear();
    double lat = 0.0;
    for (int64_t j = p.ptr[i]; j < p.ptr[i + 1]; j++) {
      route.emplace_back(links[static_cast<size_t>(p.links[j])]);
      lat += p.lat[static_cast<size_t>(p.links[j])];
    }
    pair_lat[static_cast<size_t>(p.src[i] * p.hosts + p.dst[i])] = lat;
    zone->add_route(hosts[p.src[i]]->get_netpoint(), hosts[p.dst[i]]->get_netpoint(), nullptr, nullptr, route,
                    false);
  }
  zone->seal();

  double makespan = 0.0;
  size_t done     = 0;
  sg4::Activity::on_completion_cb([&](sg4::Activity const& a) {
    const auto* c = dynamic_cast<const sg4::Comm*>(&a);
    if (c == nullptr)
      return;
    int64_t s = host_id.at(c->get_source());
    int64_t d = host_id.at(c->get_destination());
    double t  = sg4::Engine::get_clock() + pair_lat[static_cast<size_t>(s * p.hosts + d)];
    if (t > makespan)
      makespan = t;
    done++;
  });

  double t1 = now_s();
  sg4::Actor::create("driver", hosts[0], [&]() {
    std::vector<sg4::CommPtr> comms;
    comms.reserve(nf);
    for (size_t i = 0; i < nf; i++)
      comms.push_back(sg4::Comm::sendto_async(hosts[p.src[i]], hosts[p.dst[i]],
                                              static_cast<uint64_t>(p.bytes[i])));
    sg4::Comm::wait_all(comms);
  });
  e.run();
  double t2 = now_s();
  std::printf("simgrid_version %s\n", SIMGRID_VERSION_STRING);
  std::printf("flows %zu\n", done);
  std::printf("makespan_s %.17g\n", makespan);
  std::printf("setup_s %.6f\nsimulate_s %.6f\n", t1 - t0, t2 - t1);
  return done == nf ? 0 : 1;
}
