package h1relay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http/httputil"
)

// copier moves message bodies from a buffered reader to a buffered
// writer. What is already buffered is copied into the writer, so that a
// small body leaves with its head in one write; the writer is flushed
// before every read that may wait, so that what arrived in pieces (server-
// sent events, a chunk at a time) leaves as it arrives.
type copier struct {
	dst  *bufio.Writer
	src  *bufio.Reader
	pool httputil.BufferPool // large reads go through these
	buf  []byte              // from pool, while a copy needs one
}

// release returns c's buffer to its pool.
func (c *copier) release() {
	if c.buf != nil {
		c.pool.Put(c.buf)
		c.buf = nil
	}
}

// fill makes the next read of c.src not wait when it can: if src holds no
// whole line, dst is flushed first, since what follows may be a while.
func (c *copier) fill() error {
	b, _ := c.src.Peek(c.src.Buffered())
	if bytes.IndexByte(b, '\n') < 0 {
		return c.dst.Flush()
	}
	return nil
}

// copyN copies n bytes.
func (c *copier) copyN(n int64) error {
	for n > 0 {
		if b := c.src.Buffered(); b > 0 {
			p, _ := c.src.Peek(int(min(int64(b), n)))
			if _, err := c.dst.Write(p); err != nil {
				return err
			}
			c.src.Discard(len(p))
			n -= int64(len(p))
			continue
		}
		if err := c.dst.Flush(); err != nil {
			return err
		}
		if c.buf == nil {
			c.buf = c.pool.Get()
		}
		// A read as large as the buffer bypasses src's own buffer.
		m, err := c.src.Read(c.buf[:min(int64(len(c.buf)), n)])
		if m > 0 {
			if _, werr := c.dst.Write(c.buf[:m]); werr != nil {
				return werr
			}
			n -= int64(m)
		}
		if err != nil && n > 0 {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// copyToEOF copies until src ends: a response whose end is its
// connection's.
func (c *copier) copyToEOF() error {
	for {
		err := c.copyN(1 << 62)
		if err == io.ErrUnexpectedEOF {
			return c.dst.Flush()
		}
		if err != nil {
			return err
		}
	}
}

// maxChunkLine bounds a chunk-size line and each trailer line.
const maxChunkLine = 4096

// maxTrailerBytes bounds a chunked body's trailer section.
const maxTrailerBytes = 64 << 10

// errBadChunk is chunked framing that cannot be parsed.
var errBadChunk = errors.New("h1relay: malformed chunked encoding")

// copyChunked copies a chunked body, framing and trailers as they are,
// reading the framing only to find the body's end.
func (c *copier) copyChunked() error {
	for {
		line, err := c.line(maxChunkLine)
		if err != nil {
			return err
		}
		size, err := chunkSize(line)
		if err != nil {
			return err
		}
		if _, err := c.dst.Write(line); err != nil {
			return err
		}
		if size == 0 {
			return c.copyTrailers()
		}
		if err := c.copyN(size); err != nil {
			return err
		}
		line, err = c.line(maxChunkLine)
		if err != nil {
			return err
		}
		if len(trimEOL(line)) != 0 {
			return errBadChunk
		}
		if _, err := c.dst.Write(line); err != nil {
			return err
		}
	}
}

// copyTrailers copies the trailer section and the blank line ending it.
func (c *copier) copyTrailers() error {
	total := 0
	for {
		line, err := c.line(maxChunkLine)
		if err != nil {
			return err
		}
		if total += len(line); total > maxTrailerBytes {
			return errBadChunk
		}
		if _, err := c.dst.Write(line); err != nil {
			return err
		}
		if len(trimEOL(line)) == 0 {
			return nil
		}
	}
}

// line reads a line of at most limit bytes, valid until the next read.
func (c *copier) line(limit int) ([]byte, error) {
	if err := c.fill(); err != nil {
		return nil, err
	}
	line, err := c.src.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull || len(line) > limit {
			return nil, errBadChunk
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) > limit {
		return nil, errBadChunk
	}
	return line, nil
}

// chunkSize parses a chunk-size line: hex digits, then optional
// extensions.
func chunkSize(line []byte) (int64, error) {
	b := trimEOL(line)
	if i := bytes.IndexByte(b, ';'); i >= 0 {
		b = b[:i]
	}
	b = bytes.TrimRight(b, " \t")
	if len(b) == 0 || len(b) > 15 {
		return 0, fmt.Errorf("%w: chunk size %q", errBadChunk, b)
	}
	var n int64
	for _, ch := range b {
		var d byte
		switch {
		case '0' <= ch && ch <= '9':
			d = ch - '0'
		case 'a' <= ch && ch <= 'f':
			d = ch - 'a' + 10
		case 'A' <= ch && ch <= 'F':
			d = ch - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: chunk size %q", errBadChunk, b)
		}
		n = n<<4 | int64(d)
	}
	return n, nil
}
