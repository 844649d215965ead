package inspector

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

//go:embed ui
var ui embed.FS

const (
	// replayTimeout bounds a replay asked for through the API, so that a
	// replayed stream that never ends does not hold the request for ever.
	replayTimeout = 30 * time.Second
	// maxEditBytes bounds the body of a replay request with edits.
	maxEditBytes = 8 << 20
	// maxStreams bounds the live streams (GET api/events) served at once.
	maxStreams = 32
	// heartbeat is how often an idle live stream sends a comment, so that
	// a client that has gone is noticed.
	heartbeat = 15 * time.Second
)

// contentSecurityPolicy lets the page load its own script and style and
// nothing else, and no other site frame it.
const contentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler returns the inspector's page and JSON API, to be served on a
// loopback address (see docs/inspector.md for the endpoints and shapes):
//
//	GET    /                               the page
//	GET    /api/exchanges?status=&path=    the list, newest first
//	DELETE /api/exchanges                  clear the log
//	GET    /api/exchanges/{id}             one exchange, bodies made readable
//	GET    /api/exchanges/{id}/request/body, .../response/body  the kept bytes
//	POST   /api/exchanges/{id}/replay      replay, with optional edits
//	GET    /api/events                     the list, live (Server-Sent Events)
//
// The paths are relative, so the handler may be mounted under a prefix
// with http.StripPrefix. Requests whose Host is not a loopback name or
// address (or one of Options.AllowedHosts) are refused with 403, against
// DNS rebinding; requests that change state (POST, DELETE) from another
// origin are refused with 403 (http.CrossOriginProtection), against
// CSRF. A live stream lasts until its client goes: a server that shuts
// down gracefully should close its connections when Shutdown times out.
func (r *Recorder) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", servePage)
	mux.HandleFunc("GET /assets/{name}", serveAsset)
	mux.HandleFunc("GET /api/exchanges", r.serveList)
	mux.HandleFunc("DELETE /api/exchanges", r.serveClear)
	mux.HandleFunc("GET /api/exchanges/{id}", r.serveExchange)
	mux.HandleFunc("GET /api/exchanges/{id}/request/body", r.serveBody)
	mux.HandleFunc("GET /api/exchanges/{id}/response/body", r.serveBody)
	mux.HandleFunc("POST /api/exchanges/{id}/replay", r.serveReplay)
	mux.HandleFunc("GET /api/events", r.serveEvents)

	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, "cross_origin", "a request that changes state must come from the inspector's own page")
	}))
	return &guard{hosts: r.opts.AllowedHosts, next: cop.Handler(mux)}
}

// guard checks the Host of every request and sets the headers that keep
// the page to itself.
type guard struct {
	hosts []string
	next  http.Handler
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if !g.allowedHost(r.Host) {
		writeError(w, http.StatusForbidden, "forbidden_host", "the inspector answers on loopback names only, not "+strconv.Quote(r.Host))
		return
	}
	g.next.ServeHTTP(w, r)
}

// allowedHost reports whether a Host header names this machine's loopback
// interface or one of the allowed hosts. A name that only resolves to
// loopback today (DNS rebinding) is not enough: it must say so itself.
func (g *guard) allowedHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, a := range g.hosts {
		if strings.EqualFold(strings.TrimSuffix(a, "."), host) {
			return true
		}
	}
	return false
}

func servePage(w http.ResponseWriter, r *http.Request) {
	b, err := ui.ReadFile("ui/index.html")
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(b)
}

func serveAsset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var ct string
	switch path.Ext(name) {
	case ".js":
		ct = "text/javascript; charset=utf-8"
	case ".css":
		ct = "text/css; charset=utf-8"
	}
	b, err := ui.ReadFile("ui/" + name)
	if ct == "" || err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such asset")
		return
	}
	w.Header().Set("Content-Type", ct)
	w.Write(b)
}

func (r *Recorder) serveList(w http.ResponseWriter, req *http.Request) {
	f, err := parseFilter(req.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	limit := -1
	if s := req.URL.Query().Get("limit"); s != "" {
		if limit, err = strconv.Atoi(s); err != nil || limit < 0 {
			writeError(w, http.StatusBadRequest, "invalid_request", "limit must be a number of exchanges")
			return
		}
	}
	out := listJSON{Exchanges: []summaryJSON{}, Replay: r.opts.Replay != nil}
	r.mu.Lock()
	out.FirstID = r.firstIDLocked()
	for i := len(r.log) - 1; i >= 0 && limit != 0; i-- {
		if ex := &r.log[i].ex; f.match(ex) {
			out.Exchanges = append(out.Exchanges, summarize(ex))
			limit--
		}
	}
	out.Stats = statsJSON{Exchanges: len(r.log), Bytes: r.bytes, Dropped: r.dropped,
		MaxExchanges: r.opts.MaxExchanges, MaxBytes: r.opts.MaxBytes, MaxBodyBytes: r.opts.MaxBodyBytes}
	r.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// firstIDLocked returns the ID of the oldest kept exchange, or of the
// next one if none is kept.
func (r *Recorder) firstIDLocked() uint64 {
	if len(r.log) > 0 {
		return r.log[0].ex.ID
	}
	return r.nextID + 1
}

func (r *Recorder) serveClear(w http.ResponseWriter, _ *http.Request) {
	r.Clear()
	w.WriteHeader(http.StatusNoContent)
}

// lookup returns a view of the exchange named in the path, or answers 404.
func (r *Recorder) lookup(w http.ResponseWriter, req *http.Request) (Exchange, bool) {
	id, err := strconv.ParseUint(req.PathValue("id"), 10, 64)
	if err == nil {
		r.mu.Lock()
		e := r.findLocked(id)
		var ex Exchange
		if e != nil {
			ex = e.ex.view()
		}
		r.mu.Unlock()
		if e != nil {
			return ex, true
		}
	}
	writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no exchange %q is kept", req.PathValue("id")))
	return Exchange{}, false
}

func (r *Recorder) serveExchange(w http.ResponseWriter, req *http.Request) {
	if ex, ok := r.lookup(w, req); ok {
		writeJSON(w, http.StatusOK, r.detail(&ex))
	}
}

// serveBody answers with the kept bytes of a body, as a download: the
// service's content type is not trusted on the inspector's origin.
func (r *Recorder) serveBody(w http.ResponseWriter, req *http.Request) {
	ex, ok := r.lookup(w, req)
	if !ok {
		return
	}
	which, b := "request", ex.RequestBody
	if strings.HasSuffix(req.URL.Path, "/response/body") {
		which, b = "response", ex.ResponseBody
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Disposition", fmt.Sprintf(`attachment; filename="exchange-%d-%s.bin"`, ex.ID, which))
	h.Set("X-Body-Size", strconv.FormatInt(b.Size, 10))
	h.Set("X-Body-Truncated", strconv.FormatBool(b.Truncated()))
	h.Set("Content-Length", strconv.Itoa(len(b.Data)))
	w.Write(b.Data)
}

func (r *Recorder) serveReplay(w http.ResponseWriter, req *http.Request) {
	id, err := strconv.ParseUint(req.PathValue("id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no exchange %q is kept", req.PathValue("id")))
		return
	}
	edit, err := readEdit(w, req)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), replayTimeout)
	defer cancel()
	ex, err := r.Replay(ctx, id, edit)
	switch {
	case errors.Is(err, ErrNoReplay):
		writeError(w, http.StatusNotImplemented, "replay_unavailable", "replay is not configured")
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, "not_found", fmt.Sprintf("no exchange %d is kept", id))
	case errors.Is(err, ErrNotReplayable):
		writeError(w, http.StatusUnprocessableEntity, "not_replayable", strings.TrimPrefix(err.Error(), "inspector: "))
	case err != nil:
		writeError(w, http.StatusInternalServerError, "internal", err.Error())
	default:
		writeJSON(w, http.StatusOK, r.detail(&ex))
	}
}

// readEdit reads the optional JSON body of a replay request.
func readEdit(w http.ResponseWriter, req *http.Request) (*Edit, error) {
	b, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxEditBytes))
	if err != nil {
		return nil, fmt.Errorf("reading the edits: %w", err)
	}
	if len(strings.TrimSpace(string(b))) == 0 {
		return nil, nil
	}
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("edits must be sent as application/json, not %q", ct)
	}
	var in replayJSON
	if err := json.Unmarshal(b, &in); err != nil {
		return nil, fmt.Errorf("edits: %w", err)
	}
	edit := &Edit{Method: in.Method, Path: in.Path, Header: in.Headers}
	switch {
	case in.Body != nil && in.BodyBase64 != nil:
		return nil, errors.New("edits: body and body_base64 are exclusive")
	case in.Body != nil:
		edit.Body = []byte(*in.Body)
	case in.BodyBase64 != nil:
		if edit.Body, err = base64.StdEncoding.DecodeString(*in.BodyBase64); err != nil {
			return nil, fmt.Errorf("edits: body_base64: %w", err)
		}
		if edit.Body == nil {
			edit.Body = []byte{}
		}
	}
	return edit, nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	writeJSON(w, status, errorJSON{Error: code, Message: message})
}
