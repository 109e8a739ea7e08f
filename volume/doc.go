// Package volume owns the lifecycle of cryptvol volumes: create, mount while
// containers use them, unmount, remove, list, and start-up reconciliation.
// It drives LVM, cryptsetup, filesystems and the KMIP key manager through the
// interfaces in deps.go and never runs a command itself.
//
// # Objects of a volume
//
// A docker volume NAME is, in volume group VG:
//
//   - LV "cv-NAME", tagged "cryptvol", "cryptvol_fs_<ext4|xfs>", "cryptvol_key_<id>"
//     (when the KMIP id is tag-safe) and, once Create has finished,
//     "cryptvol_ready";
//   - a LUKS2 header on it (aes-xts-plain64, 512-bit volume key) whose
//     "cryptvol-kmip" token records the KMIP key id and NAME;
//   - a KMIP AES-256 key named "cryptvol/VG/NAME", the LUKS passphrase;
//   - while mounted: dm-crypt mapping "cryptvol-NAME" mounted at MountRoot/NAME.
//
// LVM is the source of truth for which volumes exist. The only other state
// is StateDir/mounts.json: the mount IDs per volume with the boot id they
// were recorded under, and a journal of creates and removes in progress. It
// is replaced atomically (temp file, fsync, rename, fsync of the directory)
// before any operation that changed it reports success.
//
// # Locking
//
// Each volume has a mutex that serializes every mutating operation on it;
// different volumes proceed in parallel. The Manager's own mutex guards only
// the map of those mutexes, and the state store has a mutex held only while
// the file is written. No lock is held across another volume's work.
//
// # Never an empty directory
//
// Mount returns a path only after mountinfo shows the volume's mapping
// mounted there, and repeats that check for every further mount ID. If the
// check fails the mount is undone and the request fails, so a container can
// never write plaintext into the host's directory.
//
// # Reconciliation rules (Reconcile, run at start-up)
//
//  0. Mount IDs recorded under another boot id are discarded when the state
//     file is loaded: the reboot unmounted everything.
//  1. A remove in the journal was interrupted by a crash: it is finished
//     (keyslots erased, LV removed, KMIP keys destroyed). The user asked for
//     it, and once the keyslots are erased nothing else is consistent. A
//     remove that returned an error before erasing anything clears its
//     journal entry, so its volume stays.
//  2. A create in the journal was interrupted: if the LV carries
//     cryptvol_ready the create had finished and only the entry is dropped;
//     otherwise the LV (if any) is removed and every KMIP key named for the
//     volume is located and destroyed. This also catches a key made just
//     before a crash, when no LV existed yet.
//  3. An LV tagged cryptvol without cryptvol_ready is a half-made volume
//     (header missing, or header without filesystem): it is undone as in 2.
//     Create, which holds the volume's lock until it is done, applies the
//     same rule when it finds such an LV, so a retried create succeeds.
//  4. A volume with recorded mount IDs that is verified mounted from its
//     mapping is left alone: containers are using it. If it is not mounted,
//     the IDs are stale and dropped, and rule 5 applies. IDs are recorded
//     only after a verified mount, so within one boot a missing mount means
//     an unmount finished its teardown without recording it, or someone
//     unmounted it from outside. Re-mounting would leave a decrypted volume
//     that may have no user; a container that still needs it gets it back
//     from its next Mount, which always re-establishes a missing mount.
//  5. A volume with no mount IDs must be down: a stale mount is unmounted, a
//     stale mapping closed, an active LV deactivated.
//  6. Mount IDs of volumes whose LV no longer exists are dropped.
//  7. A directory under MountRoot named like a volume that does not exist:
//     whatever is mounted there is unmounted and a mapping of that name is
//     closed; the empty directory is removed.
//
// A KMIP key whose LV is gone and which is in no journal (which takes
// damage outside cryptvol) is not found at start-up, because KMIP has no
// cheap listing by name prefix. It is still harmless: a later Create of
// that name reuses it (keys.Create is idempotent by name) and Remove of that
// name destroys it. Likewise dm-crypt mappings are found by name only for
// volumes that exist or have a directory under MountRoot.
//
// Every step of Create, Mount, Unmount and Remove is either recorded
// before it starts (journal) or idempotent (close of a closed mapping,
// deactivation of an inactive LV, erase of an erased header, destroy of a
// destroyed key), so each operation is safe to retry after a crash at any
// point.
//
// # Secrets
//
// Key bytes exist only in the *keys.Key returned by Keys.Get; they are
// handed to cryptsetup and wiped right after Open or Format (and on every
// error path by a deferred Wipe). Errors and logs carry key ids, never key
// bytes.
package volume
