//go:build !failpoints

package failpoint

// Here marks the point before step (a name of letters and dashes); in
// this build it does nothing.
func Here(step string) {}
