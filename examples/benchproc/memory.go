package main

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// memRow is what -memory measured at one tunnel count.
type memRow struct {
	transport  string // "" for the default
	n          int
	opened     time.Duration
	gw, ag     [3]runtimeStats // empty, with n fresh tunnels, then after an exchange through each
	exchanged  bool
	gwIdle     time.Duration // CPU of the idle tunnels over the idle window
	agIdle     time.Duration
	idleWindow time.Duration
}

func runMemory(ctx context.Context, bins binaries, counts []int, c config) error {
	if c.profileDir != "" {
		if err := os.MkdirAll(c.profileDir, 0o755); err != nil {
			return err
		}
	}
	transports := c.transports
	if len(transports) == 0 {
		transports = []string{""}
	}
	var rows []memRow
	for _, tr := range transports {
		for _, n := range counts {
			row, err := measureMemory(ctx, bins, tr, n, c)
			if err != nil {
				return fmt.Errorf("%d tunnels: %w", n, err)
			}
			rows = append(rows, row)
			printMemRow(row)
		}
	}
	fmt.Println("\nper idle tunnel: (with N tunnels - empty) / N; after a GC and", c.settle, "of settling")
	fmt.Printf("%-10s %-8s %-8s %-18s %11s %12s %12s %12s %14s\n", "transport", "tunnels", "process", "state", "goroutines", "heap", "stacks", "RSS", "idle CPU")
	for _, r := range rows {
		for _, side := range []struct {
			name string
			s    [3]runtimeStats
			idle time.Duration
		}{{"gateway", r.gw, r.gwIdle}, {"agent", r.ag, r.agIdle}} {
			states := []string{"fresh", "after an exchange"}
			if !r.exchanged {
				states = states[:1]
			}
			for k, state := range states {
				d := func(f func(runtimeStats) int64) float64 { return float64(f(side.s[k+1])-f(side.s[0])) / float64(r.n) }
				idle := "-"
				if k == 0 {
					idle = fmt.Sprintf("%.2f ms/min", 1000*side.idle.Seconds()/float64(r.n)/r.idleWindow.Minutes())
				}
				fmt.Printf("%-10s %-8d %-8s %-18s %11.2f %8.1f KiB %8.1f KiB %8.1f KiB %14s\n", cmp.Or(r.transport, "default"), r.n, side.name, state,
					d(func(s runtimeStats) int64 { return s.Goroutines }),
					d(func(s runtimeStats) int64 { return s.HeapInuse })/1024,
					d(func(s runtimeStats) int64 { return s.StackInuse })/1024,
					d(func(s runtimeStats) int64 { return s.RSS })/1024,
					idle)
			}
		}
	}
	fmt.Println("(idle CPU: CPU time of the process per tunnel per minute of idling, over", c.idle, "of heartbeats and lease renewals)")
	return nil
}

// measureMemory runs a fresh gateway and agent-side process, measures
// both empty, opens n tunnels, and measures again.
func measureMemory(ctx context.Context, bins binaries, transport string, n int, c config) (memRow, error) {
	row := memRow{transport: transport, n: n, idleWindow: c.idle}
	self := bins.bench
	gwAddr, err := freePort()
	if err != nil {
		return row, err
	}
	gwPprof, err := freePort()
	if err != nil {
		return row, err
	}
	gw, err := start(c.dir, "gateway", gwPprof, false, bins.gateway, "gateway", "--insecure-no-auth",
		"--listen", gwAddr, "--routing", "path")
	if err != nil {
		return row, err
	}
	defer gw.stop()
	if err := waitFor("http://"+gwAddr+"/no-such-tunnel/", 404); err != nil {
		return row, gw.failed(err)
	}
	agPprof, err := freePort()
	if err != nil {
		return row, err
	}
	ag, err := start(c.dir, "agents", agPprof, true, self, "-role", "agents", "-gateway", "http://"+gwAddr, "-transport", transport)
	if err != nil {
		return row, err
	}
	defer ag.stop()
	out := bufio.NewScanner(ag.out)
	command := func(cmd string) error {
		if _, err := fmt.Fprintln(ag.stdin, cmd); err != nil {
			return err
		}
		if !out.Scan() {
			return ag.failed(fmt.Errorf("agent-side process ended during %q: %v", cmd, out.Err()))
		}
		if out.Text() != "ok" {
			return fmt.Errorf("agent-side process: %q", out.Text())
		}
		return nil
	}
	if err := command("stats"); err != nil {
		return row, err
	}
	snapshot := func(i int) error {
		time.Sleep(c.settle)
		var err error
		if row.gw[i], err = gw.stats(ctx); err != nil {
			return err
		}
		row.ag[i], err = ag.stats(ctx)
		return err
	}
	if err := snapshot(0); err != nil {
		return row, err
	}
	t0 := time.Now()
	if err := command(fmt.Sprint("open ", n)); err != nil {
		return row, err
	}
	row.opened = time.Since(t0)
	if err := snapshot(1); err != nil {
		return row, err
	}
	g0, err := gw.cpu()
	if err != nil {
		return row, err
	}
	a0, err := ag.cpu()
	if err != nil {
		return row, err
	}
	time.Sleep(c.idle)
	g1, err := gw.cpu()
	if err != nil {
		return row, err
	}
	a1, err := ag.cpu()
	if err != nil {
		return row, err
	}
	row.gwIdle, row.agIdle = g1-g0, a1-a0
	profiles := func(state string) error {
		if c.profileDir == "" {
			return nil
		}
		for _, p := range []*proc{gw, ag} {
			base := filepath.Join(c.profileDir, fmt.Sprintf("memory-%s-%d-%s-%s", cmp.Or(transport, "default"), n, state, p.name))
			if err := p.profile(ctx, "goroutine?debug=1", base+"-goroutine.txt"); err != nil {
				return err
			}
			if err := p.profile(ctx, "heap", base+"-heap.pprof"); err != nil {
				return err
			}
		}
		return nil
	}
	if err := profiles("fresh"); err != nil {
		return row, err
	}
	if c.exchange {
		if err := command("exchange"); err != nil {
			return row, err
		}
		if err := snapshot(2); err != nil {
			return row, err
		}
		row.exchanged = true
		if err := profiles("exchanged"); err != nil {
			return row, err
		}
	}
	return row, nil
}

func printMemRow(r memRow) {
	fmt.Printf("%d tunnels (transport %s) opened in %v\n", r.n, cmp.Or(r.transport, "default"), r.opened.Round(time.Millisecond))
	for _, side := range []struct {
		name string
		s    [3]runtimeStats
	}{{"gateway", r.gw}, {"agent", r.ag}} {
		fmt.Printf("  %-7s empty, fresh", side.name)
		if r.exchanged {
			fmt.Print(", after an exchange")
		}
		fmt.Print(":")
		for k, s := range side.s {
			if k == 2 && !r.exchanged {
				break
			}
			fmt.Printf("  goroutines %d, heap %.1f MiB, stacks %.1f MiB, RSS %.1f MiB;", s.Goroutines, mib(s.HeapInuse), mib(s.StackInuse), mib(s.RSS))
		}
		fmt.Println()
	}
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
