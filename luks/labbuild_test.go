//go:build !lab

package luks

// labBuild says this test binary is the lab's (make lab-bins), run in a guest
// under emulation, where host tests that `make unit` already ran cost
// minutes.
const labBuild = false
