package backendtest

import (
	"fmt"
	"net"
	"testing"

	"github.com/http-tunnel/tunnel/internal/leakcheck"
)

func TestMain(m *testing.M) {
	leakcheck.Main(m)
}

// recorder is a testing.TB that records Skipf and Fatalf instead of
// stopping the goroutine, so that the helper's choice can be observed.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}

func (r *recorder) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}

func (r *recorder) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestAddr cannot run in parallel: it sets environment variables.
func TestAddr(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	open := ln.Addr().String()
	closed := closedAddr(t)

	tests := []struct {
		name     string
		env, ci  string
		fallback string
		want     string
		skipped  bool
		failed   bool
	}{
		{name: "FallbackUp", fallback: open, want: open},
		{name: "EnvOverridesFallback", env: open, fallback: closed, want: open},
		{name: "URL", env: "http://" + open, fallback: closed, want: "http://" + open},
		{name: "DownSkips", fallback: closed, skipped: true},
		{name: "DownSkipsWhenCINotTrue", fallback: closed, ci: "1", skipped: true},
		{name: "DownFailsInCI", fallback: closed, ci: "true", failed: true},
		{name: "URLDownFailsInCI", env: "http://" + closed, ci: "true", failed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("BACKENDTEST_ADDR", tt.env)
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			got := Addr(r, "BACKENDTEST_ADDR", tt.fallback)
			if got != tt.want || r.skipped != tt.skipped || r.failed != tt.failed {
				t.Errorf("Addr = %q (skipped %v, failed %v), want %q (skipped %v, failed %v); message %q",
					got, r.skipped, r.failed, tt.want, tt.skipped, tt.failed, r.msg)
			}
		})
	}
}
