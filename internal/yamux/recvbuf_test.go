package yamux

import (
	"bytes"
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
