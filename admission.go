package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel/internal/claim"
	"github.com/http-tunnel/tunnel/internal/randid"
	"github.com/http-tunnel/tunnel/protocol"
	"github.com/http-tunnel/tunnel/store"
)

// Admission is what Server.Admit needs to admit an agent that has
// connected and authenticated: who it is and what its ready message asks
// for. The gateway's own agent endpoint builds one for every agent; a
// gateway of another kind (the serverless adapter, or one of your own)
// builds one from what its transport tells it.
type Admission struct {
	// Identity is the agent's authenticated identity (the Authenticator's
	// answer; the zero Identity when the gateway authenticates nobody).
	Identity Identity

	// Ready is the agent's ready message. Required.
	Ready *protocol.Ready

	// ConnectionID names the agent's connection in the tunnel's record.
	// Empty means a new random one; the serverless adapter passes API
	// Gateway's connection ID, through which it posts to the agent.
	ConnectionID string

	// BaseURL is the public base URL (scheme://host[:port][/path]) that the
	// tunnel's URLs are built from when Server.BaseURL is empty: for an
	// agent endpoint served over HTTP, the scheme and host of its connect
	// request. Ignored when Server.BaseURL is
	// set. One of the two is required.
	BaseURL string

	// TTL is how long the record lives without renewal. Zero means
	// Server.LeaseTTL (DefaultLeaseTTL when that is zero too). The
	// serverless adapter, which renews nothing, passes API Gateway's
	// connection lifetime.
	TTL time.Duration

	// Limits are announced to the agent in connection_established. Nil
	// means the Server's own: its heartbeat and response timeout. Fields
	// left zero are filled in from the Server the same way.
	Limits *protocol.Limits
}

// Admit claims the tunnel an agent asks for and writes its record, then
// returns the record and the connection_established answer for the agent:
// the tunnel it resumes (its tunnel_id with the resume token it was given),
// else the name it asks for, else a generated ID. A ready message with
// pool joins the pool of that name of the identity's agents (its record's
// Owner is derived from the Subject alone, so that every agent of the
// identity has the same), or starts it. The protocol version of
// the answer, and of the record, is the lower of the agent's and
// protocol.Version (protocol/spec.md).
//
// Admit is the one admission path of every gateway: the Server's agent
// endpoint runs it, and so does the serverless adapter. It does not
// authenticate (the caller did) and it sends nothing: the caller sends the
// answer, or on error a protocol error message with the error's code, and
// deletes the record (Store.Delete of the record's tunnel and connection)
// if the agent cannot be told.
//
// Errors are *Error: CodeInvalidRequest for a ready message that breaks
// the protocol (a pool without a name included), CodeNameInUse when
// another owner holds the name (or a pool holds it and the agent asks for
// a tunnel of its own, or the other way round),
// CodeInternal when the store fails. ctx bounds the store calls.
func (s *Server) Admit(ctx context.Context, a Admission) (store.Record, *protocol.ConnectionEstablished, error) {
	s.init()
	if a.Ready == nil {
		return store.Record{}, nil, &Error{Code: CodeInvalidRequest, Message: "expected a ready message"}
	}
	id, err := claim.Requested(a.Ready.TunnelID, a.Ready.Name, a.Ready.ResumeToken)
	if err != nil {
		return store.Record{}, nil, &Error{Code: CodeInvalidRequest, Message: err.Error()}
	}
	if id != "" {
		if err := s.authorizeName(ctx, a.Identity, id); err != nil {
			return store.Record{}, nil, err
		}
	} else if a.Ready.Pool {
		return store.Record{}, nil, &Error{Code: CodeInvalidRequest, Message: "a pool needs a name: its agents share it"}
	}
	asked, err := accessFromWire(a.Ready.Access)
	if err != nil {
		return store.Record{}, nil, &Error{Code: CodeInvalidRequest, Message: "invalid access: " + err.Error()}
	}
	policy, err := encodeAccess(asked, a.Identity.Access)
	if err != nil {
		return store.Record{}, nil, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("encode access: %w", err)}
	}
	base := strings.TrimSuffix(s.BaseURL, "/")
	if base == "" {
		base = strings.TrimSuffix(a.BaseURL, "/")
	}
	if base == "" {
		return store.Record{}, nil, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: errors.New("admit: neither Server.BaseURL nor Admission.BaseURL is set")}
	}
	resume := a.Ready.ResumeToken
	if resume == "" {
		resume = randid.Secret()
	}
	version := min(max(a.Ready.Version, 0), protocol.Version)
	now := time.Now()
	owner := claim.Owner(a.Identity.Subject, resume)
	if a.Ready.Pool {
		// Every agent of the identity that pools the name joins it.
		owner = claim.PoolOwner(a.Identity.Subject)
	}
	rec := store.Record{
		ConnectionID: a.ConnectionID,
		Owner:        owner,
		Pool:         a.Ready.Pool,
		Node:         s.node,
		Subject:      a.Identity.Subject,
		Version:      version,
		Access:       policy,
		CreatedAt:    now,
		ExpiresAt:    now.Add(orDefault(a.TTL, orDefault(s.LeaseTTL, DefaultLeaseTTL))),
	}
	if rec.ConnectionID == "" {
		rec.ConnectionID = randid.Hex(16)
	}
	generated := id == ""
	for attempt := 0; ; attempt++ {
		rec.TunnelID = id
		if generated {
			rec.TunnelID = randid.TunnelID()
		}
		// A live session of this node is the truth even when the store
		// has lost its record (a Redis that restarted empty): its name is
		// not another identity's to take.
		if held := s.tunnelSession(rec.TunnelID); held != nil && !mayFollow(rec, held.rec) {
			if generated && attempt < 3 {
				continue
			}
			return store.Record{}, nil, &Error{Code: CodeNameInUse, Message: "tunnel name " + rec.TunnelID + " is in use", Err: store.ErrConflict}
		}
		rec.PublicURL = s.publicURL(base, rec.TunnelID)
		err = s.storeOp(ctx, "Put", func(ctx context.Context) error { return s.store.Put(ctx, rec) })
		if err == nil {
			break
		}
		if errors.Is(err, store.ErrConflict) {
			if generated && attempt < 3 {
				continue // a generated ID that collided: draw another
			}
			return store.Record{}, nil, &Error{Code: CodeNameInUse, Message: "tunnel name " + rec.TunnelID + " is in use", Err: err}
		}
		return store.Record{}, nil, &Error{Code: CodeInternal, Message: ErrInternal.Message, Err: fmt.Errorf("store put: %w", err)}
	}
	// A reconnecting agent takes its tunnel over: drop what this node
	// cached of its previous connection.
	s.cache.Remove(ctx, rec.TunnelID)

	limits := protocol.Limits{}
	if a.Limits != nil {
		limits = *a.Limits
	}
	if limits.HeartbeatMillis == 0 {
		limits.HeartbeatMillis = orDefault(s.Heartbeat, DefaultHeartbeat).Milliseconds()
	}
	if limits.RequestTimeoutMillis == 0 {
		limits.RequestTimeoutMillis = s.responseTimeout().Milliseconds()
	}
	est := &protocol.ConnectionEstablished{
		Version:      version,
		ConnectionID: rec.ConnectionID,
		TunnelID:     rec.TunnelID,
		PublicURL:    rec.PublicURL,
		SubdomainURL: s.subdomainURL(base, rec.TunnelID),
		ResumeToken:  resume,
		Limits:       &limits,
		Pool:         rec.Pool,
	}
	if s.Routing != RouteSubdomain {
		est.PathBasedURL = base + "/" + rec.TunnelID
	}
	return rec, est, nil
}

// mayFollow reports whether r may be put while held, a live record of one
// of this node's sessions, holds its tunnel ID: a member joins a pool of
// the same owner, a plain record replaces a plain one under
// store.Replaces' rule, and a pool and a plain record never share a name
// (store.Store.Put's rules).
func mayFollow(r, held store.Record) bool {
	if r.Pool || held.Pool {
		return r.Pool && held.Pool && r.Owner == held.Owner
	}
	return store.Replaces(r, held)
}

// requestBaseURL returns the public base URL (scheme://host[:port], no
// trailing slash) that the tunnels of an agent connecting with r are
// announced under when the Server has no BaseURL: the scheme and host the
// agent reached the gateway at.
func requestBaseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// subdomainURL returns the subdomain URL of tunnel id, or "" when subdomain
// routing is off.
func (s *Server) subdomainURL(base, id string) string {
	d := s.dom
	if d == "" || s.Routing == RoutePath {
		return ""
	}
	scheme, hostport, _ := strings.Cut(base, "://")
	port := ""
	if _, p, err := net.SplitHostPort(hostport); err == nil {
		port = ":" + p
	}
	return scheme + "://" + id + "." + d + port
}

// publicURL returns the URL a tunnel is announced under: its subdomain URL
// where subdomain routing is on, its path URL otherwise.
func (s *Server) publicURL(base, id string) string {
	if u := s.subdomainURL(base, id); u != "" {
		return u
	}
	return base + "/" + id
}

// hostOf returns the host (and port) of a URL, "" if it has none.
func hostOf(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Host
}

// authorizeName decides whether identity id may take tunnel name, which
// it asked for by name or by resuming a tunnel: AuthorizeName if set, else
// the identity's Names, else UnlistedNames. A name of the generated form
// (randid.TunnelIDLen characters of [a-z0-9]) is a generated name, which
// anyone may take: it is what a resumed tunnel with a generated name asks
// for, and it has no value to squat.
func (s *Server) authorizeName(ctx context.Context, id Identity, name string) error {
	if s.AuthorizeName != nil {
		err := s.AuthorizeName(ctx, id, name)
		if err == nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) {
			return e
		}
		return &Error{Code: CodeForbidden, Message: "tunnel name " + name + " is not allowed for this agent", Err: err}
	}
	if randid.IsTunnelID(name) || id.MayTake(name) || (id.Names == nil && s.UnlistedNames == AnyName) {
		return nil
	}
	return &Error{Code: CodeForbidden, Message: "tunnel name " + name + " is not allowed for this agent"}
}
