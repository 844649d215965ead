package main

import (
	"bufio"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel/examples/benchkit"
)

// loadResult is what one round of load measured.
type loadResult struct {
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
	errors   int // non-2xx responses and failed requests
}

func (r loadResult) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

// loader sends GET url over conc keep-alive connections for d.
type loader func(url string, conc int, d time.Duration) (loadResult, error)

// wrkLoad runs wrk, with one thread per connection up to two (the
// machine's cores), and its latency distribution.
func wrkLoad(url string, conc int, d time.Duration) (loadResult, error) {
	threads := min(conc, 2)
	secs := max(1, int(d.Round(time.Second)/time.Second))
	out, err := exec.Command("wrk", "-t", strconv.Itoa(threads), "-c", strconv.Itoa(conc),
		"-d", fmt.Sprintf("%ds", secs), "--latency", url).CombinedOutput()
	if err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, out)
	}
	return parseWrk(string(out))
}

// parseWrk reads the summary of wrk 4 run with --latency.
func parseWrk(out string) (loadResult, error) {
	var r loadResult
	var haveRequests, have50, have99 bool
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "50%":
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			r.p50, have50 = d, true
		case len(f) == 2 && f[0] == "99%":
			d, err := parseWrkDuration(f[1])
			if err != nil {
				return r, err
			}
			r.p99, have99 = d, true
		case len(f) >= 4 && f[1] == "requests" && f[2] == "in":
			n, err := strconv.Atoi(f[0])
			if err != nil {
				return r, fmt.Errorf("wrk requests: %w", err)
			}
			d, err := parseWrkDuration(strings.TrimSuffix(f[3], ","))
			if err != nil {
				return r, err
			}
			r.requests, r.elapsed, haveRequests = n, d, true
		case len(f) == 5 && f[0] == "Non-2xx":
			n, err := strconv.Atoi(f[4])
			if err != nil {
				return r, fmt.Errorf("wrk non-2xx: %w", err)
			}
			r.errors += n
		case len(f) >= 2 && f[0] == "Socket" && f[1] == "errors:":
			// Socket errors: connect 0, read 0, write 0, timeout 0
			for i := 2; i+1 < len(f); i += 2 {
				n, err := strconv.Atoi(strings.TrimSuffix(f[i+1], ","))
				if err != nil {
					return r, fmt.Errorf("wrk socket errors: %w", err)
				}
				r.errors += n
			}
		}
	}
	if !haveRequests || !have50 || !have99 {
		return r, fmt.Errorf("unexpected wrk output (run with --latency?):\n%s", out)
	}
	if r.elapsed <= 0 {
		return r, errors.New("wrk reported no elapsed time")
	}
	return r, nil
}

// parseWrkDuration reads wrk's durations: 812.00us, 1.23ms, 2.00s, 1.00m.
func parseWrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk duration %q: %w", s, err)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk duration %q: unknown unit", s)
}

// goLoad is the load generator when wrk is not installed: conc workers,
// each with its own keep-alive connection, sending GET url back to back
// for d. It runs in the benchmark's own process.
func goLoad(url string, conc int, d time.Duration) (loadResult, error) {
	r := benchkit.Load(url, conc, d)
	res := loadResult{requests: r.Requests, errors: r.Errors, elapsed: r.Elapsed}
	lat := r.Latencies
	slices.Sort(lat)
	if len(lat) > 0 {
		res.p50 = lat[len(lat)*50/100]
		res.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	}
	return res, nil
}
