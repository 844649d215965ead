// Package leakcheck fails a test binary whose tests leave goroutines
// running: a goroutine still alive after every test has returned is a
// leak, or a resource a test forgot to close.
//
// It does what go.uber.org/goleak's VerifyTestMain does, with the standard
// library alone: the root module's tests may import nothing that a program
// importing the library would then find in its own module graph.
package leakcheck

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
)

// settle bounds how long Main waits for goroutines that are ending when
// the tests return (a connection's reader seeing its close, a timer's
// callback): they get this long to finish before they count as leaks.
const settle = 5 * time.Second

// Main runs the tests and, if they passed, fails the binary when
// goroutines they started are still running once settled. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { leakcheck.Main(m) }
func Main(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if leaks := Find(settle); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "leakcheck: %d goroutines outlived the tests:\n\n%s\n", len(leaks), strings.Join(leaks, "\n\n"))
			code = 1
		}
	}
	os.Exit(code)
}

// Find returns the stacks of the goroutines other than the caller's and
// the runtime's and testing package's own, waiting up to wait for them to
// end. It returns nil once there are none.
func Find(wait time.Duration) []string {
	deadline := time.Now().Add(wait)
	delay := time.Millisecond
	for {
		leaks := others()
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(delay)
		delay = min(2*delay, 100*time.Millisecond)
	}
}

// others returns the stacks of the goroutines that are neither the
// caller's nor expected.
func others() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// The first goroutine in the dump is the caller's.
	var out []string
	for i, g := range strings.Split(strings.TrimSpace(string(buf)), "\n\n") {
		if i == 0 || expected(g) {
			continue
		}
		out = append(out, g)
	}
	return out
}

// expected reports goroutines that the testing package, the runtime and
// os/signal run on their own (the same set goleak ignores by default).
func expected(g string) bool {
	header, rest, _ := strings.Cut(g, "\n")
	state := ""
	if i, j := strings.IndexByte(header, '['), strings.IndexByte(header, ']'); i >= 0 && j > i {
		state = header[i+1 : j]
	}
	first := funcName(rest)
	switch first {
	case "testing.RunTests", "testing.(*T).Run", "testing.(*T).Parallel", "testing.runFuzzing", "testing.runFuzzTests":
		// Waiting for the tests they run, or parallel tests waiting for
		// their turn.
		return strings.HasPrefix(state, "chan receive")
	case "os/signal.signal_recv", "os/signal.loop":
		return true
	}
	if strings.Contains(rest, "\nruntime.ensureSigM(") || strings.HasPrefix(rest, "runtime.ensureSigM(") {
		return true
	}
	// A goroutine of cgo's, in a system call.
	return strings.HasPrefix(state, "syscall") && strings.Contains(rest, "runtime.goexit")
}

// funcName returns the function named on the first line of a stack's
// frames: "pkg.(*T).Method" of "pkg.(*T).Method(0x1, ...)".
func funcName(frames string) string {
	line, _, _ := strings.Cut(frames, "\n")
	if i := strings.LastIndexByte(line, '('); i > 0 {
		line = line[:i]
	}
	return line
}
