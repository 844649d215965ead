package tunnel

import (
	"context"
	"sync"
)

// The node's table of its agents' sessions: by connection ID, and those
// still being admitted (their record may be in the store before the
// session is registered).

// Tunnels returns the tunnels connected to this node, in no order.
func (s *Server) Tunnels() []Tunnel {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Tunnel, 0, len(s.sessions))
	for _, sess := range s.sessions {
		out = append(out, sess.info)
	}
	return out
}

// session returns the live session for a connection ID, or nil.
func (s *Server) session(connID string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions[connID]
}

// admitting marks connection connID as being admitted, until the returned
// function is called (again calls do nothing): its record may be in the
// store before its session is registered, and awaitSession waits for it.
func (s *Server) admitting(connID string) func() {
	ch := make(chan struct{})
	s.mu.Lock()
	s.pending[connID] = ch
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			delete(s.pending, connID)
			s.mu.Unlock()
			close(ch)
		})
	}
}

// awaitSession returns the session of connection connID, waiting while it
// is being admitted, until ctx ends; nil if there is none.
func (s *Server) awaitSession(ctx context.Context, connID string) *session {
	s.mu.Lock()
	sess, ch := s.sessions[connID], s.pending[connID]
	s.mu.Unlock()
	if sess != nil || ch == nil {
		return sess
	}
	select {
	case <-ch:
	case <-ctx.Done():
		return nil
	}
	return s.session(connID)
}
