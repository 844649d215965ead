package tunnel_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/internal/e2e"
	"github.com/http-tunnel/tunnel/tunneltest"
)

func TestSSEEventsArriveOneByOne(t *testing.T) {
	t.Parallel()
	eachTransport(t, testSSEEventsArriveOneByOne)
}

func testSSEEventsArriveOneByOne(t *testing.T, tr tunnel.Option) {
	gw, _ := gateway(t, nil)
	ln := listen(t, gw, tr)
	next := make(chan struct{})
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := 0; i < 5; i++ {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			// The next event is sent only after the client has seen this
			// one: if the tunnel buffered events, the test would hang.
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}))
	resp, err := newClient(t).Get(ln.URL() + "/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 0, 64)
	for i := 0; i < 5; i++ {
		want := fmt.Sprintf("data: event %d\n\n", i)
		buf = buf[:0]
		for len(buf) < len(want) {
			chunk := make([]byte, len(want)-len(buf))
			n, err := resp.Body.Read(chunk)
			buf = append(buf, chunk[:n]...)
			if err != nil {
				t.Fatalf("event %d: %v after %q", i, err, buf)
			}
		}
		if string(buf) != want {
			t.Fatalf("event %d = %q, want %q", i, buf, want)
		}
		next <- struct{}{}
	}
}

func TestConcurrentRequestsOverTenTunnels(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)
	const tunnels, requests, workers = 10, 1000, 64
	urls := make([]string, tunnels)
	for i := range urls {
		ln := listen(t, gw)
		name := fmt.Sprintf("tunnel-%d", i)
		tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			fmt.Fprintf(w, "%s|%s|%s", name, r.URL.Query().Get("n"), body)
		}))
		urls[i] = ln.URL()
	}
	c := newClient(t)
	jobs := make(chan int)
	errs := make(chan error, requests)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for n := range jobs {
				i := n % tunnels
				payload := fmt.Sprintf("payload-%d", n)
				resp, err := c.Post(fmt.Sprintf("%s/r?n=%d", urls[i], n), "text/plain", strings.NewReader(payload))
				if err != nil {
					errs <- err
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if want := fmt.Sprintf("tunnel-%d|%d|%s", i, n, payload); resp.StatusCode != 200 || string(b) != want {
					errs <- fmt.Errorf("request %d: %d %q, want %q", n, resp.StatusCode, b, want)
				}
			}
		})
	}
	for n := 0; n < requests; n++ {
		jobs <- n
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestLargeTransfersStreamWithFlatMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	// Not parallel: it measures the heap.
	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	const size = 100 << 20
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/upload":
			h := sha256.New()
			n, err := io.Copy(h, r.Body)
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			fmt.Fprintf(w, "%d %x", n, h.Sum(nil))
		case "/download":
			w.Header().Set("Content-Length", fmt.Sprint(size))
			io.Copy(w, io.LimitReader(pattern{}, size))
		}
	}))
	c := newClient(t)

	want := sha256.New()
	io.Copy(want, io.LimitReader(pattern{}, size))
	wantSum := fmt.Sprintf("%x", want.Sum(nil))

	peak := watchHeap(t)
	resp, err := c.Post(ln.URL()+"/upload", "application/octet-stream", io.LimitReader(pattern{}, size))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := fmt.Sprintf("%d %s", size, wantSum); string(b) != got {
		t.Fatalf("upload: agent saw %q, want %q", b, got)
	}

	resp, err = c.Get(ln.URL() + "/download")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	resp.Body.Close()
	if err != nil || n != size || fmt.Sprintf("%x", h.Sum(nil)) != wantSum {
		t.Fatalf("download: %d bytes, err %v, hash match %v", n, err, fmt.Sprintf("%x", h.Sum(nil)) == wantSum)
	}
	// The whole path holds a few windows and buffers, not the body.
	if grew := peak(); grew > 48<<20 {
		t.Errorf("heap grew by %d MiB while moving 2 x %d MiB", grew>>20, size>>20)
	}
}

// pattern is an endless deterministic byte stream.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(i*7 + i>>8)
	}
	return len(p), nil
}

func TestWebSocketEchoThroughTunnel(t *testing.T) {
	t.Parallel()
	eachTransport(t, testWebSocketEchoThroughTunnel)
}

func testWebSocketEchoThroughTunnel(t *testing.T, tr tunnel.Option) {
	gw, _ := gateway(t, nil)
	ln := listen(t, gw, tr)
	tunneltest.Serve(t, ln, http.HandlerFunc(e2e.WSEcho))
	e2e.CheckWSEcho(t, ln.URL())
}
