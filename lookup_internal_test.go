package tunnel

import (
	"context"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// A request that finds a record whose session is still being admitted (the
// moment between the record's Put and the session's registration) waits
// for it instead of answering 502.
func TestAwaitSessionWaitsForAdmission(t *testing.T) {
	s := &Server{}
	s.init()
	admitted := s.admitting("conn-1")

	// While the admission is pending, awaitSession waits: here until its
	// context ends, since no session comes.
	const wait = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	start := time.Now()
	if g := s.awaitSession(ctx, "conn-1"); g != nil {
		t.Fatalf("awaitSession before the session was added = %v", g)
	}
	cancel()
	if waited := time.Since(start); waited < wait {
		t.Fatalf("awaitSession returned after %v with the admission pending; want it to wait until its context ended (%v)", waited, wait)
	}

	got := make(chan *session, 1)
	go func() { got <- s.awaitSession(context.Background(), "conn-1") }()

	sess := &session{info: Tunnel{ID: "t", ConnectionID: "conn-1"}}
	s.mu.Lock()
	s.addSessionLocked(sess)
	s.mu.Unlock()
	admitted()
	select {
	case g := <-got:
		if g != sess {
			t.Fatalf("awaitSession = %v; want the admitted session", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("awaitSession did not return once the session was admitted")
	}

	// A connection nobody admits is not waited for; one whose admission
	// failed is waited for until it failed.
	if g := s.awaitSession(context.Background(), "conn-2"); g != nil {
		t.Errorf("awaitSession of an unknown connection = %v", g)
	}
	failed := s.admitting("conn-3")
	go failed()
	if g := s.awaitSession(context.Background(), "conn-3"); g != nil {
		t.Errorf("awaitSession of a failed admission = %v", g)
	}
}

// A pool member whose agent has been told it is connected, but whose
// session does not run yet, takes requests when no other member does: its
// agent may send one through the tunnel at once (the other member having
// just left), and openStream waits for the session. Members leaving, or
// whose start failed, take none.
func TestPoolMemberStartingTakesRequests(t *testing.T) {
	s := &Server{}
	s.init()
	member := func(conn string, state string) *session {
		sess := &session{rec: store.Record{TunnelID: "api", ConnectionID: conn, Pool: true}, info: Tunnel{ID: "api", ConnectionID: conn}, ready: make(chan struct{})}
		switch state {
		case "draining":
			close(sess.ready)
			sess.draining.Store(true)
		case "failed":
			close(sess.ready) // mux nil: its start failed
		}
		s.mu.Lock()
		s.addSessionLocked(sess)
		s.mu.Unlock()
		return sess
	}
	member("leaving", "draining")
	member("broken", "failed")
	starting := member("starting", "starting")
	if got := s.localMembers("api"); len(got) != 1 || got[0] != starting {
		t.Fatalf("localMembers = %d sessions; want the starting member alone", len(got))
	}
}
