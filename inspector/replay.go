package inspector

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Edit changes a captured request before Replay sends it again. The zero
// value (or a nil *Edit) changes nothing.
type Edit struct {
	// Method replaces the method; "" keeps it.
	Method string
	// Path replaces the request target, path and query ("/hook?x=1");
	// "" keeps it.
	Path string
	// Header, if not nil, replaces the captured header entirely; a "Host"
	// in it sets the request's Host. Nil keeps the captured header less
	// its masked values, which were never kept.
	Header http.Header
	// Body, if not nil, replaces the body (an empty, non-nil slice sends
	// none). Nil keeps the captured body, which must then have been kept
	// whole.
	Body []byte
}

// hopHeaders are the hop-by-hop headers and those that describe the
// original transfer, which a replay does not send again.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length", "Expect"}

// Replay sends the request of exchange id again, changed by edit (nil: as
// captured), to Options.Replay, and returns the new exchange, recorded
// like any other with ReplayOf set. ctx bounds the replay and is the
// request's context.
//
// Masked header values were never kept: they are not sent again unless
// edit supplies them. Errors: ErrNoReplay, ErrNotFound, and
// ErrNotReplayable for a WebSocket, or for a request body that was not
// kept whole when edit does not replace it.
func (r *Recorder) Replay(ctx context.Context, id uint64, edit *Edit) (Exchange, error) {
	if r.opts.Replay == nil {
		return Exchange{}, ErrNoReplay
	}
	if edit == nil {
		edit = &Edit{}
	}
	orig, ok := r.Get(id)
	if !ok {
		return Exchange{}, fmt.Errorf("inspector: replay %d: %w", id, ErrNotFound)
	}
	req, err := r.replayRequest(ctx, orig, edit)
	if err != nil {
		return Exchange{}, fmt.Errorf("inspector: replay %d: %w", id, err)
	}
	m := &mark{replayOf: id}
	req = req.WithContext(context.WithValue(req.Context(), markKey{r}, m))
	r.Middleware(r.opts.Replay).ServeHTTP(&replayWriter{header: http.Header{}}, req)
	r.mu.Lock()
	ex := m.entry.ex.clone()
	r.mu.Unlock()
	return ex, nil
}

// replayRequest builds the request that replays orig with edit, as a
// server would have received it.
func (r *Recorder) replayRequest(ctx context.Context, orig Exchange, edit *Edit) (*http.Request, error) {
	if orig.Kind == KindWebSocket || isUpgrade(orig.RequestHeader, "websocket") {
		return nil, fmt.Errorf("%w: a WebSocket cannot be replayed", ErrNotReplayable)
	}
	body := orig.RequestBody.Data
	if edit.Body != nil {
		body = edit.Body
	} else if !orig.RequestBody.Complete || orig.RequestBody.Truncated() {
		return nil, fmt.Errorf("%w: its request body was not kept whole (%d bytes seen, %d kept)", ErrNotReplayable, orig.RequestBody.Size, len(orig.RequestBody.Data))
	}
	method := orig.Method
	if edit.Method != "" {
		method = edit.Method
	}
	target := orig.URL
	if edit.Path != "" {
		target = edit.Path
	}
	if !strings.HasPrefix(target, "/") {
		return nil, fmt.Errorf("%w: the path %q does not start with /", ErrNotReplayable, target)
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotReplayable, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotReplayable, err)
	}
	req.URL = u
	req.RequestURI = target
	req.Host = orig.Host
	req.RemoteAddr = orig.RemoteAddr
	req.ContentLength = int64(len(body))
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	if edit.Header != nil {
		req.Header = edit.Header.Clone()
		if h := req.Header.Get("Host"); h != "" {
			req.Host = h
		}
		req.Header.Del("Host")
	} else {
		req.Header = orig.RequestHeader.Clone()
		for k := range req.Header {
			if r.mask[http.CanonicalHeaderKey(k)] {
				delete(req.Header, k)
			}
		}
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	return req, nil
}

// replayWriter is the ResponseWriter of a replay: the Middleware records
// the response; nobody else reads it.
type replayWriter struct{ header http.Header }

func (w *replayWriter) Header() http.Header         { return w.header }
func (w *replayWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *replayWriter) WriteHeader(int)             {}
func (w *replayWriter) Flush()                      {}

// ReplayTo returns a replay target (see Options.Replay) that sends
// requests to the HTTP service at baseURL ("http://localhost:3000", or
// with a path prefix that the request's path is appended to) with client,
// nil meaning http.DefaultClient. The request's Host is sent as captured.
// Redirects are returned, not followed, whatever client's CheckRedirect;
// a service that cannot be reached gives 502 Bad Gateway.
func ReplayTo(baseURL string, client *http.Client) (http.Handler, error) {
	base, err := url.Parse(baseURL)
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, fmt.Errorf("inspector: replay target %q: want an http or https URL", baseURL)
	}
	if client == nil {
		client = http.DefaultClient
	}
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &replayProxy{base: base, client: &c}, nil
}

// replayProxy is ReplayTo's handler.
type replayProxy struct {
	base   *url.URL
	client *http.Client
}

func (p *replayProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u := *p.base
	u.Path = strings.TrimSuffix(p.base.Path, "/") + r.URL.Path
	u.RawPath = ""
	if p.base.RawPath != "" || r.URL.RawPath != "" {
		u.RawPath = strings.TrimSuffix(p.base.EscapedPath(), "/") + r.URL.EscapedPath()
	}
	u.RawQuery = r.URL.RawQuery
	out, err := http.NewRequestWithContext(r.Context(), r.Method, u.String(), r.Body)
	if err != nil {
		http.Error(w, "replay: "+err.Error(), http.StatusBadGateway)
		return
	}
	out.Header = r.Header.Clone()
	out.Host = r.Host
	out.ContentLength = r.ContentLength
	if r.ContentLength == 0 {
		out.Body = http.NoBody
	}
	resp, err := p.client.Do(out)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		http.Error(w, "replay: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}
