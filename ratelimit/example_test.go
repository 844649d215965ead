package ratelimit_test

import (
	"context"
	"fmt"
	"log"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"time"

	"github.com/http-tunnel/tunnel/ratelimit"
)

func ExampleLocal() {
	// Two events per hour per key. The fixed clock keeps the output stable;
	// real code leaves LocalOptions nil.
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 2, Period: time.Hour}, &ratelimit.LocalOptions{
		Now: func() time.Time { return now },
	})

	for range 3 {
		d, err := lim.Allow(context.Background(), "203.0.113.7")
		if err != nil {
			log.Fatal(err) // Local never fails; a distributed backend may.
		}
		fmt.Printf("allowed=%v remaining=%d retry after %v\n", d.Allowed, d.Remaining, d.RetryAfter)
	}
	// Another key has its own allowance.
	d, _ := lim.Allow(context.Background(), "198.51.100.2")
	fmt.Println("other key allowed:", d.Allowed)
	// Output:
	// allowed=true remaining=1 retry after 0s
	// allowed=true remaining=0 retry after 0s
	// allowed=false remaining=0 retry after 30m0s
	// other key allowed: true
}

func ExampleLimit_burst() {
	// One event per second on average, but up to five at once after a quiet
	// spell: a token bucket of five that refills one token a second.
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Second, Burst: 5}, &ratelimit.LocalOptions{
		Now: func() time.Time { return now },
	})
	allowed := 0
	for range 10 {
		if d, _ := lim.Allow(context.Background(), "k"); d.Allowed {
			allowed++
		}
	}
	fmt.Println("allowed at once:", allowed)
	// Output:
	// allowed at once: 5
}

// limitByClientIP is the shape of a gateway's use of a Limiter: answer 429
// with Retry-After when denied, and apply a failure policy of its own when
// the backend fails. This one fails open: availability over strictness.
func limitByClientIP(lim ratelimit.Limiter, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ip, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			ip = r.RemoteAddr
		}
		d, err := lim.Allow(r.Context(), ip)
		if err != nil {
			// Fail open: a limiter outage must not take the service down.
			next.ServeHTTP(w, r)
			return
		}
		if !d.Allowed {
			secs := int(math.Ceil(d.RetryAfter.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			http.Error(w, "rate limited", http.StatusTooManyRequests)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func Example_httpMiddleware() {
	lim := ratelimit.NewLocal(ratelimit.Limit{Events: 1, Period: time.Hour}, nil)
	h := limitByClientIP(lim, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))

	for range 2 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		fmt.Printf("%d Retry-After=%q\n", rec.Code, rec.Header().Get("Retry-After"))
	}
	// Output:
	// 200 Retry-After=""
	// 429 Retry-After="3600"
}
