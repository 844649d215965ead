package protocol

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strconv"
)

// MaxProxyHeaderBytes is the longest PROXY header, CRLF included (the
// HAProxy PROXY protocol's limit for version 1).
const MaxProxyHeaderBytes = 107

// ErrProxyHeader is wrapped by ReadProxyHeader for a stream that does not
// start with a valid header.
var ErrProxyHeader = errors.New("protocol: invalid PROXY header")

// AppendProxyHeader appends the header that starts every mux-mode HTTP
// stream from version 2 on: the HAProxy PROXY protocol's version 1 line,
// naming the public client's address as the source (spec.md, "HTTP
// streams"). The destination is not known to be useful to an agent and is
// written as the unspecified address, port 0. An invalid client address is
// written as "PROXY UNKNOWN".
func AppendProxyHeader(b []byte, client netip.AddrPort) []byte {
	ip := client.Addr().Unmap()
	switch {
	case ip.Is4():
		b = append(b, "PROXY TCP4 "...)
		b = ip.AppendTo(b)
		b = append(b, " 0.0.0.0 "...)
	case ip.Is6():
		b = append(b, "PROXY TCP6 "...)
		b = ip.WithZone("").AppendTo(b)
		b = append(b, " :: "...)
	default:
		return append(b, "PROXY UNKNOWN\r\n"...)
	}
	b = strconv.AppendUint(b, uint64(client.Port()), 10)
	return append(b, " 0\r\n"...)
}

// ReadProxyHeader reads the PROXY header at the start of r and returns the
// source address it names, the zero AddrPort for "PROXY UNKNOWN", and the
// bytes read past the header (which belong to the stream's HTTP data). It
// reads at most MaxProxyHeaderBytes before it gives up.
func ReadProxyHeader(r io.Reader) (netip.AddrPort, []byte, error) {
	buf := make([]byte, 0, 256)
	for {
		if i := bytes.Index(buf, []byte("\r\n")); i >= 0 && i+2 <= MaxProxyHeaderBytes {
			addr, err := parseProxyLine(buf[:i])
			return addr, buf[i+2:], err
		}
		if len(buf) >= MaxProxyHeaderBytes {
			return netip.AddrPort{}, nil, fmt.Errorf("%w: no CRLF in the first %d bytes", ErrProxyHeader, MaxProxyHeaderBytes)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil && !bytes.Contains(buf, []byte("\r\n")) {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return netip.AddrPort{}, nil, fmt.Errorf("%w: %w", ErrProxyHeader, err)
		}
	}
}

// parseProxyLine parses a PROXY version 1 line without its CRLF.
func parseProxyLine(line []byte) (netip.AddrPort, error) {
	f := bytes.Fields(line)
	if len(f) >= 2 && string(f[0]) == "PROXY" && string(f[1]) == "UNKNOWN" {
		return netip.AddrPort{}, nil
	}
	if len(f) != 6 || string(f[0]) != "PROXY" || (string(f[1]) != "TCP4" && string(f[1]) != "TCP6") {
		return netip.AddrPort{}, fmt.Errorf("%w: %q", ErrProxyHeader, line)
	}
	ip, err := netip.ParseAddr(string(f[2]))
	if err != nil || ip.Is4() != (string(f[1]) == "TCP4") {
		return netip.AddrPort{}, fmt.Errorf("%w: source address %q", ErrProxyHeader, f[2])
	}
	port, err := strconv.ParseUint(string(f[4]), 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: source port %q", ErrProxyHeader, f[4])
	}
	return netip.AddrPortFrom(ip, uint16(port)), nil
}
