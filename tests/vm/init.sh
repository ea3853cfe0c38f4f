#!/bin/sh
# /init of the tests/vm guest (PID 1; no systemd). Stage 1 copies the initramfs into a tmpfs
# and switch_roots there (pivot_root, which the sandbox uses, cannot leave an initramfs).
# Stage 2 mounts a pure cgroup v2 tree (the kernel runs with cgroup_no_v1=all), enables the
# memory and pids controllers down to a cgroup delegated to the user `tester` as systemd's
# Delegate=yes does (the directory, cgroup.procs, cgroup.threads and cgroup.subtree_control
# chowned to the user), starts /guest.sh as that user inside it, and powers off. Everything
# goes to the serial console, which the test reads; the last line is "PYBUILD-VM-EXIT <code>".
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
if [ "$1" != stage2 ]; then
  mount -t tmpfs -o mode=755 tmpfs /mnt
  tar -C / --one-file-system --exclude=./mnt -cf - . | tar -C /mnt -xf -
  exec switch_root /mnt /init stage2
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || true
mkdir -p /dev/pts /dev/shm
mount -t devpts -o newinstance,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
chmod 1777 /tmp
hostname pybuild-vm
ip link set lo up
mount -t cgroup2 cgroup2 /sys/fs/cgroup
cg=/sys/fs/cgroup
deleg=$cg/user.slice/user-1000.slice/user@1000.service
mkdir -p "$deleg"
for d in $cg $cg/user.slice $cg/user.slice/user-1000.slice; do
  echo "+memory +pids" > "$d/cgroup.subtree_control"
done
chown 1000:1000 "$deleg" "$deleg/cgroup.procs" "$deleg/cgroup.threads" "$deleg/cgroup.subtree_control"
echo "PYBUILD-VM-BOOTED $(cut -d" " -f1 /proc/uptime)s $(uname -r) cgroup2 controllers: $(cat $deleg/cgroup.controllers)"
sh -c "echo \$\$ > $deleg/cgroup.procs && exec setpriv --reuid=1000 --regid=1000 --init-groups \
  env -i HOME=/home/tester USER=tester PATH=$PATH PYTHONPATH=/src sh /guest.sh" </dev/console >/dev/console 2>&1
rc=$?
dmesg | grep -E "Killed process|invoked oom-killer" | sed 's/^/PYBUILD-VM-KERNEL /'  # who the OOM killer took
echo "PYBUILD-VM-EXIT $rc"
sync
echo o > /proc/sysrq-trigger
sleep 10
