package tunnel

import (
	"math/rand/v2"
	"time"
)

// backoff yields the delays between reconnect attempts: the first about
// min, each next one twice the one before, each with ±50 % jitter, and
// none over max: the jitter is applied before the cap, so that max bounds
// every delay (WithBackoff's contract). Jitter keeps the agents of a
// gateway that went away from coming back all at once.
type backoff struct {
	min, max time.Duration
	base     time.Duration // the next delay before jitter; zero: min
	jitter   func() float64
}

// next returns the delay before the next attempt.
func (b *backoff) next() time.Duration {
	if b.base <= 0 {
		b.base = b.min
	}
	j := b.jitter
	if j == nil {
		j = rand.Float64
	}
	d := time.Duration(float64(b.base) * (0.5 + j())) // [base/2, 3·base/2)
	if b.base < b.max {
		b.base = min(2*b.base, b.max)
	}
	return max(min(d, b.max), 0)
}
