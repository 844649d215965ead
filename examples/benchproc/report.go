package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

// spread is a value over all rounds with the lowest and highest value of
// a single round.
type spread struct{ all, lo, hi float64 }

func (s spread) format(unit string, prec int) string {
	return fmt.Sprintf("%.*f%s (%.*f-%.*f)", prec, s.all, unit, prec, s.lo, prec, s.hi)
}

// spreadOf returns total(all rounds) and the range of perRound.
func spreadOf(all float64, perRound []float64) spread {
	return spread{all: all, lo: slices.Min(perRound), hi: slices.Max(perRound)}
}

// cpuUnit says how a scenario counts CPU: per 10,000 requests, or per GB
// of body for bulk.
func cpuUnit(sc scenario) (name string, units func(requests int) float64) {
	if sc.name == "bulk" {
		return "CPU-s per GB", func(n int) float64 { return float64(n) * float64(sc.body) / 1e9 }
	}
	return "CPU-s per 10,000 requests", func(n int) float64 { return float64(n) / 10000 }
}

// report prints one scenario's results: a line per target, the tunnels'
// ratios to direct (targets[0]) with the spread of the rounds, and the CPU
// of each process per unit of work.
func report(w io.Writer, sc scenario, targets []target, rounds [][]round) {
	unitName, units := cpuUnit(sc)
	fmt.Fprintf(w, "%s: %d connections, GET of a %d-byte body; CPU columns in %s, with the range of the rounds\n", sc.name, sc.conc, sc.body, unitName)
	fmt.Fprintf(w, "%-16s %9s %9s %9s %9s  %-22s %-20s %-20s %-20s %-20s", "target", "req/s", "p50", "p99", "MB/s", "ratio to direct", "gateway", "agent", "gateway+agent", "origin")
	if sc.conc == 1 {
		fmt.Fprintf(w, "  %s", "added p50 (ms)")
	}
	fmt.Fprintln(w)
	directRPS := perRound(rounds[0], func(r round) float64 { return r.load.rps() })
	directP50 := perRound(rounds[0], func(r round) float64 { return ms(r.load.p50) })
	var directTotal float64
	for i, t := range targets {
		rs := rounds[i]
		var req int
		var el time.Duration
		var gw, ag, or time.Duration
		for _, r := range rs {
			req += r.load.requests
			el += r.load.elapsed
			gw += r.gateway
			ag += r.agent
			or += r.origin
		}
		rps := float64(req) / el.Seconds()
		p50 := median(perRound(rs, func(r round) float64 { return ms(r.load.p50) }))
		p99 := median(perRound(rs, func(r round) float64 { return ms(r.load.p99) }))
		mbps := rps * float64(sc.body) / 1e6
		cpuCol := func(total time.Duration, of func(round) time.Duration) string {
			return spreadOf(total.Seconds()/units(req), perRound(rs, func(r round) float64 {
				return of(r).Seconds() / units(r.load.requests)
			})).format("", 3)
		}
		ratio, gwc, agc, both := "-", "-", "-", "-"
		if t.agent == nil {
			directTotal = rps
		} else {
			ratios := make([]float64, len(rs))
			for j, r := range rs {
				ratios[j] = 100 * r.load.rps() / directRPS[j]
			}
			ratio = spreadOf(100*rps/directTotal, ratios).format("%", 1)
			gwc = cpuCol(gw, func(r round) time.Duration { return r.gateway })
			agc = cpuCol(ag, func(r round) time.Duration { return r.agent })
			both = cpuCol(gw+ag, func(r round) time.Duration { return r.gateway + r.agent })
		}
		orc := cpuCol(or, func(r round) time.Duration { return r.origin })
		fmt.Fprintf(w, "%-16s %9.0f %8.3fms %8.3fms %9.1f  %-22s %-20s %-20s %-20s %-20s", t.name, rps, p50, p99, mbps, ratio, gwc, agc, both, orc)
		if sc.conc == 1 && t.agent != nil {
			added := make([]float64, len(rs))
			for j, r := range rs {
				added[j] = ms(r.load.p50) - directP50[j]
			}
			fmt.Fprintf(w, "  %s", spread{all: median(added), lo: slices.Min(added), hi: slices.Max(added)}.format("", 3))
		}
		fmt.Fprintln(w)
	}
	if sc.conc == 1 {
		fmt.Fprintln(w, "(added p50: the median of the rounds' tunnel p50 minus direct p50 of the same round)")
	}
	fmt.Fprintln(w)
}

func perRound(rs []round, f func(round) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
