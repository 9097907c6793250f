#!/bin/busybox sh
# The initramfs's /init (static busybox): load the virtio modules, mount the
# guest's root (/dev/vda, ext4) and the project layer (/dev/vdb) on it, then
# hand over to the project's guest.sh as PID 1. On any failure it says why on
# the console, in a line test/vm/vm.sh looks for, and powers off.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "LOWPORT-VM-BOOT-FAILED: $*"
  sleep 1
  poweroff -f
}

mkdir -p /proc /sys /dev /newroot
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules/order); do
  insmod "/modules/$m" || fail "insmod $m"
done
i=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
  i=$((i + 1))
  [ $i -le 100 ] || fail 'no /dev/vda and /dev/vdb after 10 s (virtio disks)'
  sleep 0.1
done
mount -t ext4 /dev/vda /newroot || fail 'cannot mount the root image /dev/vda'
mount -t ext4 /dev/vdb /newroot/opt/lowport || fail 'cannot mount the project layer /dev/vdb'
[ -x /newroot/opt/lowport/test/vm/guest.sh ] || fail 'no test/vm/guest.sh in the project layer'
mount --move /dev /newroot/dev
umount /proc /sys
exec switch_root /newroot /opt/lowport/test/vm/guest.sh
