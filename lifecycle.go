package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
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

// Shutdown shuts the gateway down gracefully: it stops accepting agents and
// public requests (answering 503 unavailable), closes the listeners of
// Serve, waits for in-flight public requests to finish, then tells every
// agent to go away (WebSocket close 1001) so that it reconnects, here or
// to another node. If ctx ends first, Shutdown closes what remains at once
// and returns ctx's error.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.mu.Lock()
	s.shutdown = true
	s.inflight.close()
	s.agents.close()
	servers := make([]*http.Server, 0, len(s.servers))
	for hs := range s.servers {
		servers = append(servers, hs)
	}
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, len(servers))
	for i, hs := range servers {
		wg.Go(func() { errs[i] = hs.Shutdown(ctx) })
	}
	wg.Wait()

	waitErr := s.inflight.wait(ctx)

	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		sessions = append(sessions, sess)
	}
	s.mu.Unlock()
	for _, sess := range sessions {
		go sess.goAway()
	}
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
