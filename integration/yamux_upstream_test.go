package integration

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"

	upstream "github.com/hashicorp/yamux"

	"github.com/http-tunnel/tunnel/internal/yamux"
)

// The library's multiplexer is a copy of hashicorp/yamux with changes
// (internal/yamux/FORK.md) that keep its wire format: the copy runs
// against upstream in both roles. The test lives here so that the
// library's own module does not require upstream.
func TestYamuxCopyInteroperatesWithUpstream(t *testing.T) {
	t.Parallel()
	for _, copyIsClient := range []bool{true, false} {
		cc, sc := tcpPair(t)
		conf := yamux.DefaultConfig()
		conf.EnableKeepAlive = false
		conf.LogOutput = io.Discard
		up := upstream.DefaultConfig()
		up.LogOutput = io.Discard
		var open, accept func() (net.Conn, error)
		if copyIsClient {
			c, err := yamux.Client(cc, conf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := upstream.Server(sc, up)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			open, accept = c.Open, s.Accept
		} else {
			c, err := upstream.Client(cc, up)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			s, err := yamux.Server(sc, conf)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			open, accept = c.Open, s.Accept
		}
		data := make([]byte, 3<<20)
		for i := range data {
			data[i] = byte(i * 31)
		}
		// Eight streams each echo 3 MiB: frames, windows, half-closes.
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				s, err := accept()
				if err != nil {
					t.Error(err)
					return
				}
				defer s.Close()
				io.Copy(s, s)
			})
			wg.Go(func() {
				s, err := open()
				if err != nil {
					t.Error(err)
					return
				}
				// Close is a half-close in yamux: it sends FIN and reads go
				// on until the peer's FIN.
				go func() {
					s.Write(data)
					s.Close()
				}()
				got, err := io.ReadAll(s)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("copy is client %v: echoed %d bytes, %v", copyIsClient, len(got), err)
				}
			})
		}
		wg.Wait()
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c, s
}
