#!/usr/bin/env bash
# docker.sh: the end-to-end test of the managed plugin, inside the lab guest: dockerd, the plugin bundle from
# bin/plugin (make plugin), a real PyKMIP server (CRYPTVOL_KMIP_* in the environment) and the data disks
# /dev/vda and /dev/vdb, from which the plugin builds its volume group. Everything a user does goes through the
# docker CLI; the proofs (mappings, LV activation, raw bytes, KMIP key state) are read from the guest's host side.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$repo/scripts/vm/check.sh"
source "$repo/tests/e2e/lib.bash"
[ "$(hostname)" = cryptvol-lab ] || { echo "docker.sh: run inside the lab guest" >&2; exit 2; }
: "${CRYPTVOL_KMIP_ENDPOINT:?start scripts/kmip/dev-server and source its env file}"

install_plugin
check "docker plugin enable" docker plugin enable cryptvol
# The plugin listens at once and builds its VG in the background; a request that needs the volumes waits for that.
check "the plugin answers docker volume ls" docker volume ls
check_eq "VG built from both devices" 2 "$(vgs --noheadings -o pv_count $vg 2>&1 | tr -d ' ')"
# lvm's default 1020 KiB metadata area fills near 1,100 volumes (lvm/setup.go, pvMetadataSize).
check "its PVs have 16 MiB metadata areas (room for thousands of volumes)" sh -c \
	"pvs --noheadings --units m --nosuffix -o pv_mda_size --select vg_name=$vg | awk '\$1 < 15 {bad=1} END {exit bad || NR != 2}'"

echo "== create, write, read"
check "docker volume create --opt size=64M v1" docker volume create -d cryptvol --opt size=64M v1
check "docker volume ls lists v1" sh -c 'docker volume ls --format "{{.Driver}} {{.Name}}" | grep -qx "cryptvol:latest v1"'
key1=$(status v1 kmip_key_id)
check "inspect shows the KMIP key id" test -n "$key1"
check_eq "inspect shows the cipher" aes-xts-plain64 "$(status v1 cipher)"
check "inspect shows a CreatedAt" sh -c '[ -n "$(docker volume inspect v1 --format "{{.CreatedAt}}")" ]'
check "KMIP holds an active key for v1" "$repo/scripts/kmip/key-state" "$key1"
check "closed after create" closed v1
check "write through a container" docker run --rm -v v1:/data $img sh -c 'echo e2e-secret-pattern > /data/f && sync'
check "closed after the container exits (no mapping, not mounted)" closed v1
check "...its LV still active, so the next container's mount runs no lvchange" lv_active v1
check_eq "a second container reads it back" e2e-secret-pattern "$(docker run --rm -v v1:/data $img cat /data/f 2>&1)"
check "closed again" closed v1
lvchange -ay $vg/cv-v1
check "the raw LV holds no plaintext" absent e2e-secret-pattern /dev/$vg/cv-v1
check_eq "the raw LV starts with a LUKS2 header" LUKS "$(head -c 4 /dev/$vg/cv-v1)"
lvchange -an $vg/cv-v1

echo "== created on the fly by docker run"
check "docker run -v auto:/data --volume-driver cryptvol" \
	docker run --rm -v auto:/data --volume-driver cryptvol $img sh -c 'echo x > /data/x'
check_eq "auto has the default size" 83886080 "$(status auto size_bytes)"
check "auto is closed" closed auto

echo "== two containers share one volume"
check "c1 starts" docker run -d --name c1 -v v1:/data $img sleep 600
check "c2 starts" docker run -d --name c2 -v v1:/data $img sleep 600
check "open while used" mapping_open v1
check "mounted while used" mounted v1
check_eq "mount count 2" 2 "$(status v1 mount_count)"
check "c1 removed" docker rm -f c1
check "still open while c2 runs" mapping_open v1
check_eq "c2 still reads" e2e-secret-pattern "$(docker exec c2 cat /data/f 2>&1)"
check_not "docker volume rm refused while in use" docker volume rm v1
check "c2 removed" docker rm -f c2
check "closed after both exited" closed v1

echo "== plugin disable/enable and a dockerd restart keep the volumes"
check "docker plugin disable -f" docker plugin disable -f cryptvol
check "docker plugin enable" docker plugin enable cryptvol
check_eq "v1 and auto still listed" "auto v1" \
	"$(docker volume ls --format '{{.Driver}} {{.Name}}' | awk '$1 == "cryptvol:latest" {print $2}' | sort | xargs)"
check_eq "v1 readable after re-enable" e2e-secret-pattern "$(docker run --rm -v v1:/data $img cat /data/f 2>&1)"
check "dockerd stops" "$repo/scripts/vm/lab-docker" stop
check "dockerd starts again" "$repo/scripts/vm/lab-docker" start
wait_for "the plugin is enabled again by dockerd" 120 sh -c 'docker plugin inspect cryptvol --format "{{.Enabled}}" | grep -qx true'
repair_lost_propagation && wait_for "plugin up after the repair" 120 plugin_up
check "v1 still listed after the dockerd restart" sh -c 'docker volume ls -q | grep -qx v1'
check_eq "v1 readable after the dockerd restart" e2e-secret-pattern "$(docker run --rm -v v1:/data $img cat /data/f 2>&1)"
check "closed after all that" closed v1

echo "== KMIP server down: running containers keep working, creates and mounts fail clearly, then recover"
check "c3 holds v1" docker run -d --name c3 -v v1:/data $img sleep 600
check "KMIP server stopped" "$repo/scripts/kmip/dev-server" stop /scratch/kmip
check "c3 writes while KMIP is down" docker exec c3 sh -c 'echo during-outage > /data/outage && sync'
t0=$(date +%s)
check "create fails naming the KMIP endpoint" says "$CRYPTVOL_KMIP_ENDPOINT" docker volume create -d cryptvol kdown
check "...within a bounded time (KMIP timeout 10s; generous for emulation)" test $(( $(date +%s) - t0 )) -lt 90
check_not "...and leaves no LV" lv_exists kdown
check "mount of a closed volume fails naming the KMIP endpoint" says "$CRYPTVOL_KMIP_ENDPOINT" \
	docker run --rm -v auto:/data $img true
check "...and leaves it closed" closed auto
check "KMIP server back (same certificates and keys)" "$repo/scripts/kmip/dev-server" start /scratch/kmip
check "create works again without a plugin restart" docker volume create -d cryptvol kdown
check "mount works again" docker run --rm -v auto:/data $img true
check_eq "c3's write survived" during-outage "$(docker exec c3 cat /data/outage 2>&1)"
check "c3 removed" docker rm -f c3
check "closed after c3" closed v1
check "docker volume rm kdown" docker volume rm kdown

echo "== no key material on disk, in /run or in the plugin's logs"
check "the plugin's log lines reach dockerd's log (so the scan reads them)" grep -q 'serving the Docker VolumeDriver API' /scratch/dockerd.log
check "the audit trail is in the state dir the scan reads" test -s /var/lib/cryptvol/audit.log
check "scan: state dir (audit trail too), plugin rootfs, /run, dockerd log" "$repo/scripts/kmip/key-state" --scan "$key1" \
	"$(status auto kmip_key_id)" -- /var/lib/cryptvol /scratch/docker/plugins /run /scratch/dockerd.log

echo "== the driver itself refuses to remove a volume that a mount holds"
sock=$(find /run/docker/plugins -name cryptvol.sock | head -1)
api() { curl -s --unix-socket "$sock" -X POST -d "$2" "http://plugin/VolumeDriver.$1"; }
# api_ok OP BODY [WANT]: the plugin answered, without an Err, and (if given) with WANT in its reply.
api_ok() {
	local r; r=$(api "$1" "$2") || return 1
	[ -n "$r" ] && ! grep -q '"Err":"[^"]' <<<"$r" && grep -q -- "${3:-}" <<<"$r"
}
check "mount through the plugin API" api_ok Mount '{"Name":"v1","ID":"outside"}' /mnt/volumes/v1
check "docker volume rm shows the driver's refusal" says 'in use' docker volume rm v1
check "unmount through the plugin API" api_ok Unmount '{"Name":"v1","ID":"outside"}'
check "closed after the API unmount" closed v1

echo "== bad input reaches the CLI readably and creates nothing"
keys_before=$("$repo/scripts/kmip/key-state" --count)
check "too small: refused naming the size" says size docker volume create -d cryptvol --opt size=1K tiny
check "unknown option: refused naming it and what is allowed" says 'colour.*size|size.*colour' \
	docker volume create -d cryptvol --opt colour=red odd
check "too large: refused" says size docker volume create -d cryptvol --opt size=100T huge
check "unknown filesystem: refused naming ext4 and xfs" says 'ext4.*xfs|xfs.*ext4' \
	docker volume create -d cryptvol --opt fs=btrfs bfs
check_not "nothing created for refused volumes" sh -c 'lvs --noheadings -o lv_name cryptvg | grep -qE "cv-(tiny|odd|huge|bfs)"'
check_eq "no new KMIP key for refused volumes" "$keys_before" \
	"$("$repo/scripts/kmip/key-state" --count)"

echo "== per-tenant keys: option tenant"
tenants=${CRYPTVOL_KMIP_TENANTS_SRC:?dev-server makes tenant identities}
# as TENANT CMD...: CMD with the tenant's KMIP identity instead of the plugin's.
as() { local t=$1; shift; CRYPTVOL_KMIP_CERT=$tenants/$t/cert.pem CRYPTVOL_KMIP_KEY=$tenants/$t/key.pem "$@"; }
check "docker volume create --opt tenant=tenant-a tv" docker volume create -d cryptvol --opt tenant=tenant-a --opt size=64M tv
check_eq "inspect shows the tenant" tenant-a "$(status tv tenant)"
check "write through a container" docker run --rm -v tv:/data $img sh -c 'echo tenant-data > /data/f && sync'
check_eq "read back (the key fetched as tenant-a)" tenant-data "$(docker run --rm -v tv:/data $img cat /data/f 2>&1)"
keyt=$(status tv kmip_key_id)
check "tenant-a's identity can fetch its key" as tenant-a "$repo/scripts/kmip/key-state" "$keyt"
check "tenant-b's identity cannot" as tenant-b "$repo/scripts/kmip/key-state" --gone "$keyt"
check "the plugin's own identity cannot" "$repo/scripts/kmip/key-state" --gone "$keyt"
check "a tenant without an identity is refused, naming the files it needs" says 'tenant-c.*cert\.pem' \
	docker volume create -d cryptvol --opt tenant=tenant-c tc
check_not "...and nothing is made" lv_exists tc
# (A create again with other options never reaches the driver: dockerd answers it from its own store,
# daemon/volume/service/store.go checkConflict. The driver's refusal is a unit test.)
check "docker volume rm tv" docker volume rm tv
check "the tenant's key is destroyed" as tenant-a "$repo/scripts/kmip/key-state" --gone "$keyt"

echo "== key rotation, reencryption and resize under a writing container: cryptvol rotate, reencrypt, resize"
check "rv created" docker volume create -d cryptvol --opt size=64M rv
# The writer exits (and so stops running) at its first failed write.
check "a writer starts" docker run -d --name rw -v rv:/data $img \
	sh -c 'i=0; while echo "line $i" >> /data/log && sync; do i=$((i + 1)); done; echo WRITE FAILED; exit 1'
keyr=$(status rv kmip_key_id)
check "cryptvol rotate rv (the admin command, through the plugin's socket)" "$repo/bin/cryptvol" rotate rv
check "the old key is destroyed on KMIP" "$repo/scripts/kmip/key-state" --gone "$keyr"
keyr2=$(status rv kmip_key_id)
check "inspect shows the new key, which KMIP serves" sh -c "[ '$keyr2' != '$keyr' ] && '$repo/scripts/kmip/key-state' '$keyr2'"
check_eq "the writer is still writing (no I/O error)" true "$(docker inspect -f '{{.State.Running}}' rw 2>&1)"
digest() { cryptsetup luksDump --dump-json-metadata /dev/$vg/cv-rv | jq -c '[.digests[].digest] | sort'; }
d0=$(digest)
check "cryptvol reencrypt rv: a new volume key, online under the writer" sh -c \
	"'$repo/bin/cryptvol' reencrypt rv | grep -q 'online, mounted'"
check "the volume key's digest changed" test "$(digest)" != "$d0"
check_eq "the writer is still writing after the reencryption" true "$(docker inspect -f '{{.State.Running}}' rw 2>&1)"
# -P: one line per filesystem (busybox df puts a long device name on a line of its own otherwise).
kb() { docker exec rw df -kP /data | awk 'NR == 2 {print $2}'; }
k0=$(kb)
check "cryptvol resize rv 128M under the writer" sh -c "'$repo/bin/cryptvol' resize rv 128M | grep -q 'mounted, online'"
check_eq "inspect shows the new size" 134217728 "$(status rv size_bytes)"
check "the container sees the bigger filesystem" test "$(kb)" -gt "$((k0 + 50000))"
check_eq "the writer is still writing after the resize" true "$(docker inspect -f '{{.State.Running}}' rw 2>&1)"
check "writer stopped" docker rm -f rw
check "closed after the writer" closed rv
check_eq "the volume opens with the new key and holds the writer's lines" yes \
	"$(docker run --rm -v rv:/data $img sh -c 'grep -q "^line 1" /data/log && echo yes' 2>&1)"
lvchange -ay $vg/cv-rv
check_eq "luksDump shows one keyslot" 1 "$(cryptsetup luksDump --dump-json-metadata /dev/$vg/cv-rv | jq '.keyslots | length')"
lvchange -an $vg/cv-rv
check "the trail records the rotation" sh -c \
	"jq -es --arg k '$keyr2' 'any(.[]; .op == \"volume.rotate\" and .volume == \"rv\" and .key_id == \$k and .result == \"ok\")' /var/lib/cryptvol/audit.log"
check "docker volume rm rv" docker volume rm rv

echo "== remove shreds"
check "docker volume rm v1" docker volume rm v1
check_not "LV gone" lv_exists v1
check "KMIP key gone" "$repo/scripts/kmip/key-state" --gone "$key1"
check "docker volume rm auto" docker volume rm auto

echo "== swarm stack"
check "swarm init" docker swarm init --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377
cat > /scratch/stack.yml <<'YML'
version: "3.8"
services:
  writer:
    image: busybox:lab
    command: ["sh", "-c", "echo from-swarm > /data/s && sleep 600"]
    volumes: ["data:/data"]
volumes:
  data:
    driver: cryptvol
    driver_opts:
      size: 72M
YML
check "stack deploy" docker stack deploy -c /scratch/stack.yml st
wait_for "the service's volume is open" 240 mapping_open st_data
check_eq "the stack volume has its driver_opts size" 75497472 "$(status st_data size_bytes)"
# The volume is mounted before the task's process starts: wait for the write itself before removing the stack.
wait_for "the service writes through the volume" 180 \
	sh -c 'docker exec "$(docker ps -q -f name=st_writer | head -1)" cat /data/s | grep -qx from-swarm'
check "stack rm" docker stack rm st
wait_for "the stack volume is closed after stack rm" 180 closed st_data
check_eq "what the service wrote is there after stack rm" from-swarm "$(docker run --rm -v st_data:/data $img cat /data/s 2>&1)"
docker swarm leave --force >/dev/null 2>&1
check "docker volume rm st_data" docker volume rm st_data

echo "== Prometheus metrics: the counters move as operations happen"
# metric NAME{LABELS}: its value in the plugin's exposition (the plugin uses the host's network).
metric() { curl -s --max-time 10 http://127.0.0.1:9633/metrics | awk -v k="$1" '$1 == k {print $2}'; }
creates0=$(metric 'cryptvol_requests_total{call="create",result="ok"}')
kmip0=$(metric 'cryptvol_kmip_call_duration_seconds_count{call="create",result="ok"}')
check "the endpoint answers in the Prometheus text format" sh -c \
	"curl -s --max-time 10 http://127.0.0.1:9633/metrics | grep -q '^# TYPE cryptvol_requests_total counter'"
check "docker volume create mv" docker volume create -d cryptvol --opt size=64M mv
check "the create counter moved" test "$(metric 'cryptvol_requests_total{call="create",result="ok"}')" -gt "${creates0:-0}"
check "a KMIP create was timed" test "$(metric 'cryptvol_kmip_call_duration_seconds_count{call="create",result="ok"}')" -gt "${kmip0:-0}"
check_eq "cryptvol_volumes counts the plugin's volumes" "$(docker volume ls --format '{{.Driver}}' | grep -c '^cryptvol')" \
	"$(metric cryptvol_volumes)"
check "mv in use, 16 MiB written" docker run -d --name mvc -v mv:/data $img sh -c 'head -c 16777216 /dev/urandom > /data/r; sync; sleep 600'
check_eq "one volume mounted" 1 "$(metric cryptvol_volumes_mounted)"
# near A B: A and B differ by at most 1% of B.
near() { [ -n "$1" ] && [ -n "$2" ] && [ $(( ($1 > $2 ? $1 - $2 : $2 - $1) * 100 )) -le "$2" ]; }
sleep 2
df_used=$(docker exec mvc df -Pk /data | awk 'NR == 2 {print $3 * 1024}')
check "inspect's used_bytes ($(status mv used_bytes)) is within 1% of df in the container ($df_used)" \
	near "$(status mv used_bytes)" "$df_used"
check "...and so is cryptvol_volume_used_bytes ($(metric 'cryptvol_volume_used_bytes{volume="mv"}'))" \
	near "$(metric 'cryptvol_volume_used_bytes{volume="mv"}' | awk '{printf "%d", $1}')" "$df_used"
check "mvc removed" docker rm -f mvc
check_eq "none mounted" 0 "$(metric cryptvol_volumes_mounted)"
check "the closed volume shows the usage of its last close, with its time" sh -c \
	"[ -n \"\$(docker volume inspect mv --format '{{index .Status \"usage_at\"}}')\" ] && [ \"\$(docker volume inspect mv --format '{{index .Status \"used_bytes\"}}')\" -ge 16777216 ]"
check "docker volume rm mv" docker volume rm mv

echo "== integrity: a byte changed on the raw LV reads back in a container as an I/O error"
check "docker volume create --opt integrity=hmac-sha256 iv" docker volume create -d cryptvol --opt integrity=hmac-sha256 --opt size=64M iv
check "a container writes 8 MiB" docker run --rm -v iv:/data $img sh -c 'yes A | head -c 8388608 > /data/f && sync'
lvchange -ay $vg/cv-iv && cp /dev/$vg/cv-iv /scratch/iv-before && lvchange -an $vg/cv-iv
# The file's sectors on the raw LV: rewritten in place, they are the longest run of changed blocks.
check "a container rewrites it in place" docker run --rm -v iv:/data $img \
	sh -c 'yes B | head -c 8388608 | dd of=/data/f conv=notrunc 2> /dev/null && sync'
lvchange -ay $vg/cv-iv
check "one byte in the middle of the file's sectors flipped on the closed volume's raw LV" \
	python3 - /scratch/iv-before /dev/$vg/cv-iv <<'PY'
import os, sys
before = open(sys.argv[1], "rb").read()
with open(sys.argv[2], "r+b") as dev:
    after = dev.read()
    blk, best, best_start, start = 4096, 0, 0, None
    for i in range(0, len(after), blk):
        if before[i:i + blk] != after[i:i + blk]:
            start = i if start is None else start
            if i + blk - start > best:
                best, best_start = i + blk - start, start
        else:
            start = None
    if best < 4 << 20:
        sys.exit("the file's sectors were not found: the longest changed run is %d bytes" % best)
    off = best_start + best // 2
    dev.seek(off)
    dev.write(bytes([after[off] ^ 0xFF]))
    dev.flush()
    os.fsync(dev.fileno())
PY
lvchange -an $vg/cv-iv
check "reading the file in a container fails with an I/O error" says 'I/O error|Input/output error' \
	docker run --rm -v iv:/data $img sh -c 'cat /data/f > /dev/null'
check "docker volume rm iv" docker volume rm iv
rm -f /scratch/iv-before

echo "== the audit trail"
trail=/var/lib/cryptvol/audit.log
# rec OP VOLUME [KEY] [RESULT]: the sequence number of the first such record (empty if none).
rec() {
	jq -r --arg op "$1" --arg v "$2" --arg k "${3:-}" --arg r "${4:-ok}" \
		'select(.op == $op and .volume == $v and .result == $r and ($k == "" or .key_id == $k)) | .seq' "$trail" | head -1
}
in_order() { local prev=0 s; for s in "$@"; do [ -n "$s" ] && [ "$s" -gt "$prev" ] || return 1; prev=$s; done; }
check "the trail's hash chain verifies (cryptvol audit verify)" "$repo/bin/cryptvol" audit verify "$trail"
check "v1's key: created, fetched for a mount, destroyed at remove, in that order" in_order \
	"$(rec key.create v1 "$key1")" "$(rec volume.create v1)" "$(rec key.get v1 "$key1")" "$(rec volume.mount v1)" \
	"$(rec volume.unmount v1)" "$(rec key.destroy v1 "$key1")" "$(rec volume.remove v1)"
check "the create refused while KMIP was down is recorded as failed" test -n "$(rec volume.create kdown "" error)"
check "the stack's volume: created, mounted by its task, removed" in_order \
	"$(rec key.create st_data)" "$(rec volume.mount st_data)" "$(rec volume.remove st_data)"
check_eq "records name this host (the plugin sees the host's name)" "$(hostname)" \
	"$(jq -r 'select(.op == "volume.create") | .host' "$trail" | sort -u | xargs)"
check_eq "every volume created in the run has its key create recorded before it" "" \
	"$(jq -rs '[.[] | select(.op == "volume.create" and .result == "ok") | .volume] as $v |
		[.[] | select(.op == "key.create" and .result == "ok") | .volume] as $k | $v - $k | .[]' "$trail")"
check "...and there were some (this script's own at least)" sh -c \
	"jq -r 'select(.op == \"volume.create\" and .result == \"ok\") | .volume' $trail | grep -qx st_data"
sed '3s/"volume":"[^"]*"/"volume":"edited"/' "$trail" > /scratch/trail-edited.log
check "an edited line is found (exit 1, naming line 3)" sh -c \
	"! '$repo/bin/cryptvol' audit verify /scratch/trail-edited.log > /scratch/verify.out; grep -q 'trail-edited.log:3:' /scratch/verify.out"

echo "== the compliance report: cryptvol report"
check "rp created and its key rotated" sh -c "docker volume create -d cryptvol --opt size=64M rp > /dev/null && '$repo/bin/cryptvol' rotate rp > /dev/null"
check "cryptvol report --json --rotate-after 1h: exit 0, the trail verified" sh -c \
	"'$repo/bin/cryptvol' report --json --rotate-after 1h > /scratch/report.json && jq -e '.ok and .audit.ok and .overdue == 0' /scratch/report.json"
check_eq "...rp's key, since its rotation, as inspect shows it" "$(status rp kmip_key_id) rotation false false" \
	"$(jq -r '.volumes[] | select(.name == "rp") | "\(.kmip_key_id) \(.key_from) \(.overdue) \(.mounted)"' /scratch/report.json)"
# The node group is read from the KMIP server: the plugin puts each key it makes in its node's Object Group.
check_eq "...rp's key is in this node's KMIP Object Group, as the server says" "cryptvol-node:$(hostname) $(hostname)" \
	"$(jq -r '.volumes[] | select(.name == "rp") | "\(.kmip_group) \(.node)"' /scratch/report.json)"
check "with the edited trail: exit 1, saying it is broken" sh -c \
	"! '$repo/bin/cryptvol' report --audit /scratch/trail-edited.log > /scratch/report.out; grep -q 'BROKEN' /scratch/report.out"
check "rp removed" docker volume rm rp

check "plugin disable" docker plugin disable cryptvol
finish
