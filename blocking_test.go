package tunnel_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

// A gateway that accepts TCP and never answers does not hold Listen for
// ever, even with a ctx without a deadline: the handshake timeout ends it.
func TestListenToASilentGatewayTimesOut(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan []net.Conn, 1)
	go func() {
		var held []net.Conn
		defer func() { accepted <- held }()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // accepted, never answered
		}
	}()
	t.Cleanup(func() {
		l.Close()
		for _, c := range <-accepted {
			c.Close()
		}
	})
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := tunnel.Listen(context.Background(), "http://"+l.Addr().String(),
			tunnel.WithLogger(quiet), tunnel.WithHandshakeTimeout(300*time.Millisecond))
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Listen to a silent gateway: %v, want a timeout", err)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("Listen returned after %v, want about the 300ms handshake timeout", d)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Listen to a gateway that never answers is still blocked")
	}
}
