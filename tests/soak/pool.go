package main

import (
	"fmt"
	"strconv"
	"strings"
)

// fillTo is the share of the thin pool's data a pool-fill leaves used: past
// the plugin's default create limit (volume.DefaultThinMaxFill, 95%), so
// thin creates, clones and snapshots must be refused with nothing made,
// and short of full, so the writers' small appends still find room.
const fillTo = 0.965

// filler is the thin LV a pool-fill writes; the driver made it, and only
// it removes it, by this name.
const filler = "soakfill"

// fillPool writes zeros into the filler (made on the first fill, as large
// as the pool) until the pool's data is fillTo used. A pool already past
// it is left as it is.
func (s *Soak) fillPool() error {
	size, pct, err := s.poolUse()
	if err != nil {
		return err
	}
	need := int64((fillTo-pct/100)*float64(size)) >> 20
	if need <= 0 {
		s.Log.Printf("pool-fill: %s is %.1f%% used already", s.Pool, pct)
		return nil
	}
	s.mu.Lock()
	at := s.filled
	s.mu.Unlock()
	if at == 0 {
		if _, err := run("lvcreate", "-q", "-y", "-T", s.VG+"/"+s.Pool, "-V", fmt.Sprintf("%db", size), "-n", filler); err != nil {
			return err
		}
	}
	_, err = run("dd", "if=/dev/zero", "of=/dev/"+s.VG+"/"+filler, "bs=1M", "oflag=direct", "conv=notrunc",
		fmt.Sprintf("seek=%d", at), fmt.Sprintf("count=%d", need))
	s.mu.Lock()
	s.filled = at + need
	s.mu.Unlock()
	if _, after, e := s.poolUse(); e == nil {
		s.Log.Printf("pool-fill: %s was %.1f%% used, %d MiB written, now %.1f%%", s.Pool, pct, need, after)
	}
	return err
}

// drainPool removes the filler.
func (s *Soak) drainPool() error {
	s.mu.Lock()
	at := s.filled
	s.mu.Unlock()
	if at == 0 {
		return nil
	}
	if _, err := run("lvremove", "-q", "-y", s.VG+"/"+filler); err != nil {
		return err
	}
	s.mu.Lock()
	s.filled = 0
	s.mu.Unlock()
	return nil
}

// poolUse reads the thin pool's data size in bytes and its percent used.
func (s *Soak) poolUse() (int64, float64, error) {
	out, err := run("lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size,data_percent", s.VG+"/"+s.Pool)
	if err != nil {
		return 0, 0, err
	}
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("lvs %s/%s: want size and data_percent, got %q", s.VG, s.Pool, out)
	}
	size, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("lvs %s/%s: size %q: %w", s.VG, s.Pool, f[0], err)
	}
	pct, err := strconv.ParseFloat(f[1], 64)
	if err != nil {
		return 0, 0, fmt.Errorf("lvs %s/%s: data_percent %q: %w", s.VG, s.Pool, f[1], err)
	}
	return size, pct, nil
}
