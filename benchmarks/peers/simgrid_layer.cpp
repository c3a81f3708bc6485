// SimGrid driver for benchmarks/scale_table.py: one MoE layer (dispatch, expert compute, combine)
// on a platform read from a binary file, simulated by SimGrid's flow-level max-min (LMM) model.
//
// Input file (little-endian, written by scale_table.write_layer_platform):
//   int64 magic 0x53474C31 ("SGL1"), int64 hosts, int64 links, int64 pairs, int64 route_len,
//   int64 combine (1: the layer has a combine phase)
//   float64 bandwidth[links] (bytes/s), float64 latency[links] (s)
//   int64 src[pairs], int64 dst[pairs] (host numbers), float64 dispatch_bytes[pairs],
//   float64 combine_bytes[pairs] (bytes the pair's source sends its destination in each phase)
//   int64 route_ptr[pairs + 1], int64 route_links[route_len], float64 compute_s[hosts]
// Every pair is a distinct (src, dst) with src != dst; its route is the list of directed links
// it crosses, in both phases.
//
// What each GPU (one actor per host) does, netsim's direct layer (netsim/devices/gpu.py): at
// time 0 it sends its dispatch bytes to every destination; once every dispatch byte meant for it
// has arrived it computes for compute_s[g] (a sleep), then sends its combine bytes, and its
// layer ends once every combine byte meant for it has arrived. Links have latency 0 (SimGrid's
// CM02 would otherwise weight a flow's share by 1 / route latency); a byte "arrives" one route
// latency after the flow carrying it completes, netsim's flow-model convention, so a GPU waits
// until the latest of (completion + route latency) over its incoming flows.
//
// Usage: simgrid_layer LAYER.bin [--cfg=...]. Prints "layer_s", "dispatch_s", "flows",
// "setup_s", "simulate_s", "simgrid_version" and "peak_rss_kib" (VmHWM of /proc/self/status: the
// driver's own peak, which a parent's wait4 cannot give, since the high-water mark it reports
// includes the forking process's pages from before the exec).
#include <simgrid/s4u.hpp>
#include <simgrid/version.h>

#include "sg_input.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace sg4 = simgrid::s4u;

namespace {

struct Layer {
  int64_t hosts = 0;
  bool combine  = true;
  std::vector<double> bw, lat, disp, comb, compute;
  std::vector<int64_t> src, dst, ptr, links;
};

Layer load(const char* path)
{
  std::vector<int64_t> head;
  FILE* f = sg_input::open_input(path, 0x53474C31, 6, head, "simgrid_layer");
  Layer p;
  p.hosts    = head[1];
  int64_t nl = head[2];
  int64_t np = head[3];
  int64_t nr = head[4];
  p.combine  = head[5] != 0;
  p.bw       = sg_input::read_array<double>(f, nl, "bandwidths", "simgrid_layer");
  p.lat      = sg_input::read_array<double>(f, nl, "latencies", "simgrid_layer");
  p.src      = sg_input::read_array<int64_t>(f, np, "sources", "simgrid_layer");
  p.dst      = sg_input::read_array<int64_t>(f, np, "destinations", "simgrid_layer");
  p.disp     = sg_input::read_array<double>(f, np, "dispatch sizes", "simgrid_layer");
  p.comb     = sg_input::read_array<double>(f, np, "combine sizes", "simgrid_layer");
  p.ptr      = sg_input::read_array<int64_t>(f, np + 1, "route pointers", "simgrid_layer");
  p.links    = sg_input::read_array<int64_t>(f, nr, "route links", "simgrid_layer");
  p.compute  = sg_input::read_array<double>(f, p.hosts, "compute times", "simgrid_layer");
  std::fclose(f);
  return p;
}

long peak_rss_kib()
{
  FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr)
    return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof line, f) != nullptr)
    if (std::sscanf(line, "VmHWM: %ld kB", &kib) == 1)
      break;
  std::fclose(f);
  return kib;
}

struct Send {
  int64_t to;
  uint64_t bytes;
};

// Receive every flow of one phase posted on `recvs` (slots[k] names the sender), then wait until
// the last of them has arrived: its completion plus its route latency.
void arrive(std::vector<sg4::CommPtr>& recvs, const std::vector<int64_t*>& slots, int64_t g,
            const std::vector<double>& pair_lat, int64_t hosts)
{
  sg4::Comm::wait_all(recvs);
  double done = sg4::Engine::get_clock();
  for (size_t k = 0; k < recvs.size(); k++) {
    int64_t s = *slots[k];
    done      = std::max(done, recvs[k]->get_finish_time() + pair_lat[static_cast<size_t>(s * hosts + g)]);
  }
  sg4::this_actor::sleep_until(done);
}

} // namespace

int main(int argc, char** argv)
{
  double t0 = sg_input::now_s();
  sg4::Engine e(&argc, argv);
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s LAYER.bin [--cfg=...]\n", argv[0]);
    return 2;
  }
  Layer p              = load(argv[1]);
  const size_t np      = p.src.size();
  const size_t H       = static_cast<size_t>(p.hosts);

  auto* zone = sg4::create_full_zone("fabric");
  std::vector<sg4::Host*> hosts;
  hosts.reserve(H);
  for (size_t h = 0; h < H; h++)
    hosts.push_back(zone->create_host("h" + std::to_string(h), 1e9));
  std::vector<sg4::Link*> links = sg_input::make_links(zone, p.bw);
  std::vector<double> pair_lat(H * H, 0.0);
  std::vector<std::vector<Send>> out_d(H), out_c(H);
  std::vector<int64_t> in_d(H, 0), in_c(H, 0);
  std::vector<sg4::LinkInRoute> route;
  size_t flows = 0;
  for (size_t i = 0; i < np; i++) {
    route.clear();
    double lat = 0.0;
    for (int64_t j = p.ptr[i]; j < p.ptr[i + 1]; j++) {
      route.emplace_back(links[static_cast<size_t>(p.links[j])]);
      lat += p.lat[static_cast<size_t>(p.links[j])];
    }
    auto s = static_cast<size_t>(p.src[i]), d = static_cast<size_t>(p.dst[i]);
    pair_lat[s * H + d] = lat;
    zone->add_route(hosts[s]->get_netpoint(), hosts[d]->get_netpoint(), nullptr, nullptr, route, false);
    if (p.disp[i] > 0) {
      out_d[s].push_back({p.dst[i], static_cast<uint64_t>(p.disp[i])});
      in_d[d]++;
      flows++;
    }
    if (p.combine && p.comb[i] > 0) {
      out_c[s].push_back({p.dst[i], static_cast<uint64_t>(p.comb[i])});
      in_c[d]++;
      flows++;
    }
  }
  zone->seal();

  std::vector<int64_t> ids(H);
  std::vector<double> dispatch_end(H, 0.0), layer_end(H, 0.0);
  for (size_t g = 0; g < H; g++) {
    ids[g] = static_cast<int64_t>(g);
    sg4::Actor::create("gpu" + std::to_string(g), hosts[g], [&, g]() {
      auto gi = static_cast<int64_t>(g);
      sg4::Mailbox* md = sg4::Mailbox::by_name("d" + std::to_string(g));
      sg4::Mailbox* mc = sg4::Mailbox::by_name("c" + std::to_string(g));
      // receives of both phases posted at once, so that a transfer starts when its sender sends
      std::vector<int64_t*> slot_d(static_cast<size_t>(in_d[g]), nullptr), slot_c(static_cast<size_t>(in_c[g]), nullptr);
      std::vector<sg4::CommPtr> recv_d, recv_c, sends;
      for (auto& s : slot_d)
        recv_d.push_back(md->get_async<int64_t>(&s));
      for (auto& s : slot_c)
        recv_c.push_back(mc->get_async<int64_t>(&s));
      for (const Send& s : out_d[g])
        sends.push_back(sg4::Mailbox::by_name("d" + std::to_string(s.to))->put_async(&ids[g], s.bytes));
      arrive(recv_d, slot_d, gi, pair_lat, p.hosts);
      dispatch_end[g] = sg4::Engine::get_clock();
      if (!p.combine) {
        layer_end[g] = dispatch_end[g];
        sg4::Comm::wait_all(sends);
        return;
      }
      if (p.compute[g] > 0)
        sg4::this_actor::sleep_for(p.compute[g]);
      for (const Send& s : out_c[g])
        sends.push_back(sg4::Mailbox::by_name("c" + std::to_string(s.to))->put_async(&ids[g], s.bytes));
      arrive(recv_c, slot_c, gi, pair_lat, p.hosts);
      layer_end[g] = sg4::Engine::get_clock();
      sg4::Comm::wait_all(sends);
    });
  }
  double t1 = sg_input::now_s();
  e.run();
  double t2 = sg_input::now_s();
  std::printf("simgrid_version %s\n", SIMGRID_VERSION_STRING);
  std::printf("flows %zu\n", flows);
  std::printf("layer_s %.17g\n", *std::max_element(layer_end.begin(), layer_end.end()));
  std::printf("dispatch_s %.17g\n", *std::max_element(dispatch_end.begin(), dispatch_end.end()));
  std::printf("setup_s %.6f\nsimulate_s %.6f\n", t1 - t0, t2 - t1);
  std::printf("peak_rss_kib %ld\n", peak_rss_kib());
  return 0;
}
