package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/examples/benchkit"
)

// serveOrigin is the origin process: the handler on addr until killed.
func serveOrigin(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, benchkit.Handler())
}

// agents are the tunnels of the agent-side process of -memory, each a
// tunnel.Listen served by http.Serve, as an application would.
type agents struct {
	gateway string
	opts    []tunnel.Option
	h       http.Handler
	mu      sync.Mutex
	lns     []*tunnel.Listener
}

// newAgents returns the agents of a gateway, with a transport ("": the
// default) as tunnel.WithTransport.
func newAgents(gateway, transport string) *agents {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	exchange := make([]byte, exchangeSize)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /exchange", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(exchange)
	})
	a := &agents{gateway: gateway, h: mux, opts: []tunnel.Option{tunnel.WithLogger(log)}}
	if transport != "" {
		a.opts = append(a.opts, tunnel.WithTransport(tunnel.Transport(transport)))
	}
	return a
}

// open opens n more tunnels, 32 at a time.
func (a *agents) open(n int) error {
	sem := make(chan struct{}, 32)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ln, err := tunnel.Listen(context.Background(), a.gateway, a.opts...)
			if err != nil {
				errs <- err
				return
			}
			go http.Serve(ln, a.h)
			a.mu.Lock()
			a.lns = append(a.lns, ln)
			a.mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("opening tunnels: %d of %d failed, the first: %w", len(errs)+1, n, err)
	}
	return nil
}

// exchangeSize is the size of the request and of the response body that
// "exchange" sends through every tunnel: larger than the transports' 64 KiB
// read buffers, so that each is filled once.
const exchangeSize = 256 << 10

// exchange sends one POST of exchangeSize bytes through every tunnel,
// 32 at a time, and reads its response of the same size, each on a
// connection of its own.
func (a *agents) exchange() error {
	a.mu.Lock()
	lns := slices.Clone(a.lns)
	a.mu.Unlock()
	// A connection per request: these are the clients of different
	// tunnels, and none of them is left holding a connection.
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	body := make([]byte, exchangeSize)
	sem := make(chan struct{}, 32)
	var mu sync.Mutex
	var first error
	var failed int
	var wg sync.WaitGroup
	for _, ln := range lns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			err := post(client, ln.URL()+"/exchange", body)
			if err != nil {
				mu.Lock()
				failed++
				first = cmp.Or(first, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("exchange: %d of %d tunnels failed, the first: %w", failed, len(lns), first)
	}
	return nil
}

func post(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || n != exchangeSize {
		return fmt.Errorf("POST %s: %s, %d bytes of %d; Content-Length %d, Transfer-Encoding %q, header %v", url, resp.Status, n, exchangeSize, resp.ContentLength, resp.TransferEncoding, resp.Header)
	}
	return nil
}

func (a *agents) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range a.lns {
		wg.Go(func() { ln.Close() })
	}
	wg.Wait()
}
