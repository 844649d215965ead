package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
)

// maxJWKSBytes bounds the body of a JWK set response. A provider's set of
// a few keys is a few KiB.
const maxJWKSBytes = 1 << 20

// Retry pauses: the first, doubled after each attempt, up to the last.
const (
	firstRetryPause = 100 * time.Millisecond
	maxRetryPause   = time.Second
)

// ErrUnknownKey is the cause of the refusal of a token whose key the
// Authenticator does not have: no key of the JWK set URL's set has its kid
// (or, for a token without one, fits its algorithm), even after a fetch of
// the set when one was allowed.
var ErrUnknownKey = errors.New("jwtauth: no key for the token's key ID")

// errKeyMismatch is the cause of the refusal of a token whose kid names a
// key of another type than its algorithm needs.
var errKeyMismatch = errors.New("jwtauth: the key the token names does not verify its algorithm")

// FetchError is a failed fetch of Config.JWKSURL: New's error when its
// first fetch fails, and part of the cause of the refusal of a token
// whose key was unknown when a fetch failed.
type FetchError struct {
	// URL is Config.JWKSURL, its password, if any, redacted.
	URL string
	// Attempts is how many requests were made.
	Attempts int
	// Err is the last attempt's error.
	Err error
}

func (e *FetchError) Error() string {
	return fmt.Sprintf("jwtauth: fetch JWK set %s: %d attempt(s): %v", e.URL, e.Attempts, e.Err)
}

// Unwrap returns the last attempt's error.
func (e *FetchError) Unwrap() error { return e.Err }

// statusError is a response that is not 200 OK.
type statusError int

func (e statusError) Error() string {
	return fmt.Sprintf("status %d %s", int(e), http.StatusText(int(e)))
}

// retryable reports whether a later request may get another answer.
func (e statusError) retryable() bool {
	return e >= 500 || e == http.StatusTooManyRequests || e == http.StatusRequestTimeout
}

// remoteKeys is the key set of Config.JWKSURL: fetched on demand, kept in
// a jwkset memory storage that a keyfunc.Keyfunc reads.
type remoteKeys struct {
	url         string
	shown       string // url, redacted, for errors
	client      *http.Client
	timeout     time.Duration
	attempts    int
	minInterval time.Duration
	maxAge      time.Duration
	now         func() time.Time

	store *jwkset.MemoryJWKSet
	kf    keyfunc.Keyfunc

	mu       sync.Mutex
	started  time.Time  // when the last fetch started
	fetched  time.Time  // when the last fetch that succeeded ended
	inflight *fetchCall // the fetch under way, if any
}

// fetchCall is one fetch, which concurrent callers share.
type fetchCall struct {
	done chan struct{}
	err  error // set before done is closed
}

// checkJWKSURL accepts https URLs, and http ones to loopback addresses (a
// key server on the same machine, or a test's).
func checkJWKSURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("JWKSURL: %w", err)
	}
	switch {
	case u.Host == "":
		return nil, fmt.Errorf("JWKSURL %q: want an absolute https URL", u.Redacted())
	case u.Scheme == "https":
		return u, nil
	case u.Scheme == "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); (ip != nil && ip.IsLoopback()) || strings.EqualFold(host, "localhost") {
			return u, nil
		}
		return nil, fmt.Errorf("JWKSURL %q: keys fetched over plain http could be anyone's; use https (http is allowed to loopback addresses only)", u.Redacted())
	default:
		return nil, fmt.Errorf("JWKSURL %q: want an https URL", u.Redacted())
	}
}

// keys returns the keys of the set that may verify t: the one its kid
// names, or every one that fits its algorithm when it names none. A key
// it does not find is fetched again, once, if the rate allows; ErrUnknownKey
// (with the fetch's error, if that failed) when it is still missing.
func (r *remoteKeys) keys(ctx context.Context, t *jwt.Token) ([]jwt.VerificationKey, error) {
	keys, err := r.find(ctx, t)
	if err != nil || len(keys) > 0 {
		return keys, err
	}
	ferr := r.refresh(ctx, true)
	if keys, err = r.find(ctx, t); err != nil || len(keys) > 0 {
		return keys, err
	}
	if ferr != nil {
		return nil, fmt.Errorf("%w (the key set was not fetched again: %w)", ErrUnknownKey, ferr)
	}
	return nil, ErrUnknownKey
}

// find looks t's key up in the set as it is.
func (r *remoteKeys) find(ctx context.Context, t *jwt.Token) ([]jwt.VerificationKey, error) {
	got, err := r.kf.KeyfuncCtx(ctx)(t)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		// A JWK whose "alg" is not the token's, or a kid that is not a
		// string.
		return nil, fmt.Errorf("%w: %w", errKeyMismatch, err)
	}
	candidates := []jwt.VerificationKey{got}
	if set, ok := got.(jwt.VerificationKeySet); ok {
		candidates = set.Keys
	}
	alg := t.Method.Alg()
	var keys []jwt.VerificationKey
	for _, k := range candidates {
		if fits(alg, k) {
			keys = append(keys, k)
		}
	}
	if _, named := t.Header["kid"]; named && len(keys) == 0 {
		return nil, errKeyMismatch
	}
	return keys, nil
}

// stale reports whether the set is older than maxAge.
func (r *remoteKeys) stale() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now().Sub(r.fetched) >= r.maxAge
}

// errTooSoon is refresh's refusal to start a fetch within minInterval of
// the last.
type errTooSoon struct{ since, interval time.Duration }

func (e errTooSoon) Error() string {
	return fmt.Sprintf("the last fetch started %v ago, and fetches start at most once per %v", e.since.Round(time.Millisecond), e.interval)
}

// refresh fetches the set again and replaces the keys with those it
// holds; the keys stay as they were when it fails. A fetch already under
// way is shared: refresh waits for it when wait is set (bounded by ctx),
// and returns nil at once otherwise. A new fetch starts only minInterval
// after the last started (errTooSoon otherwise).
func (r *remoteKeys) refresh(ctx context.Context, wait bool) error {
	r.mu.Lock()
	if c := r.inflight; c != nil {
		r.mu.Unlock()
		if !wait {
			return nil
		}
		select {
		case <-c.done:
			return c.err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	now := r.now()
	if since := now.Sub(r.started); !r.started.IsZero() && since < r.minInterval {
		r.mu.Unlock()
		return errTooSoon{since: since, interval: r.minInterval}
	}
	c := &fetchCall{done: make(chan struct{})}
	r.inflight, r.started = c, now
	r.mu.Unlock()

	keys, err := r.fetch(ctx)
	if err == nil {
		err = r.store.KeyReplaceAll(ctx, keys)
	}

	r.mu.Lock()
	if err == nil {
		r.fetched = r.now()
	}
	r.inflight, c.err = nil, err
	r.mu.Unlock()
	close(c.done)
	return err
}

// fetch gets and parses the set, retrying what may succeed later.
func (r *remoteKeys) fetch(ctx context.Context) ([]jwkset.JWK, error) {
	pause := firstRetryPause
	for attempt := 1; ; attempt++ {
		keys, retry, err := r.fetchOnce(ctx)
		if err == nil {
			return keys, nil
		}
		if !retry || attempt == r.attempts || ctx.Err() != nil {
			return nil, &FetchError{URL: r.shown, Attempts: attempt, Err: err}
		}
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, &FetchError{URL: r.shown, Attempts: attempt, Err: errors.Join(err, ctx.Err())}
		}
		pause = min(2*pause, maxRetryPause)
	}
}

// fetchOnce makes one request, bounded by timeout; retry says whether
// another may succeed.
func (r *remoteKeys) fetchOnce(ctx context.Context) (keys []jwkset.JWK, retry bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, false, err
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, true, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10)) // let the connection be reused
		s := statusError(resp.StatusCode)
		return nil, s.retryable(), s
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, true, err
	}
	if len(body) > maxJWKSBytes {
		return nil, false, fmt.Errorf("the JWK set is larger than %d bytes", maxJWKSBytes)
	}
	keys, err = parseJWKSet(body, false)
	return keys, false, err
}
