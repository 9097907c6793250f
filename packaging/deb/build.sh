#!/usr/bin/env bash
# npm run deb: lowport as a Debian package, built with dpkg-deb from a staged
# tree (no debhelper: the tree is small and every file in it is named here).
#   /usr/lib/lowport          dist/src, dist/bundle, package.json and the production
#                             node_modules (koffi, only this machine's binary)
#   /usr/bin/lowport          a link to the bundled CLI (`sudo lowport` then finds it)
#   /lib/systemd/system/lowport.service   the boot unit: `lowport apply`
#   /lib/systemd/system/lowport-log.service   the audit trail's reader: `lowport log --follow --journal`
#   /etc/lowport/policy       a conffile: the empty policy with its header
#   /etc/lowport/policy.d/    drop-ins (root:root 0755), with a README conffile
#                             that says how they are read (as sudoers.d's)
#   /usr/share/man/man8/lowport.8.gz, bash and zsh completions, docs
# Output: lowport_<version>_<arch>.deb in the current directory (or $1).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
out=${1:-$PWD}
umask 022

die() { printf 'npm run deb: error: %s\n' "$*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps strip; do
  command -v $tool >/dev/null || die "$tool is not installed (apt-get install dpkg-dev binutils)"
done
[ -f "$repo/dist/src/cli/main.js" ] || die "no build in $repo/dist: run npm run build first"
[ -f "$repo/dist/bundle/main.js" ] || die "no bundled CLI in $repo/dist/bundle: run npm run build"

version=$(node -p "require('$repo/package.json').version")
arch=$(dpkg --print-architecture)
case $arch in
  amd64) koffi_triplet=linux_x64 ;;
  arm64) koffi_triplet=linux_arm64 ;;
  armhf) koffi_triplet=linux_armhf ;;
  i386) koffi_triplet=linux_ia32 ;;
  riscv64) koffi_triplet=linux_riscv64d ;;
  loong64) koffi_triplet=linux_loong64 ;;
  *) die "no koffi binary for the Debian architecture $arch" ;;
esac
koffi=$repo/node_modules/koffi
[ -f "$koffi/build/koffi/$koffi_triplet/koffi.node" ] || die "koffi has no $koffi_triplet binary in $koffi: run npm ci"
for f in man/man8/lowport.8 bash-completion/completions/lowport zsh/vendor-completions/_lowport; do
  [ -f "$repo/dist/share/$f" ] || die "dist/share/$f is missing: npm run build generates it"
done

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
root=$stage/root
lib=$root/usr/lib/lowport
mkdir -p "$lib" "$root/usr/bin" "$root/lib/systemd/system" "$root/etc/lowport/policy.d" \
  "$root/usr/share/man/man8" "$root/usr/share/bash-completion/completions" \
  "$root/usr/share/zsh/vendor-completions" "$root/usr/share/doc/lowport" "$root/DEBIAN"

# The program: what package.json's "files" ships, and koffi for this machine alone.
cp -r "$repo/dist/src" "$lib/dist-src.tmp"
mkdir -p "$lib/dist" && mv "$lib/dist-src.tmp" "$lib/dist/src"
cp -r "$repo/dist/bundle" "$lib/dist/bundle"
find "$lib/dist" -name '*.d.ts' -delete -o -name '*.map' -delete
node -e '
  const p = require(process.argv[1]);
  const keep = { name: p.name, version: p.version, description: p.description, license: p.license, type: p.type, bin: p.bin, main: p.main, exports: p.exports, dependencies: p.dependencies };
  require("fs").writeFileSync(process.argv[2], JSON.stringify(keep, null, 2) + "\n");
' "$repo/package.json" "$lib/package.json"
mkdir -p "$lib/node_modules/koffi/build/koffi/$koffi_triplet"
cp "$koffi/package.json" "$koffi/index.js" "$koffi/indirect.js" "$koffi/LICENSE.txt" "$lib/node_modules/koffi/"
native=$lib/node_modules/koffi/build/koffi/$koffi_triplet/koffi.node
cp "$koffi/build/koffi/$koffi_triplet/koffi.node" "$native"
# As dh_strip does: the symbols Node loads it by stay (dynamic), the rest go.
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$native"
# The libraries koffi links, as dpkg-shlibdeps finds them (it wants a debian/control).
mkdir -p "$stage/shlibs/debian"
printf 'Source: lowport\n\nPackage: lowport\nArchitecture: any\n' > "$stage/shlibs/debian/control"
shlibs=$(cd "$stage/shlibs" && dpkg-shlibdeps -O -e "$native" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$shlibs" ] || die "dpkg-shlibdeps found no libraries for $native"
# Debian's node, not whichever one PATH finds first.
sed -i '1s|^#!.*|#!/usr/bin/node|' "$lib/dist/src/cli/main.js" "$lib/dist/bundle/main.js"
find "$lib" "$root/etc" -type d -exec chmod 755 {} + && find "$lib" -type f -exec chmod 644 {} +
chmod 755 "$lib/dist/src/cli/main.js" "$lib/dist/bundle/main.js"
ln -s ../lib/lowport/dist/bundle/main.js "$root/usr/bin/lowport"

# The boot unit, from the same code as `lowport install` writes.
node --input-type=module -e '
  const { bootUnit } = await import(process.argv[1]);
  process.stdout.write(bootUnit(["/usr/bin/lowport"], {}, "# Installed by the lowport package; `systemctl disable lowport` keeps it from running at boot."));
' "$repo/dist/src/integrate/install.js" > "$root/lib/systemd/system/lowport.service"
node --input-type=module -e '
  const { logUnit } = await import(process.argv[1]);
  process.stdout.write(logUnit(["/usr/bin/lowport"], {}, "# Installed by the lowport package; it writes the events of a policy with `log` to the journal."));
' "$repo/dist/src/integrate/install.js" > "$root/lib/systemd/system/lowport-log.service"

# The policy, as `lowport grant` would create it: the header alone.
node --input-type=module -e '
  const { NEW_FILE_HEADER } = await import(process.argv[1]);
  process.stdout.write(NEW_FILE_HEADER);
' "$repo/dist/src/policy-file/policy-file.js" > "$root/etc/lowport/policy"

# The drop-in directory, with what a package or a role needs to know before it puts a file there.
cat > "$root/etc/lowport/policy.d/README" <<'README'
# Drop-in policy files for lowport, read after /etc/lowport/policy.
#
# lowport reads the files here named NAME.policy (NAME not starting with a
# dot), in byte order of their names (as `LC_ALL=C ls` lists them), after the
# main file, as one policy: the statements are those of the main file. Other
# names are skipped: this README, editor backups (NAME.policy~), dpkg and ucf
# leftovers (NAME.policy.dpkg-old, .dpkg-new, .dpkg-dist, .ucf-dist).
#
# Each file must be a regular file owned by root and not writable by group or
# others (chown root:root FILE; chmod 644 FILE); a symlink is refused. One bad
# file (unsafe, or a syntax error) stops `lowport apply` and changes nothing.
#
# Edit one with `lowport grant/revoke/reserve/unreserve --file NAME`, or put
# it in place and run `lowport apply`. Check a file before it goes here with
# `lowport apply --check --file NAME --candidate PATH`.
README

gzip -9n < "$repo/dist/share/man/man8/lowport.8" > "$root/usr/share/man/man8/lowport.8.gz"
cp "$repo/dist/share/bash-completion/completions/lowport" "$root/usr/share/bash-completion/completions/lowport"
cp "$repo/dist/share/zsh/vendor-completions/_lowport" "$root/usr/share/zsh/vendor-completions/_lowport"
cp "$here/copyright" "$root/usr/share/doc/lowport/copyright"
date=$(date -R -d "@$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)")
printf 'lowport (%s) unstable; urgency=medium\n\n  * Built from the lowport repository (npm run deb).\n\n -- lowport developers <lowport@lowport.invalid>  %s\n' "$version" "$date" |
  gzip -9n > "$root/usr/share/doc/lowport/changelog.gz"
find "$root/usr/share" "$root/etc" "$root/lib" -type f -exec chmod 644 {} +

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat > "$root/DEBIAN/control" <<CONTROL
Package: lowport
Version: $version
Architecture: $arch
Maintainer: lowport developers <lowport@lowport.invalid>
Installed-Size: $installed_size
Depends: nodejs (>= 20), init-system-helpers (>= 1.54~), $shlibs
Section: admin
Priority: optional
Description: let non-root programs bind ports below 1024, per user and port
 lowport gives users and groups the right to bind exactly the ports (and
 addresses) a policy file names, TCP and UDP, IPv4 and IPv6, for any program:
 scripts, JVMs, static binaries. A cgroup-BPF bind hook does it, with no
 wrapper, no setcap, no NAT and no proxy on the data path. It can also
 reserve ports for their owners, and set up the fallbacks (socket passing,
 nftables redirects, a userspace forwarder) where BPF is not available.
CONTROL
printf '%s\n' /etc/lowport/policy /etc/lowport/policy.d/README > "$root/DEBIAN/conffiles"
for s in postinst prerm postrm; do install -m 755 "$here/$s" "$root/DEBIAN/$s"; done

deb=$out/lowport_${version}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
echo "$deb"
