package tunnel

import (
	"context"
	"testing"
	"time"
)

// A request that finds a record whose session is still being admitted (the
// moment between the record's Put and the session's registration) waits
// for it instead of answering 502.
func TestAwaitSessionWaitsForAdmission(t *testing.T) {
	s := &Server{}
	s.init()
	admitted := s.admitting("conn-1")
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
