// Command soak is the seeded soak of cryptvol under the real dockerd, run
// inside a lab guest (scripts/vm/lab-tests, part soak; `make soak`):
// operations and faults chosen at random from one seed for a given time,
// with the invariants checked after every settle period and at the end.
//
// It owns the choice of operations and faults (plan.go: weights, one
// math/rand/v2 generator seeded by -seed, so a seed gives the same choices
// as long as docker answers the same), the writers' log format and its
// verification (record.go), the comparisons the invariants make
// (invariant.go), and running all of it against docker, LVM,
// device-mapper and the KMIP server of the guest (ops.go, faults.go,
// check.go, logs.go). Every operation is printed with its sequence number;
// a violation prints the seed, the last 200 lines and what broke, and
// exits 1.
//
//	soak -seed N -minutes M -repo DIR -vg VG -pool POOL -kmip-dir DIR -host-scan FILE
//
// The plugin is installed and enabled before (lab-tests), with a thin
// pool, and the KMIP environment (CRYPTVOL_KMIP_*) is set for key-state
// and cryptvol audit verify.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"time"
)

// settleEvery: operations between settle checks; a check reads a few
// volumes and asks docker, LVM and the KMIP server about all of them.
const settleEvery = 15

func main() {
	seed := flag.Uint64("seed", 0, "the seed (0: a random one, printed)")
	minutes := flag.Float64("minutes", 60, "how long to choose operations for (the final check comes after)")
	repo := flag.String("repo", ".", "the repository (scripts/, bin/cryptvol, bin/key-state)")
	vg := flag.String("vg", "cryptvg", "the plugin's volume group")
	pool := flag.String("pool", "soakpool", "the plugin's thin pool, in the volume group")
	kmipDir := flag.String("kmip-dir", "/scratch/kmip", "the KMIP dev server's directory")
	hostScan := flag.String("host-scan", "", "a file the lab runner reads after the guest stops (scripts/vm/run): the plaintext marker is written there for the host to look for on the data disks (required)")
	flag.Parse()
	if *hostScan == "" {
		fmt.Fprintln(os.Stderr, "soak: -host-scan FILE is required: the raw disks are scanned for the plaintext marker by the lab runner, on the host, once the guest stops")
		os.Exit(2)
	}
	if *seed == 0 {
		*seed = rand.Uint64()%1_000_000 + 1
	}
	os.Exit(soak(*seed, time.Duration(*minutes*float64(time.Minute)), Lab{Repo: *repo, VG: *vg, Pool: *pool, KMIPDir: *kmipDir, HostScan: *hostScan,
		Marker: fmt.Sprintf("soakplain%016x", *seed*0x9e3779b97f4a7c15)}))
}

func soak(seed uint64, d time.Duration, lab Lab) int {
	log := NewOpLog(os.Stdout, 200)
	s := &Soak{Lab: lab, Log: log, Model: NewModel(), acks: map[string]ack{}, start: time.Now()}
	if help, _ := docker("volume", "prune", "--help"); strings.Contains(help, "--all") {
		s.pruneAll = true
	}
	log.Printf("soak: seed %d, %s of operations (SOAK_SEED=%d replays the choices)", seed, d, seed)
	chooser := NewChooser(seed)
	// The volumes a check reads come from a generator of their own, so the
	// operations do not depend on when checks happen.
	sample := rand.New(rand.NewPCG(seed, 1))
	end := time.Now().Add(d)
	steps, checks := 0, 0
	for time.Now().Before(end) && len(s.Violations) == 0 {
		s.mu.Lock()
		st := chooser.Next(s.Model, s.down)
		s.mu.Unlock()
		log.Printf("#%d %s", st.Op.Seq, st.Op)
		s.Do(st.Op)
		if st.KMIPBack {
			s.Recover(Fault{Kind: FaultKMIPStart})
		}
		if st.PoolDrain {
			s.Recover(Fault{Kind: FaultPoolDrain})
		}
		if st.After != nil {
			s.Inject(*st.After)
		}
		steps++
		if steps%settleEvery == 0 && len(s.Violations) == 0 {
			checks++
			s.Check(checks, false, sample)
		}
	}
	if len(s.Violations) == 0 {
		checks++
		s.Check(checks, true, sample)
	}
	log.Printf("== soak summary: seed %d, %d steps, %d checks, longest settle %.0fs", seed, steps, checks, s.maxSettle.Seconds())
	for _, c := range log.Counts() {
		log.Printf("   %s", c)
	}
	for _, w := range s.Warnings {
		log.Printf("   failed without a fault: %s", w)
	}
	if len(s.Violations) == 0 {
		log.Printf("== soak: seed %d: 0 violations", seed)
		return 0
	}
	fmt.Printf("== soak FAILED: seed %d; the last %d lines:\n", seed, len(log.Last()))
	fmt.Println(strings.Join(log.Last(), "\n"))
	fmt.Printf("== soak FAILED: seed %d; %d violations:\n", seed, len(s.Violations))
	for _, v := range s.Violations {
		fmt.Println("   " + v)
	}
	return 1
}
