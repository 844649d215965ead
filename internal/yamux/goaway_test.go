package yamux

import (
	"io"
	"testing"
	"time"
)

// A normal GoAway from the peer closes RemoteGoAwayChan, and the session
// goes on for the streams it has.
func TestRemoteGoAwayChan(t *testing.T) {
	client, server := testClientServer(t)
	defer client.Close()
	defer server.Close()
	st, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	sst, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	defer sst.Close()
	select {
	case <-server.RemoteGoAwayChan():
		t.Fatal("closed before any GoAway")
	default:
	}
	if err := client.GoAway(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-server.RemoteGoAwayChan():
	case <-time.After(10 * time.Second):
		t.Fatal("RemoteGoAwayChan not closed after the peer's GoAway")
	}
	// The stream still carries data both ways.
	if _, err := sst.Write([]byte("y")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := io.ReadFull(st, buf); err != nil || buf[0] != 'y' {
		t.Fatalf("after GoAway: %q, %v", buf, err)
	}
	if _, err := server.OpenStream(); err != ErrRemoteGoAway {
		t.Errorf("OpenStream after the peer's GoAway: %v, want ErrRemoteGoAway", err)
	}
}

// IncomingStreams counts the streams the peer opened, and once a frame sent
// after them has been read, it counts all of them: what a peer's "no more
// streams" message relies on.
func TestIncomingStreamsCountsWhatArrivedBefore(t *testing.T) {
	client, server := testClientServer(t)
	// A control stream, opened by the server side, on which the client
	// says it is done opening streams.
	ctl, err := server.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.Write([]byte("?")); err != nil {
		t.Fatal(err)
	}
	cctl, err := client.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	if n := client.IncomingStreams(); n != 1 {
		t.Fatalf("IncomingStreams = %d after one stream; want 1", n)
	}
	const streams = 50
	for range streams {
		st, err := client.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
	}
	if _, err := cctl.Write([]byte("done")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(ctl, buf); err != nil {
		t.Fatal(err)
	}
	// Read after the streams were opened: every one is counted, though
	// none has been accepted yet.
	if n := server.IncomingStreams(); n != streams {
		t.Errorf("IncomingStreams = %d once the message sent after %d streams was read", n, streams)
	}
	for range streams {
		st, err := server.AcceptStream()
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
	}
	if n := server.IncomingStreams(); n != streams {
		t.Errorf("IncomingStreams = %d after accepting them; want %d still", n, streams)
	}
}
