package h1relay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"
)

// exchange relays one request, read into cn.req, and its response. It
// reports whether the connection can carry another.
func (cn *conn) exchange() (keep bool, err error) {
	r, req := cn.r, &cn.req
	var start time.Time
	if r.Done != nil {
		start = time.Now()
	}
	status := 0
	defer func() {
		if r.Done != nil {
			r.Done(string(req.method.in(req.raw)), string(req.target.in(req.raw)), status, time.Since(start))
		}
	}()
	hasBody := req.chunked || req.contentLength > 0
	// What may be sent twice: a request without a body whose method is
	// idempotent (RFC 9110 section 9.2.2).
	replayable := !hasBody && idempotent(req.method.in(req.raw))
	// A body already read with the head goes with it: nothing waits for it.
	inline := !req.chunked && int64(cn.br.Buffered()) >= req.contentLength
	out := cn.requestHead()

	if !cn.watch(true) {
		return false, errPeerGone
	}
	defer cn.watch(false)

	var up *upstream
	var body *bodyCopy
	for attempt := 0; ; attempt++ {
		up, err = r.get(cn.dialContext)
		if err != nil {
			if cn.isAborted() {
				return false, errPeerGone // nobody to answer
			}
			status = cn.fail(err, hasBody)
			return !hasBody, err
		}
		if !cn.use(up) {
			return false, errPeerGone
		}
		cn.resp.raw = cn.resp.raw[:0] // nothing answered yet, whatever the last exchange got
		up.bw.Write(out)
		if hasBody && inline {
			cp := copier{dst: up.bw, src: cn.br, pool: r.Buffers}
			cp.copyN(req.contentLength) // from the buffer: no read waits
		}
		err = up.bw.Flush()
		if err == nil && hasBody && !inline {
			body = &bodyCopy{done: make(chan error, 1)}
			go cn.copyBody(up, body)
		}
		if err == nil {
			err = readHead(up.br, &cn.resp, r.maxHeader(), false)
		}
		if err == nil {
			break
		}
		// A connection reused from the pool that the upstream had closed
		// fails before any answer; a request that may be sent twice is
		// sent again, once, on a new one.
		retry := up.reused && replayable && len(cn.resp.raw) == 0 && attempt == 0 && !cn.isAborted()
		cn.release(up, false)
		if cn.isAborted() {
			cn.endBody(body)
			return false, errPeerGone
		}
		if !retry {
			cn.endBody(body)
			status = cn.fail(err, hasBody)
			return !hasBody, err
		}
	}

	// Interim responses first, then the final one.
	for {
		resp := &cn.resp
		if resp.status == http.StatusSwitchingProtocols && !req.upgrade {
			// A switch the client cannot follow: Fail answers instead.
			err = errors.New("h1relay: 101 Switching Protocols to a request that asked for no upgrade")
			cn.release(up, false)
			status = cn.fail(err, hasBody)
			cn.endBody(body)
			return !hasBody, err
		}
		cn.bw.Write(resp.raw)
		if resp.status == http.StatusSwitchingProtocols {
			status = resp.status
			err = cn.splice(up)
			cn.release(up, false)
			cn.endBody(body)
			return false, err
		}
		if resp.status >= 200 {
			break
		}
		if err = cn.bw.Flush(); err == nil {
			err = readHead(up.br, resp, r.maxHeader(), false)
		}
		if err != nil {
			cn.release(up, false)
			cn.endBody(body)
			return false, err
		}
	}
	resp := &cn.resp
	status = resp.status

	cp := copier{dst: cn.bw, src: up.br, pool: r.Buffers}
	toEOF := false
	switch {
	case bodyless(req.method.in(req.raw), resp.status):
	case resp.chunked:
		err = cp.copyChunked()
	case resp.contentLength >= 0:
		err = cp.copyN(resp.contentLength)
	default:
		// Neither a length nor chunks: the body ends with the connection.
		toEOF = true
		err = cp.copyToEOF()
	}
	cp.release()
	if err == nil {
		err = cn.bw.Flush()
	}
	if err != nil || toEOF {
		cn.release(up, false)
		cn.endBody(body)
		if cn.isAborted() {
			err = errPeerGone
		}
		return false, err
	}

	// The request's body: all of it copied, or the copy is still at work
	// once the answer has ended. It may be about to end (the upstream read
	// the body and answered before the copy's goroutine ran on); or it
	// waits on a client that will not send the rest (a refused Expect:
	// 100-continue), or on an upstream that will not take it (an early
	// answer): deadlines in the past wake either wait, and what the copy
	// got done decides.
	if body != nil {
		select {
		case err = <-body.done:
		default:
			cn.c.SetReadDeadline(time.Unix(1, 0))
			up.c.SetWriteDeadline(time.Unix(1, 0))
			err = <-body.done
			cn.c.SetReadDeadline(time.Time{})
			up.c.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			// How much of the body the upstream got is unknown: its
			// connection goes. The client's stays if the whole body was
			// read from it.
			cn.release(up, false)
			if errors.Is(err, os.ErrDeadlineExceeded) {
				err = nil
			}
			if !body.read.Load() {
				return false, err
			}
			return !req.close && !resp.close, nil
		}
	}
	cn.release(up, !resp.close && !req.close)
	return !req.close && !resp.close, nil
}

// copyBody copies the request's body upstream while the response is read.
func (cn *conn) copyBody(up *upstream, b *bodyCopy) {
	cp := copier{dst: up.bw, src: cn.br, pool: cn.r.Buffers}
	var err error
	if cn.req.chunked {
		err = cp.copyChunked()
	} else {
		err = cp.copyN(cn.req.contentLength)
	}
	if err == nil {
		b.read.Store(true)
		err = up.bw.Flush()
	} else if errors.Is(err, errBadChunk) || errors.Is(err, io.ErrUnexpectedEOF) {
		// The body cannot be read to its end: the upstream, waiting for
		// the rest, would hold the exchange.
		cn.abort()
	}
	cp.release()
	b.done <- err
}

// endBody stops the copy of a request body, if one runs, by closing the
// connection it reads, and waits for it.
func (cn *conn) endBody(b *bodyCopy) {
	if b == nil {
		return
	}
	if !b.read.Load() {
		cn.c.Close()
	}
	<-b.done
}

// splice copies bytes both ways after a 101 answer, until either side
// ends, and then ends both.
func (cn *conn) splice(up *upstream) error {
	if err := cn.bw.Flush(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		_, err := cn.br.WriteTo(up.c)
		up.c.Close()
		cn.c.Close()
		done <- err
	}()
	_, err := up.br.WriteTo(cn.c)
	up.c.Close()
	cn.c.Close()
	<-done
	if cn.isAborted() {
		return nil
	}
	return err
}

// fail answers a request the upstream did not, with r.Fail, and returns
// the status sent. When the request had a body not yet read, the answer
// asks to close the connection, since the body's end is unknown.
func (cn *conn) fail(cause error, hasBody bool) int {
	req := &cn.req
	w := &failWriter{header: make(http.Header)}
	hr := &http.Request{
		Method:     string(req.method.in(req.raw)),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header),
		Host:       string(req.host.in(req.raw)),
		RequestURI: string(req.target.in(req.raw)),
	}
	if u, err := url.ParseRequestURI(hr.RequestURI); err == nil {
		hr.URL = u
	} else {
		hr.URL = &url.URL{Path: "/"}
	}
	if req.accept.set() {
		hr.Header.Set("Accept", string(req.accept.in(req.raw)))
	}
	if cn.r.Fail != nil {
		cn.r.Fail(w, hr, cause)
	} else {
		http.Error(w, "bad gateway", http.StatusBadGateway)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if hasBody {
		w.header.Set("Connection", "close")
	}
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	fmt.Fprintf(cn.bw, "HTTP/1.1 %03d %s\r\n", w.status, http.StatusText(w.status))
	w.header.Write(cn.bw)
	cn.bw.WriteString("\r\n")
	if string(req.method.in(req.raw)) != "HEAD" {
		cn.bw.Write(w.body.Bytes())
	}
	cn.bw.Flush()
	return w.status
}

// failWriter is the http.ResponseWriter of Fail: what it writes is sent
// once it returns.
type failWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *failWriter) Header() http.Header { return w.header }

func (w *failWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *failWriter) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

var _ http.ResponseWriter = (*failWriter)(nil)

// idempotent reports whether a method's request may be repeated without
// repeating its effect.
func idempotent(method []byte) bool {
	switch string(method) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
