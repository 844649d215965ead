package yamux

import "io"

// recvBuffer is a stream's receive buffer: the data the receive loop read
// for the stream and no Read has taken yet. It is a bytes.Buffer that also
// records, run by run, how its bytes are masked by the connection's framing
// (see maskedConn): Read unmasks them as it copies them out, so that they
// are not unmasked in a pass of their own first.
type recvBuffer struct {
	buf  []byte // the data is buf[r:w]
	r, w int
	runs []run // how buf[r:w] is masked, in order; runs[head:] are live
	head int
}

// run is n bytes masked with key (0: not masked); key unmasks the first.
type run struct {
	n   int
	key uint32
}

// payloadReader reads payload bytes into p, as they arrived, and returns
// the key that unmasks p[:n] (0 if they are not masked).
type payloadReader func(p []byte) (n int, key uint32, err error)

// unmasker copies src to dst unmasked with key and returns the key for the
// byte after src.
type unmasker func(dst, src []byte, key uint32) uint32

// Len returns the number of unread bytes.
func (b *recvBuffer) Len() int { return b.w - b.r }

// fill reads exactly n bytes with read. The bytes read before an error
// stay buffered, and their count is returned.
func (b *recvBuffer) fill(read payloadReader, n int) (int, error) {
	if b.head > 0 { // drop the runs already read
		b.runs = append(b.runs[:0], b.runs[b.head:]...)
		b.head = 0
	}
	b.grow(n)
	got := 0
	for got < n {
		m, key, err := read(b.buf[b.w : b.w+n-got])
		if m > 0 {
			if last := len(b.runs) - 1; last >= 0 && key == 0 && b.runs[last].key == 0 {
				b.runs[last].n += m
			} else {
				b.runs = append(b.runs, run{n: m, key: key})
			}
			b.w += m
			got += m
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return got, err
		}
	}
	return got, nil
}

// grow makes room for n more bytes after the unread data: it moves the
// data to the front of the buffer if that makes room, and moves it to a
// larger buffer otherwise.
func (b *recvBuffer) grow(n int) {
	if len(b.buf)-b.w >= n {
		return
	}
	buf := b.buf
	if b.Len()+n > len(buf) {
		buf = make([]byte, max(2*len(buf), b.Len()+n))
	}
	copy(buf, b.buf[b.r:b.w])
	b.buf, b.w, b.r = buf, b.Len(), 0
}

// Read copies unread data into p, unmasking masked runs with unmask, and
// returns the number of bytes copied.
func (b *recvBuffer) Read(p []byte, unmask unmasker) int {
	n := 0
	for n < len(p) && b.head < len(b.runs) {
		rn := &b.runs[b.head]
		k := rn.n
		if k > len(p)-n {
			k = len(p) - n
		}
		src := b.buf[b.r : b.r+k]
		if rn.key == 0 {
			copy(p[n:], src)
		} else {
			rn.key = unmask(p[n:], src, rn.key)
		}
		b.r += k
		rn.n -= k
		n += k
		if rn.n == 0 {
			b.head++
		}
	}
	if b.r == b.w {
		b.r, b.w = 0, 0
		b.runs, b.head = b.runs[:0], 0
	}
	return n
}

// release drops the buffer's memory if it holds no data.
func (b *recvBuffer) release() {
	if b.Len() == 0 {
		*b = recvBuffer{}
	}
}
