package leakcheck

import (
	"strings"
	"testing"
	"time"
)

func TestFindSeesALeakAndItsEnd(t *testing.T) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		leakedFunctionForTheTest(stop)
	}()
	leaks := Find(50 * time.Millisecond)
	if len(leaks) != 1 || !strings.Contains(leaks[0], "leakedFunctionForTheTest") {
		t.Fatalf("Find = %q, want the one goroutine the test started", leaks)
	}
	close(stop)
	<-done
	if leaks := Find(5 * time.Second); len(leaks) != 0 {
		t.Fatalf("after it ended, Find = %q", leaks)
	}
}

// Parallel tests waiting for their turn, and the goroutine running this
// test, are not leaks.
func TestFindIgnoresTheTestingPackage(t *testing.T) {
	for range 3 {
		t.Run("sub", func(t *testing.T) { t.Parallel() })
	}
	if leaks := Find(time.Second); len(leaks) != 0 {
		t.Fatalf("Find = %q, want none", leaks)
	}
}

func leakedFunctionForTheTest(stop chan struct{}) { <-stop }

func TestFuncName(t *testing.T) {
	for in, want := range map[string]string{
		"testing.(*T).Run(0xc000102000, {0x5, 0x3}, 0x6)\n\t/usr/local/go/src/testing/testing.go:1\n": "testing.(*T).Run",
		"main.main()\n":                          "main.main",
		"net/http.(*persistConn).readLoop(0xc0)": "net/http.(*persistConn).readLoop",
	} {
		if got := funcName(in); got != want {
			t.Errorf("funcName(%q) = %q, want %q", in, got, want)
		}
	}
}
