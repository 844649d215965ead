package tunnel

import (
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
)

// clientHeader carries the public client's address, as the first node
// determined it, on a request hopped to another node. The receiving node
// trusts it only with the node secret; it never reaches an agent.
const clientHeader = "X-Tunnel-Client"

// clientAddr returns the address of the public client that sent r: the TCP
// peer, or with TrustProxy the last address the proxy appended to
// X-Forwarded-For (port 0 unless the proxy wrote one). The zero AddrPort
// means it could not be determined.
func (s *Server) clientAddr(r *http.Request) netip.AddrPort {
	if s.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if a, ok := parseAddr(strings.TrimSpace(last)); ok {
				return a
			}
		}
	}
	a, _ := parseAddr(r.RemoteAddr)
	return a
}

// parseAddr parses "ip:port", "[ip]:port" or a bare IP (port 0), with an
// IPv4-mapped IPv6 address turned into IPv4.
func parseAddr(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip.Unmap(), 0), true
	}
	return netip.AddrPort{}, false
}

// clientIP returns the client's IP address for limiter keys: clientAddr's,
// or the raw RemoteAddr when that cannot be parsed.
func (s *Server) clientIP(r *http.Request) string {
	if a := s.clientAddr(r); a.IsValid() {
		return a.Addr().String()
	}
	return r.RemoteAddr
}

// ClientAddr returns the public client's address as the Server that is
// serving r determined it (the TCP peer; behind a trusted proxy, the last
// X-Forwarded-For address; on a request from another node, what that node
// determined), for a Relay that tells its agents. It reports false for a
// request the Server did not route, or whose client could not be
// determined.
func ClientAddr(r *http.Request) (netip.AddrPort, bool) {
	a := stateOf(r.Context()).client
	return a, a.IsValid()
}

// ownHeaders sets the headers of a request going to an agent, or from a
// node to another, that the gateway owns: what the client sent under these
// names never passes, and they are set after the hop-by-hop headers were
// removed (httputil.ReverseProxy removes them before Rewrite), so that a
// client cannot name them in Connection to strip the gateway's values.
//
//   - X-Forwarded-For, -Host, -Proto: setForwarded, or a trusted node's
//     (fromNode).
//   - X-Forwarded-Prefix: the stripped "/<id>" of path routing, after the
//     prefix a trusted proxy sent.
//   - X-Real-Ip, X-Forwarded-Port: a trusted proxy's (or node's), else none.
//   - X-Request-Id: the request's ID; traceparent and tracestate: the
//     forwarding span's, when one is recorded (injectTrace).
//   - Host: the client's; a request without one (HTTP/1.0) gets the
//     tunnel's public host instead of the transport's dial address.
//   - X-Tunnel-Client and X-Tunnel-Node-Secret: between nodes only.
func (s *Server) ownHeaders(pr *httputil.ProxyRequest, fromNode bool, tunnelHost string) {
	st := stateOf(pr.In.Context())
	in, out := pr.In.Header, pr.Out.Header
	trusted := fromNode || s.TrustProxy
	for _, h := range [...]string{"X-Forwarded-Prefix", "X-Real-Ip", "X-Forwarded-Port", clientHeader, nodeSecretHeader, hopExpectHeader} {
		out.Del(h)
	}
	if fromNode && in.Get(hopExpectHeader) != "" {
		// The sending node asked before sending the body (rewriteHop);
		// the client did not, and neither does this request.
		out.Del("Expect")
	}
	if fromNode {
		// The sending node set X-Forwarded-* for the client and proved
		// itself with the secret (checked in servePublic). Rewrite removed
		// them from the outbound request: restore them.
		for _, h := range [...]string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v, ok := in[h]; ok {
				out[h] = v
			}
		}
	} else {
		s.setForwarded(pr)
	}
	if trusted {
		for _, h := range [...]string{"X-Real-Ip", "X-Forwarded-Port"} {
			if v, ok := in[h]; ok {
				out[h] = v
			}
		}
	}
	prefix := st.prefix
	if s.TrustProxy && !fromNode {
		prefix = strings.TrimSuffix(in.Get("X-Forwarded-Prefix"), "/") + prefix
	}
	if prefix != "" {
		out.Set("X-Forwarded-Prefix", prefix)
	}
	if st.id != "" {
		out.Set(requestIDHeader, st.id)
	}
	passTrailers(pr)
	if pr.In.Host == "" {
		pr.Out.Host = tunnelHost
	} else {
		pr.Out.Host = pr.In.Host
	}
	injectTrace(pr)
}

// setForwarded sets X-Forwarded-For, -Host and -Proto on a request going
// to an agent or another node: from the client connection, or with
// TrustProxy extending what the proxy in front sent.
func (s *Server) setForwarded(pr *httputil.ProxyRequest) {
	if !s.TrustProxy {
		pr.SetXForwarded()
		return
	}
	// Rewrite removed the inbound X-Forwarded-*; the proxy's are trusted.
	if v := pr.In.Header["X-Forwarded-For"]; len(v) > 0 {
		pr.Out.Header["X-Forwarded-For"] = v
	}
	pr.SetXForwarded() // appends the proxy's own address to the chain
	for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
		if v := pr.In.Header.Get(h); v != "" {
			pr.Out.Header.Set(h, v)
		}
	}
}

// passTrailers makes a request's trailers reach the other side. The server
// fills in the inbound request's Trailer map when the body ends, but
// ReverseProxy hands the transport a clone of that map, taken before, so
// the trailers would go out empty: the outbound request shares the map
// instead, which the transport reads after the body.
func passTrailers(pr *httputil.ProxyRequest) {
	if len(pr.In.Trailer) > 0 {
		pr.Out.Trailer = pr.In.Trailer
	}
}
