#!/bin/sh
# Builds lockstep's Linux guest (rv32 Image from Debian's linux-source-6.1, nolibc user space, initramfs)
# reproducibly: two runs on the Debian bookworm toolchain give byte-identical files. Never edits the repo
# except guest/linux/bin/ when asked to (`install`).
#
#   guest/linux/build.sh [kernel|user|initramfs|all|install|install-user|check|check-user]
#
#   kernel     unpack the source (once) into $LOCKSTEP_LINUX_BUILD, tinyconfig + lockstep.config, Image,
#              and vmlinux.sym (vmlinux's symbol table without the code, for gdb: docs/debugging.md)
#   user       headers_install, then init and the workloads against nolibc
#   initramfs  pack rootfs.cpio (sorted, mtime 0, uid/gid 0, fixed inode numbers)
#   all        the three above (default)
#   install    all, then compress into guest/linux/bin/ and rewrite bin/SHA256SUMS
#   install-user  user and initramfs only, then refresh bin/rootfs.cpio.gz and its SHA256SUMS lines
#              (the committed Image stays: no kernel build)
#   check      all, then compare with the committed files (exit 1 on any difference)
#   check-user user and initramfs only (minutes, not the kernel's half hour), compare rootfs.cpio
#
# Environment: LOCKSTEP_LINUX_BUILD (build directory, default ${TMPDIR:-/tmp}/lockstep-linux-build),
# LOCKSTEP_LINUX_SOURCE (default /usr/src/linux-source-6.1.tar.xz), JOBS (default 2), NICE (default 10).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
build=${LOCKSTEP_LINUX_BUILD:-${TMPDIR:-/tmp}/lockstep-linux-build}
source_tar=${LOCKSTEP_LINUX_SOURCE:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JOBS:-2}
nice=${NICE:-10}
tree=$build/linux-source-6.1
out=$build/out

# Reproducibility: nothing from the clock, the user, the host or the build directory reaches the output.
export KBUILD_BUILD_TIMESTAMP='Thu Jan  1 00:00:00 UTC 1970'
export KBUILD_BUILD_USER=lockstep
export KBUILD_BUILD_HOST=lockstep
export KBUILD_BUILD_VERSION=1
export SOURCE_DATE_EPOCH=0
export LC_ALL=C
export TZ=UTC
umask 022

kmake() {
  nice -n "$nice" make -C "$tree" ARCH=riscv CROSS_COMPILE=riscv64-linux-gnu- "$@"
}

unpack() {
  if [ ! -f "$tree/.lockstep-unpacked" ]; then
    rm -rf "$tree"
    mkdir -p "$build"
    echo "unpacking $source_tar into $build"
    tar -C "$build" -xf "$source_tar"
    touch "$tree/.lockstep-unpacked"
  fi
}

# The configuration is tinyconfig plus our fragment; every line of the fragment must survive Kconfig
# (a symbol that was renamed or whose dependencies are missing would otherwise vanish silently).
configure() {
  cp "$here/lockstep.config" "$tree/kernel/configs/lockstep.config"
  kmake -s tinyconfig lockstep.config >/dev/null
  bad=0
  while IFS= read -r line; do
    case "$line" in
      CONFIG_*) grep -qxF "$line" "$tree/.config" || { echo "config: $line did not survive Kconfig" >&2; bad=1; } ;;
      "# CONFIG_"*" is not set")
        sym=${line#\# }; sym=${sym%% *}
        if grep -q "^$sym=" "$tree/.config"; then echo "config: $sym is set but should not be" >&2; bad=1; fi ;;
    esac
  done < "$here/lockstep.config"
  [ "$bad" = 0 ]
}

kernel() {
  unpack
  configure
  kmake -j"$jobs" Image
  mkdir -p "$out"
  cp "$tree/arch/riscv/boot/Image" "$out/Image"
  # --only-keep-debug keeps the symbol table and the section headers (contents become NOBITS): gdb
  # resolves names from it and reads the code and data from the target. The config has no DWARF.
  riscv64-linux-gnu-objcopy --only-keep-debug "$tree/vmlinux" "$out/vmlinux.sym"
}

user() {
  unpack
  if [ ! -f "$build/headers/include/linux/types.h" ]; then
    kmake -s headers_install INSTALL_HDR_PATH="$build/headers"
  fi
  mkdir -p "$out"
  make -s -C "$here/user" O="$out/user" HEADERS="$build/headers/include" NOLIBC="$tree/tools/include/nolibc"
}

initramfs() {
  mkdir -p "$out"
  node "$here/mkcpio.mjs" "$out/rootfs.cpio" \
    dir:/bin dir:/dev nod:/dev/console:c:5:1:600 dir:/proc dir:/sys \
    file:/init:"$out/user/init" \
    $(for p in "$out"/user/bin/*; do printf 'file:/bin/%s:%s ' "$(basename "$p")" "$p"; done)
}

# gzip -n: no name or time stamp in the header, so the compressed files are reproducible too.
install_bin() {
  mkdir -p "$here/bin"
  gzip -n -9 -c "$out/Image" > "$here/bin/Image.gz"
  gzip -n -9 -c "$out/rootfs.cpio" > "$here/bin/rootfs.cpio.gz"
  gzip -n -9 -c "$out/vmlinux.sym" > "$here/bin/vmlinux.sym.gz"
  {
    (cd "$out" && sha256sum Image rootfs.cpio vmlinux.sym)
    (cd "$here/bin" && sha256sum Image.gz rootfs.cpio.gz vmlinux.sym.gz)
    (cd "$here/../firmware/bin" && sha256sum firmware.elf)
  } > "$here/bin/SHA256SUMS"
}

# The initramfs alone: the other lines of SHA256SUMS (the kernel's, its symbols', the firmware's) are kept as they are.
install_user_bin() {
  gzip -n -9 -c "$out/rootfs.cpio" > "$here/bin/rootfs.cpio.gz"
  cpio_sum=$(cd "$out" && sha256sum rootfs.cpio)
  gz_sum=$(cd "$here/bin" && sha256sum rootfs.cpio.gz)
  awk -v c="$cpio_sum" -v g="$gz_sum" '$2 == "rootfs.cpio" { print c; next } $2 == "rootfs.cpio.gz" { print g; next } { print }' \
    "$here/bin/SHA256SUMS" > "$here/bin/SHA256SUMS.new"
  mv "$here/bin/SHA256SUMS.new" "$here/bin/SHA256SUMS"
}

check_bin() {
  bad=0
  for f in "$@"; do
    want=$(awk -v f="$f" '$2 == f { print $1 }' "$here/bin/SHA256SUMS")
    got=$(sha256sum "$out/$f" | cut -d' ' -f1)
    if [ "$want" = "$got" ]; then echo "$f: identical ($got)"; else echo "$f: DIFFERS (built $got, committed $want)"; bad=1; fi
  done
  [ "$bad" = 0 ]
}

case "${1:-all}" in
  kernel) kernel ;;
  user) user ;;
  initramfs) initramfs ;;
  all) kernel; user; initramfs ;;
  install) kernel; user; initramfs; install_bin ;;
  install-user) user; initramfs; install_user_bin ;;
  check) kernel; user; initramfs; check_bin Image rootfs.cpio vmlinux.sym ;;
  check-user) user; initramfs; check_bin rootfs.cpio ;;
  *) echo "usage: $0 [kernel|user|initramfs|all|install|install-user|check|check-user]" >&2; exit 2 ;;
esac
