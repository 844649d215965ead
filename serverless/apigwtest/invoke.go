package apigwtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/aws/aws-lambda-go/lambdacontext"
)

// How an invocation failed; each maps to the answer API Gateway gives.
var (
	errRequestTooLarge    = errors.New("apigw: event over Lambda's invocation payload limit")
	errResponseTooLarge   = errors.New("apigw: response over Lambda's invocation payload limit")
	errIntegrationTimeout = errors.New("apigw: integration timeout")
	errHandler            = errors.New("apigw: handler failed")
	errClosed             = errors.New("apigw: emulator closed")
)

type result[Resp any] struct {
	resp Resp
	err  error
}

// invoke calls h with ev the way Lambda behind API Gateway does: the
// event and the response each cross a JSON encoding (so the handler sees
// exactly what it would decode on Lambda, and the payload limits apply to
// the encoded size), the handler runs in its own goroutine with a context
// carrying the function timeout and a lambdacontext.LambdaContext, and
// the caller waits at most the integration timeout. A handler still
// running after that keeps running, and keeps its slot of fn (nil:
// unlimited); Close waits for it. When fn has no free slot the handler is
// not called and invoke returns errThrottled.
//
// The caller must be a goroutine counted in e.wg.
func invoke[Req, Resp any](e *Emulator, fn *Concurrency, count func(*Stats), h func(context.Context, Req) (Resp, error), ev Req) (Resp, error) {
	var zero Resp
	payload, err := json.Marshal(ev)
	if err != nil {
		return zero, fmt.Errorf("apigw: encode event: %w", err)
	}
	if len(payload) > MaxInvokeRequestBytes {
		return zero, errRequestTooLarge
	}
	var in Req
	if err := json.Unmarshal(payload, &in); err != nil {
		return zero, fmt.Errorf("apigw: decode event: %w", err)
	}
	if !fn.acquire() {
		e.stats.add(func(s *Stats) { s.Throttles++ })
		return zero, errThrottled
	}
	e.stats.add(count)

	ctx, cancel := context.WithTimeout(e.ctx, e.limits.FunctionTimeout)
	ctx = lambdacontext.NewContext(ctx, &lambdacontext.LambdaContext{
		AwsRequestID:       newUUID(),
		InvokedFunctionArn: e.functionARN,
	})
	if e.cfg.ActiveTracing {
		//lint:ignore SA1029 the key aws-lambda-go uses, which handlers read
		ctx = context.WithValue(ctx, "x-amzn-trace-id", newTraceID(time.Now())+";Parent="+newSpanID()+";Sampled=1")
	}
	done := make(chan result[Resp], 1)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		r := call(ctx, h, in)
		cancel()
		// The invocation is over before its result goes anywhere: a
		// client that has the answer may invoke again at once.
		fn.release()
		done <- r
	}()

	timer := time.NewTimer(e.limits.IntegrationTimeout)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.resp, r.err
	case <-timer.C:
		return zero, errIntegrationTimeout
	case <-e.ctx.Done():
		return zero, errClosed
	}
}

// call runs h and round-trips its response through JSON. A panic becomes
// an error, as the Lambda runtime reports it.
func call[Req, Resp any](ctx context.Context, h func(context.Context, Req) (Resp, error), in Req) (r result[Resp]) {
	defer func() {
		if p := recover(); p != nil {
			r = result[Resp]{err: fmt.Errorf("%w: panic: %v\n%s", errHandler, p, debug.Stack())}
		}
	}()
	resp, err := h(ctx, in)
	if err != nil {
		return result[Resp]{err: fmt.Errorf("%w: %w", errHandler, err)}
	}
	out, err := json.Marshal(resp)
	if err != nil {
		return result[Resp]{err: fmt.Errorf("%w: encode response: %w", errHandler, err)}
	}
	if len(out) > MaxInvokeResponseBytes {
		return result[Resp]{err: errResponseTooLarge}
	}
	var back Resp
	if err := json.Unmarshal(out, &back); err != nil {
		return result[Resp]{err: fmt.Errorf("%w: decode response: %w", errHandler, err)}
	}
	return result[Resp]{resp: back}
}
