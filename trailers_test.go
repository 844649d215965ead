package tunnel_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/http-tunnel/tunnel"
	"github.com/http-tunnel/tunnel/tunneltest"
)

// trailerEcho answers with the request's body size and its X-Sum trailer,
// and sends a trailer of its own.
var trailerEcho = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Trailer", "X-Answer")
	io.WriteString(w, r.Trailer.Get("X-Sum"))
	w.Header().Set("X-Answer", "42")
})

// sendWithTrailer posts a chunked body with an X-Sum trailer to url.
func sendWithTrailer(t *testing.T, url string) (body, answer string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, io.NopCloser(strings.NewReader("some body")))
	req.ContentLength = -1 // chunked, so that there can be trailers
	req.Trailer = http.Header{"X-Sum": {"abc123"}}
	resp, err := newClient(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b), resp.Trailer.Get("X-Answer")
}

// Trailers pass both ways: the request's reach the agent's handler (and
// through Forward, the local service), the response's reach the client.
func TestTrailersBothWays(t *testing.T) {
	t.Parallel()
	gw, _ := gateway(t, nil)

	ln := listen(t, gw)
	tunneltest.Serve(t, ln, trailerEcho)
	if got, answer := sendWithTrailer(t, ln.URL()+"/sum"); got != "abc123" || answer != "42" {
		t.Errorf("Listen: request trailer %q, response trailer %q; want abc123 and 42", got, answer)
	}

	local := httptest.NewServer(trailerEcho)
	t.Cleanup(local.Close)
	fw, err := tunnel.Forward(t.Context(), gw.URL, local.URL, tunnel.WithLogger(quiet))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fw.Close() })
	if got, answer := sendWithTrailer(t, fw.URL()+"/sum"); got != "abc123" || answer != "42" {
		t.Errorf("Forward: request trailer %q, response trailer %q; want abc123 and 42", got, answer)
	}
}
