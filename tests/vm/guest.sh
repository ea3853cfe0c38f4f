#!/bin/sh
# Runs in the tests/vm guest as the user `tester` (uid 1000, subordinate ids 100000-165535)
# inside a cgroup v2 subtree delegated to it (init.sh), with the checkout at /src on
# PYTHONPATH. Each check prints one "PYBUILD-VM <name> ..." line that
# tests/vm/test_cgroup_v2_vm.py asserts on; the outputs of the commands are shown as well.
set -u
cd "$HOME"
pb() { python3 -m builder.cli "$@"; }
deleg=/sys/fs/cgroup$(sed -n 's/^0:://p' /proc/self/cgroup)
echo "PYBUILD-VM cgroup $(cat /proc/self/cgroup) controllers=[$(cat "$deleg/cgroup.controllers")]"

# The base image: busybox-static as a one-layer image, imported from a rootfs tar.
python3 - <<'PY'
import tarfile
from pathlib import Path
from tests.fixtures.busybox_rootfs import make_busybox_rootfs
root = make_busybox_rootfs(Path("bbroot"))
with tarfile.open("busybox.tar", "w") as t:
    t.add(root, arcname=".")
PY
pb import busybox.tar busybox >/dev/null
echo "PYBUILD-VM import rc=$?"

# 1. A build with limits: the RUN forks `sleep`s until the pids limit stops it and reports
#    how many it got with builtins only (nothing can fork while they live). Then it waits
#    until the limits of its cgroup have been read from outside: it connects to 127.0.0.1:7777
#    (RUN has the host network), where a listener starts only after that read.
limits() {  # the limit files of pybuild's per-sandbox cgroups (not the fork server's home,
            # the processes moved into pybuild-init, or the container's own leaf c)
  for f in $(find "$deleg" -path '*/pybuild-*' \( -name memory.max -o -name pids.max \)); do
    case $f in *-home/*|*/pybuild-init/*|*/c/*) continue ;; esac
    echo "${f##*/}=$(cat "$f" 2>/dev/null)"
  done
}
mkdir -p ctx
cat > ctx/Dockerfile <<'DF'
FROM busybox
RUN sh -c 'i=0; while [ $i -lt 80 ]; do sleep 4 & i=$((i+1)); echo $i > /tmp/n; done' 2>/dev/null; \
    read n < /tmp/n; echo "forked=$n"; wait; \
    i=0; until nc 127.0.0.1 7777 </dev/null; do sleep 0.2; i=$((i+1)); [ $i -lt 600 ] || exit 1; done
DF
rm -f seen build.done
( while [ ! -e build.done ]; do
    limits > cur
    if grep -q 'memory.max=[0-9]' cur && grep -q 'pids.max=[0-9]' cur; then
      mv cur seen
      busybox timeout 120 busybox nc -l -p 7777 </dev/null
      break
    fi
    sleep 0.1
  done ) &
pb build --progress=plain --memory 64m --pids-limit 50 -t limited ctx > build.log 2>&1
rc=$?
touch build.done
wait
cat build.log
echo "PYBUILD-VM build rc=$rc $(grep -o 'forked=[0-9][0-9]*' build.log | head -n1)"
for l in $(cat seen 2>/dev/null); do echo "PYBUILD-VM build-limit $l"; done

# 2. The same limits seen from outside while a container runs: the cgroup pybuild made in the
#    delegated subtree holds them (the container waits on a shared directory).
mkdir -p sync
( pb run --rm --network none --memory 32m --pids-limit 20 -v "$HOME/sync:/sync" busybox \
    sh -c 'cat /proc/self/cgroup; touch /sync/started; while [ ! -e /sync/go ]; do sleep 0.1; done'
  echo "PYBUILD-VM run-wait rc=$?"; touch sync/exited ) &
i=0
while [ ! -e sync/started ] && [ ! -e sync/exited ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
for l in $(limits); do echo "PYBUILD-VM limit $l"; done
touch sync/go
wait

# 3. The memory limit kills a container that needs more.
pb run --rm --network none --memory 32m --pids-limit 20 busybox \
  sh -c 'x=$(head -c 80000000 /dev/zero | tr "\0" a); echo "survived ${#x}"' > oom.log 2>&1
rc=$?
cat oom.log
echo "PYBUILD-VM oom rc=$rc $(grep -c 'killed: out of memory' oom.log)"

# 4. The pids limit of `pybuild run`: 30 sleeps cannot all start under --pids-limit 20.
pb run --rm --network none --pids-limit 20 busybox \
  sh -c 'sh -c "i=0; while [ \$i -lt 30 ]; do sleep 3 & i=\$((i+1)); echo \$i > /tmp/n; done" 2>/dev/null; read n < /tmp/n; echo "forked=$n"; wait' > pids.log 2>&1
rc=$?
cat pids.log
echo "PYBUILD-VM pids rc=$rc $(grep -o 'forked=[0-9][0-9]*' pids.log | head -n1)"

# 5. Nothing left behind in the delegated subtree but the cgroups of live processes.
echo "PYBUILD-VM leftovers $(find "$deleg" -mindepth 1 -type d -name 'pybuild-*' ! -name 'pybuild-init' | grep -v -e '-home$' | wc -l)"
