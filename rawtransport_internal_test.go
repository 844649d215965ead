package tunnel

import (
	"net"
	"runtime"
	"testing"
	"time"
)

// A raw link's Close ends within its wait even while a write is stuck on
// a peer that stopped reading (a gateway's shutdown must not hang on such
// an agent), and the stuck write then fails.
func TestRawLinkCloseWithAStuckWrite(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close() // never read: the write below fills the buffers
	conn, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	link := newRawLink(conn, conn, conn)

	// 64 MiB cannot fit in the sockets' buffers on loopback.
	wrote := make(chan error, 1)
	go func() { wrote <- link.WriteParts([][]byte{make([]byte, 12), make([]byte, 64<<20)}) }()
	for link.wmu.TryLock() {
		link.wmu.Unlock()
		runtime.Gosched()
	}

	closed := make(chan error, 1)
	go func() { closed <- link.Close(1001, "going away", 200*time.Millisecond) }()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited on the stuck write")
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Error("the stuck write succeeded after Close")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stuck write did not end after Close")
	}
}
