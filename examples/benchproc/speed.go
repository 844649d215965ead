package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/http-tunnel/tunnel/examples/benchkit"
)

// scenario is one kind of load.
type scenario struct {
	name string
	path string
	conc int
	body int // bytes of each response body
}

var scenarioList = []scenario{
	{"small", "/small", 64, len(benchkit.SmallBody)},
	{"bulk", "/bulk", 4, benchkit.BulkSize},
	{"sequential", "/small", 1, len(benchkit.SmallBody)},
}

// target is where a round sends its load: the origin directly, or a
// tunnel through the gateway and one agent process.
type target struct {
	name  string
	url   string // base URL, without the scenario's path
	agent *proc  // nil for direct
}

// round is what one round of one target measured: the load, and the CPU
// each process spent during it.
type round struct {
	load    loadResult
	gateway time.Duration
	agent   time.Duration
	origin  time.Duration
}

// setup is the benchmark's running processes.
type setup struct {
	origin  *proc
	gateway *proc
	targets []target
}

func (s *setup) stop() {
	for _, t := range s.targets {
		t.agent.stop()
	}
	s.gateway.stop()
	s.origin.stop()
}

// startSpeed starts the origin, the gateway and one agent per transport,
// and waits until every tunnel answers.
func startSpeed(bins binaries, c config) (*setup, error) {
	self := bins.bench
	s := &setup{}
	originAddr, err := freePort()
	if err != nil {
		return s, err
	}
	if s.origin, err = start(c.dir, "origin", "", false, self, "-role", "origin", "-listen", originAddr); err != nil {
		return s, err
	}
	if err := waitFor("http://"+originAddr+"/small", 200); err != nil {
		return s, s.origin.failed(err)
	}
	s.targets = append(s.targets, target{name: "direct", url: "http://" + originAddr})

	gwAddr, err := freePort()
	if err != nil {
		return s, err
	}
	gwPprof, err := freePort()
	if err != nil {
		return s, err
	}
	if s.gateway, err = start(c.dir, "gateway", gwPprof, false, bins.gateway, "gateway", "--insecure-no-auth",
		"--listen", gwAddr, "--routing", "path"); err != nil {
		return s, err
	}
	if err := waitFor("http://"+gwAddr+"/no-such-tunnel/", 404); err != nil {
		return s, s.gateway.failed(err)
	}
	transports := c.transports
	if len(transports) == 0 {
		transports = []string{""}
	}
	for _, tr := range transports {
		name, label := "bench", "tunnel"
		args := []string{bins.agent, "--gateway", "http://" + gwAddr, "--inspect", "off"}
		if tr != "" {
			name, label = "bench-"+tr, "tunnel/"+tr
			args = append(args, "--"+c.transportFlag+"="+tr)
		}
		pp, err := freePort()
		if err != nil {
			return s, err
		}
		args = append(args, "--name", name, originAddr)
		a, err := start(c.dir, "agent "+label, pp, false, args...)
		if err != nil {
			return s, err
		}
		t := target{name: label, url: "http://" + gwAddr + "/" + name, agent: a}
		s.targets = append(s.targets, t)
		if err := waitFor(t.url+"/small", 200); err != nil {
			return s, a.failed(s.gateway.failed(err))
		}
	}
	return s, nil
}

func runSpeed(bins binaries, c config) error {
	load, loadName := loader(wrkLoad), "wrk"
	switch {
	case c.load == "go" || (c.load == "" && !haveWrk()):
		load, loadName = goLoad, "Go client (in this process)"
	case c.load == "wrk" || c.load == "":
	default:
		return fmt.Errorf("-load: %q is neither wrk nor go", c.load)
	}
	if c.rounds < 1 {
		return fmt.Errorf("-rounds: %d", c.rounds)
	}
	var scs []scenario
	for _, name := range c.scenarios {
		i := slices.IndexFunc(scenarioList, func(s scenario) bool { return s.name == name })
		if i < 0 {
			return fmt.Errorf("unknown scenario %q", name)
		}
		scs = append(scs, scenarioList[i])
	}
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}

	s, err := startSpeed(bins, c)
	defer s.stop()
	if err != nil {
		return err
	}
	per := c.duration / time.Duration(c.rounds)
	if loadName == "wrk" {
		per = max(time.Second, per.Round(time.Second))
	}
	fmt.Printf("load: %s; origin: a separate process; %d rounds of %v per target and scenario, alternating\n",
		loadName, c.rounds, per)
	fmt.Printf("gateway pid %d, origin pid %d", s.gateway.pid(), s.origin.pid())
	for _, t := range s.targets[1:] {
		fmt.Printf(", agent %s pid %d", t.name, t.agent.pid())
	}
	fmt.Print("\n\n")

	for _, sc := range scs {
		// Warm up every target (connections, caches, the agents' pools to
		// the origin), then measure in alternating rounds, so that a slow
		// spell of the machine weighs on every target alike.
		for _, t := range s.targets {
			if _, err := load(t.url+sc.path, sc.conc, time.Second); err != nil {
				return err
			}
		}
		rounds := make([][]round, len(s.targets))
		for r := range c.rounds {
			for i, t := range s.targets {
				var prof []string
				if c.profileDir != "" && sc.name == "small" && t.agent != nil {
					base := filepath.Join(c.profileDir, fmt.Sprintf("%s-%s-r%d.pprof", sc.name, strings.ReplaceAll(t.name, "/", "-"), r+1))
					prof = []string{strings.Replace(base, ".pprof", "-gateway.pprof", 1), strings.Replace(base, ".pprof", "-agent.pprof", 1)}
				}
				rd, err := measure(s, t, sc, per, load, prof)
				if err != nil {
					return fmt.Errorf("%s %s: %w", sc.name, t.name, err)
				}
				rounds[i] = append(rounds[i], rd)
			}
		}
		report(os.Stdout, sc, s.targets, rounds)
	}
	if c.profileDir != "" {
		fmt.Printf("CPU profiles of the small scenario's tunnel rounds in %s; merge the rounds with\n  go tool pprof -top %s/small-tunnel*-gateway.pprof\n", c.profileDir, c.profileDir)
	}
	return nil
}

// measure runs one round against t and reads the CPU of each process
// before and after it. With prof set (gateway, agent file names) it
// profiles both processes during the round, which costs them a little
// CPU.
func measure(s *setup, t target, sc scenario, d time.Duration, load loader, prof []string) (round, error) {
	procs := []*proc{s.gateway, t.agent, s.origin}
	if t.agent == nil {
		procs = []*proc{nil, nil, s.origin}
	}
	var before [3]time.Duration
	for i, p := range procs {
		if p != nil {
			var err error
			if before[i], err = p.cpu(); err != nil {
				return round{}, err
			}
		}
	}
	var wg sync.WaitGroup
	var perr [2]error
	if prof != nil {
		secs := max(1, int(d/time.Second))
		for i, p := range procs[:2] {
			wg.Go(func() {
				perr[i] = p.profile(context.Background(), fmt.Sprintf("profile?seconds=%d", secs), prof[i])
			})
		}
	}
	res, err := load(t.url+sc.path, sc.conc, d)
	wg.Wait()
	if err != nil {
		return round{}, err
	}
	for _, err := range perr {
		if err != nil {
			return round{}, err
		}
	}
	if res.errors > 0 {
		return round{}, fmt.Errorf("%d failed requests of %d", res.errors, res.requests+res.errors)
	}
	if res.requests == 0 {
		return round{}, fmt.Errorf("no request completed in %v", d)
	}
	var used [3]time.Duration
	for i, p := range procs {
		if p != nil {
			after, err := p.cpu()
			if err != nil {
				return round{}, err
			}
			used[i] = after - before[i]
		}
	}
	return round{load: res, gateway: used[0], agent: used[1], origin: used[2]}, nil
}
