package websocket

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// discardRWC is a peer that takes every write and is never read from.
type discardRWC struct{}

func (discardRWC) Read([]byte) (int, error)    { return 0, io.EOF }
func (discardRWC) Write(p []byte) (int, error) { return len(p), nil }
func (discardRWC) Close() error                { return nil }

// replayReader returns data over and over: a peer that sends the same
// frames for ever.
type replayReader struct {
	data []byte
	off  int
}

func (r *replayReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// benchSizes are a yamux window update alone, a typical data frame, and a
// frame of a whole default window.
var benchSizes = []struct {
	name string
	n    int
}{{"12B", 12}, {"16KiB", 16 << 10}, {"256KiB", 256 << 10}}

// BenchmarkWriteParts measures the data path a yamux session drives: a
// 12-byte header and a body in one frame. The client masks while copying;
// the server joins small frames, and with TCP sends large ones vectored.
func BenchmarkWriteParts(b *testing.B) {
	hdr := make([]byte, 12)
	for _, role := range []string{"client", "server", "server-tcp"} {
		for _, sz := range benchSizes {
			b.Run(role+"/"+sz.name, func(b *testing.B) {
				var c *Conn
				switch role {
				case "client":
					c = newConn(discardRWC{}, discardRWC{}, "", false)
				case "server":
					c = newConn(discardRWC{}, discardRWC{}, "", true)
				case "server-tcp":
					conn := tcpSink(b)
					c = newConn(conn, conn, "", true)
				}
				body := make([]byte, sz.n-min(sz.n, len(hdr)))
				parts := [][]byte{hdr, body}
				s := c.NetConn().(*Stream)
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					if err := s.WriteParts(parts); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// tcpSink returns a loopback TCP connection whose peer discards all it
// reads.
func tcpSink(b *testing.B) *net.TCPConn {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		peer, err := ln.Accept()
		if err != nil {
			return
		}
		io.Copy(io.Discard, peer)
		peer.Close()
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(); <-done })
	return conn.(*net.TCPConn)
}

// framesOf returns count frames of n payload bytes with opcode op, masked
// if toServer: text with a three-byte rune every ten bytes.
func framesOf(op byte, n, count int, toServer bool) []byte {
	return framesOfText(op, "tunnel€ ", n, count, toServer)
}

// framesOfText is framesOf with the payload repeating unit.
func framesOfText(op byte, unit string, n, count int, toServer bool) []byte {
	var out []byte
	payload := bytes.Repeat([]byte(unit), n/len(unit)+1)[:n]
	for range count {
		out = appendHeader(out, op, true, n, toServer)
		if toServer {
			key := uint32(0x1a2b3c4d)
			out = binary.LittleEndian.AppendUint32(out, key)
			start := len(out)
			out = append(out, payload...)
			maskCopy(out[start:], out[start:], key)
		} else {
			out = append(out, payload...)
		}
	}
	return out
}

// BenchmarkStreamRead measures the read side of the data path: binary
// frames through Stream.Read, unmasked in place by the server.
func BenchmarkStreamRead(b *testing.B) {
	for _, server := range []bool{false, true} {
		role := map[bool]string{false: "client", true: "server"}[server]
		for _, sz := range benchSizes[1:] {
			b.Run(role+"/"+sz.name, func(b *testing.B) {
				r := &replayReader{data: framesOf(OpBinary, sz.n, 4, server)}
				c := newConn(discardRWC{}, r, "", server)
				s := c.NetConn()
				buf := make([]byte, 32<<10)
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					for n := 0; n < sz.n; {
						m, err := s.Read(buf)
						if err != nil {
							b.Fatal(err)
						}
						n += m
					}
				}
			})
		}
	}
}

// BenchmarkReadMessage measures whole messages, binary and text, as the
// JSON mode and the handshake read them: text costs its UTF-8 check, which
// is quickest on ASCII such as JSON.
func BenchmarkReadMessage(b *testing.B) {
	for _, kind := range []struct {
		name string
		op   byte
		unit string
	}{
		{"binary", OpBinary, "tunnel€ "},
		{"text", OpText, "tunnel€ "},
		{"json", OpText, `{"type":"request","id":"a1b2c3","path":"/v1/items?page=2"},`},
	} {
		for _, sz := range benchSizes[1:] {
			b.Run(kind.name+"/"+sz.name, func(b *testing.B) {
				r := &replayReader{data: framesOfText(kind.op, kind.unit, sz.n, 4, true)}
				c := newConn(discardRWC{}, r, "", true)
				b.SetBytes(int64(sz.n))
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := c.ReadMessage(1 << 20); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
