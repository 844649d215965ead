package inspector_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/http-tunnel/tunnel/inspector"
)

// The Middleware records what passes through it; a test waits for the next
// delivery with Next. Under a tunnel, the server would be serving the
// tunnel's listener.
func Example() {
	webhook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	rec := inspector.New(&inspector.Options{Replay: webhook})
	srv := httptest.NewServer(rec.Middleware(webhook))
	defer srv.Close()

	resp, err := http.Post(srv.URL+"/hooks/github", "application/json", strings.NewReader(`{"action":"opened"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ex, err := rec.Next(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(ex.Method, ex.URL, ex.Status, string(ex.RequestBody.Data))
	// Output: POST /hooks/github 204 {"action":"opened"}
}

// Replay sends a captured request again to Options.Replay, with edits if
// asked; the replay is recorded too.
func ExampleRecorder_Replay() {
	service := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Printf("service: %s %s %s\n", r.Method, r.URL, b)
	})
	rec := inspector.New(&inspector.Options{Replay: service})
	rec.Middleware(service).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("POST", "/orders", strings.NewReader(`{"id":1}`)))

	ex, err := rec.Replay(context.Background(), 1, &inspector.Edit{Path: "/orders?dry_run=1", Body: []byte(`{"id":2}`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("exchange %d replays %d\n", ex.ID, ex.ReplayOf)
	// Output:
	// service: POST /orders {"id":1}
	// service: POST /orders?dry_run=1 {"id":2}
	// exchange 2 replays 1
}

// Secret headers are masked in what is kept; the handler sees them as
// sent.
func ExampleOptions_maskHeaders() {
	rec := inspector.New(&inspector.Options{MaskHeaders: []string{"X-Api-Key"}})
	req := httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Authorization", "Bearer abc123")
	req.Header.Set("Cookie", "session=xyz; theme=dark")
	req.Header.Set("X-Api-Key", "k-42")
	rec.Middleware(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), req)

	ex, _ := rec.Get(1)
	for _, h := range []string{"Authorization", "Cookie", "X-Api-Key"} {
		fmt.Printf("%s: %s\n", h, ex.RequestHeader.Get(h))
	}
	// Output:
	// Authorization: Bearer [masked]
	// Cookie: session=[masked]; theme=[masked]
	// X-Api-Key: [masked]
}

// Handler serves the page and the JSON API, on a loopback address.
func ExampleRecorder_Handler() {
	rec := inspector.New(nil)
	rec.Middleware(http.NotFoundHandler()).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/favicon.ico", nil))

	page := httptest.NewServer(rec.Handler()) // 127.0.0.1:port
	defer page.Close()
	resp, err := http.Get(page.URL + "/api/exchanges?status=4xx")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(b), `"url":"/favicon.ico","host":"example.com"`))
	// Output: 200 true
}

// ReplayTo makes a replay target of a service at a URL, as the agent's
// local service is.
func ExampleReplayTo() {
	service := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Println("service:", r.Method, r.URL)
	}))
	defer service.Close()
	target, err := inspector.ReplayTo(service.URL, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	rec := inspector.New(&inspector.Options{Replay: target})
	rec.Middleware(target).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("DELETE", "/items/7", nil))
	if _, err := rec.Replay(context.Background(), 1, nil); err != nil {
		fmt.Println(err)
	}
	http.DefaultClient.CloseIdleConnections()
	// Output:
	// service: DELETE /items/7
	// service: DELETE /items/7
}
