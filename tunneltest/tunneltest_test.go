package tunneltest_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// A webhook test in five lines: expose, deliver, wait, check.
func TestWebhookRecording(t *testing.T) {
	t.Parallel()
	hook := tunneltest.ExposeRecorded(t, nil)
	deliver(t, hook.URL+"/events?id=7", `{"action":"opened"}`)
	got := hook.Next(t, 10*time.Second)
	if got.Method != http.MethodPost || got.URL != "/events?id=7" || string(got.RequestBody.Data) != `{"action":"opened"}` {
		t.Fatalf("recorded %s %s %q", got.Method, got.URL, got.RequestBody.Data)
	}
	if n := len(hook.Requests()); n != 1 {
		t.Errorf("%d requests recorded, want 1", n)
	}
}

// deliver posts body to url as a webhook sender would, without waiting
// for the answer; the test's end waits for it and closes the connection.
func deliver(t *testing.T, url, body string) {
	tr := &http.Transport{}
	done := make(chan struct{})
	t.Cleanup(func() {
		<-done
		tr.CloseIdleConnections()
	})
	go func() {
		defer close(done)
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Errorf("POST %s: %v", url, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}()
}

// Next fails the test when nothing arrives in time.
func TestNextTimesOut(t *testing.T) {
	t.Parallel()
	hook := tunneltest.ExposeRecorded(t, nil)
	ft := &fakeT{}
	hook.Next(ft, 50*time.Millisecond)
	if !strings.Contains(ft.fatal, "no request") {
		t.Errorf("Next without a request: %q, want a failure", ft.fatal)
	}
}

type fakeT struct{ fatal string }

func (*fakeT) Helper()                          {}
func (*fakeT) Cleanup(func())                   {}
func (f *fakeT) Fatalf(format string, a ...any) { f.fatal = format }
func (*fakeT) Errorf(string, ...any)            {}

// A gateway at an address the test chooses, restarted: the tunnel comes
// back at the same URL; dropped connections: the agent reconnects.
func TestGatewayAtRestartAndDrop(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	gw := tunneltest.NewGatewayAt(t, addr, nil)
	if gw.URL != "http://"+addr {
		t.Fatalf("URL %q, want http://%s", gw.URL, addr)
	}
	ln := gw.Listen(t, tunnel.WithBackoff(time.Millisecond, 20*time.Millisecond))
	tunneltest.Serve(t, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	url := ln.URL()
	waitOK := func(what string) {
		t.Helper()
		tr := &http.Transport{}
		defer tr.CloseIdleConnections()
		deadline := time.Now().Add(30 * time.Second)
		for {
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(url + "/")
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == 200 && string(b) == "ok" {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the tunnel did not come back at %s", what, url)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOK("start")
	gw.Restart(t)
	waitOK("after Restart")
	if ln.URL() != url {
		t.Errorf("URL after Restart %q, want %q", ln.URL(), url)
	}
	gw.DropConnections()
	waitOK("after DropConnections")
}
