#!/usr/bin/env bash
# Builds the guest image that test/vm/vm.sh boots, into the directory given
# as its first argument: vmlinuz and the modules of the Debian kernel package
# named second (taken with apt-get download + dpkg-deb -x: nothing is
# installed on the host), root.img (a minimal bookworm root made with
# mmdebstrap, the kernel's modules and the host's node, written as ext4 with
# mke2fs -d, nothing mounted) and initrd.img (static busybox, the virtio
# modules and init.sh). vm.sh caches the result under a hash of this file,
# init.sh, the kernel package's version and the node binary.
#
#   test/vm/image.sh OUT_DIR KERNEL_PACKAGE
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
image_dir=$1
kernel_deb=$2
suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security

# What the kernel tests call, so that none skips for a missing tool but the
# ones too heavy for an emulated guest (go, java: the servers suite skips
# those two with its reason). kmod: modprobe, for nftables' modules.
guest_packages=(kmod iproute2 util-linux procps sudo libcap2-bin acl systemd
  nginx-light busybox python3 nftables curl file)

say() { printf 'test:vm: %s\n' "$*" >&2; }
die() { printf 'test:vm: error: %s\n' "$*" >&2; exit 2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

node_bin=$(readlink -f "$(command -v node)")
kernel_version=$(apt-cache policy "$kernel_deb" | awk '/Candidate:/ { print $2 }')
cache=$(dirname "$image_dir")
mkdir -p "$cache"

build_image() {
  local work root kern initrd_root version started
  started=$(now)
  work=$(mktemp -d "$cache/build.XXXXXX")
  # shellcheck disable=SC2064
  trap "rm -rf '$work'" EXIT
  root=$work/root kern=$work/kernel initrd_root=$work/initrd
  mkdir -p "$root" "$kern" "$initrd_root"

  say "downloading $kernel_deb $kernel_version and busybox-static (nothing is installed on the host)"
  (cd "$work" && apt-get download -q "$kernel_deb" busybox-static >/dev/null 2>&1) \
    || (cd "$work" && apt-get download "$kernel_deb" busybox-static) || die "apt-get download $kernel_deb failed"
  dpkg-deb -x "$work/$kernel_deb"_*.deb "$kern"
  dpkg-deb -x "$work"/busybox-static_*.deb "$work/busybox"
  version=$(ls "$kern/lib/modules")
  [ -f "$kern/boot/vmlinuz-$version" ] || die "no vmlinuz-$version in $kernel_deb"

  say "building a $suite root with mmdebstrap: ${guest_packages[*]}"
  local pkgs
  pkgs=$(IFS=,; echo "${guest_packages[*]}")
  nice -n 19 mmdebstrap --variant=minbase --mode=root --include="$pkgs" \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$suite" "$root" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" \
    >"$work/mmdebstrap.log" 2>&1 || { tail -30 "$work/mmdebstrap.log" >&2; die 'mmdebstrap failed'; }

  # The kernel's modules, so the guest can load what it needs (nftables).
  mkdir -p "$root/lib/modules"
  cp -a "$kern/lib/modules/$version" "$root/lib/modules/"
  chroot "$root" depmod "$version"

  # Debian's nodejs is 18: the host's Node (>= 20) instead, with any library
  # it needs that the guest lacks (the guest is the same Debian release, so
  # glibc and libstdc++ match).
  install -m 0755 "$node_bin" "$root/usr/local/bin/node"
  local lib
  for lib in $(ldd "$node_bin" | awk '$3 ~ /^\// { print $3 }'); do
    [ -e "$root$lib" ] || { mkdir -p "$root$(dirname "$lib")"; cp -L "$lib" "$root$lib"; }
  done
  chroot "$root" /usr/local/bin/node --version >/dev/null || die 'the host node does not run in the guest'

  printf '127.0.0.1 localhost lowport-vm\n::1 localhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  echo lowport-vm >"$root/etc/hostname"
  mkdir -p "$root/opt/lowport"

  local size_mb
  size_mb=$(( $(du -sm "$root" | cut -f1) + 512 ))
  say "writing the ext4 root image (${size_mb} MiB) with mke2fs -d"
  nice -n 19 mke2fs -q -t ext4 -L lowport-root -d "$root" "$work/root.img" "${size_mb}M"

  # The initramfs: static busybox, the virtio modules with what they depend
  # on (in load order), and init.sh.
  mkdir -p "$initrd_root/bin" "$initrd_root/modules"
  cp "$work/busybox/bin/busybox" "$initrd_root/bin/busybox"
  local dep_file=$root/lib/modules/$version/modules.dep mod
  : >"$initrd_root/modules/order"
  add_module() {
    local path deps d
    path=$(awk -F: -v m="/$1.ko" 'substr($1, length($1) - length(m) + 1) == m { print $1; exit }' "$dep_file")
    [ -n "$path" ] || die "module $1 not found in $version"
    grep -qx "$(basename "$path")" "$initrd_root/modules/order" && return 0
    deps=$(awk -F': *' -v p="$path" '$1 == p { print $2 }' "$dep_file")
    for d in $deps; do add_module "$(basename "$d" .ko)"; done
    cp "$root/lib/modules/$version/$path" "$initrd_root/modules/"
    basename "$path" >>"$initrd_root/modules/order"
  }
  for mod in virtio_pci virtio_blk; do add_module "$mod"; done
  install -m 0755 "$here/init.sh" "$initrd_root/init"
  (cd "$initrd_root" && find . | cpio -o -H newc --quiet | gzip -9) >"$work/initrd.img"
  cp "$kern/boot/vmlinuz-$version" "$work/vmlinuz"
  printf '%s\n' "$kernel_deb $kernel_version" >"$work/kernel-release"

  mkdir -p "$image_dir.new"
  mv "$work/root.img" "$work/initrd.img" "$work/vmlinuz" "$work/kernel-release" "$image_dir.new/"
  rm -rf "$image_dir"
  mv "$image_dir.new" "$image_dir"
  rm -rf "$work"
  trap - EXIT
  say "image built in $(since "$started") s: $image_dir"
}

build_image
