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
