package serverless

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi"
	"github.com/aws/aws-sdk-go-v2/service/apigatewaymanagementapi/types"

	tunnel "github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/protocol"
)

// Waits between posts that API Gateway refused with 429: jittered, from
// about postRetryInitial, doubling up to postRetryMax.
const (
	postRetryInitial = 50 * time.Millisecond
	postRetryMax     = time.Second
)

// errAgentBufferFull is the cause of the 503 answered when posts to an
// agent stayed refused until the request's deadline.
var errAgentBufferFull = errors.New("the agent's connection buffer stayed full")

// postRetrying posts m to connection connID like post, and retries while
// API Gateway answers 429 LimitExceededException: the agent's buffer is
// full (it reads more slowly than requests arrive, or not at all), or the
// posts come faster than API Gateway takes them. It waits between
// attempts, jittered and doubling, for as long as deadline allows; then,
// or when a post is still running at deadline, it returns the public 503
// unavailable, which tells the client to try again later. Other errors
// are returned as post returns them. ctx bounds everything.
func postRetrying(ctx context.Context, post func(context.Context) error, deadline time.Time, connID string) error {
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	delay := postRetryInitial
	for attempt := 1; ; attempt++ {
		err := post(pctx)
		var limit *types.LimitExceededException
		switch {
		case err == nil:
			return nil
		case ctx.Err() == nil && (errors.As(err, &limit) || pctx.Err() != nil):
		default:
			return err
		}
		// delay/2 to delay, so that the posts of concurrent requests to
		// one agent spread out.
		wait := delay/2 + rand.N(delay/2+1)
		if pctx.Err() != nil || time.Until(deadline) < wait {
			return unavailableError(fmt.Errorf("post to connection %s, %d attempts: %w: %w", connID, attempt, errAgentBufferFull, err))
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, postRetryMax)
	}
}

// unavailableError is the 503 of a request that could not be posted to
// its agent in time.
func unavailableError(cause error) *tunnel.Error {
	return &tunnel.Error{Code: tunnel.CodeUnavailable,
		Message: "the tunnel's agent is not taking requests as fast as they arrive; try again later", Err: cause}
}

// postMessage posts m with the Relay's client, retrying a full buffer
// until deadline (see postRetrying). The SDK's retryer keeps retrying
// other errors, but not 429s: its backoff (up to 20 s between attempts)
// does not know the request's deadline.
func (rl *Relay) postMessage(ctx context.Context, deadline time.Time, connID string, m protocol.Message) error {
	b, err := protocol.Marshal(m)
	if err != nil {
		return err
	}
	in := &apigatewaymanagementapi.PostToConnectionInput{ConnectionId: aws.String(connID), Data: b}
	return postRetrying(ctx, func(ctx context.Context) error {
		_, err := rl.Mgmt.PostToConnection(ctx, in, noThrottleRetries)
		return err
	}, deadline, connID)
}

// noThrottleRetries leaves LimitExceededException to postRetrying, and
// every other decision to the client's own retryer (its attempts, backoff
// and retry token bucket, shared across calls).
func noThrottleRetries(o *apigatewaymanagementapi.Options) {
	base := o.Retryer
	if base == nil {
		base = retry.NewStandard()
	}
	o.Retryer = noThrottle{base}
}

// noThrottle is a retryer that does not retry a full buffer.
type noThrottle struct{ aws.Retryer }

func (r noThrottle) IsErrorRetryable(err error) bool {
	var limit *types.LimitExceededException
	if errors.As(err, &limit) {
		return false
	}
	return r.Retryer.IsErrorRetryable(err)
}

// GetAttemptToken is aws.RetryerV2's, passed on when the base has it.
func (r noThrottle) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := r.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return r.Retryer.GetInitialToken(), nil
}
