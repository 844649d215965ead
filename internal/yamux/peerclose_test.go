package yamux

import (
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// streamPair opens a stream from a client session and accepts it on the
// server's, over TCP.
func streamPair(t *testing.T) (client, server *Session, out, in *Stream) {
	t.Helper()
	c, s := testConnTCP(t)
	client, server = testClientServerConfig(t, c, s, testConf(), testConf())
	out, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := out.Write([]byte("x")); err != nil { // the SYN
		t.Fatal(err)
	}
	in, err = server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(in, make([]byte, 1)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { out.Close(); in.Close() })
	return client, server, out, in
}

// notice counts the calls of a NotifyPeerClose callback and signals the
// first.
type notice struct {
	calls atomic.Int32
	first chan struct{}
}

func newNotice() *notice { return &notice{first: make(chan struct{})} }

func (n *notice) f() {
	if n.calls.Add(1) == 1 {
		close(n.first)
	}
}

func (n *notice) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-n.first:
	case <-time.After(10 * time.Second):
		t.Fatalf("NotifyPeerClose's function not called when %s", what)
	}
}

// NotifyPeerClose calls its function, once, when the peer closes the
// stream or its session ends, without a read on the stream; not when the
// stream's own side closes it.
func TestNotifyPeerClose(t *testing.T) {
	t.Parallel()
	t.Run("peer closes", func(t *testing.T) {
		t.Parallel()
		_, _, out, in := streamPair(t)
		n := newNotice()
		if !in.NotifyPeerClose(n.f) {
			t.Fatal("NotifyPeerClose on an open stream reported it closed")
		}
		out.Close()
		n.wait(t, "the peer closed")
		in.Close()
		if in.StopNotifyPeerClose() {
			t.Error("the function was still set once called")
		}
		if got := n.calls.Load(); got != 1 {
			t.Errorf("called %d times, want once", got)
		}
	})
	t.Run("peer's session ends", func(t *testing.T) {
		t.Parallel()
		client, _, _, in := streamPair(t)
		n := newNotice()
		in.NotifyPeerClose(n.f)
		client.Close()
		n.wait(t, "the peer's session ended")
	})
	t.Run("own session ends", func(t *testing.T) {
		t.Parallel()
		_, server, _, in := streamPair(t)
		n := newNotice()
		in.NotifyPeerClose(n.f)
		server.Close()
		n.wait(t, "the stream's session ended")
	})
	t.Run("local close, then the peer's", func(t *testing.T) {
		t.Parallel()
		_, _, out, in := streamPair(t)
		n := newNotice()
		in.NotifyPeerClose(n.f)
		in.Close()
		// The peer sees the close; the notice has not fired.
		if _, err := io.ReadAll(out); err != nil {
			t.Fatal(err)
		}
		if n.calls.Load() != 0 {
			t.Fatal("called on the stream's own close")
		}
		out.Close()
		n.wait(t, "the peer closed after the local side")
	})
}

// A function taken back is not called; one set on a stream the peer has
// closed already is not kept, and NotifyPeerClose says so.
func TestStopNotifyPeerClose(t *testing.T) {
	t.Parallel()
	_, _, out, in := streamPair(t)
	n := newNotice()
	in.NotifyPeerClose(n.f)
	if !in.StopNotifyPeerClose() {
		t.Error("StopNotifyPeerClose reported no function set")
	}
	if in.StopNotifyPeerClose() {
		t.Error("a second StopNotifyPeerClose reported a function set")
	}
	out.Close()
	if _, err := io.ReadAll(in); err != nil { // the FIN has been processed
		t.Fatal(err)
	}
	if in.NotifyPeerClose(n.f) {
		t.Error("NotifyPeerClose on a stream the peer closed reported it open")
	}
	if in.StopNotifyPeerClose() {
		t.Error("the function was kept on a closed stream")
	}
	if got := n.calls.Load(); got != 0 {
		t.Errorf("called %d times, want never", got)
	}
}
