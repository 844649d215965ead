package tunnel

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/http-tunnel/tunnel/internal/websocket"
	"github.com/http-tunnel/tunnel/protocol"
)

// The raw transport's upgrade: the gateway's 101 (acceptRaw) and the
// agent's request and the rule that tells a refusal from a way that does not
// pass the upgrade (dialRaw). rawtransport.go has the link itself.

// asksForRaw reports whether r asks the agent endpoint for the raw
// transport: an HTTP/1.1 GET with "Connection: Upgrade" and the raw
// transport's token in Upgrade.
func asksForRaw(r *http.Request) bool {
	return r.Method == http.MethodGet && r.ProtoMajor == 1 && r.ProtoMinor >= 1 &&
		websocket.HeaderHasToken(r.Header, "Connection", "upgrade") && websocket.HeaderHasToken(r.Header, "Upgrade", protocol.UpgradeMux)
}

// acceptRaw answers r's upgrade to the raw transport with 101 and takes the
// connection over. Headers set on w before are sent with the 101. If w
// cannot hand its connection over it returns websocket.ErrNotHijackable
// (wrapped) and w is still unanswered.
func acceptRaw(w http.ResponseWriter) (*rawLink, error) {
	conn, r, err := websocket.SwitchProtocols(w, "Connection: Upgrade\r\nUpgrade: "+protocol.UpgradeMux+"\r\n")
	if err != nil {
		if errors.Is(err, websocket.ErrNotHijackable) {
			return nil, err
		}
		return nil, fmt.Errorf("raw upgrade: %w", err)
	}
	return newRawLink(conn, r, conn), nil
}

// hungUp reports whether err says that the peer closed or reset the
// connection (not a timeout, not a failure to connect).
func hungUp(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// dialRaw asks the agent endpoint at rawURL (ws:// or wss://) for the raw
// transport with client, sending header; ctx bounds the upgrade only.
//
// An answer that refuses the agent itself, as it would refuse a WebSocket
// (429, or the public error body with any code but invalid_request: 401
// unauthorized, 403 forbidden, 503 unavailable, ...), is returned as an
// *Error. Any other answer but 101 with
// the raw transport's token (an old gateway's 400, API Gateway's 426, a
// proxy's 502 or 404, a 101 to something else), or a connection closed
// without an answer, means the way does not pass the upgrade: the error
// wraps errUpgradeRefused. A failure to connect, or a timeout, is neither:
// a WebSocket would meet it too. But with answerWithin set, a request that
// was sent and got no answer at all within answerWithin fails at once with
// an error wrapping errUpgradeUnanswered.
func dialRaw(ctx context.Context, client *http.Client, rawURL string, header http.Header, answerWithin time.Duration) (*rawLink, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	}
	var (
		netConn  net.Conn
		awaiting atomic.Bool // the request is sent, a read deadline set for its answer
	)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { netConn = info.Conn },
		WroteRequest: func(info httptrace.WroteRequestInfo) {
			if answerWithin > 0 && info.Err == nil && netConn != nil {
				// The transport's reader is waiting for the answer; the
				// deadline ends its wait.
				netConn.SetReadDeadline(time.Now().Add(answerWithin))
				awaiting.Store(true)
			}
		},
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", protocol.UpgradeMux)
	resp, err := client.Do(req)
	if err != nil {
		// net/http names the URL, which may carry a secret in its query.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if awaiting.Load() && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
			return nil, fmt.Errorf("%w within %v", errUpgradeUnanswered, answerWithin)
		}
		if netConn != nil && hungUp(err) {
			// Something on the way took the request and closed the
			// connection instead of answering it, as some proxies do
			// with upgrades they do not know.
			return nil, fmt.Errorf("%w: the connection was closed without an answer (%w)", errUpgradeRefused, err)
		}
		return nil, fmt.Errorf("raw upgrade: %w", err)
	}
	if awaiting.Load() {
		netConn.SetReadDeadline(time.Time{})
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		rwc, ok := resp.Body.(io.ReadWriteCloser)
		if !ok || netConn == nil || !websocket.HeaderHasToken(resp.Header, "Upgrade", protocol.UpgradeMux) || !websocket.HeaderHasToken(resp.Header, "Connection", "upgrade") {
			resp.Body.Close()
			return nil, fmt.Errorf("%w: the answer switched to %q", errUpgradeRefused, resp.Header.Get("Upgrade"))
		}
		return newRawLink(netConn, rwc, rwc), nil
	}
	// Keep the start of the explanation, without waiting on a server
	// that sends no more.
	t := time.AfterFunc(3*time.Second, func() { resp.Body.Close() })
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	t.Stop()
	resp.Body.Close()
	var eb errorBody
	json.Unmarshal(body, &eb)
	// A 401 or 403 without the gateway's error body is not taken for the
	// gateway's refusal: a proxy or API Gateway may answer an upgrade it
	// does not know so. The WebSocket that follows meets the gateway's
	// own answer, whatever it is.
	switch {
	case resp.StatusCode == http.StatusTooManyRequests, eb.Error != "" && eb.Error != CodeInvalidRequest:
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, refusal(resp)
	}
	return nil, fmt.Errorf("%w: the gateway answered %s", errUpgradeRefused, resp.Status)
}
