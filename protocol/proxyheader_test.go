package protocol_test

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/http-tunnel/tunnel/protocol"
)

func TestProxyHeaderRoundTrip(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		addr netip.AddrPort
		line string
	}{
		{netip.MustParseAddrPort("203.0.113.7:51234"), "PROXY TCP4 203.0.113.7 0.0.0.0 51234 0\r\n"},
		{netip.MustParseAddrPort("[2001:db8::1]:443"), "PROXY TCP6 2001:db8::1 :: 443 0\r\n"},
		{netip.MustParseAddrPort("[::ffff:192.0.2.1]:80"), "PROXY TCP4 192.0.2.1 0.0.0.0 80 0\r\n"},
		{netip.MustParseAddrPort("198.51.100.2:0"), "PROXY TCP4 198.51.100.2 0.0.0.0 0 0\r\n"},
		{netip.AddrPort{}, "PROXY UNKNOWN\r\n"},
	} {
		got := string(protocol.AppendProxyHeader(nil, tt.addr))
		if got != tt.line {
			t.Errorf("AppendProxyHeader(%v) = %q, want %q", tt.addr, got, tt.line)
		}
		if len(got) > protocol.MaxProxyHeaderBytes {
			t.Errorf("%q is over MaxProxyHeaderBytes", got)
		}
		// The HTTP data behind the header is kept, whether it arrives in
		// the same read or byte by byte.
		for _, r := range []io.Reader{
			strings.NewReader(got + "GET / HTTP/1.1\r\n"),
			iotest.OneByteReader(strings.NewReader(got + "GET / HTTP/1.1\r\n")),
		} {
			addr, rest, err := protocol.ReadProxyHeader(r)
			if err != nil {
				t.Fatalf("ReadProxyHeader(%q): %v", got, err)
			}
			rest2, _ := io.ReadAll(r)
			if want := tt.addr; want.Addr().Is4In6() {
				tt.addr = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
			}
			if addr != tt.addr || string(rest)+string(rest2) != "GET / HTTP/1.1\r\n" {
				t.Errorf("ReadProxyHeader(%q) = %v, rest %q", got, addr, string(rest)+string(rest2))
			}
		}
	}
}

func TestProxyHeaderRefusals(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		"GET / HTTP/1.1\r\n",
		"PROXY TCP4 1.2.3.4 0.0.0.0 80\r\n",
		"PROXY TCP4 ::1 0.0.0.0 80 0\r\n",
		"PROXY TCP6 1.2.3.4 :: 80 0\r\n",
		"PROXY TCP4 1.2.3.4 0.0.0.0 70000 0\r\n",
		"PROXY TCP4 not-an-ip 0.0.0.0 80 0\r\n",
		"PROXY TCP4 1.2.3.4 0.0.0.0 80 0", // no CRLF, then EOF
		"PROXY " + strings.Repeat("x", 200) + "\r\n",
		"",
	} {
		_, _, err := protocol.ReadProxyHeader(bytes.NewReader([]byte(in)))
		if !errors.Is(err, protocol.ErrProxyHeader) {
			t.Errorf("ReadProxyHeader(%q) = %v, want ErrProxyHeader", in, err)
		}
	}
}

func FuzzReadProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 203.0.113.7 0.0.0.0 51234 0\r\nGET"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		addr, rest, err := protocol.ReadProxyHeader(bytes.NewReader(b))
		if err != nil {
			return
		}
		// What is accepted is a header whose round trip names the same
		// address, and nothing of the data is lost.
		line := protocol.AppendProxyHeader(nil, addr)
		if !bytes.HasSuffix(b, rest) || len(b)-len(rest) > protocol.MaxProxyHeaderBytes+256 {
			t.Fatalf("rest %q is not the tail of %q", rest, b)
		}
		back, _, err := protocol.ReadProxyHeader(bytes.NewReader(line))
		if err != nil || back != addr {
			t.Fatalf("round trip of %v: %v, %v", addr, back, err)
		}
	})
}
