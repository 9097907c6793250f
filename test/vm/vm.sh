#!/usr/bin/env bash
# Runs lowport's kernel tests inside a virtual machine that boots another
# kernel than the host's: Debian 12's own 6.1 (linux-image-cloud-amd64) by
# default. `npm run test:vm` builds the project, then calls this script.
#
# The kernel is taken from its Debian package with `apt-get download` and
# `dpkg-deb -x`: nothing is installed on the host, whose /boot and bootloader
# stay untouched. The guest's root is a minimal bookworm (mmdebstrap) turned
# into an ext4 image without mounting anything (`mke2fs -d`), booted through a
# small initramfs of our own (static busybox, the virtio modules, init.sh).
# That image is cached, keyed by a hash of everything that goes into it; the
# project (dist/, koffi, guest.sh) goes on a second small disk made afresh on
# every run, so the VM always tests the current tree. The root disk is opened
# with snapshot=on: the guest's writes never reach the cache.
#
# The guest prints the test runner's output and a marker line with its exit
# status on the serial console; this script returns that status, or fails with
# a message when the guest did not boot, did not finish in time, or printed no
# status. Usage:
#
#   test/vm/vm.sh [TEST ...]     TEST: a kernel suite name (grants, reserve,
#                                ...), default: the whole dist/test/kernel suite
#   test/vm/vm.sh --image-only   build the image if it is not cached, no boot
#
# Environment: LOWPORT_VM_KERNEL_PACKAGE (default linux-image-cloud-amd64),
# LOWPORT_VM_CACHE (default /var/cache/lowport-vm), LOWPORT_VM_TIMEOUT
# (seconds, default 2400), LOWPORT_VM_MEMORY (MiB, default 3072),
# LOWPORT_VM_CPUS (default 2), LOWPORT_VM_REBUILD=1 to rebuild the image,
# LOWPORT_VM_IMAGE=DIR to use the image in DIR whatever its key,
# LOWPORT_VM_NICE (qemu's niceness, default 0), LOWPORT_VM_KVM=1 to use
# /dev/kvm (only where it really works: under nested virtualisation a guest
# can start and then hang).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
project=$(cd "$here/../.." && pwd)
kernel_package=${LOWPORT_VM_KERNEL_PACKAGE:-linux-image-cloud-amd64}
cache=${LOWPORT_VM_CACHE:-/var/cache/lowport-vm}
timeout_s=${LOWPORT_VM_TIMEOUT:-2400}
memory=${LOWPORT_VM_MEMORY:-3072}
cpus=${LOWPORT_VM_CPUS:-2}

say() { printf 'test:vm: %s\n' "$*" >&2; }
die() { printf 'test:vm: error: %s\n' "$*" >&2; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ "$(id -u)" = 0 ] || die 'must run as root (mmdebstrap builds the guest root as root, and the image keeps its owners)'
missing=()
for tool in qemu-system-x86_64 mmdebstrap mke2fs dpkg-deb apt-get cpio gzip sha256sum; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
[ ${#missing[@]} = 0 ] || die "missing ${missing[*]}; install with: apt-get install qemu-system-x86 mmdebstrap e2fsprogs cpio"
[ -f "$project/dist/test/kernel/grants.test.js" ] || die "no dist/test/kernel: run 'npm run build' first (npm run test:vm does)"
[ -f "$project/node_modules/koffi/package.json" ] || die "no node_modules/koffi: run 'npm ci' first"
node_bin=$(command -v node) || die 'node is not installed'
node_bin=$(readlink -f "$node_bin")

# Resolve the kernel package to the exact versioned image package, so the
# cache key changes when Debian publishes a new kernel.
kernel_deb=$(apt-cache depends "$kernel_package" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kernel_deb" ] || kernel_deb=$kernel_package
kernel_version=$(apt-cache policy "$kernel_deb" | awk '/Candidate:/ { print $2 }')
[ -n "$kernel_version" ] && [ "$kernel_version" != '(none)' ] \
  || die "apt knows no package $kernel_deb: run apt-get update (the kernel comes from Debian's archive)"

key=$( {
  printf '%s\n' "$kernel_deb=$kernel_version"
  cat "$here/image.sh" "$here/init.sh"
  sha256sum "$node_bin"
} | sha256sum | cut -c1-16)
image_dir=${LOWPORT_VM_IMAGE:-$cache/$key}

mkdir -p "$cache"
if [ "${LOWPORT_VM_REBUILD:-}" = 1 ] || [ ! -f "$image_dir/root.img" ]; then
  bash "$here/image.sh" "$image_dir" "$kernel_deb"
else
  say "reusing the cached image $image_dir"
fi
[ "${1:-}" != --image-only ] || exit 0

# The project layer, fresh on every run: what the tests need of the tree.
run_dir=$(mktemp -d /tmp/lowport-vm.XXXXXX)
trap 'rm -rf "$run_dir"' EXIT
layer=$run_dir/project
mkdir -p "$layer/node_modules" "$layer/test/vm"
cp -a "$project/dist" "$project/package.json" "$layer/"
cp -a "$project/node_modules/koffi" "$layer/node_modules/"
install -m 0755 "$here/guest.sh" "$layer/test/vm/guest.sh"
# What the compiled tests read from the source tree (the pty driver of run-isolation).
mkdir -p "$layer/test/kernel"
cp -a "$project"/test/kernel/*.py "$layer/test/kernel/"
tests=()
for t in "$@"; do
  f=dist/test/kernel/${t%.test.js}.test.js
  [ -f "$project/$f" ] || die "no kernel suite $t ($f)"
  tests+=("$f")
done
[ ${#tests[@]} -gt 0 ] || tests=(dist/test/kernel/)
printf '%s\n' "${tests[@]}" >"$layer/test/vm/tests"
layer_mb=$(( $(du -sm "$layer" | cut -f1) + 64 ))
mke2fs -q -t ext4 -L lowport-project -d "$layer" "$run_dir/project.img" "${layer_mb}M"

accel=tcg,thread=multi
cpu=max
# KVM only where it really works: /dev/kvm can exist and still hang a guest
# under nested virtualisation, so only when asked to.
if [ "${LOWPORT_VM_KVM:-}" = 1 ] && [ -w /dev/kvm ]; then accel=kvm; cpu=host; fi

log=$run_dir/console.log
say "booting $(cat "$image_dir/kernel-release") ($accel, $cpus CPUs, $memory MiB), tests: ${tests[*]}, time-out ${timeout_s} s"
started=$(now)
set +e
timeout --foreground -k 10 "$timeout_s" \
  nice -n "${LOWPORT_VM_NICE:-0}" qemu-system-x86_64 \
  -accel "$accel" -cpu "$cpu" -smp "$cpus" -m "$memory" \
  -nographic -no-reboot -nic none \
  -kernel "$image_dir/vmlinuz" -initrd "$image_dir/initrd.img" \
  -append 'console=ttyS0 panic=-1 loglevel=4' \
  -drive "file=$image_dir/root.img,format=raw,if=virtio,snapshot=on" \
  -drive "file=$run_dir/project.img,format=raw,if=virtio" \
  </dev/null 2>&1 | sed -u 's/\x1b\[[0-9;?]*[A-Za-z]//g; s/\x1bc//g' | tee "$log"
statuses=("${PIPESTATUS[@]}")
set -e
elapsed=$(since "$started")

if [ "${statuses[0]}" = 124 ] || [ "${statuses[0]}" = 137 ]; then
  die "the VM did not finish within ${timeout_s} s (LOWPORT_VM_TIMEOUT); its console is above"
fi
marker=$(tr -d '\r' <"$log" | sed -n 's/^LOWPORT-VM-EXIT=\([0-9]*\)$/\1/p' | tail -1)
if [ -z "$marker" ]; then
  reason=$(tr -d '\r' <"$log" | sed -n 's/^LOWPORT-VM-BOOT-FAILED: //p' | tail -1)
  die "the VM stopped after ${elapsed} s without a test result (qemu status ${statuses[0]})${reason:+: $reason}"
fi
boot=$(tr -d '\r' <"$log" | sed -n 's/^LOWPORT-VM-TESTS-START \([0-9.]*\)$/\1/p' | tail -1)
say "guest exit status $marker after ${elapsed} s in the VM${boot:+ (guest booted and started the tests at ${boot} s of its uptime)}"
exit "$marker"
