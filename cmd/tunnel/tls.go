package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"

	"github.com/http-tunnel/tunnel/internal/agentcli"
	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/ratelimit"
)

// The gateway serves TLS itself with --tls-cert and --tls-key, or with
// certificates it gets over ACME (--acme): for its domain and, on demand,
// for the subdomain of each live tunnel. A plain-HTTP listener
// (--http-listen) answers ACME HTTP-01 challenges and redirects everything
// else to https.

// tlsOptions is the TLS part of the gateway's command line.
type tlsOptions struct {
	certFile, keyFile string

	acme          bool
	acmeCache     string
	acmeEmail     string
	acmeDirectory string
	acmeCA        string
	acmeRate      rateFlag

	httpListen string // "" for no plain-HTTP listener
	hsts       time.Duration
}

// defaultACMERate bounds new certificate orders: Let's Encrypt allows 50
// certificates per registered domain a week and 300 new orders per
// account every 3 hours.
var defaultACMERate = ratelimit.Limit{Events: 10, Period: time.Hour}

// register defines the TLS flags on fs.
func (o *tlsOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.certFile, "tls-cert", "", "PEM `file` of the certificate chain to serve HTTPS with on --listen (with --tls-key), such as a wildcard certificate for the domain and *.domain")
	fs.StringVar(&o.keyFile, "tls-key", "", "PEM `file` of the private key of --tls-cert")
	fs.BoolVar(&o.acme, "acme", false, "serve HTTPS on --listen with certificates from an ACME CA (Let's Encrypt by default): for --domain, and for each live tunnel's subdomain when it is first visited; needs --domain or --base-url")
	cache := "(none)"
	if dir, err := os.UserCacheDir(); err == nil {
		cache = filepath.Join(dir, "tunnel", "acme")
	}
	fs.StringVar(&o.acmeCache, "acme-cache", "", "`directory` keeping the ACME account key and certificates across restarts (default "+cache+")")
	fs.StringVar(&o.acmeEmail, "acme-email", "", "contact `address` for the ACME account, for the CA's expiry and problem notices")
	fs.StringVar(&o.acmeDirectory, "acme-directory", acme.LetsEncryptURL, "ACME directory `URL`, such as Let's Encrypt's staging directory or a private CA's")
	fs.StringVar(&o.acmeCA, "acme-ca", "", "PEM `file` of CA certificates that verify the ACME directory's own HTTPS, for a private ACME CA (default: the system's)")
	o.acmeRate.limit = defaultACMERate
	fs.Var(&o.acmeRate, "acme-rate", "new certificate orders allowed, as `N/unit` with unit s, m or h; a name over it gets no certificate until the rate allows")
	fs.StringVar(&o.httpListen, "http-listen", "", "`address` of a plain-HTTP listener that answers ACME HTTP-01 challenges and redirects every other request to https (default :80 with --acme, none with --tls-cert; \"\" for none)")
	fs.DurationVar(&o.hsts, "hsts", 0, "send Strict-Transport-Security with this max-age (such as 8760h) on HTTPS responses; 0 sends none")
}

// on reports whether the gateway serves TLS.
func (o *tlsOptions) on() bool { return o.certFile != "" || o.acme }

// check fills in defaults and reports flags that do not go together.
// domain is the gateway's domain ("" for none); set says which flags the
// command line gave.
func (o *tlsOptions) check(domain string, set map[string]bool) error {
	switch {
	case (o.certFile == "") != (o.keyFile == ""):
		return agentcli.Usagef("--tls-cert and --tls-key go together")
	case o.certFile != "" && o.acme:
		return agentcli.Usagef("give --tls-cert or --acme, not both")
	case !o.on() && (set["http-listen"] || set["hsts"]):
		return agentcli.Usagef("--http-listen and --hsts need --tls-cert or --acme")
	case o.hsts < 0:
		return agentcli.Usagef("--hsts must not be negative")
	}
	if !o.acme {
		for _, f := range []string{"acme-cache", "acme-email", "acme-directory", "acme-ca", "acme-rate"} {
			if set[f] {
				return agentcli.Usagef("--%s needs --acme", f)
			}
		}
		return nil
	}
	if !strings.Contains(domain, ".") {
		return agentcli.Usagef("--acme needs --domain or --base-url with a DNS name, such as tunnel.example.com")
	}
	if o.acmeRate.limit.Unlimited() {
		return agentcli.Usagef("--acme-rate must allow some orders, such as 10/h")
	}
	if !httpURL(o.acmeDirectory) {
		return agentcli.Usagef("--acme-directory %q: want an http or https URL", o.acmeDirectory)
	}
	if !set["http-listen"] {
		o.httpListen = ":80"
	}
	if o.acmeCache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return agentcli.Usagef("--acme needs --acme-cache: %v", err)
		}
		o.acmeCache = filepath.Join(dir, "tunnel", "acme")
	}
	return nil
}

// publicTLS is how the gateway serves TLS on its public listener.
type publicTLS struct {
	config *tls.Config
	// http serves the plain-HTTP listener: ACME challenges, then the
	// redirect to https.
	http http.Handler
	// close releases the ACME client's connections.
	close func()
}

// newPublicTLS loads the certificate of o, or sets up ACME for domain.
// exists reports whether a tunnel ID is live, for the ACME host policy;
// subdomains says whether tunnels get subdomains at all. httpsPort is the
// port the redirect sends clients to.
func newPublicTLS(o *tlsOptions, domain string, subdomains bool, exists func(context.Context, string) (bool, error), httpsPort string, log *slog.Logger) (*publicTLS, error) {
	redirect := redirectToHTTPS(httpsPort)
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-cert, --tls-key: %w", err)
		}
		return &publicTLS{
			config: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}},
			http:   redirect,
			close:  func() {},
		}, nil
	}

	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.acmeCA != "" {
		pem, err := os.ReadFile(o.acmeCA)
		if err != nil {
			return nil, fmt.Errorf("--acme-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--acme-ca: no PEM certificate in %s", o.acmeCA)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	if err := os.MkdirAll(o.acmeCache, 0o700); err != nil {
		return nil, fmt.Errorf("--acme-cache: %w", err)
	}
	policy := &hostPolicy{domain: domain, subdomains: subdomains, exists: exists}
	m := &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		Cache:      &orderBound{Cache: autocert.DirCache(o.acmeCache), domain: domain, orders: ratelimit.NewLocal(o.acmeRate.limit, nil), log: log},
		HostPolicy: policy.allow,
		Client:     &acme.Client{DirectoryURL: o.acmeDirectory, HTTPClient: &http.Client{Transport: tr}},
		Email:      o.acmeEmail,
	}
	cfg := m.TLSConfig()
	getCert := cfg.GetCertificate
	cfg.GetCertificate = func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		cert, err := getCert(hello)
		if err != nil {
			log.Debug("no certificate for a TLS client", slog.String("server_name", hello.ServerName), slog.Any("err", err))
		}
		return cert, err
	}
	return &publicTLS{config: cfg, http: m.HTTPHandler(redirect), close: tr.CloseIdleConnections}, nil
}

// hostPolicy admits the names the gateway gets certificates for: its
// domain, and the subdomains of live tunnels. Every other name a client
// asks for (a scan of random subdomains) is refused before any order.
type hostPolicy struct {
	domain     string
	subdomains bool
	exists     func(ctx context.Context, id string) (bool, error)
}

// errNotATunnel refuses a certificate for a name under the domain that
// names no live tunnel.
var errNotATunnel = errors.New("acme: no live tunnel has this name")

// allow is autocert's HostPolicy. The names it gets from the HTTP-01
// handler may carry the port of a Host header.
func (p *hostPolicy) allow(ctx context.Context, host string) error {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == p.domain {
		return nil
	}
	label, ok := strings.CutSuffix(host, "."+p.domain)
	if !ok || !p.subdomains || !claim.ValidID(label) {
		return fmt.Errorf("acme: %q is neither %s nor a tunnel under it", host, p.domain)
	}
	live, err := p.exists(ctx, label)
	if err != nil {
		return fmt.Errorf("acme: looking up tunnel %q: %w", label, err)
	}
	if !live {
		return errNotATunnel
	}
	return nil
}

// orderBound is the ACME certificate cache with a bound on new orders:
// autocert orders a certificate right after a cache miss for it (once the
// host policy has let the name through), so a miss over the rate is
// turned into an error, and no order is made. Misses for other keys (the
// account key, challenge tokens) pass.
type orderBound struct {
	autocert.Cache
	domain string
	orders ratelimit.Limiter
	log    *slog.Logger
}

func (c *orderBound) Get(ctx context.Context, key string) ([]byte, error) {
	data, err := c.Cache.Get(ctx, key)
	if !errors.Is(err, autocert.ErrCacheMiss) || !c.certKey(key) {
		return data, err
	}
	d, lerr := c.orders.Allow(ctx, "acme")
	if lerr == nil && !d.Allowed {
		c.log.Warn("ACME order refused: --acme-rate reached", slog.String("name", key), slog.Duration("retry_after", d.RetryAfter))
		return nil, fmt.Errorf("acme: new certificate orders over --acme-rate; retry in %v", d.RetryAfter.Round(time.Second))
	}
	return data, err
}

// certKey reports whether an autocert cache key names the certificate of
// a name the gateway serves: the name, or the name and "+rsa". Other keys
// have a suffix of their own ("<name>+token", "<token>+http-01") or are
// no name under the domain ("acme_account+key", "acme_account.key").
func (c *orderBound) certKey(key string) bool {
	name, suffix, found := strings.Cut(key, "+")
	if found && suffix != "rsa" {
		return false
	}
	return name == c.domain || strings.HasSuffix(name, "."+c.domain)
}

// redirectToHTTPS answers every request with a permanent redirect to the
// same host and request target over https, on httpsPort (left out when it
// is 443 or empty).
func redirectToHTTPS(httpsPort string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		if host == "" {
			http.Error(w, "missing Host header", http.StatusBadRequest)
			return
		}
		if httpsPort != "" && httpsPort != "443" {
			host = net.JoinHostPort(host, httpsPort)
		} else if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		http.Redirect(w, r, "https://"+host+r.URL.RequestURI(), http.StatusPermanentRedirect)
	})
}

// withHSTS sets Strict-Transport-Security on every response of h. A value
// the tunneled application sets comes after it, and browsers heed the
// first.
func withHSTS(h http.Handler, maxAge time.Duration) http.Handler {
	v := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Strict-Transport-Security", v)
		h.ServeHTTP(w, r)
	})
}
