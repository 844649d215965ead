package tunnel

import (
	"testing"
	"time"
)

func TestBackoffStaysWithinItsBounds(t *testing.T) {
	t.Parallel()
	const lo, hi = 250 * time.Millisecond, 30 * time.Second
	for _, j := range []float64{0, 0.5, 0.999999} {
		b := &backoff{min: lo, max: hi, jitter: func() float64 { return j }}
		base := lo
		for i := range 40 {
			d := b.next()
			want := time.Duration(float64(base) * (0.5 + j))
			want = min(want, hi)
			if d != want {
				t.Fatalf("jitter %v, attempt %d: delay %v, want %v", j, i+1, d, want)
			}
			base = min(2*base, hi)
		}
	}
	// With real jitter: every delay within [min/2, max], the late ones at
	// least max/2.
	b := &backoff{min: lo, max: hi}
	for i := range 10000 {
		d := b.next()
		if d < lo/2 || d > hi || (i > 20 && d < hi/2) {
			t.Fatalf("attempt %d: delay %v out of bounds", i+1, d)
		}
	}
}
