package yamux

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestRecvBufferRing fills and drains a recvBuffer in pieces of random
// sizes, within a window, and checks that every byte comes out in order
// and that the buffer never grows past the window.
func TestRecvBufferRing(t *testing.T) {
	for _, window := range []int{1, 7, 4096, 256 << 10} {
		rng := rand.New(rand.NewPCG(uint64(window), 1))
		var (
			b        recvBuffer
			in, out  uint64 // bytes written and read, by position
			src, got []byte
		)
		for range 2000 {
			if room := window - b.Len(); room > 0 && rng.IntN(2) == 0 {
				n := 1 + rng.IntN(room)
				src = src[:0]
				for range n {
					src = append(src, byte(in*7+in>>9))
					in++
				}
				if m, err := b.readFrom(bytes.NewReader(src), n, window); m != n || err != nil {
					t.Fatalf("window %d: readFrom %d: %d, %v", window, n, m, err)
				}
			} else if b.Len() > 0 {
				got = make([]byte, 1+rng.IntN(b.Len()+3))
				m := b.Read(got)
				for _, c := range got[:m] {
					if c != byte(out*7+out>>9) {
						t.Fatalf("window %d: byte %d is %d, want %d", window, out, c, byte(out*7+out>>9))
					}
					out++
				}
			}
			if len(b.buf) > window {
				t.Fatalf("window %d: the buffer grew to %d bytes", window, len(b.buf))
			}
			if b.Len() != int(in-out) {
				t.Fatalf("window %d: Len %d, want %d", window, b.Len(), in-out)
			}
		}
	}
}

// TestPingShrinksEmptiedBuffers: a stream that received a body its reader
// was not waiting for holds it in a receive buffer; once the reader has
// emptied it, the next Ping drops the buffer (a pooled, idle stream would
// otherwise keep up to a window of memory until it closes), and a buffer
// still holding data is kept whole.
func TestPingShrinksEmptiedBuffers(t *testing.T) {
	client, server := testClientServer(t)
	cs, err := client.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 200<<10/16)
	if _, err := cs.Write(body); err != nil {
		t.Fatal(err)
	}
	ss, err := server.AcceptStream()
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	buffered := func() (held, capacity int) {
		ss.recvLock.Lock()
		defer ss.recvLock.Unlock()
		if ss.recvBuf == nil {
			return 0, 0
		}
		return ss.recvBuf.Len(), len(ss.recvBuf.buf)
	}
	waitUntil(t, "the body in the receive buffer", func() bool { held, _ := buffered(); return held == len(body) })

	// Still held: Ping keeps it.
	if _, err := server.Ping(); err != nil {
		t.Fatal(err)
	}
	if held, _ := buffered(); held != len(body) {
		t.Fatalf("after Ping the buffer holds %d bytes; want the whole body, %d", held, len(body))
	}
	got := make([]byte, len(body))
	if _, err := io.ReadFull(ss, got); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back %d bytes, %v; want the body", len(got), err)
	}
	if _, capacity := buffered(); capacity < len(body) {
		t.Fatalf("emptied buffer has capacity %d; want the %d it grew to", capacity, len(body))
	}
	if _, err := server.Ping(); err != nil {
		t.Fatal(err)
	}
	if held, capacity := buffered(); held != 0 || capacity != 0 {
		t.Fatalf("after Ping an emptied buffer has %d bytes held, capacity %d; want it dropped", held, capacity)
	}

	// The stream works on: the next body grows a new buffer.
	if _, err := cs.Write(body[:1000]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ss, got[:1000]); err != nil || !bytes.Equal(got[:1000], body[:1000]) {
		t.Fatalf("read after the shrink: %v", err)
	}
}
