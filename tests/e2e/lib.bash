# lib.bash: what the end-to-end scripts share (sourced after scripts/vm/check.sh): the proofs read from the guest's
# host side, and install_plugin: dockerd up, then the plugin bundle from bin/plugin (make plugin) installed by
# scripts/plugin/install and configured over /dev/vda and /dev/vdb, unless a script before this one installed it. Each script runs on its own as well as after another.
vg=cryptvg
img=busybox:lab

mapping_open() { dmsetup info "cryptvol-$1" >/dev/null 2>&1; }
lv_active() { [ "$(lvs --noheadings -o lv_active "$vg/cv-$1" 2>/dev/null | tr -d ' ')" = active ]; }
lv_exists() { lvs "$vg/cv-$1" >/dev/null 2>&1; }
# The plugin mounts under its propagated mount (DOCKER_DATA_ROOT/plugins/ID/propagated-mount), so a mount
# is found by its source, the volume's dm-crypt mapping.
# absent PATTERN FILE...: no FILE contains PATTERN; a grep that fails (exit 2, killed) is not "absent". -z makes
# NUL the record separator, so a disk with no newlines does not become one enormous line.
absent() { LC_ALL=C grep -qaz -- "$1" "${@:2}"; [ $? -eq 1 ]; }
mounted() { grep -q "^/dev/mapper/cryptvol-$1 " /proc/mounts; }
# closed V: nothing of V decrypted: no mapping, not mounted. Its LV stays active between uses on a single host (volume
# keepsActive: it shows only ciphertext), so that is not part of it.
closed() { ! mapping_open "$1" && ! mounted "$1"; }
status() { docker volume inspect "$1" --format "{{index .Status \"$2\"}}"; }
# wait_for DESC SECONDS CMD...: polls CMD until it succeeds (for asynchronous things: swarm tasks).
wait_for() {
	local desc=$1 n=$2; shift 2
	# By the clock, not by tries: one try (a docker CLI call) takes seconds in the lab.
	local end=$((SECONDS + n))
	while :; do
		"$@" >/dev/null 2>&1 && { pass "$desc"; return 0; }
		[ "$SECONDS" -lt "$end" ] || break
		sleep 1
	done
	fail "$desc (waited ${n}s for: $*)"
}
# says PATTERN CMD...: CMD fails, and its output matches PATTERN (case-insensitive).
says() { local pat=$1 out; shift; out=$("$@" 2>&1) && return 1; grep -qiE -- "$pat" <<<"$out"; }

# propagated_mount: dockerd's side of the installed plugin's propagated mount.
propagated_mount() {
	echo "$(docker info --format '{{.DockerRootDir}}')/plugins/$(docker plugin inspect cryptvol --format '{{.Id}}')/propagated-mount"
}
# plugin_up: the plugin is enabled and answers.
plugin_up() { docker plugin inspect cryptvol --format '{{.Enabled}}' | grep -qx true && docker volume ls >/dev/null; }
# repair_lost_propagation: dockerd started again without live-restore stops the plugin it finds running and starts a
# new one (moby plugin/manager.go and manager_linux.go@v26.1.5: reload, restore, enable). The old instance's exit
# handler unmounts everything under the plugin's directory (HandleExitEvent, recursiveUnmount) after it lets reload
# go on, so it can unmount the propagated mount that the new instance's enable has just bound (MakeRShared): dockerd
# then has no propagated mount, the plugin's mounts reach no container, and every start on a cryptvol volume fails
# (closed: the data directory is not there). That is dockerd's race, not the plugin's; when it happened, this says
# so and repairs it as a user would (docker plugin disable -f, enable), and succeeds; otherwise it fails. The enable
# gives dockerd's client of the plugin the 2 minutes dockerd gives a volume request (volume/drivers/proxy.go,
# longTimeout): `docker plugin enable` alone caps every request at 30 s (the CLI's --timeout), where the plugin
# dockerd restarted had no cap (plugin/manager.go reload: a controller without timeoutInSecs).
repair_lost_propagation() {
	local prop; prop=$(propagated_mount)
	mountpoint -q "$prop" && return 1
	echo "     | dockerd lost its propagated mount of the plugin while restarting it (moby HandleExitEvent race): disable -f, enable"
	docker plugin disable -f cryptvol >/dev/null && docker plugin enable --timeout 120 cryptvol >/dev/null
}
# host_clean: nothing but directories on the host's disk under the propagated mount (-xdev: the volumes' own
# filesystems are not the host's disk): a file there is a container's write that missed its volume.
host_clean() {
	local stray; stray=$(find "$(propagated_mount)" -xdev -mindepth 1 ! -type d 2>&1 | head -5)
	[ -z "$stray" ] || { echo "on the host's disk: $stray"; return 1; }
}
# content_image: the image content:lab, with content at /data owned by 1000:1000, as application images have
# (dockerd copies it into an empty volume mounted there), made once.
content_image() {
	docker image inspect content:lab >/dev/null 2>&1 && return 0
	local ctx; ctx=$(mktemp -d)
	mkdir -p "$ctx/bin" "$ctx/data/sub"
	cp /bin/busybox "$ctx/bin/busybox"
	for a in sh ls cat stat find; do ln -s busybox "$ctx/bin/$a"; done
	echo from-image > "$ctx/data/hello"
	chown -R 1000:1000 "$ctx/data"
	chmod 0750 "$ctx/data"
	tar -C "$ctx" -c . | docker import - content:lab >/dev/null
	rm -rf "$ctx"
}

install_plugin() {
	check "dockerd up with an imported image" "$repo/scripts/vm/lab-docker" start
	docker plugin inspect cryptvol > /dev/null 2>&1 && return 0
	echo "== install the plugin"
	check "docker plugin create and set (scripts/plugin/install)" "$repo/scripts/plugin/install" "$repo/bin/plugin" \
		CRYPTVOL_VG=$vg CRYPTVOL_DEVICES=/dev/vda,/dev/vdb CRYPTVOL_DEFAULT_SIZE=80M CRYPTVOL_METRICS_ADDR=127.0.0.1:9633
	check "the KMIP client key is readable by root only" sh -c '[ "$(stat -c %a /etc/cryptvol/kmip/client.key)" = 600 ]'
}
