package volume

import (
	"context"
	"fmt"
)

// takeTurn waits for one of the MaxCreates turns and returns its release.
// Creates and removes let loose together share the CPUs, the VG lock and
// the KMIP connection so thinly that none finishes within docker's
// deadline (commit b77ee1e; 50 concurrent removes: 0 done in the first 2
// minutes). In line, the first ones finish, and one that runs out of time
// waiting has touched nothing.
func (m *Manager) takeTurn(ctx context.Context) (done func(), err error) {
	select {
	case m.turns <- struct{}{}:
		return func() { <-m.turns }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the request's time ran out while %d other creates and removes were at work (CRYPTVOL_MAX_CREATES); retry: %w",
			m.cfg.MaxCreates, ctx.Err())
	}
}
