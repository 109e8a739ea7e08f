//go:build race

package luks

// raceDetector says the tests run under -race, which makes some far slower.
const raceDetector = true
