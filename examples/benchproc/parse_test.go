package main

import (
	"os"
	"testing"
	"time"
)

// wrkOutput is wrk 4.1.0's output of a run with --latency, with the
// error lines it adds when requests fail.
const wrkOutput = `Running 2s test @ http://127.0.0.1:40417/bench/small
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    12.89ms    9.62ms  59.40ms   72.19%
    Req/Sec     2.35k   315.76     3.00k    70.00%
  Latency Distribution
     50%   12.61ms
     75%   17.02ms
     90%   25.11ms
     99%  812.50us
  9331 requests in 2.00s, 1.39MB read
  Socket errors: connect 1, read 2, write 0, timeout 3
  Non-2xx or 3xx responses: 4
Requests/sec:   4665.22
Transfer/sec:    710.74KB
`

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(wrkOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := loadResult{requests: 9331, elapsed: 2 * time.Second, p50: 12610 * time.Microsecond, p99: 812500 * time.Nanosecond, errors: 10}
	if r != want {
		t.Errorf("parseWrk = %+v, want %+v", r, want)
	}
}

func TestParseWrkRefusesOutputWithoutLatency(t *testing.T) {
	if _, err := parseWrk("Running 2s test @ http://x\n  10 requests in 2.00s, 1KB read\n"); err == nil {
		t.Error("parseWrk accepted output without a latency distribution")
	}
}

func TestParseWrkDuration(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"73.00us": 73 * time.Microsecond,
		"1.50ms":  1500 * time.Microsecond,
		"2.00s":   2 * time.Second,
		"1.00m":   time.Minute,
	} {
		if d, err := parseWrkDuration(s); err != nil || d != want {
			t.Errorf("parseWrkDuration(%q) = %v, %v; want %v", s, d, err, want)
		}
	}
	if _, err := parseWrkDuration("3.00ns"); err == nil {
		t.Error("parseWrkDuration accepted an unknown unit")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with a space and a parenthesis, as /proc shows it.
	stat := "24913 (tun nel) x) S 24900 24900 24900 0 -1 4194560 1234 0 0 0 157 43 0 0 20 0 7 0 123456 1000000 2000 18446744073709551615"
	d, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * time.Second; d != want { // (157 + 43) ticks of 10 ms
		t.Errorf("parseStatCPU = %v, want %v", d, want)
	}
	if _, err := parseStatCPU("24913 (tunnel) S 1 2"); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
}

func TestParseRSS(t *testing.T) {
	n, err := parseRSS("Name:\ttunnel\nVmPeak:\t  900000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n")
	if err != nil {
		t.Fatal(err)
	}
	if n != 12345<<10 {
		t.Errorf("parseRSS = %d, want %d", n, 12345<<10)
	}
	if _, err := parseRSS("Name:\ttunnel\n"); err == nil {
		t.Error("parseRSS accepted a status without VmRSS")
	}
}

// TestCPUOfSelf checks the /proc reading against the running test
// process: it spins until its CPU time grows past one tick.
func TestCPUOfSelf(t *testing.T) {
	d0, err := cpuOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	x := 1
	for {
		for i := range 1 << 20 {
			x = x*31 + i
		}
		d, err := cpuOf(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if d > d0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cpuOf(self) stayed at %v through 10 s of spinning (%d)", d, x)
		}
	}
	if n, err := rss(os.Getpid()); err != nil || n <= 0 {
		t.Errorf("rss(self) = %d, %v", n, err)
	}
}
