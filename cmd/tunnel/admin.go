package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/http-tunnel/tunnel"
)

// The admin listener (--admin-listen) serves operators, on an address of
// its own: on the public listener every path is ingress, and under path
// routing /metrics would name a tunnel.

// admin is the admin listener's handler:
//
//	GET /metrics  Prometheus text format, from registry
//	GET /healthz  200 "ok"; 503 once the gateway is shutting down
//	GET /tunnels  JSON array of the tunnels connected to this node
type admin struct {
	gateway  *tunnel.Server
	registry *prometheus.Registry
	draining atomic.Bool // set when shutdown starts
}

// tunnelJSON is one element of /tunnels. Nothing in it is secret: the
// subject is the authenticated identity, never the token.
type tunnelJSON struct {
	ID           string    `json:"id"`
	URL          string    `json:"url"`
	Subject      string    `json:"subject,omitempty"`
	ConnectionID string    `json:"connection_id"`
	ConnectedAt  time.Time `json:"connected_at"`
}

// handler returns the admin routes.
func (a *admin) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /tunnels", a.tunnels)
	return mux
}

// healthz answers 503 during a graceful shutdown, so that a load balancer
// stops sending new requests while those in flight finish.
func (a *admin) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if a.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("shutting down"))
		return
	}
	w.Write([]byte("ok"))
}

// tunnels lists the tunnels of this node, sorted by ID.
func (a *admin) tunnels(w http.ResponseWriter, r *http.Request) {
	list := a.gateway.Tunnels()
	slices.SortFunc(list, func(x, y tunnel.Tunnel) int { return cmp.Compare(x.ID, y.ID) })
	out := make([]tunnelJSON, 0, len(list))
	for _, t := range list {
		out = append(out, tunnelJSON{ID: t.ID, URL: t.URL, Subject: t.Subject, ConnectionID: t.ConnectionID, ConnectedAt: t.ConnectedAt.UTC()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}

// adminStopTimeout bounds how long the admin listener waits for requests
// in flight (a scrape) at exit.
const adminStopTimeout = 5 * time.Second

// adminListener is the admin handler being served on its own listener.
type adminListener struct {
	admin  *admin
	ln     net.Listener
	srv    *http.Server
	served chan struct{} // closed when Serve has returned
}

// listenAdmin starts serving a on addr.
func listenAdmin(addr string, a *admin, log *slog.Logger) (*adminListener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--admin-listen: %w", err)
	}
	l := &adminListener{
		admin: a,
		ln:    ln,
		srv: &http.Server{
			Handler:           a.handler(),
			ReadHeaderTimeout: tunnel.DefaultReadHeaderTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		},
		served: make(chan struct{}),
	}
	go func() {
		err := l.srv.Serve(ln)
		if !errors.Is(err, http.ErrServerClosed) {
			// The gateway goes on serving: losing /metrics is no reason to
			// drop the tunnels.
			log.Error("admin listener failed", slog.Any("err", err))
		}
		close(l.served)
	}()
	return l, nil
}

// addr returns the address the admin listener is bound to.
func (l *adminListener) addr() net.Addr { return l.ln.Addr() }

// drain makes /healthz answer 503 from now on; the other routes go on.
func (l *adminListener) drain() { l.admin.draining.Store(true) }

// stop closes the listener and waits, at most adminStopTimeout, for
// requests in flight; then it closes their connections.
func (l *adminListener) stop(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), adminStopTimeout)
	defer cancel()
	if err := l.srv.Shutdown(ctx); err != nil {
		l.srv.Close()
	}
	<-l.served
}
