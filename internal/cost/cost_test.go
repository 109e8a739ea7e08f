package cost

import (
	"context"
	"sync"
	"testing"
)

func TestTallyCountsOnlyItsOwnContext(t *testing.T) {
	ctx, tally := With(context.Background())
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			Program(ctx, "/usr/sbin/lvm")
			KMIP(ctx)
		}()
	}
	wg.Wait()
	Program(ctx, "cryptsetup")
	// Work outside any request (the sweeper, start-up) counts nowhere.
	Program(context.Background(), "lvm")
	KMIP(context.Background())
	other, otherTally := With(context.Background())
	Program(other, "mount")

	if got := tally.Programs(); got != 9 {
		t.Errorf("Programs() = %d, want 9", got)
	}
	if got := tally.KMIPRoundTrips(); got != 8 {
		t.Errorf("KMIPRoundTrips() = %d, want 8", got)
	}
	if got := tally.ByProgram(); got != "cryptsetup 1, lvm 8" {
		t.Errorf("ByProgram() = %q", got)
	}
	if got := otherTally.ByProgram(); got != "mount 1" {
		t.Errorf("the other request's tally = %q, want mount 1", got)
	}
	_, empty := With(context.Background())
	if empty.ByProgram() != "" || empty.Programs() != 0 {
		t.Errorf("a new tally is not empty: %q", empty.ByProgram())
	}
}
