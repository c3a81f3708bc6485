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

#include "sg_input.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <unordered_map>
#include <vector>

namespace sg4 = simgrid::s4u;

namespace {

struct Problem {
  int64_t hosts = 0;
  std::vector<double> bw, lat, bytes;
  std::vector<int64_t> src, dst, ptr, links;
};

Problem load(const char* path)
{
  std::vector<int64_t> head;
  FILE* f = sg_input::open_input(path, 0x53474132, 5, head, "simgrid_a2a");
  Problem p;
  p.hosts      = head[1];
  int64_t nl   = head[2];
  int64_t nf   = head[3];
  int64_t nr   = head[4];
  p.bw         = sg_input::read_array<double>(f, nl, "bandwidths", "simgrid_a2a");
  p.lat        = sg_input::read_array<double>(f, nl, "latencies", "simgrid_a2a");
  p.src        = sg_input::read_array<int64_t>(f, nf, "sources", "simgrid_a2a");
  p.dst        = sg_input::read_array<int64_t>(f, nf, "destinations", "simgrid_a2a");
  p.bytes      = sg_input::read_array<double>(f, nf, "sizes", "simgrid_a2a");
  p.ptr        = sg_input::read_array<int64_t>(f, nf + 1, "route pointers", "simgrid_a2a");
  p.links      = sg_input::read_array<int64_t>(f, nr, "route links", "simgrid_a2a");
  std::fclose(f);
  return p;
}

} // namespace

int main(int argc, char** argv)
{
  double t0 = sg_input::now_s();
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
  std::vector<sg4::Link*> links = sg_input::make_links(zone, p.bw);
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

  double t1 = sg_input::now_s();
  sg4::Actor::create("driver", hosts[0], [&]() {
    std::vector<sg4::CommPtr> comms;
    comms.reserve(nf);
    for (size_t i = 0; i < nf; i++)
      comms.push_back(sg4::Comm::sendto_async(hosts[p.src[i]], hosts[p.dst[i]],
                                              static_cast<uint64_t>(p.bytes[i])));
    sg4::Comm::wait_all(comms);
  });
  e.run();
  double t2 = sg_input::now_s();
  std::printf("simgrid_version %s\n", SIMGRID_VERSION_STRING);
  std::printf("flows %zu\n", done);
  std::printf("makespan_s %.17g\n", makespan);
  std::printf("setup_s %.6f\nsimulate_s %.6f\n", t1 - t0, t2 - t1);
  return done == nf ? 0 : 1;
}
