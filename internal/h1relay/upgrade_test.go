package h1relay

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// upgradeEcho answers an upgrade with 101 and a greeting in the same
// write, and then echoes every byte.
func upgradeEcho(c net.Conn, br *bufio.Reader) {
	if _, err := readHeadRaw(br); err != nil {
		return
	}
	io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nwelcome")
	io.Copy(c, br)
}

// An upgrade turns the exchange into a copy both ways: bytes the client
// sends, with the head or after the 101, come back from the upstream's
// echo, a large run of them included; the client's close ends both
// connections.
func TestUpgrade(t *testing.T) {
	t.Parallel()
	r, up := newRawUpstream(t, false, upgradeEcho)
	c := serveConn(t, r, nil)
	// Bytes right behind the head wait in the relay's buffer for the 101.
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nearly")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	got := make([]byte, len("welcomeearly"))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "welcomeearly" {
		t.Fatalf("the greeting sent with the 101, then the echo of the bytes sent with the head: %q, %v", got, err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	go c.Write(big)
	got = make([]byte, len(big))
	if _, err := io.ReadFull(c.br, got); err != nil || !bytes.Equal(got, big) {
		t.Fatalf("echo of 1 MiB: %v", err)
	}
	c.Close()
	if err := c.wait(t); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("Serve: %v", err)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("%d upstream connections, want 1", n)
	}
}

// A 101 to a request that asked for no upgrade is not relayed, since the
// client could not follow the switch: Fail answers, the upstream
// connection closes, and the client's carries the next request.
func TestUnaskedSwitchingProtocols(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{}, 2)
	r, up := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
		readHeadRaw(br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		if _, err := br.ReadByte(); err != nil {
			closed <- struct{}{}
		}
	})
	f := &failures{}
	r.Fail = f.fail
	c := serveConn(t, r, nil)
	resp, body := c.roundTrip(t, "GET /plain HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp.StatusCode != 502 || body != "no answer to GET /plain" {
		t.Errorf("got %d %q, want Fail's answer", resp.StatusCode, body)
	}
	waitClosed(t, closed, "the upstream connection's close")
	if resp, _ := c.roundTrip(t, "GET /again HTTP/1.1\r\nHost: x\r\n\r\n"); resp.StatusCode != 502 {
		t.Errorf("next request: %d, want 502 again", resp.StatusCode)
	}
	if errs, _ := f.calls(); len(errs) != 2 || errs[0] == nil {
		t.Errorf("Fail's errors %v, want two", errs)
	}
	if n := up.accepted.Load(); n != 2 {
		t.Errorf("%d upstream connections, want one per request", n)
	}
}

// Close ends an upgraded connection at both ends; Done hears of the
// upgrade, status 101, once it has ended.
func TestCloseEndsUpgrade(t *testing.T) {
	t.Parallel()
	closed := make(chan struct{})
	r, _ := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
		upgradeEcho(c, br)
		close(closed) // the echo has seen the relay close
	})
	statuses := make(chan int, 1)
	r.Done = func(_, _ string, status int, _ time.Duration) { statuses <- status }
	c := serveConn(t, r, nil)
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "GET"})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	got := make([]byte, len("welcome"))
	io.ReadFull(c.br, got)
	if len(statuses) != 0 {
		t.Fatal("Done called while the upgraded connection runs")
	}
	r.Close()
	waitClosed(t, closed, "the upstream connection's close")
	c.wantEOF(t)
	c.wait(t)
	if st := <-statuses; st != http.StatusSwitchingProtocols {
		t.Errorf("Done's status %d, want 101", st)
	}
}

// An upgrade whose request has a body (an h2c upgrade may): the upstream
// reads the body, then switches, and the bytes after it are echoed.
func TestUpgradeWithBody(t *testing.T) {
	t.Parallel()
	headRead := make(chan struct{})
	r, _ := newRawUpstream(t, false, func(c net.Conn, br *bufio.Reader) {
		readHeadRaw(br)
		close(headRead)
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
		io.Copy(c, br)
	})
	c := serveConn(t, r, nil)
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nContent-Length: 5\r\n\r\n")
	<-headRead // the body is not sent with the head
	io.WriteString(c, "hello")
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v, %v", resp, err)
	}
	io.WriteString(c, "after the switch")
	got := make([]byte, len("after the switch"))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "after the switch" {
		t.Fatalf("echo: %q, %v", got, err)
	}
}
