package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/http-tunnel/tunnel"
)

const (
	smallBody = "hello, world\n"
	bulkSize  = 16 << 20
)

// handler serves the benchmark's two resources, as examples/bench does.
func handler() http.Handler {
	small := []byte(smallBody)
	bulk := make([]byte, bulkSize)
	for i := range bulk {
		bulk[i] = byte(i)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(small)
	})
	mux.HandleFunc("/bulk", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", fmt.Sprint(len(bulk)))
		w.Write(bulk)
	})
	return mux
}

// serveOrigin is the origin process: the handler on addr until killed.
func serveOrigin(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	return http.Serve(ln, handler())
}

// agents are the tunnels of the agent-side process of -memory, each a
// tunnel.Listen served by http.Serve, as an application would.
type agents struct {
	gateway string
	opts    []tunnel.Option
	h       http.Handler
	log     *slog.Logger
	mu      sync.Mutex
	lns     []*tunnel.Listener
}

// newAgents returns the agents of a gateway, with a transport ("": the
// default) as tunnel.WithTransport.
func newAgents(gateway, transport string) *agents {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := &agents{gateway: gateway, h: http.NotFoundHandler(), log: log, opts: []tunnel.Option{tunnel.WithLogger(log)}}
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

func (a *agents) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	var wg sync.WaitGroup
	for _, ln := range a.lns {
		wg.Go(func() { ln.Close() })
	}
	wg.Wait()
}
