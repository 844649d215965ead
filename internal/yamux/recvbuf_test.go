package yamux

import (
	"bytes"
	"errors"
	"io"
	"math/bits"
	"math/rand/v2"
	"testing"
)

// maskWith XORs p with key as RFC 6455 does, p[0] taking key's lowest
// byte, and returns the key for the byte after p.
func maskWith(dst, p []byte, key uint32) uint32 {
	for i := range p {
		dst[i] = p[i] ^ byte(key>>(8*(i&3)))
	}
	return bits.RotateLeft32(key, -8*(len(p)&3))
}

// TestRecvBufferUnmasksRunByRun fills a receive buffer with runs masked
// with different keys (and unmasked ones), read back in pieces of every
// size while more arrives, so that reads split runs at every key phase and
// the buffer both compacts and grows. What comes out must be the original.
func TestRecvBufferUnmasksRunByRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var b recvBuffer
	var out []byte
	in := data
	for len(in) > 0 || b.Len() > 0 {
		if len(in) > 0 && rng.IntN(3) > 0 {
			// One frame: masked with a fresh key (or not at all), and
			// handed over by reads of random sizes.
			frame := in[:minInt(len(in), 1+rng.IntN(40000))]
			in = in[len(frame):]
			key := rng.Uint32()
			if rng.IntN(4) == 0 {
				key = 0
			}
			rest := frame
			read := func(p []byte) (int, uint32, error) {
				n := minInt(len(p), minInt(len(rest), 1+rng.IntN(9000)))
				k := key
				key = maskWith(p, rest[:n], key)
				rest = rest[n:]
				return n, k, nil
			}
			if n, err := b.fill(read, len(frame)); n != len(frame) || err != nil {
				t.Fatalf("fill: %d of %d bytes, %v", n, len(frame), err)
			}
			continue
		}
		p := make([]byte, 1+rng.IntN(30000))
		n := b.Read(p, maskWith)
		out = append(out, p[:n]...)
	}
	if !bytes.Equal(out, data) {
		i := 0
		for i < len(out) && out[i] == data[i] {
			i++
		}
		t.Fatalf("read %d bytes, first difference at %d", len(out), i)
	}
	if len(b.runs) != 0 || b.r != 0 || b.w != 0 {
		t.Fatalf("an empty buffer keeps %d runs, r %d, w %d", len(b.runs), b.r, b.w)
	}
}

// TestRecvBufferKeepsWhatArrivedBeforeAnError: a connection that ends in
// the middle of a payload leaves what it delivered readable, and fill
// reports how much that was and an unexpected EOF.
func TestRecvBufferKeepsWhatArrivedBeforeAnError(t *testing.T) {
	var b recvBuffer
	calls := 0
	read := func(p []byte) (int, uint32, error) {
		calls++
		if calls == 1 {
			return copy(p, "hello"), 0, nil
		}
		return copy(p, " world"), 0, io.EOF
	}
	n, err := b.fill(read, 100)
	if n != 11 || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("fill = %d, %v; want 11, unexpected EOF", n, err)
	}
	p := make([]byte, 100)
	if got := p[:b.Read(p, maskWith)]; string(got) != "hello world" {
		t.Fatalf("read %q", got)
	}
	b.release()
	if b.buf != nil {
		t.Fatal("release kept the memory of an empty buffer")
	}
}

// minInt is the built-in min for ints, which this package's min (uint32)
// hides.
func minInt(a, b int) int {
	if a < b {
		return a
	}
	return b
}
