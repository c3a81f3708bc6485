#!/bin/sh
# Build htsim's RoCE fat-tree binary (sim/datacenter/htsim_roce) for benchmarks/bench_peers.py.
#
#   benchmarks/peers/build_htsim.sh DIR [SOURCE]
#
# DIR: where the checkout goes (reused when it is already a git checkout); SOURCE: the git
# repository to clone (default https://github.com/Broadcom/csg-htsim; a local mirror works).
# Only sim/ is checked out (experiments/ holds large connection matrices that are not needed).
# One change to htsim's source: RoceSrc's constructor calls srand(time(NULL)) before drawing
# the flow's path id, which reseeds htsim's global generator from the wall clock at every
# flow, so two runs of the same command differ from one second to the next; the line is
# removed, and a run then depends on -seed alone. Then `bench_peers.py --htsim DIR`.
set -eu
DIR=${1:?usage: build_htsim.sh DIR [SOURCE]}
SRC=${2:-https://github.com/Broadcom/csg-htsim}
JOBS=${JOBS:-2}
if [ ! -d "$DIR/.git" ]; then
    git clone --quiet --no-checkout "$SRC" "$DIR"
fi
git -C "$DIR" checkout --quiet HEAD -- sim
sed -i 's|^\([[:space:]]*\)srand(time(NULL));|\1/* srand(time(NULL)): removed by build_htsim.sh */|' \
    "$DIR/sim/roce.cpp"
make -C "$DIR/sim" -j"$JOBS" libhtsim.a
make -C "$DIR/sim/datacenter" -j"$JOBS" htsim_roce
echo "built $DIR/sim/datacenter/htsim_roce"
