# Shared settings of the lab scripts (sourced, not run).
# The cache lives outside the repository and is keyed by the versions of what it holds.
LAB_CACHE=${CRYPTVOL_LAB_CACHE:-/var/cache/cryptvol-lab}
LAB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_DIR=$(cd "$LAB_DIR/../.." && pwd)

# Host packages: the two runners (user-mode-linux, qemu) and the userland the guest runs (the guest's root is the
# host's root, shared read-only). docker-registry (distribution 2.8) is the registry tests/e2e/upgrade.sh pushes
# the plugin to and installs it from, started by that script inside the guest only.
LAB_HOST_PACKAGES="user-mode-linux qemu-system-x86 lvm2 cryptsetup-bin e2fsprogs xfsprogs thin-provisioning-tools
 python3-pykmip docker.io busybox-static cpio kmod openssl iproute2 iptables fio procps util-linux curl jq
 sanlock lvm2-lockd docker-registry"

# Kernel modules loaded from the initramfs, in this order (dependencies are resolved at build time).
# Loading them through modprobe over 9p after boot measured ~1 min; from the initramfs it is seconds.
# The guest has no modprobe for its kernel, so nothing loads on demand: what a feature asks the kernel for must be
# here (authenc for integrity's authenticated dm-crypt: without it luksFormat --integrity failed with ENOENT,
# "reload ioctl on temporary-cryptsetup-...: No such file or directory"; dm_snapshot for thin snapshots).
LAB_MODULES="virtio_pci virtio_blk virtio_net virtio_console 9pnet_virtio 9p overlay loop
 crc32c_intel crc32c_generic ext4 xfs
 dm_mod dm_crypt dm_thin_pool dm_integrity dm_snapshot xts aesni_intel af_alg algif_skcipher algif_hash sha256_ssse3
 authenc algif_aead
 bridge veth br_netfilter nf_nat nf_conntrack xt_MASQUERADE xt_conntrack xt_addrtype xt_nat xt_mark xt_tcpudp
 iptable_nat iptable_filter iptable_mangle ip6table_nat ip6table_filter nf_tables nft_compat nft_chain_nat
 nft_counter nfnetlink vxlan ip_vs ip_vs_rr xt_ipvs xt_policy tun"

# The same for the UML guest (guest-init modprobes them from the user-mode-linux package): UML builds hostfs, ext4,
# xfs, aes, sha256 and crc32c in, and has no virtio, CPU-specific crypto or nf_tables for IPv4 (nft_chain_nat).
LAB_UML_MODULES="overlay loop ipv6 dm_mod dm_crypt dm_thin_pool dm_integrity dm_snapshot xts af_alg algif_skcipher algif_hash
 authenc algif_aead
 bridge veth br_netfilter nf_nat nf_conntrack xt_MASQUERADE xt_conntrack xt_addrtype xt_nat xt_mark xt_tcpudp
 iptable_nat iptable_filter iptable_mangle ip6table_nat ip6table_filter nf_tables nft_compat nfnetlink vxlan
 ip_vs ip_vs_rr xt_ipvs xt_policy tun"

log() { printf '[lab] %s\n' "$*" >&2; }
die() { printf '[lab] ERROR: %s\n' "$*" >&2; exit 1; }

# kernel_package prints the Debian kernel package the linux-image-amd64 metapackage points at.
kernel_package() {
	apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6\.1\.[0-9.-]*-amd64$/ {print $2; exit}'
}

# lab_key prints the cache key: the kernel and busybox versions plus the initramfs inputs.
lab_key() {
	local kpkg=$1 kver bver
	kver=$(apt-cache policy "$kpkg" | awk '/Candidate:/ {print $2}')
	bver=$(dpkg-query -W -f '${Version}' busybox-static 2>/dev/null || echo none)
	printf '%s\n' "$kpkg=$kver" "busybox=$bver" "$LAB_MODULES" | cat - "$LAB_DIR/initramfs-init" | sha256sum | cut -c1-16
}
