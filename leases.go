package tunnel

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/store"
)

// storeCheckInterval is how often a node with a Store of its own checks
// that the store still has its records (the sentinel): a Redis that
// restarted empty, say. Within about that long of the loss, the node
// writes the records of its live sessions again.
const storeCheckInterval = time.Second

// leaseKeeper keeps the records of a node's sessions in the store: it
// renews them every LeaseTTL/3, writes one again at once when the store
// has lost it (reassert), and, for a shared store, watches a sentinel
// record of the node's own whose disappearance means that the store lost
// everything. One goroutine per node does this for every session, started
// with the first session and stopped by Shutdown.
type leaseKeeper struct {
	stop     chan struct{}
	sentinel store.Record
}

// startLeases starts the node's lease keeper if it is not running. It is
// called with s.mu held.
func (s *Server) startLeasesLocked() {
	if s.leases != nil || s.shutdown {
		return
	}
	k := &leaseKeeper{stop: make(chan struct{})}
	s.leases = k
	_, memory := s.store.(*store.Memory)
	watch := !memory // a memory store cannot lose records
	if watch {
		k.sentinel = store.Record{
			// An ID no tunnel can have (not a DNS label), so that no agent
			// can claim it.
			TunnelID:     "_node_" + randid.Hex(8),
			ConnectionID: "_sentinel",
			Owner:        randid.Hex(16),
			Node:         s.node,
		}
	}
	go s.keepLeases(k, watch)
}

func (s *Server) keepLeases(k *leaseKeeper, watch bool) {
	ttl := orDefault(s.LeaseTTL, DefaultLeaseTTL)
	renew := time.NewTicker(ttl / 3)
	defer renew.Stop()
	var check <-chan time.Time
	if watch {
		t := time.NewTicker(storeCheckInterval)
		defer t.Stop()
		check = t.C
		s.putSentinel(k, ttl)
	}
	for {
		select {
		case <-k.stop:
			if watch {
				ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
				s.store.Delete(ctx, k.sentinel.TunnelID, k.sentinel.ConnectionID)
				cancel()
			}
			return
		case <-renew.C:
			if watch {
				s.putSentinel(k, ttl)
			}
			for _, sess := range s.liveSessions() {
				s.renew(sess, ttl)
			}
		case <-check:
			ctx, cancel := context.WithTimeout(context.Background(), storeCheckInterval)
			_, err := s.store.Get(ctx, k.sentinel.TunnelID)
			cancel()
			if !errors.Is(err, store.ErrNotFound) {
				continue // there, or the store is unreachable: nothing to redo yet
			}
			s.log.Warn("the store lost this node's records; writing those of its live tunnels again")
			s.putSentinel(k, ttl)
			for _, sess := range s.liveSessions() {
				s.reassert(sess, ttl)
			}
		}
	}
}

func (s *Server) putSentinel(k *leaseKeeper, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
	defer cancel()
	k.sentinel.ExpiresAt = time.Now().Add(2 * ttl)
	if err := s.store.Put(ctx, k.sentinel); err != nil {
		s.log.Warn("writing the node's sentinel record failed", slog.Any("err", err))
	}
}

// liveSessions returns the node's sessions that serve their tunnel.
func (s *Server) liveSessions() []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*session, 0, len(s.sessions))
	for _, sess := range s.sessions {
		if !sess.draining.Load() && !sess.lost.Load() && !sess.moved.Load() {
			out = append(out, sess)
		}
	}
	return out
}

// renew extends sess's lease; a record the store no longer has is written
// again (reassert).
func (s *Server) renew(sess *session, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
	defer cancel()
	err := s.storeOp(ctx, "Renew", func(ctx context.Context) error {
		return s.store.Renew(ctx, sess.info.ID, sess.info.ConnectionID, time.Now().Add(ttl))
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		s.reassert(sess, ttl)
	case err != nil:
		sess.log.Warn("tunnel lease renewal failed", slog.Any("err", err))
	}
}

// reassert writes sess's record again after the store lost it. If the
// tunnel meanwhile belongs to another connection (a reconnect of the same
// agent elsewhere, or, in the moment after the loss, another identity),
// the session has lost its tunnel and is closed with 1008: its agent
// reconnects and is told where it stands.
func (s *Server) reassert(sess *session, ttl time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), storeCallTimeout)
	defer cancel()
	var cur store.Record
	var err error
	if sess.rec.Pool {
		// The other members' records say nothing of this one's.
		cur, err = s.store.GetByConnection(ctx, sess.info.ConnectionID)
	} else {
		cur, err = s.store.Get(ctx, sess.info.ID)
	}
	switch {
	case err == nil && cur.ConnectionID == sess.rec.ConnectionID:
		return // renewed meanwhile
	case err == nil && sess.goingAway.Load():
		// Told to go away, the agent resumed its tunnel elsewhere: this
		// connection lives on for what it carries until Shutdown ends it.
		sess.moved.Store(true)
		return
	case err == nil:
		s.loseTunnel(sess, "the tunnel now belongs to another connection")
		return
	case !errors.Is(err, store.ErrNotFound):
		sess.log.Warn("tunnel lease renewal failed", slog.Any("err", err))
		return
	}
	rec := sess.rec
	rec.ExpiresAt = time.Now().Add(ttl)
	err = s.storeOp(ctx, "Put", func(ctx context.Context) error { return s.store.Put(ctx, rec) })
	switch {
	case err == nil:
		s.cache.Remove(ctx, sess.info.ID)
		sess.log.Info("tunnel record written again after the store lost it")
	case errors.Is(err, store.ErrConflict):
		s.loseTunnel(sess, "another agent claimed the tunnel while the store had lost its record")
	default:
		sess.log.Warn("writing the lost tunnel record again failed", slog.Any("err", err))
	}
}

// loseTunnel closes a session whose tunnel is no longer its own.
func (s *Server) loseTunnel(sess *session, why string) {
	if sess.lost.Swap(true) {
		return
	}
	sess.log.Warn("tunnel lease lost; closing the agent session", slog.String("why", why))
	go func() {
		sess.ws.Close(websocket.StatusPolicyViolation, "tunnel lease lost", closeWait)
		sess.close()
	}()
}

// stopLeases stops the lease keeper, if it runs.
func (s *Server) stopLeases() {
	s.mu.Lock()
	k := s.leases
	s.leases = nil
	s.mu.Unlock()
	if k != nil {
		close(k.stop)
	}
}

// tunnelSession returns the live session of this node that serves tunnel
// id, or nil.
func (s *Server) tunnelSession(id string) *session {
	s.mu.Lock()
	sess := s.byTunnel[id]
	s.mu.Unlock()
	if sess == nil || sess.draining.Load() || sess.lost.Load() {
		return nil
	}
	return sess
}
