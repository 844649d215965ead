package tunnel_test

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
)

// Heartbeats (one goroutine) and disconnects and reconnects (another) are
// both reported while the callback runs; WithEvents promises one event at a
// time. The callback keeps unsynchronised state, so that the race detector
// also catches two calls that do not overlap but are not ordered.
func TestEventsArriveOneAtATime(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, nil)
	d := &cuttableDialer{}
	var inside, overlaps atomic.Int32
	kinds := map[tunnel.EventKind]int{} // written by the callback only
	reconnected := make(chan struct{}, 16)
	ln := listen(t, gw, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(time.Millisecond, 5*time.Millisecond),
		tunnel.WithHeartbeat(time.Millisecond), tunnel.WithEvents(func(e tunnel.Event) {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			kinds[e.Kind]++
			if e.Kind == tunnel.EventConnected && e.Attempt > 0 {
				reconnected <- struct{}{}
			}
			inside.Add(-1)
		}))
	next(t, ev.Connected, "connect")
	for range 5 {
		d.Cut()
		select {
		case <-reconnected:
		case <-time.After(30 * time.Second):
			t.Fatal("no reconnect")
		}
	}
	ln.Close()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("the callback ran %d times while another call was running", n)
	}
}

// The callback may close its own Listener: delivery does not hold anything
// Close waits for.
func TestEventCallbackMayClose(t *testing.T) {
	t.Parallel()
	gw, ev := gateway(t, nil)
	d := &cuttableDialer{}
	var ln *tunnel.Listener
	ready := make(chan struct{})
	closed := make(chan error, 1)
	ln = listen(t, gw, tunnel.WithDialer(d.Dial), tunnel.WithBackoff(time.Millisecond, 5*time.Millisecond),
		tunnel.WithEvents(func(e tunnel.Event) {
			if e.Kind == tunnel.EventDisconnected {
				<-ready
				closed <- ln.Close()
			}
		}))
	close(ready)
	next(t, ev.Connected, "connect")
	d.Cut()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close from the callback: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close called from the event callback did not return")
	}
	select {
	case <-ln.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("listener not done after Close")
	}
}
