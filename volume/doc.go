// Package volume owns the lifecycle of cryptvol volumes: create, mount while
// containers use them, unmount, remove, list, and start-up reconciliation.
// It drives LVM, cryptsetup, filesystems and the KMIP key manager through the
// interfaces in deps.go and never runs a command itself.
//
// # Files
//
//   - Docker's verbs: create.go (and clone.go for option from), mount.go
//     (Mount, Unmount), remove.go, info.go (Get, List, Path, Status),
//     usage.go (a filesystem's usage in Status and the metrics).
//   - The undo window for removes (Config.RemoveGrace): trash.go (a remove
//     into the trash, its listing, the sweeper's purge), trashrestore.go
//     (Restore, onto a new key).
//   - Moving a volume: export.go (Export: its header and ciphertext as a
//     stream, package export), import.go (Import: a volume from a stream,
//     onto a key of its own).
//   - Recovery: reconcile.go (start-up), sweep.go (what lingers, stale
//     mount IDs), restore.go (the plugin's own mount put back), close.go
//     (closing what nothing should hold), rollback.go (undo on failure),
//     propagation.go (whether the plugin's mounts reach dockerd).
//   - Day-2: rotate.go, schedule.go (rotation by age), reencrypt.go,
//     resize.go, fsoptions.go (mount options, discard), keygroup.go
//     (decommission's Object Groups).
//   - Policy: pool.go (thin pool limits), turns.go (creates at once),
//     binding.go (which key may open a volume), shared.go (a shared VG).
//   - For callers other than docker (package csi): kinds.go (the kinds of
//     failure they tell apart), capacity.go (the group's free space, UUID,
//     extent rounding, a volume's device).
//   - Plumbing: manager.go (New, locks, names), deps.go (the layers below),
//     lvview.go and lvrecord.go (LVM read into memory), audit.go (events),
//     options/ (the user's grammar, fuzzed), internal/journal/ (the state
//     file).
//
// # Objects of a volume
//
// A docker volume NAME is, in volume group VG:
//
//   - LV "cv-NAME", tagged "cryptvol", "cryptvol_fs_<ext4|xfs>", "cryptvol_key_<id>"
//     (when the KMIP id is tag-safe), "cryptvol_tenant_<tenant>" (option
//     tenant: the key is made, fetched and destroyed with that tenant's
//     KMIP identity, Config.TenantKeys; the journal records the tenant too),
//     "cryptvol_mountopts_<a+b>" (option mountopts), in a shared group
//     "cryptvol_madeby_<node>" and, while a host has it mounted,
//     "cryptvol_on_<node>" (shared.go), "cryptvol_keytime_<unix>"
//     (when a rotation gave it its key: schedule.go) and, once Create has
//     finished, "cryptvol_ready";
//   - a LUKS2 header on it (aes-xts-plain64, 512-bit volume key) whose
//     "cryptvol-kmip" token records the KMIP key id and NAME;
//   - a KMIP AES-256 key named "cryptvol/VG_UUID/NAME/NONCE", the LUKS
//     passphrase: the VG's UUID keeps hosts whose groups share a name apart
//     on one KMIP server, and the nonce makes each create's key name its own
//     (volumes made before state version 2 have "cryptvol/VG/NAME"), in
//     the KMIP Object Group of the node that made the volume, across
//     rotations on any host too (keygroup.go);
//   - while mounted: dm-crypt mapping "cryptvol-NAME" mounted at MountRoot/NAME,
//     whose data directory MountRoot/NAME/data is what containers get.
//
// Removed under a grace (trash.go), the LV is renamed "cv-NAME+MILLIS" (the
// trash id: '+' is in no volume name, so no volume is ever taken for it)
// with its tags and header as they were, and its key Deactivated.
//
// The LV is active while mounted. On a single host it stays active between
// uses (keepsActive: it shows only ciphertext, and an lvchange at every
// first mount and last unmount would be most of what a `docker run` pays
// the plugin); Mount and Remove activate it when the kernel says it is not
// (after a boot without autoactivation). In a shared group it is active
// only while this host uses it: activation is its lvmlockd lock.
//
// LVM is the source of truth for which volumes exist. Get, Path, List,
// Mount and Remove read it through an in-memory view that is listed again
// whenever the group's metadata mark (read from the devices, no program) has
// changed (lvview.go), from the metadata text the mark points at (no
// program either; lvs when that text cannot be read). Reconciliation reads
// the same text, with activation from the kernel; create, and Remove of a
// name the view lacks, ask lvm itself. The only other state
// is StateDir/mounts.json: per volume, how many Mounts of each mount ID are
// not yet matched by an Unmount (dockerd sends one per use of an ID: docker
// cp on a running container mounts again under the container's ID), with
// the boot id they were recorded under; and a journal of creates, removes
// and key rotations in progress, each naming its exact objects (a remove:
// the LV's UUID and the key ids it names; a create: its unique KMIP key
// name; a rotation: the LV's UUID, the old key id, the new key's unique
// name and id, and the keyslot chosen for it: rotate.go). It is replaced
// atomically (temp file, fsync, rename, fsync of the directory) before any
// operation that changed it reports success. Its format, versions and
// writing are volume/internal/journal's; what goes in it is decided here.
//
// What users type (volume names, --opt options, sizes) is parsed and
// checked by volume/options before anything is made.
//
// # Locking
//
// Each volume has a mutex that serializes every mutating operation on it,
// the sweeper's included; different volumes proceed in parallel. The
// Manager's own mutex guards only the map of those mutexes, and the state
// store and the sweeper each have a mutex held only for their own maps. No
// lock is held across another volume's work.
//
// # Never a directory that is not the volume
//
// Mount, Path and Get hand out the volume's data directory, a directory
// inside its filesystem (mount/layout.go), never the mount point: where
// the filesystem is not mounted, in any mount namespace, the path does not
// exist, so no bind, copy or `docker cp` can write beneath it. That holds by
// construction, whatever the timing of an unmount (the plugin's own probe,
// one from outside) or a propagation dockerd no longer shares. Mount also
// checks mountinfo shows the volume's mapping at its mount point and that
// the data directory is a directory of that filesystem before returning,
// and that the propagated mount is shared (propagation.go). The layout is
// made, or a filesystem of the older layout (its files at the root) moved
// into it, only by a Mount that opened the mapping itself: no container
// holds the filesystem then (TestOlderLayoutMovesOnlyWhenNothingHoldsIt).
//
// # In use: bookkeeping and the kernel
//
// dockerd's Unmounts do not always come (killed, it never unmounts for the
// containers it had: https://github.com/moby/moby/issues/46508), and a
// restart-policy container reuses its saved mount ID, so whether a volume
// is in use is also asked of the kernel: release unmounts the plugin's own
// mount and closes the mapping, and the close is refused while a
// container's mount namespace still holds it (luks.ErrBusy); then the
// plugin's mount is restored and the volume kept. release runs on the last
// Unmount, at start-up, in the sweeper (sweep.go: lingering volumes, and
// volumes whose mount IDs are all of an earlier epoch, probed until the
// kernel answers), and for a Remove refused for such IDs. A volume no ID
// holds that cannot be taken down lingers, shown in Status ("pending"), and
// is retried until it goes down or is mounted again. A mount taken from
// outside is put back (restore.go).
//
// # Reconciliation rules (Reconcile, run at start-up)
//
//  0. Mount IDs recorded under another boot id are discarded when the state
//     file is loaded: the reboot unmounted everything.
//  1. A remove in the journal was interrupted (a crash, or KMIP away): it is
//     finished for the exact LV (by UUID) and key ids it names. A later LV
//     of the same name is never touched. If KMIP is still away, the sweeper
//     and the next Create of the name retry; a Create is refused only while
//     the LV being removed still exists.
//  2. A create in the journal was interrupted: if the LV carries
//     cryptvol_ready the create had finished and only the entry is dropped;
//     otherwise the LV (if any) is removed, with the keys its token and tag
//     name and those Located under the create's own unique key name (a key
//     made just before a crash, when no LV existed yet).
//     2b. A key rotation in the journal was interrupted: if its keyslot is
//     in the header it is finished (token, tag, old keyslot, old key),
//     else undone (the new key, found by id or its unique name,
//     destroyed). A Remove takes an unsettled rotation's keys over.
//     2c. A restore from the trash is settled like a rotation, by its
//     keyslot (trashrestore.go); a remove into the trash is finished (its
//     keys deactivated) if its LV was renamed, else dropped (trash.go).
//  3. An LV tagged cryptvol without cryptvol_ready and without a journal
//     entry is a half-made volume: it is undone with the keys it names. Keys
//     are never destroyed because their name merely matches.
//  4. A volume nothing can hold, an inactive LV or, on a single host, an
//     active one with nothing mounted and no mapping (at rest), has stale
//     mount IDs: they are dropped; the LV is left as it is.
//  5. A filesystem mounted here is thawed first (5a: a crash during an
//     export's or a clone's freeze leaves it frozen). An active volume
//     mounted here as recorded is left alone (its IDs are
//     suspect: the sweep probes them). Otherwise it is released: held by the kernel,
//     it is mounted again for its containers (IDs kept) or lingers (no IDs);
//     not held, its IDs were stale and are dropped and it is taken down
//     (unmounted, closed, and in a shared group deactivated).
//  6. Mount IDs of volumes whose LV no longer exists are dropped.
//  7. A directory under MountRoot named like a volume that does not exist:
//     whatever is mounted there is unmounted and a mapping of that name is
//     closed unless something still holds it; the empty directory is
//     removed.
//
// Every count loaded at start-up is of an earlier epoch, so suspect: a
// plugin start may be dockerd's start, after which containers it stopped
// never sent Unmount.
//
// Likewise dm-crypt mappings are found by name only for volumes that exist
// or have a directory under MountRoot.
//
// Every step of Create, Mount, Unmount and Remove is either recorded
// before it starts (journal) or idempotent (close of a closed mapping,
// deactivation of an inactive LV, erase of an erased header, destroy of a
// destroyed key), so each operation is safe to retry after a crash at any
// point. A failure or a panic in Create or Mount undoes its steps
// (rollback.go).
//
// # Audit
//
// With Config.Audit set, every KMIP call goes through audit.go's wrappers,
// which record it with the volume, tenant, key id and outcome, and Create,
// Mount, Unmount and Remove each record their outcome (with the mount ID);
// reconciliation records each repair with its rule's number.
//
// # Secrets
//
// Key bytes exist only in the *keys.Key returned by Keys.Get; they are
// handed to luks/ (which unlocks a plain header itself and gives the
// kernel the volume key through its keyring, or runs cryptsetup with the
// key on stdin) and wiped right after Open or Format (and on every error
// path by a deferred Wipe). Errors and logs carry key ids, never key
// bytes.
//
// The token and tag that say which key opens a volume are on the storage,
// which whoever has the disks can rewrite; the key's KMIP name is not. A
// key is used for a volume only when one of its names, fetched with its
// material, is one cryptvol gives that volume's keys in this group
// (binding.go), so one volume's header, data and tags copied onto another
// never open as it.
package volume
