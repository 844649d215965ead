package h1relay

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// holdingUpstream is an upstream whose handler for /hold reports its
// request's arrival and then holds it until its context ends, which it
// reports too; other paths answer at once. closes receives as each
// upstream connection closes.
type holdingUpstream struct {
	arrived, ended chan struct{}
	closes         chan struct{}
	addr           string
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	t.Helper()
	u := &holdingUpstream{arrived: make(chan struct{}, 8), ended: make(chan struct{}, 8), closes: make(chan struct{}, 16)}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hold" {
			io.WriteString(w, "quick")
			return
		}
		u.arrived <- struct{}{}
		<-r.Context().Done()
		u.ended <- struct{}{}
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			u.closes <- struct{}{}
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	u.addr = srv.Listener.Addr().String()
	return u
}

// fakePeer is a PeerCloser whose peer's close the test makes happen.
type fakePeer struct {
	mu      sync.Mutex
	f       func()
	closed  bool
	notices int // NotifyPeerClose calls
}

func (p *fakePeer) NotifyPeerClose(f func()) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notices++
	if p.closed {
		return false
	}
	p.f = f
	return true
}

func (p *fakePeer) StopNotifyPeerClose() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	had := p.f != nil
	p.f = nil
	return had
}

// close is the peer closing: the callback runs, as yamux runs it, on
// another goroutine than Serve's.
func (p *fakePeer) close() {
	p.mu.Lock()
	p.closed = true
	f := p.f
	p.f = nil
	p.mu.Unlock()
	if f != nil {
		f()
	}
}

func (p *fakePeer) watching() (bool, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.f != nil, p.notices
}

// A peer that closes its connection while the upstream holds the request
// (a public client that left) ends the exchange at once: the upstream
// connection closes, so the upstream's handler sees its request's context
// end, and Serve returns, with Done told of no status.
func TestPeerCloseEndsExchange(t *testing.T) {
	t.Parallel()
	u := newHoldingUpstream(t)
	r := newRelay(t, u.addr)
	statuses := make(chan int, 4)
	r.Done = func(_, _ string, status int, _ time.Duration) { statuses <- status }
	p := &fakePeer{}
	c := serveConn(t, r, p)

	// An exchange that ends leaves nothing watching.
	c.roundTrip(t, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	if st := <-statuses; st != 200 {
		t.Fatalf("quick exchange: status %d", st)
	}
	if on, n := p.watching(); on || n != 1 {
		t.Fatalf("after an exchange: watching=%v after %d notices, want a notice taken back", on, n)
	}

	io.WriteString(c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, u.arrived, "the held request's arrival")
	p.close()
	waitClosed(t, u.ended, "the end of the upstream request's context")
	if err := c.wait(t); !errors.Is(err, errPeerGone) {
		t.Errorf("Serve: %v, want errPeerGone", err)
	}
	if st := <-statuses; st != 0 {
		t.Errorf("Done's status %d, want 0: nothing was sent", st)
	}
}

// A request that arrives on a connection its peer has closed already is
// not sent upstream.
func TestPeerClosedBeforeRequest(t *testing.T) {
	t.Parallel()
	dialed := make(chan struct{}, 1)
	r := newRelay(t, "127.0.0.1:1")
	dial := r.Dial
	r.Dial = func(ctx context.Context) (net.Conn, error) {
		dialed <- struct{}{}
		return dial(ctx)
	}
	p := &fakePeer{}
	p.close()
	c := serveConn(t, r, p)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if err := c.wait(t); !errors.Is(err, errPeerGone) {
		t.Errorf("Serve: %v, want errPeerGone", err)
	}
	if len(dialed) != 0 {
		t.Error("the upstream was dialed for a peer that had left")
	}
}

// Close ends the exchanges in progress, with their upstream connections,
// and the connections idle between requests, and closes the idle
// upstream connections; Serve then refuses connections with ErrClosed.
func TestClose(t *testing.T) {
	t.Parallel()
	u := newHoldingUpstream(t)
	r := newRelay(t, u.addr)
	ended := exchangesEnded(r)
	busy := serveConn(t, r, nil)
	io.WriteString(busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, u.arrived, "the held request's arrival")
	// A second upstream connection, idle in the pool once its exchange
	// has ended.
	idle := serveConn(t, r, nil)
	idle.roundTrip(t, "GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, ended, "the quick exchange's end")
	r.mu.Lock()
	if len(r.idle) != 1 {
		t.Errorf("%d idle upstream connections, want 1", len(r.idle))
	}
	r.mu.Unlock()

	r.Close()
	waitClosed(t, u.ended, "the end of the held request's context")
	for range 2 {
		waitClosed(t, u.closes, "the close of an upstream connection")
	}
	for _, c := range []*client{idle, busy} {
		c.wantEOF(t)
		c.wait(t)
	}
	r.mu.Lock()
	if len(r.idle) != 0 || len(r.active) != 0 {
		t.Errorf("after Close: %d idle, %d active", len(r.idle), len(r.active))
	}
	r.mu.Unlock()

	a, b := net.Pipe()
	defer a.Close()
	if err := r.Serve(b, nil); err != ErrClosed {
		t.Errorf("Serve after Close: %v, want ErrClosed", err)
	}
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("the refused connection: %v, want it closed", err)
	}
	r.Close() // again: nothing left to do
}

// A peer that closes while the relay is still dialing the upstream (a
// local service slow to accept) ends the dial at once: its goroutine does
// not wait out the dial's timeout, and nothing is answered or failed.
func TestPeerCloseEndsDial(t *testing.T) {
	t.Parallel()
	r := newRelay(t, "127.0.0.1:1")
	dialing := make(chan struct{})
	r.Dial = func(ctx context.Context) (net.Conn, error) {
		close(dialing)
		<-ctx.Done() // a dial that would hang until its timeout
		return nil, ctx.Err()
	}
	failed := make(chan error, 1)
	r.Fail = func(w http.ResponseWriter, _ *http.Request, err error) { failed <- err }
	statuses := make(chan int, 1)
	r.Done = func(_, _ string, status int, _ time.Duration) { statuses <- status }
	p := &fakePeer{}
	c := serveConn(t, r, p)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	waitClosed(t, dialing, "the dial")
	p.close()
	if err := c.wait(t); !errors.Is(err, errPeerGone) {
		t.Errorf("Serve: %v, want errPeerGone", err)
	}
	if st := <-statuses; st != 0 {
		t.Errorf("Done's status %d, want 0", st)
	}
	select {
	case err := <-failed:
		t.Errorf("Fail called for a peer that left: %v", err)
	default:
	}
}
