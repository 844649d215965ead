package yamux

import "io"

// recvBuffer holds what a stream has received and no Read has taken. Its
// capacity never exceeds the stream's window (MaxStreamWindowSize): what
// it holds plus what the peer may still send is at most the window, and it
// moves its data to the front rather than grow past that. Upstream's
// bytes.Buffer grew by doubling, after each frame read into it, to about
// twice the window. Guarded by its stream's recvLock.
type recvBuffer struct {
	buf []byte // the data is buf[off:]
	off int
}

// Len is the number of bytes held.
func (b *recvBuffer) Len() int { return len(b.buf) - b.off }

// Read moves held bytes into p, and returns how many.
func (b *recvBuffer) Read(p []byte) int {
	n := copy(p, b.buf[b.off:])
	b.off += n
	if b.off == len(b.buf) {
		b.buf, b.off = b.buf[:0], 0
	}
	return n
}

// readFrom reads n bytes from r into the buffer, growing it to at most
// limit bytes, the window, which Len()+n does not exceed.
func (b *recvBuffer) readFrom(r io.Reader, n, limit int) (int, error) {
	if cap(b.buf)-len(b.buf) < n {
		held := b.Len()
		if held+n <= cap(b.buf) {
			copy(b.buf, b.buf[b.off:])
		} else {
			grown := make([]byte, held, max(min(2*cap(b.buf), limit), held+n))
			copy(grown, b.buf[b.off:])
			b.buf = grown
		}
		b.buf, b.off = b.buf[:held], 0
	}
	m, err := io.ReadFull(r, b.buf[len(b.buf):len(b.buf)+n])
	b.buf = b.buf[:len(b.buf)+m]
	return m, err
}
