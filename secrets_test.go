package tunnel_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/logbuf"
)

// A token in the gateway URL's query shows up neither in Listen's error
// nor in the reconnect logs, however the connection fails.
func TestQueryTokenStaysOutOfErrorsAndLogs(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-in-the-query"
	// A port nothing listens on: dial errors name the URL.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logs := &logbuf.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = tunnel.Listen(ctx, "http://"+addr+"/?token="+secret, tunnel.WithLogger(logger))
	if err == nil {
		t.Fatal("Listen to a closed port succeeded")
	}
	if strings.Contains(err.Error(), secret) {
		t.Errorf("Listen's error shows the token: %v", err)
	}

	// Reconnects: a gateway whose dials fail leaves the agent retrying and
	// logging why. The second attempt starts after the first one's failure
	// was logged.
	gw, ev := gateway(t, nil)
	d := &cuttableDialer{}
	var refuse atomic.Bool
	second := make(chan struct{})
	var once sync.Once
	ln, err := tunnel.Listen(ctx, gw.URL+"/?token="+secret, tunnel.WithLogger(logger), tunnel.WithBackoff(time.Millisecond, 5*time.Millisecond),
		tunnel.WithDialer(func(ctx context.Context, network, a string) (net.Conn, error) {
			if refuse.Load() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: errRefused}
			}
			return d.Dial(ctx, network, a)
		}),
		tunnel.WithEvents(func(e tunnel.Event) {
			if e.Kind == tunnel.EventReconnecting && e.Attempt == 2 {
				once.Do(func() { close(second) })
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	next(t, ev.Connected, "connect")
	refuse.Store(true)
	d.Cut()
	select {
	case <-second:
	case <-time.After(30 * time.Second):
		t.Fatal("no second reconnect attempt")
	}
	if !strings.Contains(logs.String(), "reconnect failed") {
		t.Fatalf("no reconnect failure logged:\n%s", logs)
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("logs show the token:\n%s", logs)
	}
}

var errRefused = &net.AddrError{Err: "refused by the test", Addr: "gateway"}

// The subject of a static token is no unsalted hash of it: a weak token's
// subject cannot be found by hashing guesses. The same set of tokens names
// an agent alike on every node.
func TestStaticTokenSubjectsAreKeyed(t *testing.T) {
	t.Parallel()
	subject := func(a *tunnel.StaticTokens, tok string) string {
		req, _ := http.NewRequest(http.MethodGet, "http://gw/", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		id, err := a.Authenticate(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		return id.Subject
	}
	weak := "password"
	sum := sha256.Sum256([]byte(weak))
	got := subject(tunnel.NewStaticTokens(weak, "another-token"), weak)
	if !strings.HasPrefix(got, "token:") || len(got) != len("token:")+12 {
		t.Fatalf("subject %q, want token: and 12 hex digits", got)
	}
	if strings.Contains(got, hex.EncodeToString(sum[:6])) {
		t.Errorf("subject %q is the token's plain SHA-256 prefix", got)
	}
	if again := subject(tunnel.NewStaticTokens("another-token", weak), weak); again != got {
		t.Errorf("the same set in another order gives %q, want %q", again, got)
	}
	if other := subject(tunnel.NewStaticTokens(weak, "a-different-set"), weak); other == got {
		t.Errorf("another set gives the same subject %q", other)
	}
}
