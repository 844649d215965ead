package h1relay

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"testing"
)

// BenchmarkExchange measures the relay's cost per exchange on one kept
// connection over loopback TCP, against an upstream that answers from
// memory: a GET with a small answer, a POST whose small body came with
// its head, and a GET whose 64 KiB answer is copied in pieces.
func BenchmarkExchange(b *testing.B) {
	for _, bc := range []struct {
		name, request string
		body          int
	}{
		{"get", "GET /small HTTP/1.1\r\nHost: x\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n", 13},
		{"post", "POST /small HTTP/1.1\r\nHost: x\r\nContent-Length: 13\r\n\r\nhello, world!", 13},
		{"get-64k", "GET /large HTTP/1.1\r\nHost: x\r\n\r\n", 64 << 10},
	} {
		b.Run(bc.name, func(b *testing.B) {
			answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(bc.body) + "\r\n\r\n")
			answer = append(answer, bytes.Repeat([]byte("x"), bc.body)...)
			r, done := benchRelay(b, answer)
			defer done()
			c, sc := tcpPair(b)
			go r.Serve(sc, nil)
			defer c.Close()
			br := bufio.NewReaderSize(c, 64<<10)
			resp := make([]byte, len(answer))
			req := []byte(bc.request)
			b.SetBytes(int64(len(req) + len(answer)))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(br, resp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchRelay returns a Relay to an upstream that reads each request's
// head (and a POST's 13-byte body) and writes answer, allocating nothing,
// so that the benchmark's allocations are the relay's and the sockets'.
func benchRelay(b *testing.B, answer []byte) (*Relay, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					// The head, line by line, without allocating.
					post := false
					for first := true; ; first = false {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if first {
							post = bytes.HasPrefix(line, []byte("POST"))
						}
						if len(line) <= 2 {
							break
						}
					}
					if post {
						br.Discard(13)
					}
					if _, err := c.Write(answer); err != nil {
						return
					}
				}
			}()
		}
	}()
	addr := ln.Addr().String()
	r := &Relay{Buffers: &testBuffers{}, Dial: func(ctx context.Context) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}}
	return r, func() { ln.Close(); r.Close() }
}

func tcpPair(b *testing.B) (net.Conn, net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	return c, sc
}
