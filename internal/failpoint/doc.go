// Package failpoint marks the points between the steps that change
// something outside the plugin (a device-mapper ioctl, mount(2), a write
// to a header or the state file, a KMIP request), so that the lab can kill
// the real plugin at each of them and check what start-up reconciliation
// makes of it (tests/crash_lab_test.go, TestLabKillAtEveryStep).
//
// Here is a no-op in every build but one made with the build tag
// failpoints (`make lab-bins` builds bin/cryptvol-failpoints so). That
// build counts every call in the directory named by CRYPTVOL_FAILPOINTS,
// in the same files as the lab's program shim (plan, count, calls), so
// that programs and failpoints make one numbered sequence of steps, and
// kills its own process with SIGKILL at the step the plan names.
//
// Concurrency: Here may be called from any goroutine; in the failpoints
// build the calls are serialised.
package failpoint
