package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/http-tunnel/tunnel/inspector"
	"github.com/http-tunnel/tunnel/tunneltest"
)

const (
	chromiumPath = "/usr/bin/chromium"
	// screenshotsEnv, set to 1, makes TestInspectorBrowser write the
	// screenshots that docs/inspector.md shows.
	screenshotsEnv = "TUNNEL_UPDATE_SCREENSHOTS"
	maxScreenshot  = 1 << 20
)

// delivery is a request the local service received.
type delivery struct {
	method, path, body string
}

// TestInspectorBrowser drives headless Chromium against the inspector of a
// recorder in front of a local service served through a real tunnel: a
// request made through the public URL appears in the list within 1 s
// without a reload, its detail shows the body, Replay makes the local
// service receive it a second time, and the edit form sends it changed.
func TestInspectorBrowser(t *testing.T) {
	if _, err := os.Stat(chromiumPath); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Chromium is required under CI and missing at %s (apt-get install -y chromium): %v", chromiumPath, err)
		}
		t.Skipf("Chromium is not installed at %s; install Debian's chromium package to run this test", chromiumPath)
	}

	deliveries := make(chan delivery, 32)
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		deliveries <- delivery{r.Method, r.URL.RequestURI(), string(body)}
		switch {
		case r.URL.Path == "/missing":
			http.NotFound(w, r)
		case r.URL.Path == "/boom":
			http.Error(w, "database unavailable", http.StatusServiceUnavailable)
		case r.URL.Path == "/logo.png":
			w.Header().Set("Content-Type", "image/png")
			w.Write([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10\x00\x00\x00\x10\x08\x06\x00\x00\x00"))
		case strings.HasPrefix(r.URL.Path, "/webhooks/"):
			w.WriteHeader(http.StatusNoContent)
		default:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"ok":true,"method":%q,"path":%q}`, r.Method, r.URL.Path)
		}
	})
	rec := inspector.New(&inspector.Options{Replay: local})

	gw, _ := gateway(t, nil)
	ln := listen(t, gw)
	tunneltest.Serve(t, ln, rec.Middleware(local))
	page := httptest.NewServer(rec.Handler())
	t.Cleanup(page.Close)
	c := newClient(t)

	ctx := browser(t)
	run := func(timeout time.Duration, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("browser: %v", err)
		}
	}
	eval := func(expr string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
		if err != nil {
			t.Fatalf("browser: %s: %v", expr, err)
		}
		return v
	}

	// The page, live.
	run(30*time.Second,
		chromedp.EmulateViewport(1280, 1040),
		chromedp.Navigate(page.URL+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#conn[data-state="live"]`)),
	)
	// A mark that a reload would lose.
	eval(`window.inspectorTestMark = "kept"; "ok"`)

	// A webhook through the public URL appears within a second.
	const hook = `{"action":"opened","number":42,"pull_request":{"title":"Add the inspector","draft":false},"sender":{"login":"octocat"}}`
	post := func(path, body string) time.Time {
		t.Helper()
		req, _ := http.NewRequest("POST", ln.URL()+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-GitHub-Event", "pull_request")
		req.Header.Set("X-Hub-Signature-256", "sha256=6c4f2b0e9a1d")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return time.Now()
	}
	answered := post("/webhooks/github?delivery=7f3a", hook)
	wantDelivery(t, deliveries, "POST", "/webhooks/github?delivery=7f3a", hook)
	ex := nextExchange(t, rec)
	row := fmt.Sprintf(`#rows tr[data-id="%d"]`, ex.ID)
	{
		ctx, cancel := context.WithDeadline(ctx, answered.Add(time.Second))
		err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(row)))
		cancel()
		if err != nil {
			t.Fatalf("the request was not in the list within 1 s of its answer: %v", err)
		}
	}
	t.Logf("the request appeared in the list %v after its answer", time.Since(answered).Round(time.Millisecond))
	if got := eval(`String(window.inspectorTestMark)`); got != "kept" {
		t.Fatalf("the page reloaded (mark %q)", got)
	}
	if got := eval(fmt.Sprintf(`document.querySelector('%s td.url').textContent`, row)); got != "/webhooks/github?delivery=7f3a" {
		t.Errorf("the row shows %q", got)
	}

	// More traffic, for the screenshots.
	for _, r := range []struct{ method, path, body string }{
		{"GET", "/api/users?page=2", ""},
		{"PUT", "/api/orders/1017", `{"status":"shipped","items":3}`},
		{"GET", "/logo.png", ""},
		{"GET", "/missing", ""},
		{"GET", "/boom", ""},
	} {
		req, _ := http.NewRequest(r.method, ln.URL()+r.path, strings.NewReader(r.body))
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		wantDelivery(t, deliveries, r.method, r.path, r.body)
		nextExchange(t, rec)
	}
	run(5*time.Second, chromedp.WaitVisible(chromedp.CSS(`#rows tr:nth-child(6)`)))
	screenshot(t, ctx, "inspector-list.png")

	// The detail shows the body, pretty-printed.
	run(10*time.Second,
		chromedp.Click(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#detail[data-id="%d"] #req-body`, ex.ID))),
	)
	body := eval(`document.querySelector('#req-body').textContent`)
	if !strings.Contains(body, `"action": "opened"`) || !strings.Contains(body, `"login": "octocat"`) {
		t.Errorf("the detail's request body is %q, want the webhook's JSON, pretty-printed", body)
	}
	if sig := eval(`[...document.querySelectorAll('table.headers td')].map(td => td.textContent).join(' ')`); !strings.Contains(sig, "X-Hub-Signature-256 sha256=6c4f2b0e9a1d") {
		t.Errorf("the detail's headers: %s", sig)
	}
	screenshot(t, ctx, "inspector-detail.png")

	// Replay: the local service receives it a second time.
	run(10*time.Second,
		chromedp.WaitEnabled(chromedp.CSS(`#replay`)),
		chromedp.Click(chromedp.CSS(`#replay`)),
	)
	wantDelivery(t, deliveries, "POST", "/webhooks/github?delivery=7f3a", hook)
	replayed := nextExchange(t, rec)
	if replayed.ReplayOf != ex.ID || replayed.Status != http.StatusNoContent {
		t.Errorf("the replay: exchange %d, replay of %d, status %d", replayed.ID, replayed.ReplayOf, replayed.Status)
	}
	// The page follows to the replay, marked as such.
	run(5*time.Second,
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#detail[data-id="%d"]`, replayed.ID))),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#rows tr[data-id="%d"] .badge.replay`, replayed.ID))),
	)

	// Replay with edits, from the form.
	const edited = `{"action":"closed","number":42}`
	run(10*time.Second,
		chromedp.Click(chromedp.CSS(row)),
		chromedp.WaitVisible(chromedp.CSS(fmt.Sprintf(`#detail[data-id="%d"] #edit-replay`, ex.ID))),
		chromedp.Click(chromedp.CSS(`#edit-replay`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit #e-body`)),
		chromedp.SetValue(chromedp.CSS(`#e-method`), "PUT"),
		chromedp.SetValue(chromedp.CSS(`#e-path`), "/webhooks/github?delivery=edited"),
		chromedp.SetValue(chromedp.CSS(`#e-body`), edited),
		chromedp.Click(chromedp.CSS(`#e-send`)),
	)
	wantDelivery(t, deliveries, "PUT", "/webhooks/github?delivery=edited", edited)
	if r := nextExchange(t, rec); r.ReplayOf != ex.ID || r.Method != "PUT" || string(r.RequestBody.Data) != edited {
		t.Errorf("the edited replay: %s %s %q, replay of %d", r.Method, r.URL, r.RequestBody.Data, r.ReplayOf)
	}

	select {
	case d := <-deliveries:
		t.Errorf("an unexpected delivery: %+v", d)
	default:
	}
}

// browser starts headless Chromium for the test and returns its context.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// Start the browser here, with no timeout: a timeout on the first
	// run would stop the whole browser when it ends.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return ctx
}

// wantDelivery waits for the local service's next request and checks it.
func wantDelivery(t *testing.T, ch <-chan delivery, method, path, body string) {
	t.Helper()
	select {
	case d := <-ch:
		if d.method != method || d.path != path || d.body != body {
			t.Fatalf("the local service received %s %s %q, want %s %s %q", d.method, d.path, d.body, method, path, body)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the local service did not receive %s %s", method, path)
	}
}

// nextExchange waits for the recorder's next exchange.
func nextExchange(t *testing.T, rec *inspector.Recorder) inspector.Exchange {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ex, err := rec.Next(ctx)
	if err != nil {
		t.Fatalf("waiting for the recorder: %v", err)
	}
	return ex
}

// screenshot captures the page; with TUNNEL_UPDATE_SCREENSHOTS=1 it writes
// it to docs/ for docs/inspector.md.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	// The highlight of new rows fades first.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getAnimations().length === 0`)); err != nil {
		t.Fatalf("screenshot %s: waiting for the page to settle: %v", name, err)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if len(png) == 0 || len(png) > maxScreenshot {
		t.Fatalf("screenshot %s is %d bytes, want some and under %d", name, len(png), maxScreenshot)
	}
	if os.Getenv(screenshotsEnv) != "1" {
		return
	}
	path := filepath.Join("..", "docs", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
