#!/usr/bin/env bash
# export.sh: encrypted export and import (cryptvol export, cryptvol import; package export) through the real plugin:
# an idle volume and one under a writing container (frozen for the copy, the writer goes on after) exported; the
# export files hold neither the plaintext written nor the key's bytes; each imported on this host under another
# name, one re-encrypted, with the same data (SHA-256; the writer's log whole up to the freeze) under a KMIP key of
# its own while the source's key stays Active; a flipped byte, a cut file and a file whose key is gone are refused
# with no LV and no KMIP key made.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "export.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"

cv="$repo/bin/cryptvol"
install_plugin
check "plugin enabled" sh -c 'docker plugin inspect cryptvol --format "{{.Enabled}}" | grep -qx true || docker plugin enable cryptvol'
sum() { docker volume inspect "$1" >/dev/null 2>&1 && docker run --rm -v "$1":/data $img sha256sum /data/r 2>&1 | cut -d' ' -f1; }
marker=EXPORT-PLAINTEXT-MARKER-$RANDOM$RANDOM
x=/scratch/export
mkdir -p $x

echo "== an idle volume exported and imported under another name"
check "ex1 created with 8 MiB of random data and a marker" sh -c \
	"docker volume create -d cryptvol --opt size=64M ex1 >/dev/null && docker run --rm -v ex1:/data $img sh -c 'head -c 8388608 /dev/urandom > /data/r; for i in 1 2 3 4; do echo $marker; done > /data/m; sync'"
sum1=$(sum ex1)
key1=$(status ex1 kmip_key_id)
check "cryptvol export -o FILE ex1" "$cv" export -o $x/ex1 ex1
check "the file is mode 0600" sh -c "[ \"\$(stat -c %a $x/ex1)\" = 600 ]"
check "it holds no plaintext marker" absent "$marker" $x/ex1
check "it holds no byte of ex1's key (raw, hex, base64)" "$repo/scripts/kmip/key-state" --scan "$key1" -- $x/ex1
check "ex1 is closed again" closed ex1
check "cryptvol import FILE ex1b" "$cv" import $x/ex1 ex1b
check_eq "ex1b holds ex1's data (SHA-256)" "$sum1" "$(sum ex1b)"
check "ex1b's key is its own, and ex1's stays Active" sh -c \
	"[ '$(status ex1b kmip_key_id)' != '$key1' ] && '$repo/scripts/kmip/key-state' '$key1' | grep -q Active"
check_eq "ex1 still reads (SHA-256)" "$sum1" "$(sum ex1)"
check "cryptvol import --reencrypt FILE ex1c" "$cv" import --reencrypt $x/ex1 ex1c
check_eq "ex1c holds ex1's data (SHA-256)" "$sum1" "$(sum ex1c)"
check "import onto an existing name is refused" says "exists" "$cv" import $x/ex1 ex1b

echo "== a volume under a writing container"
check "ex2 under a writer that numbers its lines" sh -c \
	"docker run -d --name exw -v ex2:/data --volume-driver cryptvol $img sh -c 'i=0; while echo \"line \$i\" >> /data/log && sync; do i=\$((i + 1)); done; exit 1' > /dev/null && sleep 3"
check "cryptvol export of ex2 while the writer writes (its filesystem frozen for the copy)" "$cv" export -o $x/ex2 ex2
lines() { docker exec exw sh -c 'wc -l < /data/log'; }
a=$(lines)
sleep 2
check "the writer is still writing after the export" test "$(lines)" -gt "$a"
check "cryptvol import FILE ex2copy" "$cv" import $x/ex2 ex2copy
check "ex2copy's log is whole: N lines, the last numbered N-1" sh -c \
	"docker run --rm -v ex2copy:/data $img sh -c 'n=\$(wc -l < /data/log); [ \$n -gt 0 ] && tail -n 1 /data/log | grep -qx \"line \$((n - 1))\"'"
# The first export read the whole LV through its block device; the writer's later writes reach the disk through
# dm-crypt, around that device's page cache. A second export must read the disk, not those pages
# (mount/device.go, BLKFLSBUF).
n1=$(docker run --rm -v ex2copy:/data $img sh -c 'wc -l < /data/log')
sleep 2
check "a second export of ex2, after more writes" "$cv" export -o $x/ex2b ex2
check "cryptvol import FILE ex2copy2" "$cv" import $x/ex2b ex2copy2
check "ex2copy2's log is whole, and longer than the first copy's ($n1 lines)" sh -c \
	"docker run --rm -v ex2copy2:/data $img sh -c 'n=\$(wc -l < /data/log); [ \$n -gt $n1 ] && tail -n 1 /data/log | grep -qx \"line \$((n - 1))\"'"
check "the writer stopped" docker rm -f exw

echo "== refused files make nothing"
keys1=$("$repo/scripts/kmip/key-state" --count)
head -c $(( $(stat -c %s $x/ex1) / 2 )) $x/ex1 > $x/cut
# One bit of one byte, a third into the file, flipped.
pos=$(( $(stat -c %s $x/ex1) / 3 ))
b=$(od -An -tu1 -j $pos -N1 $x/ex1 | tr -d ' ')
cp $x/ex1 $x/flipped && printf "\\$(printf %o $(( b ^ 1 )))" | dd of=$x/flipped bs=1 seek=$pos conv=notrunc status=none
check "the flipped file differs from the export in one byte" sh -c "[ \"\$(cmp -l $x/ex1 $x/flipped | wc -l)\" = 1 ]"
printf 'not an export at all\n' > $x/junk
for f in cut flipped junk; do
	check "import of the $f file is refused" says "not imported|checksum|cut short|not a cryptvol export|import failed" "$cv" import $x/$f bad-$f
	check "...no LV made" sh -c "! lvs $vg/cv-bad-$f >/dev/null 2>&1"
done
check_eq "...and no KMIP key" "$keys1" "$("$repo/scripts/kmip/key-state" --count)"
check "ex1 removed: its key destroyed" sh -c "docker volume rm ex1 >/dev/null && '$repo/scripts/kmip/key-state' --gone '$key1'"
check "an export whose key is gone is refused, saying so" says "cannot be used by this host" "$cv" import $x/ex1 bad-gone
check "...no LV made" sh -c "! lvs $vg/cv-bad-gone >/dev/null 2>&1"
check_eq "...and no KMIP key" "$(( keys1 - 1 ))" "$("$repo/scripts/kmip/key-state" --count)"
check "the volumes removed" docker volume rm ex1b ex1c ex2 ex2copy ex2copy2
rm -rf $x
check "plugin disable" docker plugin disable cryptvol
finish
