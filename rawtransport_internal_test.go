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

// writeRecorder is a connection that is not TCP (as TLS is not), which
// keeps each write.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(p []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), p...))
	return len(p), nil
}

// On a connection that is not TCP, WriteParts joins small parts into
// writes of at most a TLS record and writes a large part as it is: the
// bytes arrive in order, a header and a small body in one write, and
// nothing is allocated per call.
func TestRawLinkWritePartsOffTCP(t *testing.T) {
	rec := &writeRecorder{}
	link := newRawLink(rec, nil, nil)
	hdr, small, large := []byte("0123456789ab"), make([]byte, 100), make([]byte, 40<<10)
	for i := range large {
		large[i] = byte(i)
	}
	parts := [][]byte{hdr, small, hdr, large, hdr, small}
	if err := link.WriteParts(parts); err != nil {
		t.Fatal(err)
	}
	var want, got []byte
	for _, p := range parts {
		want = append(want, p...)
	}
	for _, w := range rec.writes {
		if len(w) > joinMax && len(w) != len(large) {
			t.Errorf("a joined write of %d bytes, over %d", len(w), joinMax)
		}
		got = append(got, w...)
	}
	if string(got) != string(want) {
		t.Fatal("the bytes written are not the parts in order")
	}
	if n := len(rec.writes); n != 3 {
		t.Errorf("%d writes, want 3: the small parts before the large one, the large one, the rest", n)
	}
	if a := testing.AllocsPerRun(100, func() {
		rec.writes = rec.writes[:0]
		link.WriteParts([][]byte{hdr, small})
	}); a >= 2 { // 1: the recorder's own copy of the write (and, under -race, a pooled buffer sync.Pool drops now and then)
		t.Errorf("%.2f allocations per WriteParts, want none of its own", a)
	}
}
