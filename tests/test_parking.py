"""Flows parked per link on a one-hop flow fabric (netsim/fabric/parking.py): the active list and
the parked flows are what one list of parked flows in parking order gives (the rule before
per-link lists), over random sequences of circuit changes, arrivals and completions."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from netsim.circuit_fabric import CircuitFabric, circuit_topology
from netsim.fabric import flow
from netsim.fabric.flow import FlowFabric


def test_parking_uses_the_fabrics_completion_rule():
    """A flow the fabric counts finished (flow.unfinished) stays when its circuit goes down; one
    an ulp above the threshold is parked."""
    fab, link_of = _fabric(4)
    links = np.array([link_of[0, 1], link_of[1, 2]], np.int64)
    fab.set_link_capacity(links, np.full(2, 1e9))
    ids = fab.add_flows(np.array([0, 1]), np.array([1, 2]), np.full(2, 1e6))
    edge = flow._EPS_BYTES + flow._EPS_REL * 1e6
    fab.rem[ids] = [edge, np.nextafter(edge, np.inf)]
    assert flow.unfinished(fab.rem[ids], fab.bytes[ids]).tolist() == [False, True]
    fab.set_link_capacity(links, np.zeros(2))
    assert fab.active[: fab.n_act].tolist() == [int(ids[0])] and fab.n_parked == 1


class _OneList:
    """The reference: parked flows in one list, in parking order (flow ids and links)."""

    def __init__(self):
        self.ids: list[int] = []
        self.links: list[int] = []

    def park(self, ids, links):
        self.ids += list(ids)
        self.links += list(links)

    def unpark(self, up: set) -> list[int]:
        back = [f for f, e in zip(self.ids, self.links) if e in up]
        keep = [(f, e) for f, e in zip(self.ids, self.links) if e not in up]
        self.ids, self.links = [f for f, _ in keep], [e for _, e in keep]
        return back


def _fabric(n: int):
    ft, link_of = circuit_topology(CircuitFabric(1, 1, 1e9, 1e-6, 0.0, n=n))
    fab = FlowFabric(ft, capacity=4)  # small: the flow arrays and parking state grow
    fab.cap[:] = 0.0
    return fab, link_of


_op = st.one_of(
    st.tuples(st.just("cap"), st.lists(st.integers(0, 11), min_size=1, max_size=6, unique=True),
              st.lists(st.sampled_from([0.0, 1e9, 2e9]), min_size=6, max_size=6)),
    st.tuples(st.just("add"), st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)),
                                       min_size=1, max_size=10)),
    st.tuples(st.just("crumb"), st.integers(0, 50)))


@settings(max_examples=80, deadline=None)
@given(st.lists(_op, max_size=40))
def test_per_link_parking_keeps_the_one_list_order(ops):
    fab, link_of = _fabric(4)
    links_of_flow: list[int] = []
    ref = _OneList()
    ref_active: list[int] = []
    for op in ops:
        if op[0] == "add":
            pairs = [(a, b) for a, b in op[1] if a != b]
            if not pairs:
                continue
            src, dst = np.array(pairs).T
            before = fab.n
            ids = fab.add_flows(src, dst, np.full(len(pairs), 1e6))
            assert list(ids) == list(range(before, before + len(pairs)))
            e = [int(link_of[a, b]) for a, b in pairs]
            links_of_flow += e
            down = [(f, x) for f, x in zip(ids, e) if fab.cap[x] <= 0.0]
            ref.park([f for f, _ in down], [x for _, x in down])
            ref_active += [int(f) for f, x in zip(ids, e) if fab.cap[x] > 0.0]
        elif op[0] == "crumb":  # an active flow has only round-off left: it is not parked
            if ref_active:
                f = ref_active[op[1] % len(ref_active)]
                fab.rem[f] = 1e-4
        else:
            links = np.array(op[1], np.int64)
            new = np.array(op[2][: len(links)])
            old = fab.cap[links].copy()
            fab.set_link_capacity(links, new)
            going = {int(x) for x, o, c in zip(links, old, new) if o > 0 and c <= 0}
            coming = {int(x) for x, o, c in zip(links, old, new) if o <= 0 and c > 0}
            park = [f for f in ref_active
                    if links_of_flow[f] in going and flow.unfinished(fab.rem[f], fab.bytes[f])]
            ref.park(park, [links_of_flow[f] for f in park])
            ref_active = [f for f in ref_active if f not in set(park)]
            ref_active += ref.unpark(coming)
        assert fab.active[: fab.n_act].tolist() == ref_active
        assert fab.n_parked == len(ref.ids)
    fab._unpark(None)  # everything back, in parking order
    assert fab.active[: fab.n_act].tolist() == ref_active + ref.unpark(set(range(len(fab.cap))))
    assert fab.n_parked == 0
