package inspector

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// markKey is the context key of a request's mark for one Recorder, so that
// the Middlewares of several Recorders nest.
type markKey struct{ rec *Recorder }

// mark says that a request is being recorded (entry set), or is a replay
// about to be recorded (entry nil until then).
type mark struct {
	replayOf uint64
	entry    *entry
}

// Middleware returns a handler that records every exchange passing through
// it to next. Bodies stream through as they are read and written; only
// their first bytes are copied. The ResponseWriter next gets keeps what
// the server's offers to http.ResponseController: flushing (Server-Sent
// Events), hijacking (WebSocket upgrades, whose frames are then read off
// the connection), deadlines and full duplex.
//
// A request body the handler leaves unread is read, up to the body cap,
// when the response starts, as net/http's HTTP/1 server would discard it
// then; over HTTP/2, after EnableFullDuplex or with Expect: 100-continue,
// only what the handler read is recorded.
//
// A request already recorded by this Recorder's Middleware further out
// passes through unrecorded.
func (r *Recorder) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		m, _ := req.Context().Value(markKey{r}).(*mark)
		if m != nil && m.entry != nil {
			next.ServeHTTP(w, req)
			return
		}
		var replayOf uint64
		if m != nil {
			replayOf = m.replayOf
		} else {
			m = &mark{}
		}
		e := r.begin(req, replayOf)
		m.entry = e
		req = req.WithContext(context.WithValue(req.Context(), markKey{r}, m))

		rw := &responseWriter{w: w, rec: r, e: e, req: req}
		if req.Body != nil && req.Body != http.NoBody {
			rw.body = &bodyTee{rc: req.Body, rec: r, e: e, hint: req.ContentLength}
			req.Body = rw.body
		} else {
			r.completeRequestBody(e)
		}
		ended := false
		defer func() { rw.finish(ended) }()
		next.ServeHTTP(rw, req)
		ended = true
	})
}

// begin records the start of an exchange.
func (r *Recorder) begin(req *http.Request, replayOf uint64) *entry {
	uri := req.RequestURI
	if uri == "" {
		uri = req.URL.RequestURI()
	}
	e := &entry{ex: Exchange{
		ReplayOf:      replayOf,
		Kind:          KindHTTP,
		Start:         r.now(),
		RemoteAddr:    req.RemoteAddr,
		Method:        req.Method,
		URL:           uri,
		Host:          req.Host,
		Proto:         req.Proto,
		RequestHeader: r.maskHeader(req.Header),
	}}
	budget := int64(r.opts.MaxBodyBytes)
	e.frameBudget = [2]int64{budget, budget}
	e.eventBudget = budget
	cost := exchangeOverhead + int64(len(req.RemoteAddr)+len(req.Method)+len(uri)+len(req.Host)+len(req.Proto)) + headerCost(e.ex.RequestHeader)
	r.mu.Lock()
	r.addLocked(e, cost)
	r.mu.Unlock()
	return e
}

// appendBody counts p as bytes of b, a body of e, and keeps what fits
// under the cap. hint is the body's declared length, or -1.
func (r *Recorder) appendBody(e *entry, b *Body, p []byte, hint int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b.Size += int64(len(p))
	room := r.opts.MaxBodyBytes - len(b.Data)
	if !e.inLog || room <= 0 || len(p) == 0 {
		return
	}
	p = p[:min(len(p), room)]
	if need := len(b.Data) + len(p); need > cap(b.Data) {
		// Grow within the cap, so that what is counted is what is held.
		newCap := min(max(2*cap(b.Data), need, 512, int(min(hint, int64(r.opts.MaxBodyBytes)))), r.opts.MaxBodyBytes)
		r.growLocked(e, int64(newCap-cap(b.Data)))
		if !e.inLog {
			return
		}
		d := make([]byte, len(b.Data), newCap)
		copy(d, b.Data)
		b.Data = d
	}
	b.Data = append(b.Data, p...)
}

// completeRequestBody marks e's request body as read to its end.
func (r *Recorder) completeRequestBody(e *entry) {
	r.mu.Lock()
	e.ex.RequestBody.Complete = true
	r.mu.Unlock()
}

// bodyTee is a request body that records what is read through it.
type bodyTee struct {
	rc   io.ReadCloser
	rec  *Recorder
	e    *entry
	hint int64 // the declared length, or -1
	eof  atomic.Bool
}

func (t *bodyTee) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		t.rec.appendBody(t.e, &t.e.ex.RequestBody, p[:n], t.hint)
	}
	if err == io.EOF && !t.eof.Swap(true) {
		t.rec.completeRequestBody(t.e)
	}
	return n, err
}

func (t *bodyTee) Close() error { return t.rc.Close() }

// responseWriter records the response a handler writes through it.
type responseWriter struct {
	w    http.ResponseWriter
	rec  *Recorder
	e    *entry
	req  *http.Request
	body *bodyTee // nil without a request body

	wroteHeader bool
	sniffed     bool  // the first body bytes have been seen
	hint        int64 // the response's Content-Length, or -1
	fullDuplex  bool
	hijacked    *conn
	sse         *sseParser
}

func (w *responseWriter) Header() http.Header { return w.w.Header() }

func (w *responseWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational: the real response comes later.
		w.w.WriteHeader(code)
		return
	}
	if !w.wroteHeader {
		w.wroteHeader = true
		w.drainRequest()
		w.rec.gotHeader(w, code, w.w.Header())
	}
	w.w.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.sniffed && len(p) > 0 {
		w.sniffed = true
		w.rec.sniff(w.e, w.w.Header(), p)
		w.hint = -1
		if n, err := strconv.ParseInt(w.w.Header().Get("Content-Length"), 10, 64); err == nil {
			w.hint = n
		}
	}
	n, err := w.w.Write(p)
	if n > 0 {
		w.rec.appendBody(w.e, &w.e.ex.ResponseBody, p[:n], w.hint)
		if w.sse != nil {
			w.sse.feed(p[:n])
		}
	}
	return n, err
}

// Flush flushes the real writer; see FlushError.
func (w *responseWriter) Flush() { w.FlushError() }

// FlushError flushes the real writer, through http.ResponseController, and
// returns its error; http.ErrNotSupported if it cannot.
func (w *responseWriter) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return http.NewResponseController(w.w).Flush()
}

// Hijack takes the connection over from the real writer and returns it
// wrapped, so that the bytes each way are recorded: the response head and
// WebSocket frames, or raw bytes for another protocol.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.w).Hijack()
	if err != nil {
		return nil, nil, err
	}
	// Bytes the client sent behind its request may be in the server's
	// buffer: they come first from the wrapped connection.
	var early []byte
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		early = append([]byte(nil), b...)
	}
	c := w.rec.newConn(nc, early, w)
	w.hijacked = c
	return c, bufio.NewReadWriter(bufio.NewReader(c), bufio.NewWriter(c)), nil
}

// EnableFullDuplex passes on to the real writer, and stops the Middleware
// from reading the unread request body when the response starts.
func (w *responseWriter) EnableFullDuplex() error {
	w.fullDuplex = true
	return http.NewResponseController(w.w).EnableFullDuplex()
}

// Unwrap returns the real writer, for http.ResponseController's other
// methods (deadlines).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.w }

// drainRequest reads what is left of the request body, up to the cap,
// where net/http's server would discard it as the response starts: HTTP/1
// without full duplex. The body then counts as seen.
func (w *responseWriter) drainRequest() {
	if w.body == nil || w.body.eof.Load() || w.hijacked != nil || w.fullDuplex || w.req.ProtoMajor != 1 ||
		strings.EqualFold(w.req.Header.Get("Expect"), "100-continue") {
		return
	}
	limit := int64(w.rec.opts.MaxBodyBytes) - w.rec.requestSize(w.e)
	if limit <= 0 {
		return
	}
	io.Copy(io.Discard, io.LimitReader(w.body, limit+1))
}

// requestSize returns the bytes of e's request body seen so far.
func (r *Recorder) requestSize(e *entry) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return e.ex.RequestBody.Size
}

// gotHeader records the start of the response.
func (r *Recorder) gotHeader(w *responseWriter, code int, h http.Header) {
	kept := r.maskHeader(h)
	if code != http.StatusSwitchingProtocols && isEventStream(h.Get("Content-Type")) {
		w.sse = &sseParser{rec: r, e: w.e, limit: r.opts.MaxBodyBytes}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e := w.e
	e.ex.Status = code
	e.ex.ResponseHeader = kept
	e.ex.HeaderTime = r.now().Sub(e.ex.Start)
	if w.sse != nil {
		e.ex.Kind = KindSSE
	}
	r.growLocked(e, headerCost(kept))
	r.notifyLocked(e)
}

// sniff records the Content-Type that net/http will send for a response
// whose handler set none, as it decides it from the first bytes.
func (r *Recorder) sniff(e *entry, h http.Header, p []byte) {
	if _, set := h["Content-Type"]; set || h.Get("Transfer-Encoding") != "" {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch e.ex.Status {
	case http.StatusNoContent, http.StatusNotModified, http.StatusSwitchingProtocols:
		return
	}
	// Kept headers are never changed once visible: replace the map.
	kept := e.ex.ResponseHeader.Clone()
	kept.Set("Content-Type", http.DetectContentType(p))
	e.ex.ResponseHeader = kept
	r.growLocked(e, int64(len("Content-Type")+len(kept.Get("Content-Type"))+headerOverhead))
}

// finish ends the exchange when its handler returns, unless the handler
// took the connection over: then it ends when the connection closes.
func (w *responseWriter) finish(ended bool) {
	if w.hijacked != nil {
		return
	}
	if ended && !w.wroteHeader {
		// The server answers 200 with no body for a handler that wrote
		// nothing.
		w.wroteHeader = true
		w.drainRequest()
		w.rec.gotHeader(w, http.StatusOK, w.w.Header())
	}
	w.rec.end(w.e, ended)
}

// end marks e done; complete says its response was written to the end.
func (r *Recorder) end(e *entry, complete bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e.ex.Done {
		return
	}
	e.ex.Done = true
	e.ex.Duration = r.now().Sub(e.ex.Start)
	e.ex.ResponseBody.Complete = complete
	r.doneSeq++
	e.doneSeq = r.doneSeq
	r.notifyLocked(e)
}
