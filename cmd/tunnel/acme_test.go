package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// The ACME test runs Let's Encrypt's test CA, Pebble, from its Go packages,
// in a child process of the test binary (TestMain runs runPebble when
// pebbleEnv is set): Pebble's validation authority keeps a goroutine for
// ever, which the leak check of this package would count. The child serves
// the ACME directory and Pebble's management interface over HTTPS, and a
// DNS server that resolves every name to 127.0.0.1, on loopback ports it
// picks. It validates HTTP-01 challenges on the port the test gives it
// (the gateway's --http-listen) and TLS-ALPN-01 on a closed port, so that
// every certificate is won through HTTP-01.

// pebbleEnv, set in the child's environment, makes TestMain run Pebble.
const pebbleEnv = "TUNNEL_TEST_PEBBLE_CHILD"

// pebbleAddrs is what the child prints on its first line of stdout.
type pebbleAddrs struct {
	Directory  string `json:"directory"`  // the ACME directory URL
	Management string `json:"management"` // the management interface's base URL
	ServerCA   string `json:"server_ca"`  // PEM of the certificate both serve HTTPS with
}

// runPebble is the child: it prints its addresses, reads the HTTP-01 port
// from stdin, serves until stdin closes, and returns the exit status.
func runPebble() int {
	logger := log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	fail := func(err error) int {
		logger.Print(err)
		return 1
	}
	serverCert, certPEM, err := selfSigned()
	if err != nil {
		return fail(err)
	}
	var lns [3]net.Listener
	for i := range lns {
		if lns[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return fail(err)
		}
	}
	acmeLn, mgmtLn, dnsLn := lns[0], lns[1], lns[2]
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fail(err)
	}
	tlsPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close() // TLS-ALPN-01 validation finds nobody there

	dnsServer := &dns.Server{Listener: dnsLn, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		for _, q := range r.Question {
			if q.Qtype == dns.TypeA {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(127, 0, 0, 1)})
			}
		}
		w.WriteMsg(m)
	})}
	go dnsServer.ActivateAndServe()

	out, _ := json.Marshal(pebbleAddrs{
		Directory:  "https://" + acmeLn.Addr().String() + wfe.DirectoryPath,
		Management: "https://" + mgmtLn.Addr().String(),
		ServerCA:   string(certPEM),
	})
	fmt.Printf("%s\n", out)

	in := bufio.NewReader(os.Stdin)
	line, err := in.ReadString('\n')
	if err != nil {
		return fail(fmt.Errorf("reading the HTTP-01 port: %w", err))
	}
	httpPort, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		return fail(err)
	}

	store := db.NewMemoryStore()
	authority := ca.New(logger, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {Description: "test"}})
	validator := va.New(logger, httpPort, tlsPort, false, dnsLn.Addr().String(), store)
	frontEnd := wfe.New(logger, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{serverCert}}
	go http.Serve(tls.NewListener(acmeLn, tlsConfig), frontEnd.Handler())
	go http.Serve(tls.NewListener(mgmtLn, tlsConfig), frontEnd.ManagementHandler())

	io.Copy(io.Discard, in) // until the test closes stdin
	return 0
}

// selfSigned returns a certificate for 127.0.0.1 and its PEM.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebble test server"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// pebble is the test's handle on the child.
type pebble struct {
	pebbleAddrs
	serverCAFile string         // ServerCA in a file, for --acme-ca
	stdin        io.WriteCloser // the HTTP-01 port goes here; closing it stops the child
	log          *output        // the child's stderr
}

// startPebble starts the child and waits for its addresses. The child
// stops when the test ends.
func startPebble(t *testing.T) *pebble {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), pebbleEnv+"=1",
		"PEBBLE_VA_NOSLEEP=1",      // no random pause before each validation
		"PEBBLE_WFE_NONCEREJECT=0", // no nonces refused at random
		"PEBBLE_AUTHZREUSE=0",      // every order validated afresh
		"PEBBLE_VA_ALWAYS_VALID=0") // real validation
	p := &pebble{log: &output{}}
	cmd.Stderr = p.log
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(waitTimeout):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("pebble's log:\n%s", p.log)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("pebble printed no addresses: %v\n%s", err, p.log)
	}
	if err := json.Unmarshal([]byte(line), &p.pebbleAddrs); err != nil {
		t.Fatalf("pebble's addresses %q: %v", line, err)
	}
	p.serverCAFile = filepath.Join(t.TempDir(), "pebble-server.pem")
	if err := os.WriteFile(p.serverCAFile, []byte(p.ServerCA), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// validateOn tells the child the port of HTTP-01 validation, which starts
// its ACME server.
func (p *pebble) validateOn(t *testing.T, httpPort string) {
	t.Helper()
	if _, err := fmt.Fprintln(p.stdin, httpPort); err != nil {
		t.Fatal(err)
	}
}

// root returns the root of the certificates Pebble issues, from its
// management interface.
func (p *pebble) root(t *testing.T) *x509.CertPool {
	t.Helper()
	server := x509.NewCertPool()
	server.AppendCertsFromPEM([]byte(p.ServerCA))
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: server}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: waitTimeout}).Get(p.Management + wfe.RootCertPath + "0")
	if err != nil {
		t.Fatalf("pebble's root: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	roots := x509.NewCertPool()
	if err != nil || resp.StatusCode != http.StatusOK || !roots.AppendCertsFromPEM(body) {
		t.Fatalf("pebble's root: %d %q %v", resp.StatusCode, body, err)
	}
	return roots
}

// TestGatewayACME runs "tunnel gateway --domain example.test --acme"
// against Pebble. The agent's first connection wins the base domain its
// certificate; a tunnel's subdomain gets one when the public first visits
// it, and serves a chain that verifies against Pebble's root. A subdomain
// that names no tunnel gets no certificate, and nothing is ordered for
// it; --acme-rate refuses orders past it; the plain-HTTP listener, which
// answered the HTTP-01 challenges, redirects the rest to https.
func TestGatewayACME(t *testing.T) {
	t.Parallel()
	p := startPebble(t)
	cache := t.TempDir()
	gw, port, httpPort := startTLSGateway(t, "--listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--insecure-no-auth",
		"--domain", "example.test", "--acme", "--acme-directory", p.Directory, "--acme-ca", p.serverCAFile,
		"--acme-cache", cache, "--acme-email", "ops@example.test", "--acme-rate", "3/h", "--verbose")
	if httpPort == "" {
		t.Fatalf("no plain-HTTP listener; stdout:\n%s", gw.stdout)
	}
	p.validateOn(t, httpPort)
	roots := p.root(t)
	client := testClient(t, roots)
	client.Timeout = time.Minute // the first request of a name waits for its certificate

	// The base domain: its certificate is ordered at the first handshake.
	base := "https://example.test:" + port
	resp, err := client.Get(base + "/")
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", base, err, gw.stderr)
	}
	resp.Body.Close()
	checkLeaf(t, resp, "example.test")

	local := localService(t)
	fw := forward(t, base, "acme-app", local.URL, roots)
	if want := "https://acme-app.example.test:" + port; fw.URL() != want {
		t.Fatalf("tunnel URL %q; want %q", fw.URL(), want)
	}
	resp, err = client.Get(fw.URL() + "/hello")
	if err != nil {
		t.Fatalf("GET %s: %v\n%s", fw.URL(), err, gw.stderr)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "local answered GET /hello" {
		t.Errorf("GET %s/hello = %d %q; want the local service's answer", fw.URL(), resp.StatusCode, body)
	}
	checkLeaf(t, resp, "acme-app.example.test")

	// A subdomain that is no tunnel: no certificate, no order.
	if _, err := client.Get("https://nosuch.example.test:" + port + "/"); err == nil {
		t.Error("a name that is no tunnel got a certificate")
	}

	// The third order is within --acme-rate 3/h; the fourth is not.
	forward(t, base, "acme-two", local.URL, roots)
	forward(t, base, "acme-three", local.URL, roots)
	resp, err = client.Get("https://acme-two.example.test:" + port + "/")
	if err != nil {
		t.Fatalf("third certificate: %v\n%s", err, gw.stderr)
	}
	resp.Body.Close()
	checkLeaf(t, resp, "acme-two.example.test")
	if _, err := client.Get("https://acme-three.example.test:" + port + "/"); err == nil {
		t.Error("a fourth certificate within the hour passed --acme-rate 3/h")
	}
	if _, ok := gw.stderr.find("ACME order refused"); !ok {
		t.Errorf("the refused order was not logged:\n%s", gw.stderr)
	}

	// The certificates are in the cache, and only those.
	for name, want := range map[string]bool{"example.test": true, "acme-app.example.test": true, "acme-two.example.test": true, "nosuch.example.test": false, "acme-three.example.test": false} {
		if _, err := os.Stat(filepath.Join(cache, name)); (err == nil) != want {
			t.Errorf("%s in the ACME cache: %v; want %v", name, err == nil, want)
		}
	}

	resp, err = client.Get("http://acme-app.example.test:" + httpPort + "/x?y=z")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := fw.URL() + "/x?y=z"; resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("plain HTTP: %d to %q; want 308 to %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	fw.Close()
	if err := gw.stop(t); err != nil {
		t.Errorf("gateway: %v", err)
	}
}

// checkLeaf checks that resp came over TLS with a chain the client
// verified, whose leaf is for name alone.
func checkLeaf(t *testing.T, resp *http.Response, name string) {
	t.Helper()
	if resp.TLS == nil || len(resp.TLS.VerifiedChains) == 0 {
		t.Fatalf("response for %s: no verified TLS chain", name)
	}
	if leaf := resp.TLS.VerifiedChains[0][0]; len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != name {
		t.Errorf("certificate for %v; want %s", leaf.DNSNames, name)
	}
}
