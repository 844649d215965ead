package tunnel_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// remoteAddrHandler answers with the request's RemoteAddr and the local
// address of its connection.
var remoteAddrHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Local-Addr", r.Context().Value(http.LocalAddrContextKey).(net.Addr).String())
	io.WriteString(w, r.RemoteAddr)
})

// getFrom fetches url with c and returns the body (the RemoteAddr the agent
// saw) and the local address of the TCP connection c used.
func getFrom(t *testing.T, c *http.Client, url string) (remote, local string, hdr http.Header) {
	t.Helper()
	var conn net.Conn
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		GotConn: func(i httptrace.GotConnInfo) { conn = i.Conn },
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	return string(b), conn.LocalAddr().String(), resp.Header
}

// RemoteAddr is the public client's address, parseable as net.Conn's
// contract says; LocalAddr stays the tunnel's. Keep-alive streams are never
// shared between two clients, so each client keeps seeing its own address.
func TestRemoteAddrIsThePublicClient(t *testing.T) {
	t.Parallel()
	eachTransport(t, testRemoteAddrIsThePublicClient)
}

func testRemoteAddrIsThePublicClient(t *testing.T, tr tunnel.Option) {
	gw, _ := gateway(t, nil)
	ln := listen(t, gw, tr)
	tunneltest.Serve(t, ln, remoteAddrHandler)
	a, b := newClient(t), newClient(t)
	for i := range 6 {
		c := a
		if i%2 == 1 {
			c = b
		}
		remote, local, hdr := getFrom(t, c, ln.URL()+"/who")
		if _, _, err := net.SplitHostPort(remote); err != nil {
			t.Fatalf("RemoteAddr %q does not parse: %v", remote, err)
		}
		if remote != local {
			t.Fatalf("request %d: RemoteAddr %q, want the client's address %q", i, remote, local)
		}
		if got := hdr.Get("X-Local-Addr"); got != ln.URL() {
			t.Errorf("LocalAddr %q, want the tunnel's address %q", got, ln.URL())
		}
	}
	if ln.Addr().String() != ln.URL() || ln.Addr().Network() != "tunnel" {
		t.Errorf("Listener.Addr = %s %q", ln.Addr().Network(), ln.Addr())
	}
}

// Behind a proxy the gateway trusts, the client is the last address the
// proxy appended to X-Forwarded-For, with port 0; a gateway that trusts no
// proxy ignores the header.
func TestRemoteAddrBehindATrustedProxy(t *testing.T) {
	t.Parallel()
	for _, trust := range []bool{true, false} {
		gw, _ := gateway(t, &tunnel.Server{Routing: tunnel.RoutePath, TrustProxy: trust})
		ln := listen(t, gw)
		tunneltest.Serve(t, ln, remoteAddrHandler)
		c := newClient(t)
		req, _ := http.NewRequest(http.MethodGet, ln.URL()+"/who", nil)
		req.Header.Set("X-Forwarded-For", "192.0.2.1, 2001:db8::7")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got := string(b)
		if trust && got != "[2001:db8::7]:0" {
			t.Errorf("trusted proxy: RemoteAddr %q, want [2001:db8::7]:0", got)
		}
		if host, _, _ := net.SplitHostPort(got); !trust && host != "127.0.0.1" {
			t.Errorf("untrusted header: RemoteAddr %q, want the peer 127.0.0.1", got)
		}
	}
}
