package tunnel

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestLateBodyReadLeavesTheConnectionAlone: net/http's transport reads a
// request body once more after sending Content-Length bytes, to check for
// more, and that read may come after the exchange is over and the server
// has closed the body. Such a read says nothing about the public client,
// whose connection may carry its next request by then: it must not cut
// that connection. (It did: the next request's context was canceled, and
// its client got an empty 200.)
func TestLateBodyReadLeavesTheConnectionAlone(t *testing.T) {
	firstBody := make(chan *countedBody, 1)
	secondStarted := make(chan struct{})
	lateReadDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/first":
			b := &countedBody{ReadCloser: r.Body, left: -1, stall: time.Minute, rc: http.NewResponseController(w)}
			if _, err := io.ReadAll(b); err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			firstBody <- b
		case "/second":
			close(secondStarted)
			<-lateReadDone
			body, err := io.ReadAll(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			w.Write(body)
		}
	}))
	defer srv.Close()
	// One connection, so that the second request follows the first on it.
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer client.CloseIdleConnections()

	resp, err := client.Post(srv.URL+"/first", "text/plain", strings.NewReader("first body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	late := <-firstBody

	// The second request's body is sent only after the late read.
	pr, pw := io.Pipe()
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Post(srv.URL+"/second", "text/plain", pr)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{resp.StatusCode, string(b), err}
	}()
	<-secondStarted
	if _, err := late.Read(make([]byte, 1)); !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Fatalf("late read of the first body: %v, want %v", err, http.ErrBodyReadAfterClose)
	}
	if p := late.readErr.Load(); p != nil {
		t.Errorf("the late read was recorded as the client's error: %v", *p)
	}
	close(lateReadDone)
	io.WriteString(pw, "second body")
	pw.Close()

	r := <-done
	if r.err != nil || r.status != http.StatusOK || r.body != "second body" {
		t.Fatalf("second request on the connection: status %d, body %q, err %v; want 200 and its body", r.status, r.body, r.err)
	}
}
