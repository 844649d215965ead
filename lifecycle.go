package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// Serve accepts connections on ln and serves s on them with an
// http.Server configured from s (ReadHeaderTimeout, IdleTimeout,
// MaxHeaderBytes, error log) that speaks HTTP/1.1 and HTTP/2, cleartext
// HTTP/2 (h2c, with prior knowledge, as gRPC clients speak it) included.
// It closes ln when it returns, and returns http.ErrServerClosed after
// Shutdown, or at once an error describing an invalid configuration.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if err := s.check(); err != nil {
		ln.Close()
		return err
	}
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: orDefault(s.ReadHeaderTimeout, DefaultReadHeaderTimeout),
		IdleTimeout:       orDefault(s.IdleTimeout, DefaultIdleTimeout),
		MaxHeaderBytes:    orDefault(s.MaxHeaderBytes, DefaultMaxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		Protocols:         publicProtocols(),
	}
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.servers[hs] = struct{}{}
	s.mu.Unlock()
	return hs.Serve(ln)
}

// Shutdown shuts the gateway down gracefully, moving its agents first so
// that a stop is not an outage:
//
//  1. New agents are refused (503 unavailable); public requests and
//     requests from other nodes are still served.
//  2. Every agent is told to go away (a yamux go-away): it reconnects to
//     another gateway of its list at once, or to this one once it is
//     back, and keeps its connection here for the requests it carries.
//  3. Shutdown waits, at most ShutdownGrace (5 s by default), until every
//     agent connection is idle and, with other nodes (NodeURL set), its
//     tunnel has moved to another node.
//  4. WebSockets through tunnels get a close frame with 1001 (going away),
//     and the agent connections are closed with 1001: what still streams
//     through them (server-sent events, downloads) ends.
//  5. The listeners of Serve close, and public requests still in flight
//     (those forwarded to other nodes) finish.
//
// If ctx ends first, Shutdown closes what remains at once and returns
// ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown = true
	s.agents.close()
	servers := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		servers = append(servers, hs)
	}
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()

	for _, sess := range sessions {
		sess.sendGoAway()
	}
	gctx, cancel := context.WithTimeout(ctx, s.shutdownGrace())
	s.waitMoved(gctx, sessions)
	cancel()

	s.mu.Lock()
	upgrades := make([]*publicConn, 0, len(s.upgrades))
	for c := range s.upgrades {
		upgrades = append(upgrades, c)
	}
	s.mu.Unlock()
	for _, c := range upgrades {
		c.goingAway()
	}
	var closing sync.WaitGroup
	for _, sess := range sessions {
		closing.Go(sess.goAway)
	}

	s.inflight.close()
	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, hs := range servers {
		wg.Go(func() { errs[i] = hs.Shutdown(ctx) })
	}
	wg.Wait()
	waitErr := s.inflight.wait(ctx)
	closing.Wait()
	err := s.agents.wait(ctx)
	s.stopLeases()
	if err != nil {
		for _, sess := range sessions {
			sess.close()
		}
		for _, hs := range servers {
			hs.Close()
		}
		return err
	}
	return errors.Join(append(errs, waitErr)...)
}

// waitMoved waits until every session of sessions has ended, or is idle
// and, for a node of a cluster, no longer holds its tunnel (its agent has
// resumed it on another node), or until ctx ends.
func (s *Server) waitMoved(ctx context.Context, sessions []*session) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := 0
		for _, sess := range sessions {
			if !sess.left(ctx) {
				pending++
			}
		}
		if pending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// publicProtocols are the protocols Serve's http.Server speaks: HTTP/1.1
// (agents' WebSocket upgrades need it), HTTP/2 over TLS, and HTTP/2 in
// cleartext for clients that know the gateway speaks it (gRPC).
func publicProtocols() *http.Protocols {
	p := new(http.Protocols)
	p.SetHTTP1(true)
	p.SetHTTP2(true)
	p.SetUnencryptedHTTP2(true)
	return p
}
