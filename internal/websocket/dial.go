package websocket

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"time"
)

// Dial opens a WebSocket to rawURL (ws:// or wss://) with client, sending
// header and offering subprotocols. ctx bounds the handshake only. On a
// non-101 answer it returns the response with at most 1 KiB of its body
// buffered, for the caller to read the server's reason.
//
// No extension is offered (a Sec-WebSocket-Extensions in header is not
// sent), so a server that selects one, or selects a subprotocol that was
// not offered, fails the handshake (RFC 6455 section 4.1).
//
// The connection has deadlines (see Stream) when client's transport is an
// *http.Transport, which reports the connection it used.
func Dial(ctx context.Context, client *http.Client, rawURL string, header http.Header, subprotocols []string) (*Conn, *http.Response, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, nil, err
	}
	switch u.Scheme {
	case "ws":
		u.Scheme = "http"
	case "wss":
		u.Scheme = "https"
	default:
		return nil, nil, fmt.Errorf("websocket: unsupported scheme %q", u.Scheme)
	}
	var nonce [16]byte
	rand.Read(nonce[:])
	key := base64.StdEncoding.EncodeToString(nonce[:])

	// The response body reads and writes the connection but does not
	// expose it; the transport reports it here, for deadlines.
	var netConn net.Conn
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) { netConn = info.Conn },
	})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, nil, err
	}
	for k, vs := range header {
		if !strings.EqualFold(k, "Sec-WebSocket-Extensions") {
			req.Header[k] = vs
		}
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", key)
	if len(subprotocols) > 0 {
		req.Header.Set("Sec-WebSocket-Protocol", strings.Join(subprotocols, ", "))
	}
	resp, err := client.Do(req)
	if err != nil {
		// net/http names the URL in its error, and the URL may carry a
		// secret in its query: the caller, who knows the URL, names it
		// as it sees fit.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, nil, fmt.Errorf("websocket dial: %w", err)
	}
	fail := func(err error) (*Conn, *http.Response, error) {
		var body []byte
		if resp.StatusCode != http.StatusSwitchingProtocols {
			// Keep the start of the server's explanation, without waiting
			// on a server that sends no more.
			t := time.AfterFunc(3*time.Second, func() { resp.Body.Close() })
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
			t.Stop()
		}
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		return nil, resp, err
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fail(fmt.Errorf("websocket dial: server answered %s", resp.Status))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") || !HeaderHasToken(resp.Header, "Connection", "upgrade") {
		return fail(errors.New("websocket dial: server did not upgrade to websocket"))
	}
	if resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return fail(errors.New("websocket dial: bad Sec-WebSocket-Accept"))
	}
	if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
		return fail(fmt.Errorf("websocket dial: server chose extensions %q, none were offered", strings.Join(ext, ", ")))
	}
	protos := resp.Header.Values("Sec-WebSocket-Protocol")
	if len(protos) > 1 {
		return fail(fmt.Errorf("websocket dial: server chose %d subprotocols", len(protos)))
	}
	proto := resp.Header.Get("Sec-WebSocket-Protocol")
	if proto != "" && !slices.Contains(subprotocols, proto) {
		return fail(fmt.Errorf("websocket dial: server chose subprotocol %q, which was not offered", proto))
	}
	rwc, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		return fail(fmt.Errorf("websocket dial: response body is not writable (%T)", resp.Body))
	}
	c := newConn(rwc, rwc, proto, false)
	if netConn != nil {
		c.dl = netConn
	}
	return c, resp, nil
}

func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}
