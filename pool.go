package tunnel

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/http-tunnel/tunnel/store"
)

// Pools: several agents of one identity serving one tunnel name
// (WithPool). Each member is a session with a record of its own; a public
// request goes to the member with the fewest requests in flight, of this
// node's members and, in a cluster, the other nodes' (poolTarget).

// errDraining is the error of a stream open on a session whose agent is
// leaving: the request was not sent, and goes to another member.
var errDraining = errors.New("the agent is leaving")

// maxReroutes bounds how often one request moves on to another member
// after finding the one chosen for it leaving.
const maxReroutes = 3

// membersTTL is how long a node uses a pool's member list read from the
// store before reading it again. A member that joins on another node gets
// requests from this one within about that long; one that leaves there is
// refused by that node (421), and the request goes to another member.
const membersTTL = time.Second

// memberCache holds the member lists of pools, read from the store.
type memberCache struct {
	mu      sync.Mutex
	entries map[string]memberEntry
}

type memberEntry struct {
	members []store.Record
	at      time.Time
}

// maxMemberEntries bounds the member cache: past it, it starts over.
const maxMemberEntries = 4096

func (c *memberCache) get(id string) ([]store.Record, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[id]
	if !ok || time.Since(e.at) > membersTTL {
		return nil, false
	}
	return e.members, true
}

func (c *memberCache) add(id string, members []store.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= maxMemberEntries {
		c.entries = make(map[string]memberEntry)
	}
	c.entries[id] = memberEntry{members: members, at: time.Now()}
}

func (c *memberCache) remove(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.entries, id)
}

// poolMembers returns the live members of pool id, from the member cache
// unless fresh is set.
func (s *Server) poolMembers(ctx context.Context, id string, fresh bool) ([]store.Record, error) {
	if !fresh {
		if m, ok := s.members.get(id); ok {
			return m, nil
		}
	}
	var members []store.Record
	err := s.storeOp(ctx, "Members", func(ctx context.Context) (err error) {
		members, err = s.store.Members(ctx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.members.add(id, members)
	return members, nil
}

// localMembers returns this node's sessions of pool id that take new
// requests. Members still starting (admitted, their connection_established
// on its way) count only when no member has started: the agent of such a
// member may send a request through the tunnel as soon as it hears it is
// connected, perhaps before the session runs, and openStream waits for it.
func (s *Server) localMembers(id string) []*session {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out, starting []*session
	for _, sess := range s.pools[id] {
		if sess.draining.Load() || sess.lost.Load() || sess.goingAway.Load() {
			continue
		}
		select {
		case <-sess.ready:
			if sess.mux != nil && !sess.mux.IsClosed() {
				out = append(out, sess)
			}
		default:
			starting = append(starting, sess)
		}
	}
	if len(out) == 0 {
		return starting
	}
	return out
}

// hopLoad returns the count of requests this node has in flight to node.
func (s *Server) hopLoad(node string) *atomic.Int64 {
	if v, ok := s.hopsInFlight.Load(node); ok {
		return v.(*atomic.Int64)
	}
	v, _ := s.hopsInFlight.LoadOrStore(node, new(atomic.Int64))
	return v.(*atomic.Int64)
}

// target is where poolTarget sends a request: a session of this node, or
// another node, with the record of the member it chose there (whose
// access policy the request must satisfy). Neither: no member takes
// requests.
type target struct {
	rec  store.Record
	sess *session
	node string
}

// poolTarget picks where a request for pool id goes: the member with the
// fewest requests in flight, as this node sees them: a session of this
// node by its own count, another node's member by the requests this node
// has in flight to that node, shared among its members there. Ties go to
// a random one. A request from another node (hop), or on a single node,
// goes to a member of this node or nowhere. It returns the session or the
// node, or neither when no member takes requests.
func (s *Server) poolTarget(ctx context.Context, id string, fresh, hop bool) (target, error) {
	local := s.localMembers(id)
	type candidate struct {
		target
		load float64
	}
	cands := make([]candidate, 0, len(local)+4)
	for _, sess := range local {
		cands = append(cands, candidate{target{rec: sess.rec, sess: sess}, float64(sess.inflight.Load())})
	}
	if !hop && s.node != "" {
		members, err := s.poolMembers(ctx, id, fresh)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			if len(cands) == 0 {
				return target{}, err
			}
			members = nil // serve from this node meanwhile
		}
		type nodeMembers struct {
			rec store.Record // one of them
			n   int
		}
		perNode := map[string]*nodeMembers{}
		for _, m := range members {
			if m.Node == s.node || m.Node == "" || m.Released {
				continue
			}
			if nm := perNode[m.Node]; nm != nil {
				nm.n++
			} else {
				perNode[m.Node] = &nodeMembers{rec: m, n: 1}
			}
		}
		for node, nm := range perNode {
			cands = append(cands, candidate{target{rec: nm.rec, node: node}, float64(s.hopLoad(node).Load()) / float64(nm.n)})
		}
	}
	if len(cands) == 0 {
		return target{}, nil
	}
	best, ties := 0, 1
	for i := 1; i < len(cands); i++ {
		switch {
		case cands[i].load < cands[best].load:
			best, ties = i, 1
		case cands[i].load == cands[best].load:
			// Reservoir sampling: each of the tied candidates is
			// chosen with equal probability.
			ties++
			if rand.IntN(ties) == 0 {
				best = i
			}
		}
	}
	return cands[best].target, nil
}

// addSessionLocked registers sess, a session that has been admitted; s.mu
// is held.
func (s *Server) addSessionLocked(sess *session) {
	s.sessions[sess.info.ConnectionID] = sess
	s.byTunnel[sess.info.ID] = sess
	if sess.rec.Pool {
		s.pools[sess.info.ID] = append(s.pools[sess.info.ID], sess)
	}
}

// removeSessionLocked deregisters sess; s.mu is held.
func (s *Server) removeSessionLocked(sess *session) {
	id := sess.info.ID
	delete(s.sessions, sess.info.ConnectionID)
	if s.byTunnel[id] == sess {
		delete(s.byTunnel, id)
		// Another member of its pool is the tunnel's session now.
		for _, m := range s.pools[id] {
			if m != sess {
				s.byTunnel[id] = m
			}
		}
	}
	if sess.rec.Pool {
		members := s.pools[id]
		for i, m := range members {
			if m == sess {
				members = append(members[:i:i], members[i+1:]...)
				break
			}
		}
		if len(members) == 0 {
			delete(s.pools, id)
		} else {
			s.pools[id] = members
		}
	}
}
