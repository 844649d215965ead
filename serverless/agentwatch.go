package serverless

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/store"
)

// DefaultAgentCheckInterval is how often a request waiting for its response
// checks that the agent's connection is still open, when
// Relay.AgentCheckInterval is zero.
const DefaultAgentCheckInterval = time.Second

// errAgentGone ends a wait whose agent's connection closed: nothing can
// answer the request any more.
var errAgentGone = errors.New("the agent's connection closed while the request waited")

func (rl *Relay) agentCheckInterval() time.Duration {
	if rl.AgentCheckInterval != 0 {
		return rl.AgentCheckInterval
	}
	return DefaultAgentCheckInterval
}

// awaitResponse waits for the response to request id, posted to connection
// connID, until deadline (ResponseTimeout after the request began: posts
// retried against a full buffer have used part of it), and returns the
// stored response or
// the public error to answer: 504 gateway_timeout at the deadline, 502
// agent_unavailable as soon as the connection is known to be closed. A
// connection closes under a waiting request when the agent dies, and when
// API Gateway closes it with 1009 for a frame over 32 KB, which an
// original agent sends for any response body over about 24 KB.
func (rl *Relay) awaitResponse(ctx context.Context, deadline time.Time, id, connID string) ([]byte, error) {
	gctx, gone := context.WithCancelCause(ctx)
	defer gone(nil)
	wctx, cancel := context.WithDeadline(gctx, deadline)
	defer cancel()
	var watch sync.WaitGroup
	var forbidden bool // the checks were refused: the wait runs to its deadline
	if rl.agentCheckInterval() > 0 {
		watch.Go(func() { forbidden = rl.watchConnection(wctx, connID, gone) })
	}
	data, err := rl.Store.WaitResponse(wctx, id, rl.Wait)
	cancel()
	watch.Wait()
	if forbidden && errors.Is(err, context.DeadlineExceeded) {
		// Say why no check cut the wait short, in the 504's log line.
		err = fmt.Errorf("%w (the connection checks were refused: the role lacks execute-api:ManageConnections on GET @connections)", err)
	}
	switch {
	case err == nil:
		return data, nil
	case ctx.Err() == nil && errors.Is(context.Cause(wctx), errAgentGone):
		return nil, publicError(tunnel.CodeAgentUnavailable, fmt.Errorf("wait response: connection %s: %w", connID, errAgentGone))
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil, errors.Is(err, store.ErrNotFound):
		return nil, publicError(tunnel.CodeGatewayTimeout, fmt.Errorf("wait response: %w", err))
	default:
		return nil, fmt.Errorf("wait response: %w", err)
	}
}

// watchConnection asks the Management API (GetConnection) every
// agentCheckInterval whether connection connID is open, until ctx ends.
// Once the answer is GoneException twice in a row (an answer that the
// connection is open starts the count again), it cancels the wait with
// errAgentGone: the interval in between leaves time for a response the
// agent sent just before its connection closed, whose $default invocation
// may still be storing it. Other errors leave the wait alone;
// ForbiddenException (a role without execute-api:ManageConnections on
// GET @connections) ends the checks, reported as forbidden, and the wait
// lasts to its deadline.
func (rl *Relay) watchConnection(ctx context.Context, connID string, gone context.CancelCauseFunc) (forbidden bool) {
	t := time.NewTicker(rl.agentCheckInterval())
	defer t.Stop()
	seen := false
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		_, err := rl.Mgmt.GetConnection(ctx, &apigatewaymanagementapi.GetConnectionInput{ConnectionId: aws.String(connID)})
		var refused *types.ForbiddenException
		switch {
		case isGone(err) && seen:
			gone(errAgentGone)
			return false
		case isGone(err):
			seen = true
		case err == nil:
			seen = false
		case errors.As(err, &refused):
			return true
		}
	}
}
