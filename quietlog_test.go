package tunnel_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// defaultLogMu serialises the tests that replace slog's default logger.
var defaultLogMu sync.Mutex

// A program that never asked the library for logs gets no INFO lines from
// it: not for a connect, a request, or a reconnect. Warnings still reach
// the program's default logger.
func TestLibraryIsQuietByDefault(t *testing.T) {
	defaultLogMu.Lock()
	defer defaultLogMu.Unlock()
	var buf bytes.Buffer
	var mu sync.Mutex
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })

	srv := &tunnel.Server{Routing: tunnel.RoutePath} // no Logger
	gw := tunneltest.NewGateway(t, srv)
	d := &cuttableDialer{}
	ln := gw.Listen(t, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(time.Millisecond, 5*time.Millisecond), tunnel.WithLogger(nil))
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	get(t, newClient(t), ln.URL()+"/")
	d.Cut() // a reconnect: the library logs a WARN for it
	deadline := time.Now().Add(30 * time.Second)
	for {
		status, _, _ := get(t, newClient(t), ln.URL()+"/")
		if status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("tunnel did not come back")
		}
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if line != "" && !strings.Contains(line, "level=WARN") && !strings.Contains(line, "level=ERROR") {
			t.Errorf("the library logged below WARN without being asked: %s", line)
		}
	}
	if !strings.Contains(out, "level=WARN") || !strings.Contains(out, "reconnecting") {
		t.Errorf("the warning about the lost connection did not reach the default logger:\n%s", out)
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
