package yamux

import "io"

// recvBuffer holds what a stream has received and no Read has taken. Its
// capacity never exceeds the stream's window (MaxStreamWindowSize): what
// it holds plus what the peer may still send is at most the window. It is
// a ring, so that data never moves once read in: upstream's bytes.Buffer
// grew after each frame read into it, to about twice the window, and
// moving the data to the front of a buffer held at the window would copy
// up to a window for every frame. Guarded by its stream's recvLock.
type recvBuffer struct {
	buf  []byte // the data is n bytes from buf[head], wrapping to buf[0]
	head int
	n    int
}

// Len is the number of bytes held.
func (b *recvBuffer) Len() int { return b.n }

// Read moves held bytes into p, and returns how many.
func (b *recvBuffer) Read(p []byte) int {
	m := 0
	for m < len(p) && b.n > 0 {
		c := copy(p[m:], b.buf[b.head:min(b.head+b.n, len(b.buf))])
		m += c
		b.n -= c
		if b.head += c; b.head == len(b.buf) || b.n == 0 {
			b.head = 0
		}
	}
	return m
}

// readFrom reads n bytes from r into the buffer, growing it to at most
// limit bytes, the window, which Len()+n does not exceed.
func (b *recvBuffer) readFrom(r io.Reader, n, limit int) (int, error) {
	if len(b.buf)-b.n < n {
		held := b.n
		grown := make([]byte, max(min(2*len(b.buf), limit), held+n))
		b.Read(grown[:held]) // empties b
		b.buf, b.head, b.n = grown, 0, held
	}
	got := 0
	for got < n {
		tail, end := b.head+b.n, len(b.buf)
		if tail >= len(b.buf) {
			tail -= len(b.buf)
		}
		if tail < b.head {
			end = b.head // the data wraps: the room is between its ends
		}
		m, err := io.ReadFull(r, b.buf[tail:min(end, tail+n-got)])
		b.n += m
		got += m
		if err != nil {
			return got, err
		}
	}
	return got, nil
}
