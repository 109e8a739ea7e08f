package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// Kind is what an operation or a fault does.
type Kind string

// The operations.
const (
	OpCreate        Kind = "create"
	OpCreateInvalid Kind = "create-invalid"
	OpRunWriter     Kind = "run-writer"
	OpStart         Kind = "start"
	OpStop          Kind = "stop"
	OpKill          Kind = "kill"
	OpRmContainer   Kind = "rm-f"
	OpCpIn          Kind = "cp-in"
	OpCpOut         Kind = "cp-out"
	OpVolumeRm      Kind = "volume-rm"
	OpPrune         Kind = "volume-prune"
	OpRotate        Kind = "rotate"
	OpResize        Kind = "resize"
	OpSnapshot      Kind = "snapshot"
	OpClone         Kind = "clone"
	OpBurst         Kind = "burst"
)

// The faults.
const (
	FaultKillPlugin  Kind = "kill-plugin"
	FaultKillDockerd Kind = "kill-dockerd"
	FaultDisable     Kind = "plugin-disable-enable"
	FaultKMIPStop    Kind = "kmip-stop"
	FaultKMIPSilent  Kind = "kmip-silent" // SIGSTOP: connections are accepted, nothing is answered
	FaultKMIPSlow    Kind = "kmip-slow"   // answers late, for ForS seconds
	FaultKMIPStart   Kind = "kmip-start"  // recovery from a stop or a silence
	FaultPoolFill    Kind = "pool-fill"   // the thin pool filled past the plugin's create limit
	FaultPoolDrain   Kind = "pool-drain"  // recovery: the filler removed
)

// weighted is one choice and its weight.
type weighted struct {
	kind   Kind
	weight int
}

// opWeights: writers and creates dominate, as in a host's life; prune,
// which removes every unused volume at once, is rare so that volumes live
// long enough to see faults.
var opWeights = []weighted{
	{OpCreate, 14}, {OpCreateInvalid, 4}, {OpRunWriter, 14}, {OpStart, 4}, {OpStop, 5}, {OpKill, 4},
	{OpRmContainer, 6}, {OpCpIn, 6}, {OpCpOut, 5}, {OpVolumeRm, 7}, {OpPrune, 1}, {OpRotate, 5},
	{OpResize, 4}, {OpSnapshot, 3}, {OpClone, 3}, {OpBurst, 5},
}

// faultWeights: the faults between operations, and during one. The KMIP
// faults come last: none is chosen while the server is down (kmipFaults).
var faultWeights = []weighted{
	{FaultKillPlugin, 4}, {FaultKillDockerd, 2}, {FaultDisable, 2}, {FaultPoolFill, 1},
	{FaultKMIPSlow, 1}, {FaultKMIPStop, 2}, {FaultKMIPSilent, 1},
}

const kmipFaults = 3

// Rates, in percent: a fault after an operation, a fault during one, the
// KMIP server back after an operation while it is down, and the thin pool
// drained after one while it is filled.
const (
	faultAfterPct  = 12
	faultDuringPct = 8
	kmipBackPct    = 40
	poolDrainPct   = 20
)

// Down is what the faults chosen so far left broken, until a recovery:
// the KMIP server stopped or silent, the thin pool filled.
type Down struct {
	KMIP, Pool bool
}

// after is the state once f has fired.
func (d Down) after(f *Fault) Down {
	if f != nil {
		switch f.Kind {
		case FaultKMIPStop, FaultKMIPSilent:
			d.KMIP = true
		case FaultPoolFill:
			d.Pool = true
		}
	}
	return d
}

// Op is one chosen operation, with everything random about it drawn at
// choice time, so that the sequence depends on the seed and the model only.
type Op struct {
	Seq   int
	Kind  Kind
	Vol   string   // the target volume, or the new volume's name
	Src   string   // clone, snapshot: the source
	Ctr   string   // the target container, or the new container's name
	Opts  []string // create: --opt values; run: "restart"
	Size  string   // resize
	File  string   // cp: the file's name in the volume
	Sub   []Op     // burst: run at once
	Fault *Fault   // a fault fired while the operation runs
}

// Fault is one chosen fault; During ones fire DelayMS after their
// operation starts.
type Fault struct {
	Kind        Kind
	DelayMS     int
	LiveRestore bool // kill-dockerd: the next dockerd runs with live-restore
	ForS        int  // kmip-slow: how long the server stays slow, in seconds
}

// Step is what the driver does next: an operation, then maybe a fault.
type Step struct {
	Op        Op
	After     *Fault
	KMIPBack  bool // the KMIP server is started again after the operation
	PoolDrain bool // the thin pool's filler is removed after the operation
}

func (o Op) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", o.Kind)
	for _, kv := range [][2]string{{"vol", o.Vol}, {"src", o.Src}, {"ctr", o.Ctr}, {"size", o.Size}, {"file", o.File}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, " %s=%s", kv[0], kv[1])
		}
	}
	if len(o.Opts) > 0 {
		fmt.Fprintf(&b, " opts=%s", strings.Join(o.Opts, ","))
	}
	for _, s := range o.Sub {
		fmt.Fprintf(&b, " [#%d %s]", s.Seq, s)
	}
	if o.Fault != nil {
		fmt.Fprintf(&b, " +%s", o.Fault)
	}
	return b.String()
}

func (f *Fault) String() string {
	s := string(f.Kind)
	if f.DelayMS > 0 {
		s += fmt.Sprintf("@%dms", f.DelayMS)
	}
	if f.Kind == FaultKillDockerd {
		s += fmt.Sprintf(" live-restore=%v", f.LiveRestore)
	}
	if f.Kind == FaultKMIPSlow {
		s += fmt.Sprintf(" for=%ds", f.ForS)
	}
	return s
}

// Chooser draws steps from one seeded generator.
type Chooser struct {
	r   *rand.Rand
	seq int
}

// NewChooser seeds a chooser.
func NewChooser(seed uint64) *Chooser {
	return &Chooser{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Next chooses the next step for the model as it is; down says what the
// driver's faults left broken.
func (c *Chooser) Next(m *Model, down Down) Step {
	s := Step{Op: c.op(m, true)}
	if c.r.IntN(100) < faultDuringPct {
		f := c.fault(down)
		f.DelayMS = 200 + c.r.IntN(8000)
		s.Op.Fault = &f
		down = down.after(&f)
	}
	if down.KMIP && c.r.IntN(100) < kmipBackPct {
		s.KMIPBack = true
		down.KMIP = false
	}
	if down.Pool && c.r.IntN(100) < poolDrainPct {
		s.PoolDrain = true
		down.Pool = false
	}
	if c.r.IntN(100) < faultAfterPct {
		f := c.fault(down)
		s.After = &f
	}
	return s
}

func (c *Chooser) fault(down Down) Fault {
	ws := faultWeights
	if down.KMIP {
		ws = ws[:len(ws)-kmipFaults]
	}
	f := Fault{Kind: pick(c.r, ws)}
	switch f.Kind {
	case FaultKillDockerd:
		f.LiveRestore = c.r.IntN(2) == 0
	case FaultKMIPSlow:
		f.ForS = 20 + c.r.IntN(71)
	}
	return f
}

func pick(r *rand.Rand, ws []weighted) Kind {
	total := 0
	for _, w := range ws {
		total += w.weight
	}
	n := r.IntN(total)
	for _, w := range ws {
		if n < w.weight {
			return w.kind
		}
		n -= w.weight
	}
	panic("unreachable")
}

// possible: whether the model has targets for the kind.
func possible(k Kind, m *Model) bool {
	switch k {
	case OpRunWriter:
		return len(m.VolNames(writable)) > 0
	case OpStart:
		return len(m.CtrNames(func(_ string, c *Ctr) bool { return !c.Running })) > 0
	case OpStop, OpKill:
		return len(m.CtrNames(func(_ string, c *Ctr) bool { return c.Running })) > 0
	case OpRmContainer, OpCpIn:
		return len(m.Ctrs) > 0
	case OpCpOut:
		return len(cpOutTargets(m)) > 0
	case OpVolumeRm, OpRotate:
		return len(m.Vols) > 0
	case OpResize:
		return len(m.VolNames(writable)) > 0
	case OpSnapshot, OpClone:
		return len(m.VolNames(thinWritable)) > 0
	}
	return true
}

func writable(_ string, v *Vol) bool     { return !v.ReadOnly }
func thinWritable(_ string, v *Vol) bool { return v.Thin && !v.ReadOnly }

// cpOutTargets: containers whose volume has a file docker cp put there.
func cpOutTargets(m *Model) []string {
	return m.CtrNames(func(_ string, c *Ctr) bool { return len(m.FilesOf(c.Vol)) > 0 })
}

func (c *Chooser) op(m *Model, burstOK bool) Op {
	var ws []weighted
	for _, w := range opWeights {
		if (w.kind != OpBurst || burstOK) && (w.kind != OpPrune || burstOK) && possible(w.kind, m) {
			ws = append(ws, w)
		}
	}
	c.seq++
	o := Op{Seq: c.seq, Kind: pick(c.r, ws)}
	one := func(names []string) string { return names[c.r.IntN(len(names))] }
	switch o.Kind {
	case OpCreate:
		o.Vol = fmt.Sprintf("s%d", o.Seq)
		o.Opts = c.createOpts()
	case OpCreateInvalid:
		o.Vol = fmt.Sprintf("bad%d", o.Seq)
		o.Opts = invalidOpts[c.r.IntN(len(invalidOpts))]
		if len(o.Opts) == 1 && o.Opts[0] == "from=" {
			o.Opts = []string{"from=none" + o.Vol}
		}
	case OpRunWriter:
		o.Ctr = fmt.Sprintf("w%d", o.Seq)
		if c.r.IntN(6) == 0 {
			// A volume made on the fly by docker run --volume-driver.
			o.Vol = fmt.Sprintf("s%d", o.Seq)
			o.Opts = []string{"auto"}
		} else {
			o.Vol = one(m.VolNames(writable))
		}
		if c.r.IntN(3) == 0 {
			o.Opts = append(o.Opts, "restart")
		}
	case OpStart:
		o.Ctr = one(m.CtrNames(func(_ string, c *Ctr) bool { return !c.Running }))
	case OpStop, OpKill:
		o.Ctr = one(m.CtrNames(func(_ string, c *Ctr) bool { return c.Running }))
	case OpRmContainer:
		o.Ctr = one(m.CtrNames(nil))
	case OpCpIn:
		o.Ctr = one(m.CtrNames(nil))
		o.File = fmt.Sprintf("cp%d", o.Seq)
	case OpCpOut:
		o.Ctr = one(cpOutTargets(m))
		fs := m.FilesOf(m.Ctrs[o.Ctr].Vol)
		o.File = fs[c.r.IntN(len(fs))]
	case OpVolumeRm, OpRotate:
		o.Vol = one(m.VolNames(nil))
	case OpResize:
		o.Vol = one(m.VolNames(writable))
		o.Size = fmt.Sprintf("+%dM", 16*(1+c.r.IntN(4)))
	case OpSnapshot, OpClone:
		o.Src = one(m.VolNames(thinWritable))
		o.Vol = fmt.Sprintf("s%d", o.Seq)
	case OpBurst:
		n := 2 + c.r.IntN(3)
		for range n {
			o.Sub = append(o.Sub, c.op(m, false))
		}
	}
	return o
}

// createOpts: a valid volume. xfs needs 320 MiB and ext4 64 MiB
// (volume/options.MinSize), and the thin pool takes most of the group, so xfs
// volumes are always thin and thick ones are small ext4 volumes.
func (c *Chooser) createOpts() []string {
	var o []string
	xfs := c.r.IntN(10) < 3
	thin := xfs || c.r.IntN(10) < 7
	switch {
	case xfs:
		o = append(o, "fs=xfs", fmt.Sprintf("size=%dM", 320+32*c.r.IntN(4)))
	case thin:
		o = append(o, fmt.Sprintf("size=%dM", 64+16*c.r.IntN(8)))
	default:
		o = append(o, fmt.Sprintf("size=%dM", 64+16*c.r.IntN(3)))
	}
	if !thin {
		o = append(o, "thin=false")
	}
	switch c.r.IntN(6) {
	case 0:
		o = append(o, "mountopts=noatime")
	case 1:
		if !xfs {
			o = append(o, "reserved_percent=0")
		}
	case 2:
		o = append(o, "uid=1000", "mode=0750")
	}
	return o
}

// invalidOpts: creates the plugin (or docker) must refuse, making nothing.
var invalidOpts = [][]string{
	{"size=1K"}, {"size=100T"}, {"fs=btrfs"}, {"colour=red"}, {"mountopts=discard"}, {"thin=maybe"},
	{"fs=xfs", "size=64M"}, {"from="}, {"size=64M", "from=s1"}, {"tenant=nobody"},
}
