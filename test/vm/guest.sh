#!/bin/sh
# PID 1 in the guest (from the project layer, so it is always the current
# one): mount what a Debian system has, run the kernel tests as root, print
# the status in a marker line for test/vm/vm.sh, and power off. bpffs is left
# for lowport to mount, as on a machine where nothing mounted it at boot.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root LANG=C.UTF-8 CI=true
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
# What udev or systemd would add to devtmpfs: nft -f - opens /dev/stdin.
ln -sfn /proc/self/fd /dev/fd
ln -sf /proc/self/fd/0 /dev/stdin
ln -sf /proc/self/fd/1 /dev/stdout
ln -sf /proc/self/fd/2 /dev/stderr
ip link set lo up
hostname lowport-vm

cd /opt/lowport || exit 1
echo "lowport VM: $(uname -srm), $(. /etc/os-release && echo "$PRETTY_NAME"), node $(node --version), $(nproc) CPUs"
echo "LOWPORT-VM-TESTS-START $(cut -d' ' -f1 /proc/uptime)"
# shellcheck disable=SC2046
node --test --test-concurrency=1 --test-timeout=600000 $(cat test/vm/tests)
status=$?
echo "LOWPORT-VM-TESTS-END $(cut -d' ' -f1 /proc/uptime)"
echo "LOWPORT-VM-EXIT=$status"
sync
busybox poweroff -f 2>/dev/null || echo o >/proc/sysrq-trigger
sleep 10
