package apigwtest

import "errors"

// A Concurrency is the concurrency available to one Lambda function: at
// most its limit of invocations run at once, and an invocation that
// arrives while they all run is throttled (Lambda answers the invoke
// 429 TooManyRequestsException, and API Gateway does not retry it). It
// models a function's reserved concurrency, or, shared by every route,
// one function drawing on the account's concurrency limit.
//
// An invocation holds its slot until its handler returns, not until API
// Gateway stops waiting: a handler that outlives the integration timeout
// keeps an instance busy, as on Lambda.
//
// Make one with NewConcurrency; the zero value is not usable. A
// Concurrency is safe for concurrent use, and one may serve several
// emulators (functions of one account).
type Concurrency struct {
	slots chan struct{}
}

// NewConcurrency returns a Concurrency of limit concurrent invocations;
// limit must be positive.
func NewConcurrency(limit int) *Concurrency {
	if limit <= 0 {
		panic("apigwtest: NewConcurrency: limit must be positive")
	}
	return &Concurrency{slots: make(chan struct{}, limit)}
}

// Limit returns the number of invocations that may run at once.
func (c *Concurrency) Limit() int { return cap(c.slots) }

// InUse returns the number of invocations running now.
func (c *Concurrency) InUse() int { return len(c.slots) }

// errThrottled is an invocation refused for want of concurrency.
var errThrottled = errors.New("apigw: Lambda throttled the invocation (TooManyRequestsException)")

// acquire takes a slot without waiting, and reports whether it got one.
// A nil Concurrency is unlimited.
func (c *Concurrency) acquire() bool {
	if c == nil {
		return true
	}
	select {
	case c.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (c *Concurrency) release() {
	if c != nil {
		<-c.slots
	}
}
