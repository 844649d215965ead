package tunnel

import (
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
)

// clientIP returns the address of the client that sent r: the TCP peer,
// or with TrustProxy the last address the proxy appended to
// X-Forwarded-For.
func (s *Server) clientIP(r *http.Request) string {
	if s.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := strings.TrimSpace(last); ip != "" {
				return ip
			}
		}
	}
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return ip
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
